"""``segkit data check --suggest IMAGES MASKS`` (or ``--suggest ROOT``): a ``data:`` section for
a folder of images and masks that has no config yet.

It pairs the files by name to find the suffixes, reads a sample of the masks to tell their
encoding (index values, a palette PNG, RGB colours, 0/255 binary, an index mask saved as RGB) and
prints a folder dataset section that loads those files as they are, for the user to paste and
then check with ``segkit data check CONFIG``. It never writes a file.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segkit.errors import DataError, SegkitError
from segkit.imageread import DECODE_ERRORS, IMAGE_SUFFIXES

MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
IMAGE_FOLDERS = ("images", "imgs", "img", "image", "JPEGImages", "rgb")
MASK_FOLDERS = ("masks", "mask", "labels", "label", "annotations", "ann", "SegmentationClass", "gt")
SAMPLE = 200  # masks read to learn the encoding
# A colour on fewer than this share of the pixels, when there are many such, is compression noise.
NOISE_SHARE = 0.001
NOISE_COLOURS = 32
VOC_VOID = (224, 224, 192)  # the boundary colour of PASCAL VOC's colour masks: not a class


@dataclass
class Layout:
    images: Path
    masks: Path
    image_suffix: list[str]
    mask_suffix: str
    masks_of_pairs: list[Path] = field(default_factory=list)


def suggest(folders: list[str]) -> str:
    """The YAML text of a ``data:`` section for the images and masks in ``folders`` (one root
    holding both, or the image folder and the mask folder)."""
    layout = find_layout(folders)
    picks = np.unique(
        np.linspace(0, len(layout.masks_of_pairs) - 1, min(SAMPLE, len(layout.masks_of_pairs)))
    ).astype(int)
    encoding = read_encoding([layout.masks_of_pairs[i] for i in picks])
    lines = [
        f"# segkit data check --suggest: {len(layout.masks_of_pairs)} image/mask pairs, "
        f"{len(picks)} masks read; {encoding.description}.",
        "# Class names are placeholders (rename them); set model.num_classes: "
        f"{len(encoding.classes)}. Then run: segkit data check CONFIG",
        "data:",
        "  train:",
        "    type: folder",
        f"    images: {json.dumps(str(layout.images))}",
        f"    masks: {json.dumps(str(layout.masks))}",
        f"    image_suffix: {_flow(layout.image_suffix if len(layout.image_suffix) > 1 else layout.image_suffix[0])}",
        f"    mask_suffix: {json.dumps(layout.mask_suffix)}",
        f"    classes: {_flow(encoding.classes)}",
        f"    mask_format: {encoding.mask_format}",
    ]
    lines += [f"    {key}: {_flow(value)}" for key, value in encoding.options.items()]
    if encoding.note:
        lines.append(f"    # {encoding.note}")
    return "\n".join(lines) + "\n"


def _flow(value) -> str:
    """YAML in flow style (JSON is YAML), one line."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "null"
    return json.dumps(value)


# ---- where the files are ---------------------------------------------------------------------


def find_layout(folders: list[str]) -> Layout:
    if len(folders) == 1:
        root = _existing(Path(folders[0]))
        images = next((root / n for n in IMAGE_FOLDERS if (root / n).is_dir()), root)
        masks = next((root / n for n in MASK_FOLDERS if (root / n).is_dir()), root)
    elif len(folders) == 2:
        images, masks = _existing(Path(folders[0])), _existing(Path(folders[1]))
    else:
        raise SegkitError("--suggest takes a folder holding images and masks, or IMAGES MASKS")
    images, masks = images.resolve(), masks.resolve()
    # JPEG masks are looked for only to be refused with the reason
    mask_files = _files(masks, MASK_SUFFIXES + ((".jpg", ".jpeg") if masks != images else ()))
    image_files = _files(images, IMAGE_SUFFIXES)
    stems = {_stem(p, images): p for p in image_files}
    by_suffix: dict[str, list[tuple[Path, Path]]] = {}
    for mask in mask_files:
        relative = mask.relative_to(masks).as_posix()
        for cut in range(len(relative) - 1, 0, -1):  # the longest image name it starts with
            image = stems.get(relative[:cut])
            if image is not None and image != mask:
                by_suffix.setdefault(relative[cut:], []).append((image, mask))
                break
    if not by_suffix:
        raise DataError(
            f"--suggest: no image in '{images}' ({', '.join(IMAGE_SUFFIXES)}) has a mask in "
            f"'{masks}' ({', '.join(MASK_SUFFIXES)}) of the same name (NAME.jpg with NAME.png or "
            "NAME_mask.png); give the two folders: --suggest IMAGES MASKS"
        )
    mask_suffix, pairs = max(by_suffix.items(), key=lambda item: len(item[1]))
    if mask_suffix.lower().endswith((".jpg", ".jpeg")):
        raise DataError(
            f"--suggest: the masks in '{masks}' are JPEG files (*{mask_suffix}); lossy "
            "compression changes the labels at every class boundary: save masks as PNG"
        )
    suffixes = Counter(p.suffix.lower() for p, _ in pairs)
    return Layout(
        images,
        masks,
        sorted(suffixes, key=lambda s: -suffixes[s]),
        mask_suffix,
        sorted(m for _, m in pairs),
    )


