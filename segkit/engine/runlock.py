"""One training process per run directory at a time.

Two runs writing the same ``last.pt`` and ``metrics.jsonl`` would each overwrite the other's
work without a word, and ``--overwrite`` would delete a run that is still training. The main
process therefore holds an exclusive ``flock`` on ``RUN_DIR/.lock`` for the whole run. The kernel
drops the lock when the process ends, however it ends (``kill -9`` included), so a crashed run
never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from segkit.errors import SegkitError
from segkit.files import write_error

LOCK_NAME = ".lock"


class RunInUse(SegkitError):
    """Another process is training in the run directory."""


class RunLock:
    """``with RunLock(run_dir):`` or ``acquire()``/``release()``. The lock file says who holds
    it (host, pid, start time), so that a refusal can name the holder and a lock left by a
    process that died is taken over with a note naming it."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_NAME
        self._descriptor: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise write_error(self.path, error, "the run lock") from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(descriptor))
            os.close(descriptor)
            raise RunInUse(
                f"{self.path.parent} is in use by another segkit train ({holder}); wait for it "
                "to end, stop it, or choose another --work-dir"
            ) from None
        previous = _read(descriptor)
        if previous:
            print(
                f"segkit: note: took over the lock of {self.path.parent} from a run that is no "
                f"longer running ({_describe(previous)})",
                file=sys.stderr,
            )
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        try:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        except OSError as error:  # a full disk: the holder cannot be written
            os.close(descriptor)
            raise write_error(self.path, error, "the run lock") from error
        self._descriptor = descriptor

    def release(self) -> None:
        """Empty the file, then close it (which drops the flock): an empty lock file is one
        that was let go, not one of a run that died."""
        if self._descriptor is not None:
            os.ftruncate(self._descriptor, 0)
            os.close(self._descriptor)
            self._descriptor = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read(descriptor: int) -> dict:
    try:
        return json.loads(os.pread(descriptor, 4096, 0).decode("utf-8") or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
