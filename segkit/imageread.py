"""Image files read without torch: the header first, the pixels when they are needed.

Datasets (:mod:`segkit.imagefiles`) and ``segkit predict`` read images through it; serving an
exported ONNX file (:mod:`segkit.export.serving`) does too, so it must not need torch.

An image is HxWxC, uint8 or uint16, C its channels (docs/datasets.md, "Multi-channel and
16-bit images"). PNG, JPEG, BMP and WebP files are read by Pillow; TIFF files by tifffile (the
``tiff`` extra), because Pillow reads neither multi-page files nor more than four 16-bit samples.
A model takes a fixed number of channels: :meth:`EncodedImage.pixels` given ``channels`` fits
the file to it where that loses nothing a model of that width could use (grey and palette files
become RGB, an RGBA file loses its alpha for an RGB model, as Pillow's RGB conversion does) and
refuses any other disagreement, naming the file.
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
TIFF_SUFFIXES = (".tif", ".tiff")

# The pixel types an image may have: 8-bit files, and 16-bit ones kept at full depth.
IMAGE_DTYPES = ("uint8", "uint16")

# What PIL raises for files it cannot parse: broken headers (SyntaxError, ValueError),
# truncated or corrupt data (OSError), absurd sizes (DecompressionBombError is a subclass).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)

# Pillow modes by how they are read: 16-bit grey (one uint16 channel), 32-bit integer grey (one
# uint16 channel where its values fit), and the modes kept as they are (their channel counts).
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_NATIVE = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


class EncodedImage:
    """An image file whose header has been read: its size is known, its pixels are decoded
    only when a transform needs them, and at reduced size where that is cheaper (JPEG files
    decode directly at 1/2, 1/4 or 1/8 scale). ``channels`` and ``dtype`` are what the model
    takes: decoding fits the file to the channels (None: the file's own) and, where ``dtype``
    is set, refuses another pixel type. The default, RGB of the file's type, is what code that
    knows no model has always received; the training pipeline and ``predict`` set both."""

    def __init__(
        self,
        path: str | os.PathLike,
        channels: int | None = 3,
        dtype: str | None = None,
    ):
        self.path = Path(path)
        self.channels = channels
        self.dtype = dtype
        self.is_tiff = self.path.suffix.lower() in TIFF_SUFFIXES
        if self.is_tiff:
            self.height, self.width = _tiff_layout(self.path)[1][:2]
            return
        try:
            with Image.open(self.path) as image:
                self.width, self.height = image.size
        except FileNotFoundError:
            raise SampleError(f"{self.path}: image file not found") from None
        except DECODE_ERRORS as error:
            raise SampleError(f"{self.path}: cannot read the image: {error}") from None

    def fitted(self, channels: int | None, dtype: str | None) -> EncodedImage:
        """This image, decoding to ``channels`` and ``dtype`` (None: as the file has them),
        without reading the file again."""
        image = object.__new__(EncodedImage)
        image.__dict__.update(self.__dict__, channels=channels, dtype=dtype)
        return image

    @property
    def size(self) -> tuple[int, int]:
        """(height, width), like the tensor it decodes to."""
        return self.height, self.width

    def pixels(self, at_least: tuple[int, int] | None = None) -> np.ndarray:
        """The pixels as an HxWxC uint8 or uint16 array. With ``at_least=(h, w)`` the result may
        be smaller than the file, but never smaller than (h, w); the caller resizes it exactly."""
        if self.is_tiff:
            pixels = _read_tiff(self.path)
        else:
            pixels = self._read_pil(at_least)
        pixels = fit_channels(pixels, self.channels, str(self.path))
        check_dtype(pixels, self.dtype, str(self.path))
        return pixels

    def _read_pil(self, at_least: tuple[int, int] | None) -> np.ndarray:
        try:
            with Image.open(self.path) as image:
                if at_least is not None and image.format == "JPEG":
                    image.draft("RGB", (max(1, at_least[1]), max(1, at_least[0])))
                return pil_pixels(image, self.channels, str(self.path))
        except DECODE_ERRORS as error:
            raise SampleError(f"{self.path}: cannot decode the image: {error}") from None

    def decode(self, at_least: tuple[int, int] | None = None) -> torch.Tensor:
        """:meth:`pixels` as a CxHxW tensor, a channels-last view: resizing and cropping work on
        it without a copy."""
        import torch

        return torch.from_numpy(self.pixels(at_least)).permute(2, 0, 1)


def pil_pixels(image: Image.Image, channels: int | None, source: str) -> np.ndarray:
    """A Pillow image as HxWxC: 16-bit grey stays uint16; for a 3-channel model every 8-bit
    mode becomes RGB (Pillow's conversion: grey repeated, palette looked up, alpha dropped);
    otherwise grey, grey+alpha, RGB and RGBA keep their channels and other modes become RGB."""
    if image.mode in _SIXTEEN_BIT or image.mode == "I":
        values = np.array(image)
        if image.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise SampleError(
                f"{source}: 32-bit integer values outside 0..65535; segkit reads 8- and 16-bit "
                "images (save it as a 16-bit PNG or TIFF)"
            )
        return values.astype(np.uint16)[..., None]
    if image.mode == "F":
        raise SampleError(
            f"{source}: floating-point pixels; segkit reads 8- and 16-bit images (scale it to "
            "uint16 and save it as a 16-bit PNG or TIFF)"
        )
    if image.mode == "1":
        image = image.convert("L")
    if channels == 3 or image.mode not in _NATIVE:
        target = "RGBA" if channels == 4 and image.mode == "PA" else "RGB"
        image = image if image.mode == target else image.convert(target)
    pixels = np.array(image)
    return pixels if pixels.ndim == 3 else pixels[..., None]


def fit_channels(pixels: np.ndarray, channels: int | None, source: str) -> np.ndarray:
    """HxWxC pixels with ``channels`` channels: as they are when they have that many (or
    ``channels`` is None), one grey channel repeated for an RGB model, or an error."""
    have = pixels.shape[2]
    if channels is None or have == channels:
        return pixels
    if have == 1 and channels == 3:
        return np.repeat(pixels, 3, axis=2)
    raise SampleError(
        f"{source}: the image has {have} channel(s) but the model takes {channels} "
        "(model.backbone.in_channels); give images with that many channels, or set "
        f"in_channels: {have} and one data.mean/data.std value per channel"
    )


def check_dtype(pixels: np.ndarray, dtype: str | None, source: str) -> None:
    """Refuse pixels of another type than the model's: data.mean and data.std are in the
    images' own units, so an 8-bit file in a 16-bit dataset (or the reverse) would be
    normalised wrongly."""
    if dtype is None or pixels.dtype == np.dtype(dtype):
        return
    raise SampleError(
        f"{source}: a {pixels.dtype} image, but data.image_dtype is {dtype}; give every image "
        f"as {dtype}, or set data.image_dtype: {pixels.dtype} (and data.mean/data.std in its "
        "units: `segkit data stats CONFIG` measures them)"
    )


# ---- TIFF -----------------------------------------------------------------------------------


def require_tifffile():
    """tifffile, or the one error that says how to install it."""
    try:
        import tifffile
    except ImportError:
        raise SegkitError("reading TIFF images needs tifffile: pip install segkit[tiff]") from None
    return tifffile


def _tiff_layout(path: Path) -> tuple[str, tuple[int, int, int]]:
    """The axes of the file's image series and the (height, width, channels) they give,
    from the header alone."""
    tifffile = require_tifffile()
    try:
        with tifffile.TiffFile(path) as tiff:
            return _layout(tiff, path)
    except FileNotFoundError:
        raise SampleError(f"{path}: image file not found") from None
    except (tifffile.TiffFileError, *DECODE_ERRORS) as error:
        raise SampleError(f"{path}: cannot read the image: {error}") from None


def _layout(tiff, path: Path) -> tuple[str, tuple[int, int, int]]:
    shapes = {tuple(s.shape) for s in tiff.series if "Y" in s.axes and "X" in s.axes}
    if len(shapes) > 1:
        raise SampleError(
            f"{path}: holds images of different sizes ({len(shapes)} series); segkit reads a "
            "TIFF whose pages all have one size, each page a channel or a set of channels"
        )
    series = tiff.series[0]
    axes, shape = series.axes, tuple(series.shape)
    if "Y" not in axes or "X" not in axes:
        raise SampleError(f"{path}: no image plane (axes {axes})")
    height, width = shape[axes.index("Y")], shape[axes.index("X")]
    return axes, (height, width, max(1, int(np.prod(shape)) // max(1, height * width)))


def _read_tiff(path: Path) -> np.ndarray:
    """A TIFF image as HxWxC: every axis other than height (Y) and width (X), whether pages
    or samples per pixel, becomes channels, in the file's order (page by page, then the samples
    of each page); so CxHxW page stacks and interleaved HxWxC files both read as C channels."""
    tifffile = require_tifffile()
    try:
        with tifffile.TiffFile(path) as tiff:
            axes, _ = _layout(tiff, path)
            values = tiff.series[0].asarray()
    except (tifffile.TiffFileError, *DECODE_ERRORS) as error:
        raise SampleError(f"{path}: cannot decode the image: {error}") from None
    if values.dtype == np.bool_:
        values = values.astype(np.uint8) * 255
    if values.dtype.name not in IMAGE_DTYPES:
        raise SampleError(
            f"{path}: {values.dtype} pixels; segkit reads 8- and 16-bit images (uint8, uint16)"
        )
    others = [i for i, axis in enumerate(axes) if axis not in "YX"]
    order = [axes.index("Y"), axes.index("X"), *others]
    planes = np.transpose(values, order)
    return np.ascontiguousarray(planes.reshape(planes.shape[0], planes.shape[1], -1))


# ---- images handed to predict ---------------------------------------------------------------

# What segkit.load's predict and overlay take as an image, whichever backend runs the model.
INPUT_FORMS = (
    "a path, a PIL image, an HxWxC numpy array (HxW for one channel), a CxHxW tensor (uint8, "
    "or uint16 for a 16-bit model), or a list of these"
)


def image_pixels(
    item: object, what: str, channels: int | None = 3, dtype: str | None = "uint8"
) -> np.ndarray:
    """One input image (any of :data:`INPUT_FORMS`) as HxWxC, fitted to ``channels`` and of
    type ``dtype`` as a file would be; anything else is refused saying what it was. A tensor is
    recognised only where torch is loaded already (whoever holds one has loaded it), so that
    serving an ONNX file needs no torch."""
    if isinstance(item, (str, os.PathLike)):
        return EncodedImage(item, channels, dtype).pixels()
    if isinstance(item, Image.Image):
        pixels = pil_pixels(item, channels, what)
    else:
        pixels = _array_pixels(item, what)
    try:
        pixels = fit_channels(pixels, channels, what)
        check_dtype(pixels, dtype, what)
    except SampleError as error:
        raise SegkitError(str(error)) from None
    return pixels


def _array_pixels(item: object, what: str) -> np.ndarray:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(item, torch.Tensor):
        if item.ndim == 3 and item.dtype in (torch.uint8, torch.uint16) and min(item.shape):
            return item.cpu().permute(1, 2, 0).numpy()
        given = f"a tensor of shape {tuple(item.shape)} and dtype {item.dtype}"
    elif isinstance(item, np.ndarray):
        if item.ndim in (2, 3) and item.dtype.name in IMAGE_DTYPES and min(item.shape):
            return item if item.ndim == 3 else item[..., None]
        given = f"a numpy array of shape {item.shape} and dtype {item.dtype}"
    else:
        given = f"a {type(item).__name__}"
    raise SegkitError(f"{what} is {given}; accepted: {INPUT_FORMS}")
