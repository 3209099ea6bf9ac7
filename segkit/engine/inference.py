"""From uint8 images to class probabilities: normalisation, whole-image or sliding-window
inference, and test-time augmentation (several scales, horizontal flip).

Sliding windows are cut so that they all have the same size (the last row and column are moved
back inside the image; an image smaller than the window is one window of its own size), which
lets them go through the model in batches. Overlapping window logits are averaged; the
probabilities of the scales and flips are averaged after the softmax.

``Predictor.labels`` gets the class indices of sliding windows in bounded memory: the windows of
every view (scale, flip) run from the top down, a row's logits are final once the next window
starts below it, and each band of output rows is resized, softmaxed, averaged and reduced to
labels as soon as every view has finished the rows it needs. Only about a window's height of
logits per view is ever held, never a C x H x W tensor of the whole image (150 classes of an
8000 x 8000 image are 38 GB in fp32).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segkit.engine.precision import Precision
from segkit.errors import ConfigError, DataError

DEFAULT_TTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
BAND_ROWS = 64  # output rows Predictor.labels finalises at once (a few C x rows x W temporaries)


class InputNormalizer:
    """uint8 or uint16 batches of C channels -> normalised float tensors on the device,
    channels-last if asked. ``mean`` and ``std`` have one value per channel, in the images' own
    units (0..255, or 0..65535 for 16-bit images, which arrive here unclipped).

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
        if len(mean) != len(std):
            raise ConfigError(f"data.mean has {len(mean)} values but data.std {len(std)}")
        self.device = device
        self.channels = len(mean)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.inverse_std = 1.0 / std
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != self.channels:
            raise DataError(
                f"a batch of {images.shape[1]}-channel images, but data.mean and data.std have "
                f"{self.channels} values (one per input channel)"
            )
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
    """Class probabilities [N, K, H, W] (fp32) of normalised images [N, C, H, W]."""

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

    @torch.inference_mode()
    def labels(
        self,
        images: torch.Tensor,
        size: Sequence[int] | None = None,
        merge: Callable[[torch.Tensor], torch.Tensor] | None = None,
        probabilities_out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Class indices [N, H, W] at ``size``: the argmax of the probabilities, or of
        ``merge(probabilities)`` (class groups). Equal to ``probabilities(...).argmax(1)``; with
        sliding windows computed band by band, so that an image of any size fits in memory.
        ``probabilities_out``, a [N, K, H, W] tensor of the caller's (fp16 halves it), receives
        the (merged) probabilities too, band by band."""
        size = tuple(size or images.shape[-2:])
        if self.settings.mode != "slide":
            probabilities = self.probabilities(images, size)
            if merge is not None:
                probabilities = merge(probabilities)
            if probabilities_out is not None:
                probabilities_out.copy_(probabilities)
            return probabilities.argmax(dim=1)
        views = []
        for scale in self.settings.scales:
            scaled = images if scale == 1.0 else _resize(images, _scaled(images.shape[-2:], scale))
            for mirrored in (False, True) if self.settings.flip else (False,):
                views.append(_SlidingView(self, scaled, mirrored))
        labels = torch.empty((images.shape[0], *size), dtype=torch.long, device=images.device)
        band = min(self.settings.stride[0], BAND_ROWS)
        for first in range(0, size[0], band):
            end = min(first + band, size[0])
            total = None
            for view in views:
                probabilities = view.resized_rows(first, end, size).softmax(dim=1)
                total = probabilities if total is None else total.add_(probabilities)
            if len(views) > 1:
                total.div_(len(views))
            if merge is not None:
                total = merge(total)
            if probabilities_out is not None:
                probabilities_out[:, :, first:end] = total
            labels[:, first:end] = total.argmax(dim=1)
        return labels

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


class _SlidingView:
    """One view of the images (a scale, maybe mirrored) through the sliding windows, its averaged
    logits handed out in rows from the top down. It holds only the rows that have not been handed
    out yet or that windows still to come reach: about a window's height, whatever the image's.
    Windows, their batches and the order of the sums are those of ``Predictor.slide_logits``, so
    the logits are the same numbers."""

    def __init__(self, predictor: Predictor, images: torch.Tensor, mirrored: bool):
        self.predictor = predictor
        self.images = images
        self.mirrored = mirrored
        self.batch, _, self.height, self.width = images.shape
        crop, stride = predictor.settings.crop, predictor.settings.stride
        self.crop = (min(crop[0], self.height), min(crop[1], self.width))
        self.windows = [
            (top, left)
            for top in _window_starts(self.height, self.crop[0], stride[0])
            for left in _window_starts(self.width, self.crop[1], stride[1])
        ]
        self.per_pass = max(1, predictor.settings.window_batch // self.batch)
        self.memory_format = _memory_format(images)
        self.done = 0  # windows added
        self.first = 0  # the image row that row 0 of sums and counts holds
        self.sums: torch.Tensor | None = None
        self.counts = images.new_zeros((1, 1, 0, self.width))

    def final(self) -> int:
        """Rows above this one get no more windows."""
        return self.windows[self.done][0] if self.done < len(self.windows) else self.height

    def rows(self, first: int, end: int) -> torch.Tensor:
        """Averaged logits [N, C, end - first, W] of rows first..end-1, mirrored back; the rows
        above ``first`` are dropped for good."""
        while self.final() < end:
            self.add_windows()
        self.sums = self.sums[:, :, first - self.first :]
        self.counts = self.counts[:, :, first - self.first :]
        self.first = first
        logits = self.sums[:, :, : end - first] / self.counts[:, :, : end - first]
        return logits.flip(-1) if self.mirrored else logits

    def resized_rows(self, first: int, end: int, size: Sequence[int]) -> torch.Tensor:
        """Rows first..end-1 of the logits bilinearly resized to ``size``, as ``F.interpolate``
        of the whole map would give them: the width through it, the height here, from the two
        source rows each output row lies between."""
        if self.height == size[0]:
            return _resize(self.rows(first, end), (end - first, size[1]))
        upper, lower, weight = _source_rows(self.height, size[0], first, end, self.images.device)
        top, bottom = int(upper[0]), int(lower[-1]) + 1
        block = _resize(self.rows(top, bottom), (bottom - top, size[1]))
        weight = weight.view(1, 1, -1, 1)
        return block[:, :, upper - top] * (1 - weight) + block[:, :, lower - top] * weight

    def add_windows(self) -> None:
        chunk = self.windows[self.done : self.done + self.per_pass]
        self.done += len(chunk)
        crop_h, crop_w = self.crop
        crops = torch.cat([self.cut(top, left) for top, left in chunk])
        logits = self.predictor.forward(crops.contiguous(memory_format=self.memory_format))
        self.reach(chunk[-1][0] + crop_h, logits.shape[1])
        for number, (top, left) in enumerate(chunk):
            window = (
                slice(None),
                slice(None),
                slice(top - self.first, top - self.first + crop_h),
                slice(left, left + crop_w),
            )
            self.sums[window] += logits[number * self.batch : (number + 1) * self.batch]
            self.counts[window] += 1

    def cut(self, top: int, left: int) -> torch.Tensor:
        """The window at (top, left) of the (mirrored) view, cut from the unmirrored images."""
        crop_h, crop_w = self.crop
        if self.mirrored:
            left = self.width - left - crop_w
        window = self.images[:, :, top : top + crop_h, left : left + crop_w]
        return window.flip(-1) if self.mirrored else window

    def reach(self, end: int, classes: int) -> None:
        """Make sums and counts hold the rows up to ``end``, new rows at zero."""
        if self.sums is None:
            self.sums = self.images.new_zeros((self.batch, classes, 0, self.width))
        missing = end - self.first - self.counts.shape[2]
        if missing > 0:
            self.sums = torch.cat(
                [self.sums, self.sums.new_zeros((*self.sums.shape[:2], missing, self.width))], 2
            )
            self.counts = torch.cat(
                [self.counts, self.counts.new_zeros((1, 1, missing, self.width))], 2
            )


def _source_rows(
    source: int, target: int, first: int, end: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For output rows first..end-1 of a bilinear resize (align_corners=False) from ``source``
    rows to ``target``: the source row above, the one below, and the weight of the one below,
    computed in float32 as PyTorch's kernel computes them."""
    scale = torch.tensor(source, dtype=torch.float32) / target
    position = scale * (torch.arange(first, end, dtype=torch.float32) + 0.5) - 0.5
    position = position.clamp_min(0)
    upper = position.long()
    weight = (position - upper).clamp(0, 1)
    lower = (upper + 1).clamp_max(source - 1)
    return upper.to(device), lower.to(device), weight.to(device)


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
