"""An exponential moving average of the weights (``train.ema``): the model a run is scored by.

After every optimizer step each floating-point parameter of the average moves toward the trained
one, ``average = decay_t * average + (1 - decay_t) * weight``, with ``decay_t = min(decay,
(1 + t) / (10 + t))`` at the t-th update (t from 0) when ``warmup`` is on, else ``decay``. The
ramp matters in short runs: with 0.9999 from the start the average would still be mostly the
initial weights after thousands of steps. Buffers (batch-norm running statistics and counters)
are copied, not averaged: they describe the activations of the current weights, and the
averaged weights are close to those.

Under torchrun every process updates its own average from identical parameters (DDP keeps them
equal), so the averages agree without communication; the buffers, per process without SyncBN,
are broadcast from rank 0 before validation as the model's are.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The averaged copy of ``model`` (``module``) and the number of updates it has seen."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.module = copy.deepcopy(model).requires_grad_(False).eval()
        self.decay = decay
        self.warmup = warmup
        self.updates = 0

    def decay_at(self, update: int) -> float:
        """The decay applied by the ``update``-th update (0-based)."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + update) / (10 + update))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        weight = 1.0 - self.decay_at(self.updates)
        for average, current in zip(self.module.parameters(), model.parameters()):
            if average.is_floating_point():
                average.lerp_(current.detach(), weight)
            else:
                average.copy_(current)
        for average, current in zip(self.module.buffers(), model.buffers()):
            average.copy_(current)
        self.updates += 1

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps beside the averaged weights, which are its ``model``."""
        return {"decay": self.decay, "warmup": self.warmup, "updates": self.updates}

    def restore(self, weights: dict[str, torch.Tensor], updates: int) -> None:
        self.module.load_state_dict(weights)
        self.updates = updates
