"""Test-only pieces for stopping a training process from outside, registered as a plugin.

``toy_marked_shapes`` is the toy dataset that appends its process id to ``marker`` whenever it
serves a sample and then sleeps ``delay`` seconds: a test in another process sees that the data
workers (or validation) are busy, and the run is data-bound. ``toy_kill_worker_at`` SIGKILLs the
data-loading worker that serves a given draw, as the kernel's out-of-memory killer would.
"""

from __future__ import annotations

import os
import signal
import time

from engine_toys import ToyShapes

import segkit


class MarkedShapes(ToyShapes):
    """Toy shapes that leave a trace of who served them and take ``delay`` seconds each."""

    def __init__(
        self,
        count: int = 16,
        image_size: int = 32,
        seed: int = 0,
        marker: str | None = None,
        delay: float = 0.0,
        kill_at: int = -1,
        kill_rank: int | None = None,
    ):
        super().__init__(count=count, image_size=image_size, seed=seed)
        self.marker = marker
        self.delay = delay
        self.kill_at = kill_at
        self.kill_rank = kill_rank  # under torchrun: only that process's worker is killed
        self.served = 0

    def __getitem__(self, index):
        sample = super().__getitem__(index)
        self.served += 1
        if self.marker:
            with open(self.marker, "a", encoding="utf-8") as file:
                file.write(f"{os.getpid()}\n")
        rank_matches = self.kill_rank is None or os.environ.get("RANK") == str(self.kill_rank)
        if self.served == self.kill_at and rank_matches:
            os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does to a worker
        time.sleep(self.delay)
        return sample


@segkit.hookimpl
def segkit_register_datasets(register):
    register("toy_marked_shapes", MarkedShapes)
