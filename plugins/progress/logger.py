"""A progress bar on stderr while training: redrawn in place on a terminal, periodic plain lines
in a log file; it shows iterations, rate, ETA, and the latest loss and learning rate."""

from __future__ import annotations

import segkit
from segkit.engine.progress import ProgressBar


class ProgressLogger:
    """Show training progress with rate and ETA on stderr."""

    def __init__(self, line_interval_s: float = 30.0):
        if line_interval_s < 0:
            raise ValueError(f"line_interval_s must be >= 0, got {line_interval_s}")
        self.line_interval_s = line_interval_s
        self.bar = None

    @segkit.hookimpl
    def segkit_on_train_start(self, run):
        if run.is_main:
            self.bar = ProgressBar(
                run.max_iters, "train", initial=run.start_step, line_interval_s=self.line_interval_s
            )

    @segkit.hookimpl
    def segkit_on_train_iter_end(self, run, step, logs):
        if self.bar is None:
            return
        info = None
        if logs:
            info = f"loss {logs['loss']:.4f}" if "loss" in logs else ""
            if "lr" in logs:
                info += f" lr {logs['lr']:.3g}"
        self.bar.update(step, info)

    @segkit.hookimpl
    def segkit_on_eval_end(self, run, step, metrics):
        if self.bar is not None:
            self.bar.end_line()  # the validation table follows on a line of its own

    @segkit.hookimpl
    def segkit_on_train_end(self, run):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
