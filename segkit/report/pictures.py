"""The panels of a badly predicted image: the image, its ground truth, the prediction, and where
the prediction is wrong, all at one size so that they line up side by side."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from segkit.engine.visualize import colorize, png_bytes
from segkit.label_map import IGNORE_INDEX

MISSED = (235, 50, 50)  # false negative of the focus class: its pixels predicted as another
INVENTED = (40, 130, 255)  # false positive of the focus class: another class predicted as it
OTHER_ERROR = (250, 190, 30)  # a mistake between two other classes
LARGEST_SIDE = 480  # panels are scaled to fit; small images are enlarged, pixels kept square
SMALLEST_SIDE = 256


def focus_class(confusion: np.ndarray) -> int:
    """The class of the image with the most wrong pixels, missed (its false negatives) plus
    invented (its false positives): the error panel shows where that class went wrong. Chosen
    by pixels, not by IoU, so that a few stray pixels of an absent class do not hide the
    mistakes that cost the image most."""
    correct = np.diag(confusion)
    wrong = confusion.sum(axis=0) + confusion.sum(axis=1) - 2 * correct
    return int(np.argmax(wrong))


def error_picture(image: np.ndarray, label: np.ndarray, prediction: np.ndarray, focus: int):
    """The image dimmed to grey, with the focus class's missed pixels (FN), invented pixels
    (FP) and other mistakes coloured; pixels not annotated are not mistakes."""
    grey = image.astype(np.float32).mean(axis=2, keepdims=True) * 0.45 + 30
    picture = np.repeat(grey, 3, axis=2).astype(np.uint8)
    labelled = label != IGNORE_INDEX
    picture[labelled & (label != prediction)] = OTHER_ERROR
    picture[labelled & (label == focus) & (prediction != focus)] = MISSED
    picture[labelled & (label != focus) & (prediction == focus)] = INVENTED
    return picture


def panels(
    image: np.ndarray,
    label: np.ndarray,
    prediction: np.ndarray,
    focus: int,
    palette: Sequence[Sequence[int]],
) -> dict[str, bytes]:
    """PNG bytes of the four panels, by name: image, ground truth, prediction, errors."""
    size = _display_size(label.shape)
    pictures = {
        "image": _resized(image, size, Image.Resampling.BILINEAR),
        "ground truth": _resized(colorize(label, palette), size),
        "prediction": _resized(colorize(prediction, palette), size),
        "errors": _resized(error_picture(image, label, prediction, focus), size),
    }
    return {name: png_bytes(picture) for name, picture in pictures.items()}


def _display_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """(width, height): at most LARGEST_SIDE, and small images enlarged by a whole factor."""
    height, width = shape[:2]
    largest = max(height, width)
    if largest > LARGEST_SIDE:
        scale = LARGEST_SIDE / largest
        return max(1, round(width * scale)), max(1, round(height * scale))
    factor = max(1, SMALLEST_SIDE // largest)
    return width * factor, height * factor


def _resized(picture: np.ndarray, size: tuple[int, int], resample=Image.Resampling.NEAREST):
    if (picture.shape[1], picture.shape[0]) == size:
        return picture
    return np.asarray(Image.fromarray(picture).resize(size, resample))
