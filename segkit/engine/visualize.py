"""Label maps as pictures: palette colouring, image | label | prediction panels, overlays.

Without torch (it takes tensors where torch is loaded), so that serving an ONNX file can use it."""

from __future__ import annotations

import colorsys
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from segkit.files import atomic_write_bytes

Palette = Sequence[Sequence[int]]
IGNORE_COLOUR = (0, 0, 0)


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct colours for datasets that bring none: hues spread by the golden ratio."""
    colours = []
    for index in range(num_classes):
        hue = (index * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.65 + 0.35 * (index % 2), 0.95 - 0.3 * (index % 3) / 2)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def as_array(tensor_or_array) -> np.ndarray:
    torch = sys.modules.get("torch")  # not loaded: then nothing here is a tensor
    if torch is not None and isinstance(tensor_or_array, torch.Tensor):
        return tensor_or_array.detach().cpu().numpy()
    return np.asarray(tensor_or_array)


def image_hwc(image) -> np.ndarray:
    """A picture of an image as HxWx3 uint8, from a CxHxW tensor (or a 3xHxW array) or an
    HxWxC array: RGB as it is; the first three channels of more; one or two channels as the
    first in grey; 16-bit values stretched from the image's lowest to its highest value (a
    picture to look at, not the model's input)."""
    torch = sys.modules.get("torch")
    channels_first = torch is not None and isinstance(image, torch.Tensor)
    array = as_array(image)
    if array.ndim == 2:
        array = array[..., None]
    elif channels_first or (array.shape[0] == 3 and array.shape[-1] != 3):
        array = array.transpose(1, 2, 0)
    array = array[..., :3] if array.shape[2] >= 3 else np.repeat(array[..., :1], 3, axis=2)
    if array.dtype == np.uint16:
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        array = ((array.astype(np.float32) - low) * (255 / max(high - low, 1.0))).round()
    return np.ascontiguousarray(array.astype(np.uint8))


def colorize(labels, palette: Palette) -> np.ndarray:
    """HxW class indices -> HxWx3 colours; the ignore value and unknown indices are black."""
    labels = as_array(labels).astype(np.int64)
    table = np.zeros((max(256, len(palette)), 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    table[255 if len(palette) <= 255 else len(table) - 1] = IGNORE_COLOUR
    return table[np.clip(labels, 0, len(table) - 1)]


def panel(image, label, prediction, palette: Palette, gap: int = 4) -> np.ndarray:
    """image | ground truth | prediction, side by side on a white background."""
    parts = [image_hwc(image), colorize(label, palette), colorize(prediction, palette)]
    height = max(p.shape[0] for p in parts)
    width = sum(p.shape[1] for p in parts) + gap * (len(parts) - 1)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    x = 0
    for part in parts:
        canvas[: part.shape[0], x : x + part.shape[1]] = part
        x += part.shape[1] + gap
    return canvas


def overlay(image, labels, palette: Palette, alpha: float = 0.5) -> np.ndarray:
    """The image with the coloured labels blended over it."""
    picture = image_hwc(image).astype(np.float32)
    colours = colorize(labels, palette).astype(np.float32)
    return (picture * (1 - alpha) + colours * alpha).round().astype(np.uint8)


class PaletteImages:
    """``colorize`` and ``overlay`` of a loaded model that has a ``palette``: the same for a
    checkpoint (:class:`segkit.engine.segmenter.Segmenter`) and an ONNX file
    (:class:`segkit.export.serving.OnnxSegmenter`)."""

    palette: Palette

    def colorize(self, mask, palette: Palette | None = None) -> np.ndarray:
        """HxWx3 uint8 colours of a class map, in the model's palette (or ``palette``, e.g. a
        merge's)."""
        return colorize(mask, palette or self.palette)

    def overlay(
        self, image, mask, alpha: float = 0.5, palette: Palette | None = None
    ) -> np.ndarray:
        """The image (any form ``predict`` takes) with the class colours blended in."""
        from segkit.imageread import image_pixels

        pixels = image_pixels(image, "the image", channels=None, dtype=None)
        return overlay(pixels, mask, palette or self.palette, alpha)


def png_bytes(array: np.ndarray) -> bytes:
    """An RGB picture as PNG, encoded in memory so that the file is then written whole or not
    at all (:mod:`segkit.files`)."""
    return _encoded(Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)))


def label_png_bytes(labels, palette: Palette) -> bytes:
    """A palette PNG: the pixel values are the class indices, the palette shows the colours."""
    labels = as_array(labels)
    if labels.max(initial=0) > 255:
        raise ValueError("a palette PNG holds at most 256 classes")
    picture = Image.fromarray(labels.astype(np.uint8))  # mode L; the palette makes it P
    flat = [channel for colour in list(palette)[:256] for channel in colour]
    picture.putpalette(flat + [0] * (768 - len(flat)))
    return _encoded(picture)


def save_rgb(array: np.ndarray, path: str | Path, what: str = "") -> None:
    """Write ``array`` as a PNG file; a failed write names ``what`` and ``path``."""
    atomic_write_bytes(path, png_bytes(array), what)


def save_label_png(labels, palette: Palette, path: str | Path, what: str = "") -> None:
    """Write ``labels`` as a palette PNG file (:func:`label_png_bytes`)."""
    atomic_write_bytes(path, label_png_bytes(labels, palette), what)


def _encoded(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
