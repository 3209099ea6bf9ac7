"""What the run-event hooks receive: the state of the current training, read-only by contract."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class Run:
    """One training run, as loggers see it.

    ``step`` is the number of optimizer steps done so far; ``start_step`` is where this process
    began (0, or the step of the checkpoint it resumed from). ``batch_size`` is per process; the
    images of one step are ``batch_size * accumulate * world_size``.
    """

    config: dict[str, Any]
    work_dir: Path
    model: nn.Module
    classes: list[str]
    palette: list[tuple[int, int, int]]
    max_iters: int
    device: torch.device
    precision: str
    batch_size: int
    accumulate: int = 1
    start_step: int = 0
    step: int = 0
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) logs and writes checkpoints."""
        return self.rank == 0

    @property
    def images_per_step(self) -> int:
        return self.batch_size * self.accumulate * self.world_size


def validation_scalars(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a validation's ``metrics`` (``segkit_on_eval_end``) as flat names, nested
    ones by path (``IoU/road``), for trackers that store one number per name. The pictures
    (``samples``), a class without a score (``None``) and lists (bootstrap intervals) have no
    single value and are left out."""
    found: dict[str, float] = {}
    for key, value in metrics.items():
        if key == "samples" and not prefix:
            continue
        if isinstance(value, dict):
            found.update(validation_scalars(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found[f"{prefix}{key}"] = float(value)
    return found
