"""Pixel-wise cross-entropy, and its online-hard-example-mining variant.

Both average over the pixels that are not ignored: an image that is mostly ignore (padding, void)
must not shrink the loss of the pixels that are labelled. With class weights the sum of the
weighted per-pixel losses is still divided by the number of labelled pixels, so a weight scales
its class's contribution and nothing else.

Cross-entropy takes the heads' logits as they are (``takes_head_logits``) and scores them
upsampled to the label size, one band of rows at a time (upsampled_ce.py); OHEM ranks pixels by
their full-resolution probabilities, so it gets the upsampled logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segkit_plugins.losses.upsampled_ce import upsampled_cross_entropy_sum


class CrossEntropyLoss(nn.Module):
    """Cross-entropy averaged over non-ignored pixels; optional class weights, label smoothing."""

    takes_head_logits = True

    def __init__(
        self,
        ignore_index: int,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.register_buffer("class_weights", _weights_tensor(class_weights), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits`` at any resolution, upsampled bilinearly (align_corners=False, as the
        segmentor does) to the size of ``target``; computed in fp32."""
        labelled = (target != self.ignore_index).sum()
        weight = _checked(self.class_weights, logits)
        if logits.shape[-2:] == target.shape[-2:]:
            total = F.cross_entropy(  # summed inside the kernel: no per-pixel tensor to keep
                logits.float(),
                target,
                weight=weight,
                ignore_index=self.ignore_index,
                reduction="sum",
                label_smoothing=self.label_smoothing,
            )
        else:
            total = upsampled_cross_entropy_sum(
                logits,
                target,
                weight=weight,
                ignore_index=self.ignore_index,
                label_smoothing=self.label_smoothing,
                align_corners=False,
            )
        return total / labelled.clamp(min=1)


class OhemCrossEntropyLoss(nn.Module):
    """Cross-entropy over the hard pixels: those whose true-class probability is below
    ``threshold``, and never fewer than the ``min_kept`` hardest ones of the batch."""

    def __init__(
        self,
        ignore_index: int,
        threshold: float = 0.7,
        min_kept: int = 100000,
        class_weights: list[float] | None = None,
    ):
        super().__init__()
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if min_kept < 0:
            raise ValueError(f"min_kept must be >= 0, got {min_kept}")
        self.ignore_index = ignore_index
        self.threshold = threshold
        self.min_kept = min_kept
        self.register_buffer("class_weights", _weights_tensor(class_weights), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labelled = target != self.ignore_index
        losses = F.cross_entropy(
            logits,
            target,
            weight=_checked(self.class_weights, logits),
            ignore_index=self.ignore_index,
            reduction="none",
        )
        with torch.no_grad():
            safe_target = target.masked_fill(~labelled, 0).unsqueeze(1)
            true_probability = logits.softmax(dim=1).gather(1, safe_target).squeeze(1)
            # Ignored pixels sort last and are never kept.
            true_probability = true_probability.masked_fill(~labelled, float("inf"))
            threshold = torch.tensor(self.threshold, device=logits.device)
            count = min(self.min_kept, true_probability.numel())
            if count > 0:
                kth = true_probability.flatten().kthvalue(count).values
                threshold = torch.maximum(threshold, kth)
            kept = labelled & (true_probability <= threshold)
        return (losses * kept).sum() / kept.sum().clamp(min=1)


def _weights_tensor(class_weights: list[float] | None) -> torch.Tensor | None:
    if class_weights is None:
        return None
    weights = torch.tensor(class_weights, dtype=torch.float32)
    if weights.ndim != 1 or (weights < 0).any():
        raise ValueError("class_weights must be a list of non-negative numbers, one per class")
    return weights


def _checked(weights: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor | None:
    if weights is not None and weights.numel() != logits.shape[1]:
        raise ValueError(
            f"class_weights has {weights.numel()} values but the model predicts "
            f"{logits.shape[1]} classes"
        )
    return weights
