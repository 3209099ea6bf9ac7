"""Poly-1 loss (Leng et al., ICLR 2022) over the pixels that are not ignored.

Cross-entropy is the first term of a polynomial series in (1 - p_t); Poly-1 raises the weight of
that first term by ``epsilon``, which the paper finds helps where cross-entropy alone is too
lenient on confident mistakes.
"""

import torch
import torch.nn.functional as F
from torch import nn


class PolyLoss(nn.Module):
    """Cross-entropy plus epsilon * (1 - p_t), p_t the probability of a pixel's true class."""

    def __init__(self, ignore_index: int, epsilon: float = 1.0):
        super().__init__()
        if epsilon < -1:
            raise ValueError(
                f"epsilon must be >= -1 (the loss must grow with the error), got {epsilon}"
            )
        self.ignore_index = ignore_index
        self.epsilon = epsilon

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != self.ignore_index
        log_probs = F.log_softmax(logits.float(), dim=1)
        safe_target = target.masked_fill(~valid, 0).unsqueeze(1)
        log_p_t = log_probs.gather(1, safe_target).squeeze(1)
        losses = -log_p_t + self.epsilon * (1 - log_p_t.exp())
        return losses[valid].sum() / valid.sum().clamp(min=1)
