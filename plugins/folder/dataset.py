"""A user's own data without code: a folder of images, a folder of masks, a class list.

An image ``IMAGES/a/b.jpg`` pairs with the mask ``MASKS/a/b.png`` (suffixes configurable, e.g.
``_mask.png``). Mask values are class indices 0..N-1, or go through a ``label_map`` first; the
value ``ignore_index`` marks pixels to ignore. With ``mask_format: rgb`` masks are colour
pictures instead: each class is its palette colour, ``ignore_color`` marks unlabelled pixels.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Literal

import numpy as np

from segkit.engine.visualize import default_palette
from segkit.errors import DataError
from segkit.imagefiles import IMAGE_SUFFIXES, FileDataset, pair_files
from segkit.label_map import IGNORE_INDEX, LabelMap
from segkit.maskformat import ColourDecoder, is_grey_rgb


class Folder(FileDataset):
    """Images and masks in two folders with matching names, and a list of classes."""

    def __init__(
        self,
        images: str,
        masks: str,
        classes: list[str] | str,
        palette: list[tuple[int, int, int]] | None = None,
        root: str | None = None,
        image_suffix: str | list[str] = IMAGE_SUFFIXES,
        mask_suffix: str = ".png",
        label_map: str | dict[int, int | None] | None = None,
        ignore_index: int | None = 255,
        mask_format: Literal["index", "rgb"] = "index",
        ignore_color: tuple[int, int, int] | None = None,
    ):
        """``images``, ``masks``: folders (relative to ``root`` when it is set), searched
        recursively. ``classes``: the class names, or a file of them (one per line, or a CSV
        with a ``name`` column and optional ``r``, ``g``, ``b``). ``palette``: an RGB colour per
        class (generated if absent). ``label_map``: mask value -> class, a file or a mapping;
        without it mask values are the class indices. ``ignore_index``: the mask value that
        means "not labelled" (null: none does). ``mask_format``: ``index`` (mask values are
        labels) or ``rgb`` (a pixel's colour is its class's ``palette`` colour, which must then
        be given, inline or in the classes CSV); ``ignore_color``: with ``rgb``, the colour of
        unlabelled pixels."""
        base = Path(root) if root is not None else None
        image_dir, mask_dir = _folder(images, base, "images"), _folder(masks, base, "masks")
        suffixes = [image_suffix] if isinstance(image_suffix, str) else list(image_suffix)
        names, file_palette = _classes(classes, base)
        if mask_format == "rgb" and palette is None and file_palette is None:
            raise ValueError(
                "mask_format: rgb needs the class colours: palette: [[r, g, b], ...] (one per "
                "class, in class order) or a classes CSV with r, g, b columns"
            )
        if mask_format != "rgb" and ignore_color is not None:
            raise ValueError(
                "ignore_color applies to mask_format: rgb; with index masks use ignore_index"
            )
        if mask_format == "rgb" and label_map is not None:
            raise ValueError(
                "label_map maps mask values; with mask_format: rgb the palette maps colours to classes"
            )
        palette = palette if palette is not None else file_palette or default_palette(len(names))
        if len(palette) != len(names):
            raise ValueError(f"palette has {len(palette)} colours for {len(names)} classes")
        image_files, duplicates = {}, []
        for path in sorted(image_dir.rglob("*")):
            suffix = next((x for x in suffixes if path.name.lower().endswith(x.lower())), None)
            if suffix is None or not path.is_file():
                continue
            if image_dir == mask_dir and path.name.lower().endswith(mask_suffix.lower()):
                continue
            name = _name(path, image_dir, suffix)
            if name in image_files:
                duplicates.append(
                    f"{path}: a second image named '{name}' (beside {image_files[name]})"
                )
            else:
                image_files[name] = path
        if not image_files:
            raise DataError(
                f"folder dataset: no images (*{', *'.join(suffixes)}) in '{image_dir}'; expected "
                f"IMAGES/NAME{suffixes[0]} with masks MASKS/NAME{mask_suffix} (set images:, "
                "masks:, image_suffix: and mask_suffix: to match your files)"
            )
        mask_files = {
            _name(path, mask_dir, mask_suffix): path
            for path in sorted(mask_dir.rglob("*"))
            if path.name.lower().endswith(mask_suffix.lower()) and path.is_file()
        }
        pairs, problems = pair_files(
            image_files, mask_files, lambda name: mask_dir / f"{name}{mask_suffix}"
        )
        problems = duplicates + problems
        table = _table(len(names), label_map, ignore_index, base)
        colours = ColourDecoder(palette, ignore_color) if mask_format == "rgb" else None
        super().__init__(pairs, names, palette, table, problems, colours)
        if colours is None and pairs and _grey_rgb(pairs[0].mask):
            print(
                f"segkit: note: folder dataset '{mask_dir}': masks such as {pairs[0].mask} are "
                "RGB with R = G = B; read as index masks (their one channel holds the labels)",
                file=sys.stderr,
            )


def _grey_rgb(path: Path) -> bool:
    """The first mask tells whether a tool saved this dataset's index masks as RGB; an
    unreadable one is reported when it is loaded."""
    try:
        return is_grey_rgb(path)
    except OSError:
        return False


def _folder(path: str, base: Path | None, what: str) -> Path:
    folder = Path(path)
    if not folder.is_absolute() and base is not None:
        folder = base / folder
    if not folder.is_dir():
        hint = (
            "" if base is not None else " (relative paths are relative to data.root when it is set)"
        )
        raise DataError(f"folder dataset: {what} folder '{folder}' not found{hint}")
    return folder


def _name(path: Path, folder: Path, suffix: str) -> str:
    """The sample name: the path below the folder without the suffix, e.g. ``city/img_001``."""
    relative = path.relative_to(folder).as_posix()
    return relative[: -len(suffix)] if suffix else relative


def _classes(classes: list[str] | str, base: Path | None):
    if isinstance(classes, str):
        path = Path(classes)
        if not path.is_absolute() and not path.exists() and base is not None:
            path = base / path
        if not path.is_file():
            raise ValueError(f"classes file '{path}' not found")
        names, palette = _read_class_file(path)
    else:
        names, palette = list(classes), None
    if not names:
        raise ValueError("classes is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique: {names}")
    if len(names) > IGNORE_INDEX:
        raise ValueError(f"at most {IGNORE_INDEX} classes are supported (255 means ignore)")
    return names, palette


def _read_class_file(path: Path):
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() != ".csv":
        return [line.strip() for line in text.splitlines() if line.strip()], None
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or "name" not in rows[0]:
        raise ValueError(f"classes file '{path}' needs a 'name' column")
    names = [row["name"].strip() for row in rows]
    if all(row.get(c) not in (None, "") for row in rows for c in "rgb"):
        return names, [(int(row["r"]), int(row["g"]), int(row["b"])) for row in rows]
    return names, None


def _table(count: int, label_map, ignore_index: int | None, base: Path | None) -> np.ndarray:
    """Mask value -> class index (255 ignore, -1 not allowed)."""
    if ignore_index is not None and not 0 <= ignore_index <= 65535:
        raise ValueError(f"ignore_index must be in 0..65535 or null, got {ignore_index}")
    if label_map is None:
        table = np.full(256, -1, dtype=np.int16)
        table[:count] = np.arange(count)
    else:
        mapping = LabelMap.from_spec(label_map, base)
        if mapping.num_targets > count:
            raise ValueError(
                f"label_map maps to class {mapping.num_targets - 1} but there are only {count} classes"
            )
        if ignore_index in mapping.mapping:
            raise ValueError(
                f"label_map maps {ignore_index}, which is also ignore_index; set ignore_index to "
                "the value that means 'not labelled', or to null if no value does"
            )
        table = mapping.lookup_table()
        if IGNORE_INDEX not in mapping.mapping:
            table[IGNORE_INDEX] = -1  # here only ignore_index means "ignore"
    if ignore_index is None:
        return table
    if ignore_index >= len(table):
        table = np.concatenate([table, np.full(ignore_index + 1 - len(table), -1, dtype=np.int16)])
    table[ignore_index] = IGNORE_INDEX
    return table
