"""Focal loss (Lin et al., 2017) over the pixels that are not ignored."""

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Cross-entropy scaled by (1 - p_t)^gamma, so that easy pixels count less."""

    def __init__(self, ignore_index: int, gamma: float = 2.0):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.ignore_index = ignore_index
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != self.ignore_index
        log_probs = F.log_softmax(logits.float(), dim=1)
        safe_target = target.masked_fill(~valid, 0).unsqueeze(1)
        log_p_t = log_probs.gather(1, safe_target).squeeze(1)
        losses = -((1 - log_p_t.exp()) ** self.gamma) * log_p_t
        return losses[valid].sum() / valid.sum().clamp(min=1)
