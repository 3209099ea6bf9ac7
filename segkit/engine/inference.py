"""From uint8 images to class probabilities: normalisation, whole-image or sliding-window
inference, and test-time augmentation (several scales, horizontal flip).

Sliding windows are cut so that they all have the same size (the last row and column are moved
back inside the image; an image smaller than the window is one window of its own size), which
lets them go through the model in batches. Overlapping window logits are averaged; the
probabilities of the scales and flips are averaged after the softmax.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segkit.engine.precision import Precision
from segkit.errors import ConfigError

DEFAULT_TTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


class InputNormalizer:
    """uint8 RGB batches -> normalised float tensors on the device, channels-last if asked.

    Normalising here, not in the data workers, moves a quarter of the bytes to the device and
    spares the workers a float pass. A batch that is already floating point went through a
    ``normalize`` transform and is only moved."""

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device,
        channels_last: bool = False,
    ):
        self.device = device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.inverse_std = 1.0 / std
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if images.is_floating_point():
            return images.float().contiguous(memory_format=self.memory_format)
        return ((images.float() - self.mean) * self.inverse_std).contiguous(
            memory_format=self.memory_format
        )


@dataclass(frozen=True)
class InferenceSettings:
    mode: str = "whole"
    crop: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    window_batch: int = 4

    @classmethod
    def from_config(cls, section: dict[str, Any], mode: str | None = None, tta: bool = False):
        """The ``eval`` section, optionally with ``mode`` replaced and test-time augmentation on:
        the config's scales if it lists several, else 0.5..1.75, and flipping. The values were
        checked by the config's validation; only a mode chosen here can lack its window."""
        mode = mode or section.get("mode", "whole")
        crop = section.get("crop")
        stride = section.get("stride")
        if mode == "slide":
            if not crop:
                raise ConfigError(
                    "eval.crop: sliding-window inference needs a window size [height, width]"
                )
            crop = (int(crop[0]), int(crop[1]))
            if stride:
                stride = (int(stride[0]), int(stride[1]))
            else:
                stride = tuple(max(1, size * 2 // 3) for size in crop)
        scales = tuple(float(s) for s in section.get("scales") or (1.0,))
        flip = bool(section.get("flip", False))
        if tta:
            scales = scales if len(scales) > 1 else DEFAULT_TTA_SCALES
            flip = True
        window_batch = int(section.get("window_batch", 4))
        return cls(
            mode,
            crop if mode == "slide" else None,
            stride if mode == "slide" else None,
            scales,
            flip,
            window_batch,
        )

    def describe(self) -> str:
        text = self.mode
        if self.mode == "slide":
            text += (
                f" (crop {self.crop[0]}x{self.crop[1]}, stride {self.stride[0]}x{self.stride[1]})"
            )
        if self.scales != (1.0,):
            text += f", scales {', '.join(f'{s:g}' for s in self.scales)}"
        if self.flip:
            text += ", flip"
        return text


class Predictor:
    """Class probabilities [N, C, H, W] (fp32) of normalised images [N, 3, H, W]."""

    def __init__(
        self, model: nn.Module, settings: InferenceSettings, precision: Precision | None = None
    ):
        self.model = model
        self.settings = settings
        self.precision = precision

    @torch.inference_mode()
    def probabilities(
        self, images: torch.Tensor, size: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Probabilities at ``size`` (default: the images' size)."""
        size = tuple(size or images.shape[-2:])
        total = None
        for scale in self.settings.scales:
            scaled = images if scale == 1.0 else _resize(images, _scaled(images.shape[-2:], scale))
            for flipped in (False, True) if self.settings.flip else (False,):
                view = scaled.flip(-1) if flipped else scaled
                logits = self.logits(view)
                if flipped:
                    logits = logits.flip(-1)
                probabilities = _resize(logits, size).softmax(dim=1)
                total = probabilities if total is None else total.add_(probabilities)
        views = len(self.settings.scales) * (2 if self.settings.flip else 1)
        return total if views == 1 else total.div_(views)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        if self.settings.mode == "slide":
            return self.slide_logits(images)
        return self.forward(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.precision is None:
            return self.model(images)["main"].float()
        with self.precision.autocast():
            return self.model(images)["main"].float()

    def slide_logits(self, images: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = images.shape
        crop_h, crop_w = min(self.settings.crop[0], height), min(self.settings.crop[1], width)
        windows = [
            (top, left)
            for top in _window_starts(height, crop_h, self.settings.stride[0])
            for left in _window_starts(width, crop_w, self.settings.stride[1])
        ]
        sums = None
        counts = images.new_zeros((1, 1, height, width))
        memory_format = _memory_format(images)
        per_pass = max(1, self.settings.window_batch // batch)
        for first in range(0, len(windows), per_pass):
            chunk = windows[first : first + per_pass]
            crops = torch.cat(
                [images[:, :, top : top + crop_h, left : left + crop_w] for top, left in chunk]
            )
            logits = self.forward(crops.contiguous(memory_format=memory_format))
            if sums is None:
                sums = images.new_zeros((batch, logits.shape[1], height, width))
            for number, (top, left) in enumerate(chunk):
                window = (
                    slice(None),
                    slice(None),
                    slice(top, top + crop_h),
                    slice(left, left + crop_w),
                )
                sums[window] += logits[number * batch : (number + 1) * batch]
                counts[window] += 1
        return sums / counts


def _window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets covering ``length``; the last window is moved back to end at the border."""
    count = max(math.ceil((length - window) / stride), 0) + 1
    return sorted({min(i * stride, length - window) for i in range(count)})


def _scaled(size: Sequence[int], scale: float) -> tuple[int, int]:
    return max(1, int(size[0] * scale + 0.5)), max(1, int(size[1] * scale + 0.5))


def _resize(tensor: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False)


def _memory_format(images: torch.Tensor) -> torch.memory_format:
    """Keep the windows in the images' layout (channels-last when the model runs so)."""
    if images.is_contiguous():
        return torch.contiguous_format
    if images.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
