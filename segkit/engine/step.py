"""One optimizer step of training, as a plain function of the parts it uses.

The step never waits for the device: the loss goes into the optional ``window`` (log sums) and
``watch`` (non-finite check) as device tensors, which the loop reads every few steps. The
benchmarks call this very function, so that what they measure is what training runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext

import torch
from torch.nn.parallel import DistributedDataParallel

from segkit.engine.parts import TrainingParts
from segkit.engine.watch import LogWindow, NonFiniteWatch


def train_step(
    parts: TrainingParts,
    data: Iterator[dict],
    step: int,
    *,
    accumulate: int = 1,
    grad_clip: float | None = None,
    window: LogWindow | None = None,
    watch: NonFiniteWatch | None = None,
) -> None:
    """Forward and backward ``accumulate`` batches of ``data``, then one update and one
    schedule step. ``step`` (0-based) is the iteration the loss weights decay by."""
    for micro_batch in range(accumulate):
        batch = next(data)
        images = parts.normalizer(batch["image"])
        target = batch["mask"].to(parts.runtime.device, non_blocking=True)
        with _gradient_sync(parts.train_model, micro_batch == accumulate - 1):
            with parts.runtime.precision.autocast():
                outputs = parts.train_model(images, resize=False)  # the criterion resizes
            loss, terms = parts.criterion(outputs, target, step)
            scaled = loss / accumulate if accumulate > 1 else loss
            parts.scaler.scale(scaled).backward()
        if window is not None:
            window.add(loss.detach(), terms, len(images))
        if watch is not None:
            watch.observe(loss.detach())
    if grad_clip is not None:
        parts.scaler.unscale_(parts.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(parts.model.parameters(), grad_clip)
        if window is not None:
            window.add_value("grad_norm", norm.detach())
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    parts.optimizer.zero_grad(set_to_none=True)
    parts.scheduler.step()
    if watch is not None:
        watch.step_done()


def _gradient_sync(model: torch.nn.Module, last_micro_batch: bool) -> AbstractContextManager:
    """DDP averages the gradients in the backward pass of an optimizer step's last batch only;
    the batches accumulated before it keep theirs local."""
    if isinstance(model, DistributedDataParallel) and not last_micro_batch:
        return model.no_sync()
    return nullcontext()
