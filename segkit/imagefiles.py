"""Image and label files as dataset samples: read cheaply, checked, and named in every error.

:class:`FileDataset` is the common base of the file-backed datasets (ADE20K, Cityscapes, folder):
a list of image/mask pairs plus a lookup table from the values stored in the mask files to class
indices (255 = ignore; -1 in the table = a value the dataset does not allow).

It serves samples two ways. ``dataset[i]`` follows the dataset contract (uint8 image tensor,
int64 mask). ``dataset.load(i)``, which the training pipeline uses, leaves the image as an
:class:`EncodedImage` (header read, pixels not yet decoded) and the mask as uint8, so that a
resize can decode a JPEG at reduced size and no memory is spent on int64 masks before the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from segkit.errors import DataError, SampleError
from segkit.imageread import DECODE_ERRORS, TIFF_SUFFIXES, EncodedImage, require_tifffile

# read without torch in segkit.imageread; here too, where plugins find it (docs/plugins.md)
from segkit.imageread import IMAGE_SUFFIXES as IMAGE_SUFFIXES
from segkit.maskformat import ColourDecoder, grey_values


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """The values of a single-channel label image (8- or 16-bit) as a 2-D array; an RGB one
    whose channels are all equal (an index mask a tool saved as RGB) gives that channel."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode in ("RGB", "RGBA"):
                return grey_values(np.asarray(image), path)
            if image.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise SampleError(
                    f"{path}: a mask must be a single-channel (8- or 16-bit) image of label "
                    f"values, got mode {image.mode}"
                )
            values = np.array(image, dtype=np.uint8) if image.mode == "1" else np.array(image)
    except FileNotFoundError:
        raise SampleError(f"{path}: mask file not found") from None
    except DECODE_ERRORS as error:
        raise SampleError(f"{path}: cannot read the mask: {error}") from None
    return values


def decode_image(image: torch.Tensor | EncodedImage) -> torch.Tensor:
    """The pixel tensor of a sample's image, whether or not it was decoded already."""
    return image.decode() if isinstance(image, EncodedImage) else image


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path
    name: str


class FileDataset(Dataset):
    """Image/mask file pairs whose mask values become classes through a lookup table.

    ``problems`` lists what was found wrong while indexing (an image without its mask, ...);
    those files are left out, and ``data.on_bad_sample`` decides whether that is an error.
    With ``colours`` the mask files are RGB and a colour names the class (``mask_format: rgb``);
    ``table`` is then not used.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        classes: Sequence[str],
        palette: Sequence[Sequence[int]],
        table: np.ndarray,
        problems: Sequence[str] = (),
        colours: ColourDecoder | None = None,
    ):
        self.pairs = list(pairs)
        self.colours = colours
        self.classes = list(classes)
        self.palette = [tuple(int(c) for c in colour) for colour in palette]
        self.table = np.asarray(table, dtype=np.int16)
        self.problems = list(problems)
        if any(pair.image.suffix.lower() in TIFF_SUFFIXES for pair in self.pairs):
            require_tifffile()  # here, once, not in every data-loading worker

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        sample = self.load(index)
        return {
            "image": decode_image(sample["image"]).contiguous(),
            "mask": sample["mask"].long(),
            "name": sample["name"],
        }

    def load(self, index: int) -> dict:
        """The sample with its image not yet decoded and its mask as uint8 class indices."""
        pair = self.pairs[index]
        image = EncodedImage(pair.image)
        mask = self.labels(pair.mask)
        if mask.shape != image.size:
            raise SampleError(
                f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
                f"{pair.image} is {image.width}x{image.height}"
            )
        return {"image": image, "mask": torch.from_numpy(mask), "name": pair.name}

    def stored_values(self, path: Path) -> np.ndarray:
        """A mask file's values before any label mapping (colour masks: their classes), which
        ``segkit data check`` reads to recognise encodings such as 0/255."""
        return self.colours.read(path) if self.colours is not None else read_mask(path)

    def labels(self, path: Path) -> np.ndarray:
        """A mask file's values turned into class indices; values the dataset does not allow
        are an error naming them."""
        if self.colours is not None:
            return self.colours.read(path)
        values = read_mask(path)
        known = self.table_for(path)
        if values.size and values.max() >= len(known):
            table = np.full(int(values.max()) + 1, -1, dtype=np.int16)
            table[: len(known)] = known
        else:
            table = known
        if values.dtype != np.uint8 and values.size and values.min() < 0:
            raise SampleError(
                f"{path}: negative label values {_values(np.unique(values[values < 0]))}"
            )
        classes = table[values]
        if classes.size and classes.min() < 0:
            bad = np.unique(values[classes < 0])
            allowed = describe_values(np.flatnonzero(known >= 0))
            raise SampleError(
                f"{path}: label values {_values(bad)} are outside the dataset's range "
                f"(allowed: {allowed})"
            )
        return classes.astype(np.uint8)

    def table_for(self, path: Path) -> np.ndarray:
        """The lookup table for one mask file (datasets with several kinds of mask files
        choose here)."""
        return self.table


def describe_values(values: Sequence[int]) -> str:
    """``[0, 1, 2, 3, 255]`` -> ``'0..3, 255'``."""
    parts: list[str] = []
    values = sorted(int(v) for v in values)
    start = previous = None
    for value in [*values, None]:
        if value is not None and previous is not None and value == previous + 1:
            previous = value
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}..{previous}")
        start = previous = value
    return ", ".join(parts)


def _values(values: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def missing_data(
    what: str, root: str | os.PathLike | None, found: str, layout: str, source: str
) -> DataError:
    """The one error for a dataset that is not where the config says: what was looked for,
    the layout expected under the root, where to get the files, and how to point segkit at them."""
    if root is None:
        where = "no data root is set"
    else:
        where = f"{found} under '{root}'"
    return DataError(
        f"{what} not found: {where}.\n"
        f"Expected layout:\n{layout}\n"
        f"Get it: {source}\n"
        "Then set data.root to ROOT: in the config (data: {root: ROOT}) or on the command "
        "line, e.g. `segkit train CONFIG data.root=/path/to/ROOT`."
    )


def pair_files(
    images: dict[str, Path],
    masks: dict[str, Path],
    expected_mask: Callable[[str], Path] | None = None,
) -> tuple[list[Pair], list[str]]:
    """Pair images and masks by sample name (sorted); an image without a mask or a mask without
    an image is recorded as a problem and left out."""
    pairs = [Pair(images[name], masks[name], name) for name in sorted(images) if name in masks]
    problems = [
        f"{images[n]}: image without a mask"
        + (f" (expected {expected_mask(n)})" if expected_mask else "")
        for n in sorted(images)
        if n not in masks
    ]
    problems += [f"{masks[n]}: mask without an image" for n in sorted(masks) if n not in images]
    return pairs, problems
