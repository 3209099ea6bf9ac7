"""Photometric transforms: they change colours, never the mask.

They work on uint8 images with lookup tables and integer arithmetic where they can: a
brightness or contrast change is a 256-entry table, and saturation and hue share one pass
through the HSV model. ``photometric_distortion`` is defined on 8-bit RGB only (hue and
saturation have no meaning for other channels) and refuses other images; ``gaussian_blur`` and
``normalize`` take any number of channels, uint8 or uint16. ``normalize`` ends the integer part
of a pipeline: it makes float32.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Luma weights (ITU-R BT.601), for the grey level that contrast scales around.
LUMA = np.array([0.299, 0.587, 0.114])
HUE_STEPS = 256  # hue resolution per sextant of the colour wheel


# The largest value of each integer pixel type: the top of the 0..1 scale.
FULL_SCALE = {torch.uint8: 255, torch.uint16: 65535}


def require_integer(image: torch.Tensor, transform: str) -> None:
    if image.dtype not in FULL_SCALE:
        raise ValueError(
            f"{transform} needs a uint8 or uint16 image, got {image.dtype}; put it before "
            "'normalize'"
        )


def require_rgb8(channels: int, dtype: str, transform: str) -> None:
    """Colour changes are defined on 8-bit RGB; any other image is refused, not guessed at."""
    if channels != 3 or dtype != "uint8":
        raise ValueError(
            f"{transform} changes the colours of 8-bit RGB images, and these are {channels}-"
            f"channel {dtype}; remove it from the transforms (geometric transforms, "
            "gaussian_blur and normalize take any channels)"
        )


class PhotometricDistortion:
    """Random brightness, contrast, saturation and hue, each applied with a probability."""

    def __init__(
        self,
        brightness_delta: float = 32.0,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: float = 36.0,
        prob: float = 0.5,
    ):
        """``brightness_delta``: added to every value, drawn from [-delta, delta] (0..255 scale).
        ``contrast_range``: factor on the distance from the mean grey level. ``saturation_range``:
        factor on HSV saturation. ``hue_delta``: HSV hue shift in degrees, drawn from
        [-delta, delta]. Each of the four is applied with probability ``prob``; contrast comes
        first or last (before or after saturation and hue) with equal chance."""
        for name, (low, high) in (
            ("contrast_range", contrast_range),
            ("saturation_range", saturation_range),
        ):
            if not 0 <= low <= high:
                raise ValueError(
                    f"{name} must be [low, high] with 0 <= low <= high, got {[low, high]}"
                )
        if brightness_delta < 0 or hue_delta < 0:
            raise ValueError("brightness_delta and hue_delta must be >= 0")
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta
        self.prob = prob

    def check_input(self, channels: int, dtype: str) -> None:
        require_rgb8(channels, dtype, "photometric_distortion")

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        image = sample["image"]
        require_integer(image, "photometric_distortion")
        dtype = str(image.dtype).removeprefix("torch.")
        require_rgb8(image.shape[0], dtype, "photometric_distortion")
        brightness = (
            rng.uniform(-self.brightness_delta, self.brightness_delta)
            if rng.random() < self.prob
            else None
        )
        contrast_first = rng.random() < 0.5
        contrast = rng.uniform(*self.contrast_range) if rng.random() < self.prob else None
        saturation = rng.uniform(*self.saturation_range) if rng.random() < self.prob else None
        hue = rng.uniform(-self.hue_delta, self.hue_delta) if rng.random() < self.prob else None

        pixels = image.numpy()
        table = np.arange(256, dtype=np.float64)
        if brightness is not None:
            table = np.clip(table + brightness, 0, 255)
        if contrast is not None and contrast_first:
            table = contrast_table(table, pixels, contrast)
        if saturation is not None or hue is not None:
            pixels = hsv_adjust(apply_table(table, pixels), saturation or 1.0, hue or 0.0)
            table = np.arange(256, dtype=np.float64)
        if contrast is not None and not contrast_first:
            table = contrast_table(table, pixels, contrast)
        pixels = apply_table(table, pixels)
        return {**sample, "image": torch.from_numpy(pixels)}


def apply_table(table: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Map uint8 values through a 256-entry table (rounded to uint8); identity is free."""
    table = np.rint(table).astype(np.uint8)
    if np.array_equal(table, np.arange(256)):
        return pixels
    return np.take(table, pixels)


def contrast_table(table: np.ndarray, pixels: np.ndarray, factor: float) -> np.ndarray:
    """``table`` followed by scaling the distance from the mean grey level of the image it
    produces; the mean comes from per-channel histograms, so the image is not touched."""
    means = [
        np.bincount(pixels[c].ravel(), minlength=256) @ table / pixels[c].size for c in range(3)
    ]
    grey = float(LUMA @ np.array(means))
    return np.clip(grey + factor * (table - grey), 0, 255)


