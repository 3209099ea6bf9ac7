"""Soft Dice loss (Milletari et al., 2016), computed over the labelled pixels of the batch.

It compares the softmax probabilities with the one-hot labels class by class, so rare classes
weigh as much as frequent ones; that is why it is usually added to cross-entropy, not used alone.
The one-hot tensor is never built: the per-class sums it would feed are gathered directly, which
keeps memory at the size of the logits even with 150 classes.
"""

from __future__ import annotations

import torch
from torch import nn


class DiceLoss(nn.Module):
    """1 - soft Dice coefficient, averaged over the classes; ignored pixels do not count."""

    def __init__(self, ignore_index: int, smooth: float = 1.0, exponent: int = 2):
        super().__init__()
        if smooth <= 0:
            raise ValueError(
                f"smooth must be > 0 (it keeps classes absent from a batch defined), got {smooth}"
            )
        if exponent not in (1, 2):
            raise ValueError(f"exponent must be 1 or 2, got {exponent}")
        self.ignore_index = ignore_index
        self.smooth = smooth
        self.exponent = exponent

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        labelled = (target != self.ignore_index).unsqueeze(1).to(logits.dtype)
        probabilities = logits.softmax(dim=1) * labelled
        safe_target = target.masked_fill(target == self.ignore_index, 0).unsqueeze(1)
        true_probability = probabilities.gather(1, safe_target)
        flat_target = safe_target.flatten()
        zeros = logits.new_zeros(num_classes)
        intersection = zeros.index_add(0, flat_target, true_probability.flatten())
        label_area = zeros.index_add(0, flat_target, labelled.flatten())
        predicted_area = probabilities.pow(self.exponent).sum(dim=(0, 2, 3))
        dice = (2 * intersection + self.smooth) / (predicted_area + label_area + self.smooth)
        return 1 - dice.mean()
