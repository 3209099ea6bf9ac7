"""Checkpoints: atomic writes, the RNG state as plain data, last/best/numbered files.

A checkpoint is a dict of plain data (tensors, dicts, lists, numbers, strings), so that it loads
with ``torch.load(weights_only=True)`` and no code from a file ever runs. The RNG states of
python and numpy, which are tuples of Python objects, are stored as tensors and numbers.

Every write goes to a temporary file in the same directory, is flushed to disk, and then renamed
over the target: a crash, a full disk or a kill during the write leaves the previous file whole.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segkit.errors import CheckpointError
from segkit.weights import read_checkpoint

LAST = "last.pt"
BEST = "best.pt"
NUMBERED = re.compile(r"iter_(\d+)\.pt\Z")
RESUME_KEYS = ("model", "step", "optimizer", "scheduler", "scaler", "rng", "sampler")


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, (OSError, RuntimeError)):
            previous = "the previous file is intact" if path.exists() else "nothing was written"
            raise CheckpointError(
                f"{path}: could not write the checkpoint ({error}); {previous}"
            ) from error
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


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
    np.random.set_state((
        numpy["kind"],
        numpy["keys"].numpy().astype(np.uint32),
        numpy["pos"],
        numpy["has_gauss"],
        numpy["cached_gaussian"],
    ))
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