def _hue_weights() -> np.ndarray:
    """For each channel (R, G, B), its share of chroma at each hue, indexed from hue -1 over
    two turns of the hue circle, so that a shifted hue needs no wrap-around (HSV's
    piecewise-linear hexagon)."""
    hue = np.arange(12 * HUE_STEPS) / HUE_STEPS - 1
    weights = []
    for offset in (5, 3, 1):
        k = (offset + hue) % 6
        weights.append(np.clip(np.minimum(k, 4 - k), 0, 1))
    return np.rint(np.stack(weights) * 256).astype(np.uint16)


HUE_WEIGHTS = _hue_weights()


def hsv_adjust(pixels: np.ndarray, saturation: float, hue_degrees: float) -> np.ndarray:
    """Scale HSV saturation and rotate hue of a uint8 3xHxW image, in integer arithmetic.

    In HSV a pixel is its maximum V, its chroma C = V - min, and a hue position h in [0, 6);
    each channel equals V - C * w(h) with a fixed piecewise-linear w. Scaling saturation scales
    C (capped at V); rotating hue shifts h. Results match the float HSV round trip within 1.
    """
    r, g, b = (pixels[c].astype(np.int16) for c in range(3))
    value = np.maximum(np.maximum(r, g), b)
    chroma = value - np.minimum(np.minimum(r, g), b)
    # Hue position times chroma, in [-C, 5C]; the largest channel picks the sextant.
    position = r - g
    position += 4 * chroma
    np.copyto(position, b - r + 2 * chroma, where=value == g)
    np.copyto(position, g - b, where=value == r)
    hue = position.astype(np.float32)
    hue *= HUE_STEPS
    hue /= np.maximum(chroma, 1)
    # Table index 0 is hue -1; the shift is taken modulo one turn, so the index stays < 12 turns.
    hue += int(round(hue_degrees / 60 * HUE_STEPS)) % (6 * HUE_STEPS) + HUE_STEPS + 0.5
    index = hue.astype(np.int32)
    if saturation != 1.0:
        chroma = np.minimum(
            (chroma.astype(np.int32) * int(round(saturation * 256)) + 128) >> 8, value
        )
    chroma = chroma.astype(np.uint16)
    value = value.astype(np.uint16)
    out = np.empty(pixels.shape, dtype=np.uint8)
    for channel in range(3):
        # weight <= 256 and chroma <= 255: the product fits 16 bits unsigned.
        drop = HUE_WEIGHTS[channel].take(index)
        drop *= chroma
        drop += 128
        drop >>= 8
        np.subtract(value, drop, out=out[channel], casting="unsafe")
    return out


class GaussianBlur:
    """Blur with a Gaussian of random sigma, with a probability."""

    def __init__(self, prob: float = 0.5, sigma_range: tuple[float, float] = (0.1, 2.0)):
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        if not 0 < sigma_range[0] <= sigma_range[1]:
            raise ValueError(
                f"sigma_range must be [low, high] with 0 < low <= high, got {list(sigma_range)}"
            )
        self.prob = prob
        self.sigma_range = tuple(sigma_range)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if rng.random() >= self.prob:
            return sample
        image = sample["image"]
        require_integer(image, "gaussian_blur")
        sigma = rng.uniform(*self.sigma_range)
        radius = max(1, int(np.ceil(3 * sigma)))
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
        kernel /= kernel.sum()
        channels, height, width = image.shape
        pixels = image.to(torch.float32)[None]
        mode = "reflect" if min(height, width) > radius else "replicate"
        pixels = F.pad(pixels, (radius, radius, radius, radius), mode=mode)
        rows = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
        pixels = F.conv2d(pixels, rows, groups=channels)
        pixels = F.conv2d(
            pixels, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels
        )
        blurred = pixels[0].round_().clamp_(0, FULL_SCALE[image.dtype]).to(image.dtype)
        return {**sample, "image": blurred}


class Normalize:
    """Subtract the mean and divide by the std per channel; uint8 or uint16 in, float32 out."""

    def __init__(
        self,
        mean: list[float] = (0.485, 0.456, 0.406),
        std: list[float] = (0.229, 0.224, 0.225),
    ):
        """``mean`` and ``std`` on the 0..1 scale (the full range of the pixel type: 255 for
        uint8, 65535 for uint16), one per channel (the ImageNet RGB statistics by default)."""
        if len(mean) != len(std) or not mean or min(std) <= 0:
            raise ValueError("mean and std need one value per channel each, std positive")
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.shift = torch.tensor([m / s for m, s in zip(self.mean, self.std)]).view(-1, 1, 1)

    def check_input(self, channels: int, dtype: str) -> None:
        if channels != len(self.mean):
            raise ValueError(
                f"mean and std have {len(self.mean)} values but the images have {channels} "
                "channels; give one per channel"
            )

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        image = sample["image"]
        require_integer(image, "normalize")
        self.check_input(image.shape[0], str(image.dtype))
        top = FULL_SCALE[image.dtype]
        scale = torch.tensor([1 / (top * s) for s in self.std]).view(-1, 1, 1)
        out = torch.empty(image.shape, dtype=torch.float32)
        out.copy_(image)
        out.mul_(scale).sub_(self.shift)
        return {**sample, "image": out}
