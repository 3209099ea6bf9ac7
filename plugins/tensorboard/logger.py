"""Writes ``<work_dir>/tb`` (or ``log_dir``): ``train/<name>`` for every logged value (loss and
each loss term, lr, imgs_per_s, peak_mem_gb), ``val/mIoU``, ``val/mAcc``, ``val/aAcc`` and
``val/IoU/<class>``, ``val/panels/<n>`` images (image | ground truth | prediction in the dataset
palette), and the resolved config as text under ``config``.

The folder is this logger's alone: it tells the run's summary about it (``outputs``, ``watch``),
and a fresh run empties ``<work_dir>/tb`` first, so that an overwritten run's events do not mix
with the new ones (a ``log_dir`` of the user's is never emptied).

tensorboard writes the events in a thread of its own. When a write fails (a full disk), that
thread keeps the error for the main thread, which raises it at the next write or flush, and
also lets it escape, which prints a traceback. Here the error is raised once, from the hook
that meets it, as an ``OSError`` naming the events file (the run then stops with "no space left
on device" and that name); the thread's own report is left out."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import segkit
from segkit.config import dump_config
from segkit.engine.visualize import panel


class TensorBoardLogger:
    """Log scalars, prediction panels and the config to TensorBoard."""

    def __init__(self, log_dir: str | None = None, panels: bool = True, flush_secs: int = 30):
        self.log_dir = log_dir
        self.panels = panels
        self.flush_secs = flush_secs
        self.writer = None
        self.events_dir: Path | None = None
        self.outputs: list[tuple[Path, str]] = []  # read by the run's summary
        self.watch: str | None = None

    @segkit.hookimpl
    def segkit_on_train_start(self, run):
        if not run.is_main:
            return
        from torch.utils.tensorboard import SummaryWriter

        log_dir = Path(self.log_dir) if self.log_dir else Path(run.work_dir) / "tb"
        if not self.log_dir and not run.start_step:
            shutil.rmtree(log_dir, ignore_errors=True)
        _quiet_writer_threads()
        self.events_dir = log_dir
        with self._writing():
            # A resumed run drops the events the interrupted one logged after its checkpoint.
            self.writer = SummaryWriter(
                str(log_dir),
                purge_step=run.start_step + 1 if run.start_step else None,
                flush_secs=self.flush_secs,
            )
            self.writer.add_text(
                "config", "```yaml\n" + dump_config(run.config) + "```", run.start_step
            )
        self.outputs = [(log_dir, "TensorBoard events")]
        self.watch = f"tensorboard --logdir {shlex.quote(str(log_dir))}"

    @segkit.hookimpl
    def segkit_on_train_iter_end(self, run, step, logs):
        if self.writer is None:
            return
        with self._writing():
            for name, value in logs.items():
                self.writer.add_scalar(f"train/{name}", value, step)

    @segkit.hookimpl
    def segkit_on_eval_end(self, run, step, metrics):
        if self.writer is None:
            return
        with self._writing():
            self._log_validation(run, step, metrics)
            self.writer.flush()

    @segkit.hookimpl
    def segkit_on_train_end(self, run):
        if self.writer is not None:
            with self._writing():
                self.writer.close()
            self.writer = None

    def _log_validation(self, run, step, metrics) -> None:
        for name in ("mIoU", "mAcc", "aAcc"):
            if metrics.get(name) is not None:
                self.writer.add_scalar(f"val/{name}", metrics[name], step)
        for class_name, value in metrics.get("IoU", {}).items():
            if value is not None:
                self.writer.add_scalar(f"val/IoU/{class_name}", value, step)
        if self.panels:
            for number, sample in enumerate(metrics.get("samples", [])):
                picture = panel(sample["image"], sample["label"], sample["prediction"], run.palette)
                self.writer.add_image(f"val/panels/{number}", picture, step, dataformats="HWC")

    @contextmanager
    def _writing(self):
        """Calls on the writer. A write error (raised here by tensorboard, from its thread) stops
        this logger's writing, and leaves as an ``OSError`` that names the events file."""
        try:
            yield
        except OSError as error:
            self.writer = None  # its thread has ended; a close would only raise again
            events = _events_file(self.events_dir)
            raise OSError(error.errno, error.strerror, str(events)) from error


def _events_file(log_dir: Path) -> Path:
    """The events file this process writes in ``log_dir`` (tensorboard puts the process id in
    its name), or the folder where there is none yet."""
    ours = sorted(log_dir.glob(f"events.out.tfevents.*.{os.getpid()}.*"))
    return ours[-1] if ours else log_dir


@functools.cache
def _quiet_writer_threads() -> None:
    """Leave out the traceback of a tensorboard writer thread whose error it handed to the main
    thread (which raises it in a hook); every other thread's goes to the hook there was. Set
    once per process."""
    previous = threading.excepthook

    def excepthook(args: threading.ExceptHookArgs) -> None:
        thread = args.thread
        handed_over = getattr(thread, "exception", None) is args.exc_value
        if not (handed_over and type(thread).__module__.startswith("tensorboard.")):
            previous(args)

    threading.excepthook = excepthook
