"""Tversky loss (Salehi et al., 2017) and its focal form (Abraham and Khan, 2019).

Dice counts false positives and false negatives alike; the Tversky index weighs them apart,
``TI = (TP + smooth) / (TP + alpha * FP + beta * FN + smooth)``, with soft counts from the
softmax probabilities over the labelled pixels of the batch. beta > alpha favours recall, which
helps small structures a model otherwise misses. The loss is ``(1 - TI) ** gamma`` averaged over
every class, as the Dice loss does: a class absent from the batch still counts, its index
defined by ``smooth``, and pushes its false positives down. alpha = beta = 0.5, gamma = 1 is
the Dice loss with exponent 1.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from segkit.constraints import Above, AtLeast


class TverskyLoss(nn.Module):
    """Mean over classes of (1 - Tversky index) ** gamma; ignored pixels do not count."""

    def __init__(
        self,
        ignore_index: int,
        alpha: Annotated[float, AtLeast(0)] = 0.3,
        beta: Annotated[float, AtLeast(0)] = 0.7,
        smooth: Annotated[float, Above(0)] = 1.0,
        gamma: Annotated[float, Above(0)] = 1.0,
    ):
        super().__init__()
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha {alpha}, beta {beta}")
        if smooth <= 0:
            raise ValueError(f"smooth must be > 0 (it defines absent classes), got {smooth}")
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.ignore_index = ignore_index
        self.alpha, self.beta, self.smooth, self.gamma = alpha, beta, smooth, gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        labelled = (target != self.ignore_index).unsqueeze(1).to(logits.dtype)
        probabilities = logits.softmax(dim=1) * labelled
        safe_target = target.masked_fill(target == self.ignore_index, 0).unsqueeze(1)
        flat_target = safe_target.flatten()
        zeros = logits.new_zeros(num_classes)
        # per-class soft counts without building the one-hot tensor
        true_positive = zeros.index_add(
            0, flat_target, probabilities.gather(1, safe_target).flatten()
        )
        label_area = zeros.index_add(0, flat_target, labelled.flatten())
        predicted_area = probabilities.sum(dim=(0, 2, 3))
        false_positive = predicted_area - true_positive
        false_negative = label_area - true_positive
        index = (true_positive + self.smooth) / (
            true_positive + self.alpha * false_positive + self.beta * false_negative + self.smooth
        )
        losses = 1 - index
        if self.gamma != 1:  # above 0, so that a gamma below 1 keeps a finite gradient
            losses = losses.clamp(min=1e-12) ** self.gamma
        return losses.mean()
