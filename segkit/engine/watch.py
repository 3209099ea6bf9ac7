"""What the training loop keeps an eye on without waiting for the device: the loss terms since
the last log line, the first non-finite loss, peak memory, and the request to stop.

Sums and flags stay on the device as tensors; the loop reads them only at logging and
checkpoint points, where one host sync per interval is paid instead of one per step.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager

import torch

from segkit.engine.distributed import World


class LogWindow:
    """Sums of the loss terms since the last log line, kept on the device."""

    def __init__(self, device: torch.device):
        self.device = device
        self.restart()

    def restart(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.restart_clock()

    def restart_clock(self) -> None:
        self.images = 0
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], images: int) -> None:
        self.add_value("loss", loss)
        for name, value in terms.items():
            self.add_value(name, value)
        self.images += images

    def add_value(self, name: str, value: torch.Tensor) -> None:
        if name in self.sums:
            self.sums[name] = self.sums[name] + value
            self.counts[name] += 1
        else:
            self.sums[name] = value.float()
            self.counts[name] = 1

    def read(self, world: World) -> dict[str, float]:
        """Averages over the window and over the processes; ``imgs_per_s`` counts the images
        of all processes."""
        names = list(self.sums)
        values = []
        if names:
            values = (world.sum_(torch.stack([self.sums[n] for n in names])) / world.size).tolist()
        logs = {name: value / self.counts[name] for name, value in zip(names, values)}
        elapsed = time.perf_counter() - self.started
        logs["imgs_per_s"] = self.images * world.size / elapsed if elapsed > 0 else 0.0
        self.restart()
        return logs


class NonFiniteWatch:
    """Remembers, on the device, the first iteration whose loss was NaN or infinite."""

    def __init__(self, device: torch.device, start_step: int):
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        self.current = torch.full((), start_step + 1, dtype=torch.int64, device=device)

    def observe(self, loss: torch.Tensor) -> None:
        bad = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, self.current, self.first_bad)

    def step_done(self) -> None:
        self.current += 1

    def first_bad_step(self, world: World) -> int | None:
        """The earliest bad iteration of any process (all processes call this together)."""
        never = torch.iinfo(torch.int64).max
        value = int(world.min_(torch.where(self.first_bad < 0, never, self.first_bad)))
        return None if value == never else value


class StopRequest:
    """SIGINT/SIGTERM -> a flag the loop checks after each step."""

    def __init__(self):
        self.signal: int | None = None

    def _handle(self, signum, frame) -> None:
        if self.signal == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signal = signum

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def peak_memory_gb(device: torch.device) -> float:
    """Peak device memory on CUDA; peak resident memory of the process elsewhere."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20