def _existing(folder: Path) -> Path:
    if not folder.is_dir():
        raise DataError(f"--suggest: folder '{folder}' not found")
    return folder


def _files(folder: Path, suffixes) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in tuple(suffixes)
    )


def _stem(path: Path, folder: Path) -> str:
    return path.relative_to(folder).with_suffix("").as_posix()


# ---- how the masks encode classes ------------------------------------------------------------


@dataclass
class Encoding:
    description: str
    mask_format: str
    classes: list[str]
    options: dict
    note: str | None = None  # a comment on another reading of the same values


def read_encoding(masks: list[Path]) -> Encoding:
    from PIL import Image

    from segkit.labeltraps import value_counts
    from segkit.maskformat import pack, unpack

    values: Counter = Counter()
    colours: Counter = Counter()
    palette: list[int] | None = None
    kinds: dict[str, Path] = {}
    for path in masks:
        try:
            with Image.open(path) as image:
                mode = image.mode
                if mode == "P" and palette is None:
                    palette = image.getpalette()
                pixels = np.asarray(image.convert("RGB") if mode == "RGBA" else image)
        except DECODE_ERRORS as error:
            raise DataError(f"{path}: cannot read the mask: {error}") from None
        if pixels.ndim == 3:
            grey = np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(
                pixels[..., 0], pixels[..., 2]
            )
            if grey:
                kinds.setdefault("grey RGB", path)
                values.update(value_counts(pixels[..., 0]))
            else:
                kinds.setdefault("colour", path)
                codes, counts = np.unique(pack(pixels), return_counts=True)
                colours.update(dict(zip(codes.tolist(), counts.tolist())))
        else:
            kinds.setdefault("palette PNG" if mode == "P" else "index", path)
            values.update(value_counts(pixels.astype(np.int64) if mode == "1" else pixels))
    if "colour" in kinds and len(kinds) > 1:
        shown = ", ".join(f"{kind} ({path})" for kind, path in kinds.items())
        raise DataError(f"--suggest: the masks mix colour and index masks: {shown}")
    if "colour" in kinds:
        return _colour_encoding(colours, unpack)
    return _index_encoding(values, palette, " and ".join(kinds))


def _index_encoding(values: Counter, palette: list[int] | None, kinds: str) -> Encoding:
    from segkit.label_map import IGNORE_INDEX

    present = sorted(values)
    if present == [0, 255]:
        return Encoding(
            f"{kinds} masks holding 0 and 255: binary, 255 is the second class",
            "index",
            ["background", "foreground"],
            {"label_map": {0: 0, 255: 1}, "ignore_index": None},
        )
    labels = [v for v in present if v != IGNORE_INDEX]
    ignored = IGNORE_INDEX in values
    options: dict = {}
    if labels != list(range(len(labels))):
        options["label_map"] = {v: i for i, v in enumerate(labels)}
    options["ignore_index"] = IGNORE_INDEX if ignored else None
    if palette is not None:
        options["palette"] = [palette[3 * v : 3 * v + 3] for v in labels]
    names = ["background" if v == 0 else f"class_{v}" for v in labels]
    note = None
    if labels[:1] == [0] and len(labels) > 2 and not ignored and "label_map" not in options:
        shifted = _flow({v: v - 1 for v in labels[1:]})
        note = (
            f"if 0 means 'unlabelled' rather than a class: classes without the first, "
            f"label_map: {shifted}, ignore_index: 0"
        )
    values_text = ", ".join(str(v) for v in labels[:20]) + (" ..." if len(labels) > 20 else "")
    return Encoding(
        f"{kinds} masks with label values {values_text}"
        + ("; 255 marks unlabelled pixels" if ignored else ""),
        "index",
        names,
        options,
        note,
    )


def _colour_encoding(colours: Counter, unpack) -> Encoding:
    total = sum(colours.values())
    main = {c: n for c, n in colours.items() if n >= NOISE_SHARE * total}
    noise = len(colours) - len(main)
    if noise >= NOISE_COLOURS:
        raise DataError(
            f"--suggest: the colour masks hold {len(colours)} colours, {noise} of them on few "
            "pixels each: they look JPEG-compressed; save masks as PNG (lossless) and run "
            "--suggest again"
        )
    ordered = sorted(colours, key=lambda c: (c != 0, -colours[c]))  # black first
    rgb = [list(unpack(c)) for c in ordered]
    options: dict = {}
    if list(VOC_VOID) in rgb:
        rgb.remove(list(VOC_VOID))
        options["ignore_color"] = list(VOC_VOID)
    names = ["background" if c == [0, 0, 0] else f"class_{i}" for i, c in enumerate(rgb)]
    return Encoding(
        f"RGB colour masks with {len(rgb)} class colours"
        + (f" and the unlabelled colour {list(VOC_VOID)}" if options else ""),
        "rgb",
        names,
        {"palette": rgb, **options},
    )
