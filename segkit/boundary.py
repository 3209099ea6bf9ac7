"""Boundary IoU (Cheng et al., "Boundary IoU: Improving Object-Centric Image Segmentation
Evaluation", CVPR 2021), per class, accumulated over images.

Mask IoU of a large region barely notices a ragged outline; boundary IoU scores only the band
of each mask within ``d`` pixels of its contour: for class c, with G the pixels labelled c and
P those predicted c, and G_d, P_d their inner bands,

    boundary IoU(c) = |G_d & P_d| / |G_d | P_d|,

the counts summed over all images before dividing (as mask IoU sums its confusion matrix).
``d`` is a fraction of each image's diagonal (2% by default, the paper's choice), at least one
pixel. A pixel is in a mask's band when some pixel within ``d`` of it (a square neighbourhood,
the same as the reference code's ``d`` erosions with a 3x3 kernel) is outside the mask; outside
the image counts as outside the mask, so a mask touching the image border has a band there.
Pixels labelled ``ignore_index`` count in neither band.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

# Classes whose bands are computed at once: bounds the memory of the one-hot masks.
CLASS_CHUNK = 8


def band_width(height: int, width: int, ratio: float) -> int:
    """``d`` in pixels: ``ratio`` of the image diagonal, rounded, at least 1."""
    return max(1, round(ratio * math.hypot(height, width)))


def inner_band(masks: torch.Tensor, d: int) -> torch.Tensor:
    """The pixels of boolean ``masks`` (``[..., H, W]``) with a non-mask pixel (or the outside
    of the image) within ``d`` pixels, in the square neighbourhood."""
    shape = masks.shape
    outside = (~masks).reshape(-1, 1, *shape[-2:]).float()
    outside = F.pad(outside, (d, d, d, d), value=1.0)
    # the square's maximum is separable: a row of 2d + 1, then a column
    near = F.max_pool2d(outside, (1, 2 * d + 1), stride=1)
    near = F.max_pool2d(near, (2 * d + 1, 1), stride=1)
    return masks & (near.reshape(shape) > 0)


class BoundaryCounts:
    """Per-class intersections and unions of the boundary bands, summed over images."""

    def __init__(
        self,
        num_classes: int,
        device: torch.device | str = "cpu",
        ignore_index: int = 255,
        ratio: float = 0.02,
    ):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.ratio = ratio
        self.counts = torch.zeros(2, num_classes, dtype=torch.int64, device=device)

    def update(self, prediction: torch.Tensor, label: torch.Tensor) -> None:
        """Add a batch of equal-size images (``[images, H, W]`` class indices)."""
        label = label.to(self.counts.device)
        prediction = prediction.to(self.counts.device)
        d = band_width(label.shape[-2], label.shape[-1], self.ratio)
        counted = (label != self.ignore_index).unsqueeze(1)
        for first in range(0, self.num_classes, CLASS_CHUNK):
            classes = torch.arange(
                first, min(first + CLASS_CHUNK, self.num_classes), device=label.device
            ).view(1, -1, 1, 1)
            truth = inner_band(label.unsqueeze(1) == classes, d) & counted
            predicted = inner_band(prediction.unsqueeze(1) == classes, d) & counted
            both = (truth & predicted).sum(dim=(0, 2, 3))
            either = (truth | predicted).sum(dim=(0, 2, 3))
            self.counts[0, first : first + len(both)] += both
            self.counts[1, first : first + len(both)] += either

    def combine(self, sum_over_processes: Callable[[torch.Tensor], Any]) -> None:
        """Add up the counts of several processes (an in-place all-reduce)."""
        sum_over_processes(self.counts)

    def metrics(self, classes: Sequence[str]) -> dict[str, Any]:
        """``{"ratio", "describe", "mIoU", "IoU": {class: value or None}}``; a class with no
        band in labels or predictions has no boundary IoU and is left out of the mean."""
        both, either = self.counts.double().cpu()
        iou = [(b / e).item() if e > 0 else None for b, e in zip(both, either)]
        present = [v for v in iou if v is not None]
        return {
            "ratio": self.ratio,
            "describe": f"{100 * self.ratio:g}% of the image diagonal",
            "mIoU": math.fsum(present) / len(present) if present else None,
            "IoU": dict(zip(classes, iou)),
        }
