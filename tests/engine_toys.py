"""Tiny components for the engine tests, registered as a segkit plugin.

A two-stage conv backbone, a 1x1 head and an in-memory dataset of coloured rectangles whose class
is readable from the colour: a model learns it in a few dozen iterations on a CPU. Also a few
test-only pieces: a flip transform (uses the draw's generator), a loss that turns NaN on a given
call, and loggers that send a signal, record progress or fill the disk, to exercise the trainer's
fault paths.
The module is itself the plugin, so subprocess tests can load it through an entry point.
"""

from __future__ import annotations

import builtins
import errno
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import segkit

CLASSES = ["background", "red", "green"]
PALETTE = [(40, 40, 40), (220, 30, 30), (30, 200, 40)]
MEAN_COLOURS = np.array([[90, 90, 120], [200, 60, 50], [60, 190, 80]], dtype=np.float32)


class ToyCNN(nn.Module):
    """Two conv-BN-ReLU stages (stride 1 and 2), optional dropout."""

    def __init__(self, width: int = 8, dropout: float = 0.0):
        super().__init__()
        self.stage1 = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.stage2 = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.Dropout2d(dropout),
        )
        self.out_channels = [width, 2 * width]
        self.strides = [1, 2]

    def forward(self, x):
        first = self.stage1(x)
        return [first, self.stage2(first)]


