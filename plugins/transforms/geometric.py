"""Geometric transforms: they move pixels, so they change image and mask together.

Images are resampled bilinearly (antialiased when shrinking), masks by nearest neighbour, and
every pixel a transform invents in a mask (rotation corners, padding) is 255 = ignore, never a
real class. Images keep their channels (any number) and their integer type (uint8, or uint16 at
full depth); masks come out as uint8 tensors.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from segkit.imagefiles import EncodedImage
from segkit.label_map import IGNORE_INDEX
from segkit_plugins.transforms.photometric import FULL_SCALE, require_integer


def image_size(image: torch.Tensor | EncodedImage) -> tuple[int, int]:
    """(height, width) of a decoded or still encoded image."""
    return image.size if isinstance(image, EncodedImage) else tuple(image.shape[-2:])


def fit_size(height: int, width: int, long_side: float, short_side: float) -> tuple[int, int]:
    """The size with the same aspect ratio whose long side is at most ``long_side`` and whose
    short side is at most ``short_side``, one of them reached."""
    factor = min(long_side / max(height, width), short_side / min(height, width))
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


def resize_image(image: torch.Tensor | EncodedImage, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a CxHxW image, antialiased when shrinking; an encoded JPEG is first
    decoded at the smallest scale that stays at least ``size``."""
    if isinstance(image, EncodedImage):
        image = image.decode(at_least=size)
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if image.dtype == torch.uint16:  # no integer kernel: through float32, which holds uint16
        resized = F.interpolate(
            image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False
        )[0]
        return resized.round_().clamp_(0, FULL_SCALE[torch.uint16]).to(torch.uint16)
    # uint8 in, uint8 out: PyTorch has a fast integer path for this (channels-last memory).
    return F.interpolate(
        image[None], size=size, mode="bilinear", antialias=True, align_corners=False
    )[0]


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize, sampling at pixel centres like the bilinear image resize."""
    height, width = mask.shape
    if (height, width) == tuple(size):
        return _uint8(mask)
    rows = ((np.arange(size[0]) + 0.5) * (height / size[0])).astype(np.intp)
    cols = ((np.arange(size[1]) + 0.5) * (width / size[1])).astype(np.intp)
    values = _uint8(mask).numpy()
    return torch.from_numpy(values.take(rows, axis=0).take(cols, axis=1))


def _uint8(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.uint8 else mask.to(torch.uint8)


def _resized(sample: dict, size: tuple[int, int]) -> dict:
    return {
        **sample,
        "image": resize_image(sample["image"], size),
        "mask": resize_mask(sample["mask"], size),
    }


class Resize:
    """Resize to a fixed size; with keep_ratio, fit within [long side, short side]."""

    accepts_encoded_image = True

    def __init__(
        self, size: tuple[int, int] = (2048, 512), keep_ratio: bool = True, mask: bool = True
    ):
        """``size``: with ``keep_ratio``, the largest [long side, short side] the image may have
        (one of them is reached); without it, the exact [height, width]. ``mask: false`` leaves
        the mask at its original size, for evaluating at the original resolution (the model's
        logits are resized to the label size); then do not ``pad`` afterwards."""
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"size must be two positive numbers, got {list(size)}")
        self.size = tuple(size)
        self.keep_ratio = keep_ratio
        self.mask = mask

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if self.keep_ratio:
            size = fit_size(*image_size(sample["image"]), *self.size)
        else:
            size = (int(self.size[0]), int(self.size[1]))
        if not self.mask:
            return {**sample, "image": resize_image(sample["image"], size)}
        return _resized(sample, size)


class RandomResize:
    """Resize by a random ratio of a base size, keeping the aspect ratio."""

    accepts_encoded_image = True

    def __init__(
        self,
        base_size: tuple[int, int] = (2048, 512),
        ratio_range: tuple[float, float] = (0.5, 2.0),
    ):
        """``base_size``: [long side, short side] the image is fitted into at ratio 1; the ratio
        is drawn uniformly from ``ratio_range``."""
        if len(base_size) != 2 or min(base_size) <= 0:
            raise ValueError(f"base_size must be two positive numbers, got {list(base_size)}")
        if len(ratio_range) != 2 or not 0 < ratio_range[0] <= ratio_range[1]:
            raise ValueError(
                f"ratio_range must be [low, high] with 0 < low <= high, got {list(ratio_range)}"
            )
        self.base_size = tuple(base_size)
        self.ratio_range = tuple(ratio_range)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        ratio = rng.uniform(*self.ratio_range)
        long_side, short_side = self.base_size
        size = fit_size(*image_size(sample["image"]), long_side * ratio, short_side * ratio)
        return _resized(sample, size)


class RandomCrop:
    """Crop a random window; with cat_max_ratio < 1, avoid windows dominated by one class."""

    def __init__(
        self, size: tuple[int, int] = (512, 512), cat_max_ratio: float = 1.0, attempts: int = 10
    ):
        """``size``: [height, width] (smaller images are cropped to their own size; pad them
        afterwards). ``cat_max_ratio``: retry (up to ``attempts`` times) while one class covers
        more than this fraction of the window's labelled pixels or the window has one class."""
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"size must be two positive numbers, got {list(size)}")
        if not 0 < cat_max_ratio <= 1:
            raise ValueError(f"cat_max_ratio must be in (0, 1], got {cat_max_ratio}")
        self.size = tuple(size)
        self.cat_max_ratio = cat_max_ratio
        self.attempts = attempts

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        image, mask = sample["image"], sample["mask"]
        height, width = image.shape[-2:]
        crop_h, crop_w = min(self.size[0], height), min(self.size[1], width)
        tries = self.attempts if self.cat_max_ratio < 1 else 1
        for _ in range(tries):
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            if tries == 1 or self._varied(mask[top : top + crop_h, left : left + crop_w]):
                break
        return {
            **sample,
            "image": image[:, top : top + crop_h, left : left + crop_w],
            "mask": mask[top : top + crop_h, left : left + crop_w],
        }

    def _varied(self, window: torch.Tensor) -> bool:
        counts = np.bincount(_uint8(window).numpy().ravel(), minlength=256)[:IGNORE_INDEX]
        labelled = counts.sum()
        return np.count_nonzero(counts) > 1 and counts.max() < self.cat_max_ratio * labelled


