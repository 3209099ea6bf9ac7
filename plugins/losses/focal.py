"""Focal loss (Lin et al., 2017): cross-entropy that fades out the pixels already classified well.

A pixel whose true class has probability p costs ``-alpha[y] * (1 - p)**gamma * log(p)``: with
gamma 0 and no alpha it is plain cross-entropy; the larger gamma, the less the many easy pixels
(large plain background) drown out the hard ones. The paper's scalar alpha weighs the foreground
of a binary problem against its background; with many classes that split does not exist, so
``alpha`` is a list with one weight per class, or nothing. Like cross-entropy, the sum is divided
by the number of labelled pixels, so a class's alpha scales that class's share and nothing else.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from segkit.constraints import AtLeast, OnePerClass

_TINY = 1e-12
ClassWeights = Annotated[list[Annotated[float, AtLeast(0)]] | None, OnePerClass()]


class FocalLoss(nn.Module):
    """Focal loss averaged over non-ignored pixels; ``alpha`` weighs each class."""

    def __init__(
        self,
        ignore_index: int,
        gamma: Annotated[float, AtLeast(0)] = 2.0,
        alpha: ClassWeights = None,
    ):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if alpha is not None and any(a < 0 for a in alpha):
            raise ValueError(f"alpha must be non-negative weights, one per class, got {alpha}")
        self.ignore_index = ignore_index
        self.gamma = gamma
        weights = None if alpha is None else torch.tensor(alpha, dtype=torch.float32)
        self.register_buffer("alpha", weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labelled = target != self.ignore_index
        # -log p of the true class from the fused kernel; 0 at ignored pixels, so they add 0
        log_p = -F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        # 1 - p as -expm1(log p), exact near p = 1; kept above 0 so that a gamma below 1 has a
        # finite gradient at a saturated pixel
        focus = (-log_p.expm1()).clamp(min=_TINY) ** self.gamma
        losses = -focus * log_p
        if self.alpha is not None:
            if self.alpha.numel() != logits.shape[1]:
                raise ValueError(
                    f"alpha has {self.alpha.numel()} values but the model predicts "
                    f"{logits.shape[1]} classes"
                )
            safe_target = target.masked_fill(~labelled, 0)
            losses = losses * self.alpha.to(losses.dtype)[safe_target]
        return losses.sum() / labelled.sum().clamp(min=1)