class ToyHead(nn.Module):
    """A 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.classifier = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, features):
        return self.classifier(features)


class ToyShapes:
    """Images of one to three coloured rectangles on a noisy background; a one-pixel border is
    labelled ignore. ``sizes`` gives each image's [height, width] in turn (default all square)."""

    classes = CLASSES
    palette = PALETTE

    def __init__(
        self,
        count: int = 16,
        image_size: int = 32,
        seed: int = 0,
        sizes: list[list[int]] | None = None,
        noise: float = 25.0,
    ):
        self.count = count
        self.sizes = sizes or [[image_size, image_size]]
        self.seed = seed
        self.noise = noise

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if not 0 <= index < self.count:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        height, width = self.sizes[index % len(self.sizes)]
        mask = np.zeros((height, width), dtype=np.int64)
        for _ in range(rng.integers(1, 4)):
            top, left = rng.integers(0, height - 4), rng.integers(0, width - 4)
            h, w = rng.integers(4, height // 2 + 1), rng.integers(4, width // 2 + 1)
            mask[top : top + h, left : left + w] = rng.integers(1, 3)
        image = MEAN_COLOURS[mask] + rng.normal(0, self.noise, (height, width, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = 255
        return {
            "image": torch.from_numpy(image).permute(2, 0, 1).contiguous(),
            "mask": torch.from_numpy(mask),
            "name": f"toy_{index:03d}",
        }


class ToyFlip:
    """Mirror image and mask with probability ``p``, drawing from the sample's generator."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, sample, rng):
        if rng.random() < self.p:
            sample = {**sample, "image": sample["image"].flip(-1), "mask": sample["mask"].flip(-1)}
        return sample


class NanAtCall:
    """Cross-entropy that returns NaN from its ``call``-th use on (1-based)."""

    def __init__(self, ignore_index: int, call: int = 5):
        self.ignore_index = ignore_index
        self.call = call
        self.calls = 0

    def __call__(self, logits, target):
        self.calls += 1
        loss = F.cross_entropy(logits, target, ignore_index=self.ignore_index)
        return loss * float("nan") if self.calls >= self.call else loss


class SignalAt:
    """Sends ``signal`` to this very process after step ``step``."""

    def __init__(self, step: int, signal: str = "SIGTERM"):
        self.step = step
        self.signal = signal

    @segkit.hookimpl
    def segkit_on_train_iter_end(self, run, step, logs):
        if step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signal))


class PoisonAt:
    """Sets one weight of the model to NaN after step ``step``: a diverged update whose loss
    was still finite."""

    def __init__(self, step: int):
        self.step = step

    @segkit.hookimpl
    def segkit_on_train_iter_end(self, run, step, logs):
        if step == self.step:
            with torch.no_grad():
                next(run.model.parameters()).fill_(float("nan"))


class StepFile:
    """Writes the current step to ``path`` after each step and sleeps ``sleep`` seconds, so a
    test in another process can see where training is and interrupt it."""

    def __init__(self, path: str, sleep: float = 0.0):
        self.path = path
        self.sleep = sleep

    @segkit.hookimpl
    def segkit_on_train_iter_end(self, run, step, logs):
        Path(self.path).write_text(str(step))
        time.sleep(self.sleep)


class RaiseIn:
    """Raises ``error`` (a builtin exception's name) in run-event ``hook`` from step ``step`` on:
    a logger with a bug, or a tracking service that went down."""

    def __init__(
        self, hook: str = "segkit_on_train_iter_end", step: int = 2, error: str = "ConnectionError"
    ):
        self.hook = hook
        self.step = step
        self.error = error
        self.calls = 0

    def _maybe_raise(self, hook: str, step: int | None) -> None:
        if hook == self.hook and (step is None or step >= self.step):
            self.calls += 1
            raise getattr(builtins, self.error)(
                f"the tracking service is unreachable (call {self.calls})"
            )

    @segkit.hookimpl
    def segkit_on_train_iter_end(self, run, step, logs):
        self._maybe_raise("segkit_on_train_iter_end", step)

    @segkit.hookimpl
    def segkit_on_eval_end(self, run, step, metrics):
        self._maybe_raise("segkit_on_eval_end", step)

    @segkit.hookimpl
    def segkit_on_checkpoint(self, run, path):
        self._maybe_raise("segkit_on_checkpoint", run.step)

    @segkit.hookimpl
    def segkit_on_train_end(self, run):
        self._maybe_raise("segkit_on_train_end", None)


def fill_disk(path: str | os.PathLike) -> None:
    """Grow the ballast file ``path`` until its file system is full (tmpfs counts whole 4 KiB
    pages, so a later small append into a page already used can still succeed)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    chunk = bytes(1 << 20)
    try:
        while True:
            os.write(descriptor, chunk)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
    finally:
        os.close(descriptor)


class FillDisk:
    """Fills the disk that holds the ballast file ``path`` in run-event ``hook`` (at ``step``, for
    the per-iteration hook): a disk that becomes full at a chosen moment of a run. Its hooks run
    before other loggers' (tryfirst), so that they meet the full disk in the same event."""

    def __init__(self, path: str, hook: str = "segkit_on_train_start", step: int = 1):
        self.path = path
        self.hook = hook
        self.step = step

    def _fill(self, hook: str, step: int | None = None) -> None:
        if hook == self.hook and step in (None, self.step):
            fill_disk(self.path)

    @segkit.hookimpl(tryfirst=True)
    def segkit_on_train_start(self, run):
        self._fill("segkit_on_train_start")

    @segkit.hookimpl(tryfirst=True)
    def segkit_on_train_iter_end(self, run, step, logs):
        self._fill("segkit_on_train_iter_end", step)


@segkit.hookimpl
def segkit_register_backbones(register):
    register("toy_cnn", ToyCNN)


@segkit.hookimpl
def segkit_register_heads(register):
    register("toy_head", ToyHead)


@segkit.hookimpl
def segkit_register_datasets(register):
    register("toy_shapes", ToyShapes)


@segkit.hookimpl
def segkit_register_transforms(register):
    register("toy_flip", ToyFlip)


@segkit.hookimpl
def segkit_register_losses(register):
    register("toy_nan_at_call", NanAtCall)


@segkit.hookimpl
def segkit_register_loggers(register):
    register("toy_signal_at", SignalAt)
    register("toy_step_file", StepFile)
    register("toy_poison_at", PoisonAt)
    register("toy_raise_in", RaiseIn)
    register("toy_fill_disk", FillDisk)


def write_toy_config(folder, name: str = "toy.yaml", **sections: str):
    """``config_text(**sections)`` written to ``folder/name``; returns the path."""
    path = folder / name
    path.write_text(config_text(**sections), encoding="utf-8")
    return path


def config_text(**sections: str) -> str:
    """A small training config; each keyword replaces one top-level section's YAML."""
    parts = {
        "model": """
model:
  backbone: {type: toy_cnn, width: 8}
  head: {type: toy_head}
  num_classes: 3
""",
        "data": """
data:
  train: {type: toy_shapes, count: 16, transforms: [{type: toy_flip}]}
  val: {type: toy_shapes, count: 6, seed: 1}
  batch_size: 4
  workers: 0
""",
        "optimizer": "optimizer: {type: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0001}\n",
        "train": """
train:
  max_iters: 12
  eval_interval: 6
  log_interval: 3
  precision: fp32
  device: cpu
""",
        "logging": "logging: {loggers: []}\n",
    }
    parts.update(sections)
    return "".join(text.lstrip("\n") for text in parts.values())
