"""Checkpoints: the training-state format, atomic writes, the RNG state as plain data,
last/best/numbered files.

This module owns the format of a training checkpoint: :func:`training_state` is the one writer
and :func:`read_training_state` the one reader, which checks every field before a resumed run
uses it. ``format`` counts the layout's versions (1: files written before the field existed; 3: with
``train.ema`` the ``model`` is the weight average and ``raw_model`` the trained weights, and an
``early_stop`` record).

A checkpoint is a dict of plain data (tensors, dicts, lists, numbers, strings), so that it loads
with ``torch.load(weights_only=True)`` and no code from a file ever runs. The RNG states of
python and numpy, which are tuples of Python objects, are stored as tensors and numbers.

Every write goes to a temporary file in the same directory, is flushed to disk, and then renamed
over the target: a crash, a full disk or a kill during the write leaves the previous file whole.
"""

from __future__ import annotations

import io
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segkit.errors import CheckpointError
from segkit.files import DiskFull, WriteFailed, atomic_write_bytes
from segkit.weights import read_checkpoint

LAST = "last.pt"
BEST = "best.pt"
NUMBERED = re.compile(r"iter_(\d+)\.pt\Z")
RESUME_KEYS = ("model", "step", "optimizer", "scheduler", "scaler", "rng", "sampler")
FORMAT_VERSION = 3
# More iterations than any run makes: a larger step is a broken file, not a long run.
MAX_STEP = 10**12


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` whole or not at all: serialised in memory, then written to a
    temporary file (``.NAME.PID.tmp``), flushed to disk and renamed (:mod:`segkit.files`)."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    try:
        atomic_write_bytes(path, buffer.getbuffer(), "checkpoint")
    except DiskFull as error:
        raise DiskFull(f"{error}; {_what_is_left(path)}") from error.__cause__
    except WriteFailed as error:
        raise CheckpointError(f"{error}; {_what_is_left(path)}") from error.__cause__


def _what_is_left(path: Path) -> str:
    return "the previous file is intact" if path.exists() else "nothing was written"


# ---- random number generators ------------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """The state of every global RNG the training uses, as plain data."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {
            "version": version,
            "state": torch.tensor(mt_state, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"]
        if len(saved) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved)


# ---- the checkpoints of a run ------------------------------------------------------------------


class CheckpointDirectory:
    """``last.pt`` (to resume), ``best.pt`` (best validation mIoU) and numbered checkpoints
    ``iter_NNNNNN.pt`` of which the newest ``keep`` are kept."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        self.directory = Path(directory)
        self.keep = keep

    @property
    def last(self) -> Path:
        return self.directory / LAST

    @property
    def best(self) -> Path:
        return self.directory / BEST

    def numbered(self) -> list[Path]:
        """Numbered checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = NUMBERED.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return [path for _, path in sorted(found)]

    def resumable(self) -> Path | None:
        """``last.pt``, or where it was never written (a run killed before its first save of it)
        the newest numbered checkpoint; every one of them is complete, being written whole."""
        if self.last.is_file():
            return self.last
        numbered = self.numbered()
        return numbered[-1] if numbered else None

    def save_last(self, state: dict[str, Any]) -> Path:
        atomic_save(state, self.last)
        return self.last

    def save_best(self, state: dict[str, Any]) -> Path:
        atomic_save(state, self.best)
        return self.best

    def save_numbered(self, state: dict[str, Any]) -> Path:
        path = self.directory / f"iter_{state['step']:06d}.pt"
        atomic_save(state, path)
        existing = self.numbered()
        for old in existing[: max(len(existing) - self.keep, 0)]:
            old.unlink(missing_ok=True)
        return path


def model_record(
    model_state: dict[str, Any],
    step: int,
    config: dict[str, Any],
    classes: Sequence[str],
    palette: Sequence[Sequence[int]],
    ema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What every checkpoint holds (``best.pt`` nothing more): the weights and what they mean.
    ``ema`` (the average's decay, warmup and updates) says the weights are a weight average."""
    record = {
        "format": FORMAT_VERSION,
        "model": model_state,
        "step": step,
        "config": config,
        "classes": list(classes),
        "palette": [list(colour) for colour in palette],
    }
    if ema is not None:
        record["ema"] = ema
    return record


def training_state(
    record: dict[str, Any],
    *,
    optimizer: dict,
    scheduler: dict,
    scaler: dict,
    rng_per_rank: list[dict[str, Any]],
    sampler: dict[str, int],
    best: dict[str, Any] | None,
    raw_model: dict[str, Any] | None = None,
    early_stop: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A resumable checkpoint: ``record`` (:func:`model_record`) plus the optimizer, schedule,
    scaler, every process's RNG state and the sampler position. With a weight average,
    ``record``'s model is the average and ``raw_model`` the weights the optimizer trains;
    ``early_stop`` is the early-stopping record (:mod:`segkit.engine.early_stop`)."""
    state = {
        **record,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "scaler": scaler,
        "rng": rng_per_rank[0],
        "sampler": sampler,
        "best": best,
    }
    if raw_model is not None:
        state["raw_model"] = raw_model
    if early_stop is not None:
        state["early_stop"] = early_stop
    if len(rng_per_rank) > 1:
        state["rng_per_rank"] = rng_per_rank
    return state


@dataclass
class ResumeState:
    """A training checkpoint's fields, checked: what a resumed run restores."""

    path: Path
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any] | None
    step: int
    position: int
    sampler_size: int | None
    rng_per_rank: list[dict[str, Any]]
    best: dict[str, Any] | None
    config: dict[str, Any]
    format: int
    raw_model: dict[str, Any] | None = None  # the trained weights, where model is their average
    ema: dict[str, Any] | None = None  # the average's decay, warmup and update count
    early_stop: dict[str, Any] | None = None


def read_training_state(path: str | os.PathLike) -> ResumeState:
    """The resumable state of ``path``, or a CheckpointError naming the first broken field."""
    path = Path(path)
    checkpoint = load_for_resume(path)

    def broken(field: str, expected: str) -> CheckpointError:
        value = checkpoint
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return CheckpointError(
            f"{path}: field '{field}' is broken (expected {expected}, got {repr(value)[:60]}); "
            "resume from another checkpoint of the run (checkpoints/iter_*.pt) or start over"
        )

    step = checkpoint["step"]
    if not _whole(step) or not 0 <= step <= MAX_STEP:
        raise broken("step", f"a whole number of iterations, 0..{MAX_STEP}")
    sampler = checkpoint["sampler"]
    if (
        not isinstance(sampler, dict)
        or not _whole(sampler.get("position"))
        or sampler["position"] < 0
    ):
        raise broken("sampler", "a dict with a whole, non-negative 'position'")
    size = sampler.get("size")
    if size is not None and not _whole(size):
        raise broken("sampler.size", "a whole number")
    states = checkpoint.get("rng_per_rank") or [checkpoint["rng"]]
    if not isinstance(states, list) or not all(_rng_state(s) for s in states):
        field = "rng_per_rank" if "rng_per_rank" in checkpoint else "rng"
        raise broken(field, "the random-number state segkit writes (python, numpy, torch)")
    for field in ("model", "optimizer", "scheduler"):
        if not isinstance(checkpoint[field], dict):
            raise broken(field, "a state dict")
    if not isinstance(checkpoint["optimizer"].get("param_groups"), list):
        raise broken("optimizer", "an optimizer state dict with 'param_groups'")
    scaler = checkpoint["scaler"]
    if scaler is not None and not isinstance(scaler, dict):
        raise broken("scaler", "a gradient-scaler state dict or nothing")
    best = checkpoint.get("best")
    if best is not None and not (
        isinstance(best, dict)
        and isinstance(best.get("mIoU"), (int, float))
        and _whole(best.get("step"))
    ):
        raise broken("best", "{'mIoU': number, 'step': whole number} or nothing")
    raw_model, ema = checkpoint.get("raw_model"), checkpoint.get("ema")
    if raw_model is not None and not isinstance(raw_model, dict):
        raise broken("raw_model", "a state dict or nothing")
    if (raw_model is None) != (ema is None):
        raise broken("ema", "the weight average's record, present with 'raw_model' only")
    if ema is not None and not (isinstance(ema, dict) and _whole(ema.get("updates"))):
        raise broken("ema", "{'updates': whole number, ...}")
    early_stop = checkpoint.get("early_stop")
    if early_stop is not None and not (
        isinstance(early_stop, dict) and _whole(early_stop.get("stale"))
    ):
        raise broken("early_stop", "{'stale': whole number, ...} or nothing")
    config = checkpoint.get("config") or {}
    if not isinstance(config, dict):
        raise broken("config", "the run's resolved config")
    version = checkpoint.get("format", 1)
    if not _whole(version) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written in checkpoint format {version!r}, which this segkit (format "
            f"{FORMAT_VERSION}) does not know; resume with a newer segkit"
        )
    return ResumeState(
        path=path,
        model=checkpoint["model"],
        optimizer=checkpoint["optimizer"],
        scheduler=checkpoint["scheduler"],
        scaler=scaler,
        step=step,
        position=sampler["position"],
        sampler_size=size,
        rng_per_rank=states,
        best=best,
        config=config,
        format=version,
        raw_model=raw_model,
        ema=ema,
        early_stop=early_stop,
    )


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rng_state(state: Any) -> bool:
    return (
        isinstance(state, dict)
        and isinstance(state.get("python"), dict)
        and isinstance(state.get("numpy"), dict)
        and isinstance(state.get("torch"), torch.Tensor)
    )


def load_for_resume(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint that holds everything a resumed run needs, or a clear error."""
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a segkit checkpoint (expected a dict)")
    missing = [key for key in RESUME_KEYS if key not in checkpoint]
    if missing:
        hint = ""
        if "metric" in checkpoint:
            hint = " (best.pt holds only the model; resume from last.pt or a numbered one)"
        raise CheckpointError(f"{path}: cannot resume from it: it lacks {', '.join(missing)}{hint}")
    return checkpoint


def describe_changes(
    old: dict[str, Any], new: dict[str, Any], keys: list[str], most: int = 12
) -> str:
    """``train.max_iters: 40 -> 80; data.batch_size: 8 -> 4`` for the first ``most`` keys."""

    def at(tree: dict[str, Any], dotted: str) -> Any:
        for part in dotted.split("."):
            tree = tree.get(part) if isinstance(tree, dict) else None
        return tree

    listed = [f"{key}: {at(old, key)!r} -> {at(new, key)!r}" for key in keys[:most]]
    if len(keys) > most:
        listed.append(f"and {len(keys) - most} more")
    return "; ".join(listed)


def config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, leaving out where the run lives and how it is watched:
    what a resumed run notes about the config it was given."""
    changes = []
    for key in sorted(set(old) | set(new), key=str):
        path = f"{prefix}{key}"
        if path in ("train.work_dir", "logging"):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes.extend(config_changes(a, b, path + "."))
        elif a != b:
            changes.append(path)
    return changes
