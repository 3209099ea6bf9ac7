"""Image files read without torch: the header first, the pixels when they are needed.

Datasets (:mod:`segkit.imagefiles`) and ``segkit predict`` read images through it; serving an
exported ONNX file (:mod:`segkit.export.serving`) does too, so it must not need torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from segkit.errors import SampleError, SegkitError

if TYPE_CHECKING:
    import torch

# The files segkit reads as images: a folder dataset's default ``image_suffix`` and what
# ``segkit predict`` picks up in a folder, so that both see the same files.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# What PIL raises for files it cannot parse: broken headers (SyntaxError, ValueError),
# truncated or corrupt data (OSError), absurd sizes (DecompressionBombError is a subclass).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class EncodedImage:
    """An image file whose header has been read: its size is known, its pixels are decoded
    only when a transform needs them, and at reduced size where that is cheaper (JPEG files
    decode directly at 1/2, 1/4 or 1/8 scale)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            with Image.open(self.path) as image:
                self.width, self.height = image.size
        except FileNotFoundError:
            raise SampleError(f"{self.path}: image file not found") from None
        except DECODE_ERRORS as error:
            raise SampleError(f"{self.path}: cannot read the image: {error}") from None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width), like the tensor it decodes to."""
        return self.height, self.width

    def pixels(self, at_least: tuple[int, int] | None = None) -> np.ndarray:
        """The pixels as a uint8 HxWx3 array. With ``at_least=(h, w)`` the result may be
        smaller than the file, but never smaller than (h, w); the caller resizes it exactly."""
        try:
            with Image.open(self.path) as image:
                if at_least is not None and image.format == "JPEG":
                    image.draft("RGB", (max(1, at_least[1]), max(1, at_least[0])))
                if image.mode != "RGB":
                    image = image.convert("RGB")
                pixels = np.array(image)
        except DECODE_ERRORS as error:
            raise SampleError(f"{self.path}: cannot decode the image: {error}") from None
        return pixels

    def decode(self, at_least: tuple[int, int] | None = None) -> torch.Tensor:
        """:meth:`pixels` as a uint8 3xHxW tensor, a channels-last view: resizing and cropping
        work on it without a copy."""
        import torch

        return torch.from_numpy(self.pixels(at_least)).permute(2, 0, 1)


# What segkit.load's predict and overlay take as an image, whichever backend runs the model.
INPUT_FORMS = (
    "a path, a PIL image, an HxWx3 uint8 numpy array, a 3xHxW uint8 tensor, or a list of these"
)


def image_pixels(item: object, what: str) -> np.ndarray:
    """One input image (any of :data:`INPUT_FORMS`) as HxWx3 uint8; anything else is refused
    saying what it was. A tensor is recognised only where torch is loaded already (whoever
    holds one has loaded it), so that serving an ONNX file needs no torch."""
    if isinstance(item, (str, os.PathLike)):
        return EncodedImage(item).pixels()
    if isinstance(item, Image.Image):
        return np.asarray(item.convert("RGB"))
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(item, torch.Tensor):
        if item.ndim == 3 and item.shape[0] == 3 and item.dtype == torch.uint8 and min(item.shape):
            return item.cpu().permute(1, 2, 0).numpy()
        given = f"a tensor of shape {tuple(item.shape)} and dtype {item.dtype}"
    elif isinstance(item, np.ndarray):
        if item.ndim == 3 and item.shape[2] == 3 and item.dtype == np.uint8 and min(item.shape):
            return item
        given = f"a numpy array of shape {item.shape} and dtype {item.dtype}"
    else:
        given = f"a {type(item).__name__}"
    raise SegkitError(f"{what} is {given}; accepted: {INPUT_FORMS}")
