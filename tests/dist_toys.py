"""Test-only components for the distributed tests, registered as a segkit plugin (beside
engine_toys, whose dataset and flip transform they use).

Every process of a torchrun run builds these, unlike the run-event hooks, which only rank 0
calls: so a component is where a test can look at (or break) what rank 1 does. The backbone and
head save their weights whenever the model is put in evaluation mode (each validation), one file
per rank; the loss can end its process, send it a signal or turn NaN on a chosen rank and call.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch
import torch.nn.functional as F
from engine_toys import ToyCNN, ToyHead

import segkit


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


class _SavesOnEval:
    """Save this component's state to ``<dump_dir>/<name>_rank<R>.pt`` on ``eval()``."""

    dump_dir: str | None = None
    dump_name = "component"

    def train(self, mode: bool = True):
        if not mode and self.dump_dir:
            path = Path(self.dump_dir) / f"{self.dump_name}_rank{_rank()}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.detach().clone() for k, v in self.state_dict().items()}, path)
        return super().train(mode)


class SyncCNN(_SavesOnEval, ToyCNN):
    """ToyCNN whose batch norms are marked for synchronisation with ``norm: syncbn``."""

    dump_name = "backbone"

    def __init__(
        self,
        width: int = 8,
        dropout: float = 0.0,
        norm: str = "syncbn",
        dump_dir: str | None = None,
    ):
        super().__init__(width, dropout)
        self.sync_bn = norm == "syncbn"
        self.dump_dir = dump_dir


class DumpHead(_SavesOnEval, ToyHead):
    """ToyHead that saves its weights on ``eval()``."""

    dump_name = "head"

    def __init__(self, in_channels: int, num_classes: int, dump_dir: str | None = None):
        super().__init__(in_channels, num_classes)
        self.dump_dir = dump_dir


class FaultAt:
    """Cross-entropy that, on process ``rank``, at its ``call``-th use, ends the process at
    once (``exit``: as a crash would), sends the process a SIGTERM (``sigterm``), or returns NaN
    from then on (``nan``)."""

    def __init__(self, ignore_index: int, call: int = 5, rank: int = 1, action: str = "exit"):
        self.ignore_index = ignore_index
        self.call = call
        self.rank = rank
        self.action = action
        self.calls = 0

    def __call__(self, logits, target):
        self.calls += 1
        loss = F.cross_entropy(logits, target, ignore_index=self.ignore_index)
        if _rank() != self.rank or self.calls < self.call:
            return loss
        if self.action == "nan":
            return loss * float("nan")
        if self.calls == self.call:
            if self.action == "exit":
                os._exit(1)
            os.kill(os.getpid(), signal.SIGTERM)
        return loss


@segkit.hookimpl
def segkit_register_backbones(register):
    register("toy_sync_cnn", SyncCNN)


@segkit.hookimpl
def segkit_register_heads(register):
    register("toy_dump_head", DumpHead)


@segkit.hookimpl
def segkit_register_losses(register):
    register("toy_fault_at", FaultAt)
