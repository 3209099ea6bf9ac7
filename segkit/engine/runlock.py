"""One training process per run directory at a time.

Two runs writing the same ``last.pt`` and ``metrics.jsonl`` would each overwrite the other's
work without a word, and ``--overwrite`` would delete a run that is still training. The main
process therefore holds an exclusive ``flock`` on ``RUN_DIR/.lock`` for the whole run. The kernel
drops the lock when the process ends, however it ends (``kill -9`` included), so a crashed run
never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from segkit.errors import SegkitError

LOCK_NAME = ".lock"


class RunInUse(SegkitError):
    """Another process is training in the run directory."""


class RunLock:
    """``with RunLock(run_dir):`` or ``acquire()``/``release()``; the lock file holds the owner's
    pid so that the refusal can say who has it."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_NAME
        self._descriptor: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(descriptor, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(descriptor)
            raise RunInUse(
                f"{self.path.parent} is in use by another segkit train (pid {owner}); wait for "
                "it to end, stop it, or choose another --work-dir"
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode("ascii"))
        self._descriptor = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing drops the flock
            self._descriptor = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
