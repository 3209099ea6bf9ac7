"""Data-loading workers: starting them so that their death is reported between iterations, and
telling a user what a death means.

A worker killed by the kernel (the OOM killer's SIGKILL) surfaces in PyTorch as one of several
errors depending on where the main process was; :func:`worker_killed` recognises them all, so
that the trainer can give one message with the last good checkpoint instead of a traceback.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from segkit.errors import SegkitError


class DataWorkerKilled(SegkitError):
    """A data-loading worker was killed (most often by the kernel, out of memory)."""


_WORKER_SIGNAL = re.compile(r"DataLoader worker \(pid (\d+)\) is killed by signal: (.+?)\.")


def worker_killed(error: BaseException, data: Any = None) -> str | None:
    """What an error means for a user when a data worker died under the main process, or None
    for another error. PyTorch reports it as 'DataLoader worker ... killed/exited
    unexpectedly', or, when the worker died while handing over a batch, as the broken
    connection itself. ``data`` is the loader's iterator, whose workers' exit codes tell the
    signal (PyTorch keeps them in a private list; without it the message says less)."""
    workers = list(getattr(data, "_workers", None) or ())
    text = str(error)
    for worker in workers:
        if worker.exitcode is None and not isinstance(error, RuntimeError):
            try:
                worker.join(timeout=2)  # a broken connection can be seen before the death
            except RuntimeError as reported:  # PyTorch's SIGCHLD handler, while we wait
                text = f"{text} {reported}"
    number = None
    match = _WORKER_SIGNAL.search(text)
    if match:
        number = {signal.strsignal(s): int(s) for s in signal.Signals}.get(match.group(2))
    for worker in workers:
        if number is None and (worker.exitcode or 0) < 0:
            number = -worker.exitcode
    if "DataLoader worker" not in text and number is None:
        return None
    how = f"was killed (signal {number})" if number else "ended unexpectedly"
    return f"a data worker {how}, probably out of memory; lower data.workers or the image size"


def start_workers(loader: DataLoader) -> Iterator[dict]:
    """The loader's stream, with its workers started. PyTorch installs a SIGCHLD handler that
    raises a worker's death wherever the main process happens to be, halfway through writing a
    checkpoint as well, so that the message could name an older checkpoint than the one on
    disk. Without that handler the loader finds the dead worker while it waits for its batch
    (it looks every few seconds), so the death is always reported between two iterations."""
    previous = signal.getsignal(signal.SIGCHLD)
    data = iter(loader)
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGCHLD, previous)
    return data