class RandomFlip:
    """Mirror image and mask left-right with a probability."""

    def __init__(self, prob: float = 0.5):
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = prob

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if rng.random() >= self.prob:
            return sample
        return {**sample, "image": sample["image"].flip(-1), "mask": sample["mask"].flip(-1)}


class RandomRotate:
    """Rotate by a random angle in [-degrees, degrees]; uncovered mask pixels become ignore."""

    def __init__(
        self,
        degrees: float = 10.0,
        prob: float = 1.0,
        image_fill: int | list[int] = (0, 0, 0),
    ):
        """``image_fill``: the value of uncovered image pixels, one for every channel or one
        per channel."""
        if degrees < 0:
            raise ValueError(f"degrees must be >= 0, got {degrees}")
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.degrees = degrees
        self.prob = prob
        fill = [image_fill] if isinstance(image_fill, (int, float)) else list(image_fill)
        self.image_fill = tuple(int(v) for v in fill)

    def check_input(self, channels: int, dtype: str) -> None:
        if len(self.image_fill) not in (1, channels):
            raise ValueError(
                f"image_fill has {len(self.image_fill)} values for {channels}-channel images; "
                "give one value, or one per channel"
            )

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if rng.random() >= self.prob:
            return sample
        image = sample["image"]
        require_integer(image, "random_rotate")
        self.check_input(image.shape[0], str(image.dtype))
        angle = rng.uniform(-self.degrees, self.degrees)
        labels = Image.fromarray(np.ascontiguousarray(_uint8(sample["mask"]).numpy()))
        labels = labels.rotate(angle, Image.NEAREST, fillcolor=IGNORE_INDEX)
        return {
            **sample,
            "image": _rotated(image, angle, self.image_fill),
            "mask": torch.from_numpy(np.array(labels)),
        }


def _rotated(image: torch.Tensor, angle: float, fill: tuple[int, ...]) -> torch.Tensor:
    """An image rotated bilinearly by Pillow: 8-bit RGB in one pass, any other image channel
    by channel (8-bit as grey images, 16-bit through Pillow's 32-bit float mode, exact for
    every uint16 value)."""
    fill = fill * image.shape[0] if len(fill) == 1 else fill
    if image.dtype == torch.uint8 and image.shape[0] == 3:
        pixels = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
        turned = Image.fromarray(pixels).rotate(angle, Image.BILINEAR, fillcolor=fill)
        return torch.from_numpy(np.array(turned)).permute(2, 0, 1)
    top = FULL_SCALE[image.dtype]
    planes = []
    for channel, value in zip(image.numpy(), fill):
        # a 2-D uint8 array is a grey (L) image, a float32 one Pillow's mode F
        as_float = image.dtype != torch.uint8
        plane = Image.fromarray(channel.astype(np.float32) if as_float else channel.copy())
        turned = np.array(plane.rotate(angle, Image.BILINEAR, fillcolor=value))
        planes.append(np.clip(np.rint(turned), 0, top).astype(channel.dtype))
    return torch.from_numpy(np.stack(planes))


class Pad:
    """Pad bottom and right to a size or to a multiple; the mask is padded with ignore."""

    def __init__(
        self,
        size: tuple[int, int] | None = None,
        size_divisor: int | None = None,
        image_fill: float = 0.0,
    ):
        """``size``: the least [height, width]; ``size_divisor``: round height and width up to
        a multiple. ``image_fill``: the image's padding value (after ``normalize``, 0 is the
        mean colour)."""
        if size is None and size_divisor is None:
            raise ValueError("give size, size_divisor or both")
        if size is not None and (len(size) != 2 or min(size) <= 0):
            raise ValueError(f"size must be two positive numbers, got {list(size)}")
        if size_divisor is not None and size_divisor <= 0:
            raise ValueError(f"size_divisor must be positive, got {size_divisor}")
        self.size = tuple(size) if size is not None else None
        self.size_divisor = size_divisor
        self.image_fill = image_fill

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        image, mask = sample["image"], sample["mask"]
        height, width = image.shape[-2:]
        if tuple(mask.shape) != (height, width):
            raise ValueError(
                f"pad needs image and mask of one size, got {height}x{width} and "
                f"{mask.shape[0]}x{mask.shape[1]} (HxW); is there a resize with mask: false before it?"
            )
        target_h, target_w = height, width
        if self.size is not None:
            target_h, target_w = max(height, self.size[0]), max(width, self.size[1])
        if self.size_divisor is not None:
            target_h = math.ceil(target_h / self.size_divisor) * self.size_divisor
            target_w = math.ceil(target_w / self.size_divisor) * self.size_divisor
        if (target_h, target_w) == (height, width):
            return sample
        padded_image = image.new_full((image.shape[0], target_h, target_w), self.image_fill)
        padded_image[:, :height, :width] = image
        padded_mask = mask.new_full((target_h, target_w), IGNORE_INDEX)
        padded_mask[:height, :width] = mask
        return {**sample, "image": padded_image, "mask": padded_mask}
