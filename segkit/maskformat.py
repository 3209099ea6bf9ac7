"""Colour masks: RGB label images whose colours, not values, name the classes.

Many annotation tools save a mask as an RGB picture, one colour per class (``mask_format: rgb``
with the class palette). Such masks are decoded every epoch, so a colour becomes a class by one
pass of integer work: each pixel's RGB packed into one int32, looked up among the palette codes
through a small collision-free hash table. A colour outside the palette is an error naming the
file, how many pixels and the nearest class colour; many near-palette colours mean lossy
compression, which has its own message, since no palette can fix a JPEG.

Index masks saved as RGB by a tool (R = G = B everywhere) are read as index masks; a mask with
real colours under ``mask_format: index`` is refused with the option that reads it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from segkit.errors import SampleError
from segkit.imageread import DECODE_ERRORS
from segkit.label_map import IGNORE_INDEX

# More distinct colours than this, nearly all close to class colours, is lossy compression.
JPEG_MIN_COLOURS = 16
JPEG_NEAR = 48  # the largest channel difference counted as "close to a class colour"

Colour = tuple[int, int, int]


def pack(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> HxW int32 codes ``r << 16 | g << 8 | b``."""
    rgb = rgb.astype(np.int32, copy=False)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def unpack(code: int) -> Colour:
    return (int(code) >> 16 & 255, int(code) >> 8 & 255, int(code) & 255)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """A mask file's pixels as HxWx3 uint8 colours, whatever mode it was saved in (a palette
    PNG gives its palette's colours)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise SampleError(f"{path}: mask file not found") from None
    except DECODE_ERRORS as error:
        raise SampleError(f"{path}: cannot read the mask: {error}") from None


def grey_values(rgb: np.ndarray, path: Path) -> np.ndarray:
    """The label values of an index mask that a tool saved as RGB (or RGBA): its one channel
    when R = G = B everywhere; otherwise the mask holds colours, and the error says how to read
    it."""
    red = rgb[..., 0]
    if np.array_equal(red, rgb[..., 1]) and np.array_equal(red, rgb[..., 2]):
        return np.ascontiguousarray(red)
    colours = len(np.unique(pack(rgb[..., :3])))
    raise SampleError(
        f"{path}: an RGB mask with {colours} colours, but mask_format is index (a mask of "
        "class values); for masks that mark classes by colour, set mask_format: rgb and a "
        "palette (one [r, g, b] per class, or r,g,b columns in the classes CSV)"
    )


def is_grey_rgb(path: str | os.PathLike) -> bool:
    """Whether a mask file is RGB(A) with R = G = B everywhere: an index mask saved as RGB."""
    with Image.open(path) as image:
        if image.mode not in ("RGB", "RGBA"):
            return False
        rgb = np.asarray(image)
    red = rgb[..., 0]
    return bool(np.array_equal(red, rgb[..., 1]) and np.array_equal(red, rgb[..., 2]))


class ColourDecoder:
    """Colour -> class index for one palette; ``ignore_color`` pixels become 255."""

    def __init__(self, palette: Sequence[Sequence[int]], ignore_color: Sequence[int] | None = None):
        colours = [_colour(c, f"palette[{i}]") for i, c in enumerate(palette)]
        codes = [_code(c) for c in colours]
        seen: dict[int, int] = {}
        for index, code in enumerate(codes):
            if code in seen:
                raise ValueError(
                    f"palette: classes {seen[code]} and {index} have the same colour "
                    f"{list(colours[index])}; each class needs its own colour"
                )
            seen[code] = index
        targets = dict(seen)
        if ignore_color is not None:
            ignore = _colour(ignore_color, "ignore_color")
            if _code(ignore) in seen:
                raise ValueError(
                    f"ignore_color {list(ignore)} is also the colour of class {seen[_code(ignore)]}"
                )
            targets[_code(ignore)] = IGNORE_INDEX
        self.colours = colours
        self.ignore = _colour(ignore_color, "ignore_color") if ignore_color is not None else None
        order = sorted(targets)
        self.codes = np.array(order, dtype=np.int32)
        self.targets = np.array([targets[c] for c in order], dtype=np.uint8)
        self.modulus = _collision_free_modulus(self.codes)
        self.slots = np.zeros(self.modulus, dtype=np.intp)
        self.slots[self.codes % self.modulus] = np.arange(len(self.codes))

    def decode(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        """HxWx3 colours -> HxW uint8 class indices; unknown colours raise SampleError."""
        codes = pack(rgb)
        slot = self.slots[codes % self.modulus]
        known = self.codes[slot] == codes
        if not known.all():
            raise SampleError(self._unknown(codes[~known], path))
        return self.targets[slot]

    def read(self, path: str | os.PathLike) -> np.ndarray:
        path = Path(path)
        return self.decode(read_rgb(path), path)

    def nearest(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each colour code, the class whose colour is closest (255: the ignore colour) and
        the largest channel difference to it."""
        known = [*self.colours, *([self.ignore] if self.ignore is not None else [])]
        codes = np.asarray(codes, dtype=np.int32)
        rgb = np.stack([codes >> 16 & 255, codes >> 8 & 255, codes & 255], axis=-1)
        gaps = np.abs(rgb[:, None, :] - np.array(known, dtype=np.int32)[None]).max(axis=2)
        best = gaps.argmin(axis=1)
        targets = np.where(best < len(self.colours), best, IGNORE_INDEX)
        return targets, gaps[np.arange(len(codes)), best]

    def _describe(self, target: int) -> str:
        if target == IGNORE_INDEX:
            return f"ignore_color {list(self.ignore)}"
        return f"{list(self.colours[target])}, class {target}"

    def _unknown(self, codes: np.ndarray, path: Path) -> str:
        values, counts = np.unique(codes, return_counts=True)
        targets, gaps = self.nearest(values)
        total = int(counts.sum())
        close = int(counts[gaps <= JPEG_NEAR].sum())
        if len(values) >= JPEG_MIN_COLOURS and close >= 0.5 * total:
            return (
                f"{path}: {len(values)} colours that are not class colours ({total:,} pixels), "
                "most of them near class colours: the mask looks JPEG-compressed; save masks as PNG "
                "(lossless), since lossy compression shifts colours at every class boundary"
            )
        order = np.argsort(-counts)[:3]
        shown = "; ".join(
            f"{list(unpack(int(values[i])))} on {int(counts[i]):,} pixels (nearest: "
            f"{self._describe(int(targets[i]))})"
            for i in order
        )
        more = f" and {len(values) - len(order)} more colours" if len(values) > len(order) else ""
        return (
            f"{path}: colours not in the palette: {shown}{more}; add them to palette: (or "
            "the classes CSV), or set ignore_color: for the colour of unlabelled pixels"
        )


def _collision_free_modulus(codes: np.ndarray) -> int:
    """The smallest m >= len(codes) under which the codes have distinct remainders: a pixel's
    code mod m then indexes a small table of candidate colours (one comparison confirms it),
    several times faster than a binary search per pixel."""
    modulus = max(len(codes), 1)
    while len(np.unique(codes % modulus)) < len(codes):
        modulus += 1
    return modulus


def _colour(value, what: str) -> Colour:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
    ):
        raise ValueError(f"{what} must be [r, g, b] with integers 0..255, got {value!r}")
    return (int(value[0]), int(value[1]), int(value[2]))


def _code(colour: Colour) -> int:
    return colour[0] << 16 | colour[1] << 8 | colour[2]
