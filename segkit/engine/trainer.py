"""The training loop over the parts of a run: iteration-based, resumable exactly, safe to stop.

The pieces live elsewhere, each with one job: :mod:`segkit.engine.runtime` (device, precision),
:mod:`segkit.engine.parts` (the objects a config describes), :mod:`segkit.engine.step` (one
optimizer step), :mod:`segkit.engine.checkpoint` (the training-state format),
:mod:`segkit.engine.resume` (continuing from it), :mod:`segkit.engine.workers` (data workers
and their deaths), :mod:`segkit.engine.watch` (what the loop keeps an eye on),
:mod:`segkit.engine.ema` (the weight average that validation scores and checkpoints hold as
``model``) and :mod:`segkit.engine.early_stop` (ending a run whose validation stalls). The trainer owns the order of events
and returns an :class:`Outcome`; what a person reads (banners, resume hints, exit codes) is the
command's (``segkit/commands/train.py``).

The hot loop never waits for the device: loss sums and the non-finite check are read every
``train.log_interval`` steps and before any checkpoint, so a diverged state is never saved over a
good one. SIGINT and SIGTERM set a flag; the loop finishes the step it is in, writes ``last.pt``
and ends with status 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM).

Under torchrun every process runs this loop on its share of each global batch. Rank 0 alone
writes files and calls the run-event hooks; the processes agree on stopping (:class:`StopVote`),
on a non-finite loss and on the validation metrics before acting, so that they always stop
together, and a process that dies makes the others fail with a message instead of waiting.
"""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from segkit.badsamples import SkipLog
from segkit.engine.checkpoint import (
    ResumeState,
    capture_rng,
    model_record,
    read_training_state,
    training_state,
)
from segkit.engine.distributed import LostContact, StopVote, World
from segkit.engine.early_stop import EarlyStop
from segkit.engine.ema import WeightAverage
from segkit.engine.events import HookFailure, RunEvents
from segkit.engine.parts import build_training_parts, train_loader, val_loader
from segkit.engine.precision import device_name
from segkit.engine.resume import check_changes, resume_parts
from segkit.engine.run import Run
from segkit.engine.rundir import RunDirectory, environment
from segkit.engine.runlock import RunLock
from segkit.engine.runtime import Runtime
from segkit.engine.step import train_step
from segkit.engine.summary import logger_reports
from segkit.engine.watch import LogWindow, NonFiniteWatch, StopRequest, peak_memory_gb
from segkit.engine.workers import DataWorkerKilled, start_workers, worker_killed
from segkit.errors import CheckpointError, SegkitError
from segkit.files import DiskFull, WriteFailed, remove_dead_writers
from segkit.metrics import format_metrics
from segkit.plugins import get_plugins


class TrainingDiverged(SegkitError):
    """The loss became NaN or infinite; the run stopped without saving the broken state."""


@dataclass
class Outcome:
    """How a run ended. ``status`` is the process exit status: 0 finished (or stopped early by
    ``train.early_stop``, or had finished already), 128 + N stopped by signal N after saving
    ``last_checkpoint``."""

    status: int
    run_dir: Path
    step: int
    max_iters: int
    stopped_by: str | None = None
    finished_already: bool = False
    stopped_early: str | None = None  # why train.early_stop ended the run (now or before)
    last_checkpoint: Path | None = None
    best: dict[str, Any] | None = None
    final_metrics: dict[str, Any] | None = None
    plugin_failures: list[HookFailure] = field(default_factory=list)
    # what the loggers said they wrote, and how to watch the run (segkit.engine.summary)
    logger_outputs: list[tuple[Path, str]] = field(default_factory=list)
    watch: list[str] = field(default_factory=list)

    @property
    def best_checkpoint(self) -> Path | None:
        path = self.run_dir / "checkpoints" / "best.pt"
        return path if path.is_file() else None


class Trainer:
    """``Trainer(config, work_dir).fit()`` trains the resolved ``config`` in ``work_dir``.

    ``resume`` is a training checkpoint to continue from; a config that differs from the one
    the checkpoint was trained with is refused unless ``allow_changes``; ``overwrite`` lets a
    fresh run replace an earlier one in ``work_dir``; ``overrides`` are recorded in
    ``overrides.txt``."""

    def __init__(
        self,
        config: dict[str, Any],
        work_dir: str | Path,
        *,
        resume: str | Path | None = None,
        overwrite: bool = False,
        overrides: Sequence[str] = (),
        allow_changes: bool = False,
    ):
        self.config = config
        self.max_iters = config["train"]["max_iters"]
        self.rundir = RunDirectory(work_dir, config["train"]["keep_checkpoints"])
        self.resume_path = Path(resume) if resume is not None else None
        self.overwrite = overwrite
        self.overrides = list(overrides)
        self.allow_changes = allow_changes
        self.lock = RunLock(work_dir)
        self.world = World.from_environment()
        self.stop = StopRequest()
        self.best: dict[str, Any] | None = None
        self.saved: tuple[Path, int] | None = None  # the newest good checkpoint and its step
        self.final_metrics: dict[str, Any] | None = None
        self.ema: WeightAverage | None = None
        self.early_stop = EarlyStop.from_config(config["train"]["early_stop"])
        self.stopped_early: str | None = None
        self.phase = "while preparing the run"

    # ---- set-up ------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Build the parts, restore a checkpoint, and make the run directory ready."""
        train_cfg = self.config["train"]
        self.runtime = Runtime.resolve(
            train_cfg, device=self.world.resolve_device(train_cfg["device"])
        )
        self.world.start(self.runtime.device)
        hosts = self.world.all_gather(socket.gethostname())
        self.start_step, self.position = 0, 0
        # Whatever fails here on one process (a dataset missing on one machine, rank 0 finding
        # an earlier run) stops all of them with its message.
        with self.world.together("preparing the run"):
            state = read_training_state(self.resume_path) if self.resume_path else None
            if state is not None:
                check_changes(
                    state,
                    self.config,
                    self.rundir.path,
                    allow_changes=self.allow_changes,
                    announce=self.world.is_main,
                )
                self.saved = (state.path, state.step)  # what a failure from here on leaves
            self.parts = build_training_parts(self.config, self.runtime, self.world)
            ema = train_cfg["ema"]
            if ema["decay"] is not None:
                self.ema = WeightAverage(self.parts.model, ema["decay"], ema["warmup"])
            # locked only now: a run refused for its config or data leaves no directory behind
            if self.world.is_main:
                self.lock.acquire()
                self._remove_dead_writers()
            if state is not None:
                self._resume(state)
            if self.world.is_main:
                resumed_at = self.start_step if self.resume_path is not None else None
                self.rundir.start(resumed_at, self.overwrite)
                self.rundir.write_config(self.config, self.overrides)
                self.rundir.write_environment(self._environment(hosts))
        if self.resume_path is not None:
            self.world.agree_ints(
                [self.start_step, self.position],
                "the checkpoint to resume from (iteration, "
                "data position); is every machine reading the same file?",
            )
        self.loader, self.sampler = train_loader(self.config, self.parts, self.position, self.world)
        self.val_loader = val_loader(self.config, self.parts, self.world)
        data_cfg = self.config["data"]
        self.run = Run(
            config=self.config,
            work_dir=self.rundir.path,
            model=self.parts.model,
            classes=self.parts.classes,
            palette=self.parts.palette,
            max_iters=self.max_iters,
            device=self.runtime.device,
            precision=self.runtime.precision.name,
            batch_size=data_cfg["batch_size"],
            accumulate=train_cfg["accumulate"],
            start_step=self.start_step,
            step=self.start_step,
            rank=self.world.rank,
            world_size=self.world.size,
        )

    def _resume(self, state: ResumeState) -> None:
        resume_parts(state, self.parts, self.config, self.world)
        self.start_step, self.position = state.step, state.position
        self.best = state.best
        self.saved = (state.path, state.step)
        if self.ema is not None:
            if state.ema is not None:
                self.ema.restore(state.model, state.ema["updates"])
            else:  # averaging switched on at resume: it starts from the resumed weights
                self.ema = WeightAverage(self.parts.model, self.ema.decay, self.ema.warmup)
        if self.early_stop is not None and state.early_stop is not None:
            self.early_stop.restore(state.early_stop)
            if self.early_stop.stopped:
                self.stopped_early = self.early_stop.reason()

    def _remove_dead_writers(self) -> None:
        removed = [
            *remove_dead_writers(self.rundir.path),
            *remove_dead_writers(self.rundir.checkpoints.directory),
        ]
        if removed:
            print(
                f"segkit: note: removed {len(removed)} temporary file(s) left by a writer that "
                f"was killed: {', '.join(p.name for p in removed)}",
                file=sys.stderr,
            )

    def _environment(self, hosts: list[str]) -> dict[str, Any]:
        train_cfg, per_process = self.config["train"], self.config["data"]["batch_size"]
        return environment(
            device=str(self.runtime.device),
            device_name=device_name(self.runtime.device),
            precision=self.runtime.precision.name,
            precision_reason=self.runtime.precision.reason,
            channels_last=self.runtime.channels_last,
            world_size=self.world.size,
            backend=self.world.backend,
            hosts=sorted(set(hosts)),
            batch_size_per_process=per_process,
            accumulate=train_cfg["accumulate"],
            global_batch_size=per_process * train_cfg["accumulate"] * self.world.size,
            batch_size_convention=(
                "data.batch_size is per process; one optimizer step takes batch_size x "
                "accumulate x world_size images"
            ),
            learning_rate=(
                "optimizer.lr is used as written, whatever the world size or global batch: "
                "segkit never rescales it"
            ),
            sync_bn=train_cfg["sync_bn"],
            synchronized_batch_norms=self.parts.synced_norms,
            resumed_from=str(self.resume_path) if self.resume_path is not None else None,
            start_step=self.start_step,
        )

    # ---- the loop ----------------------------------------------------------------------------

    def fit(self, on_ready: Callable[[Trainer], None] | None = None) -> Outcome:
        """Prepare, call ``on_ready`` (the command prints its banner there), and train."""
        # The signal handlers stay until the end, so that a SIGTERM from torchrun, which stops
        # every process as soon as one fails, cannot cut short the message of a process that
        # noticed the failure.
        with self.stop.installed():
            healthy = True
            try:
                return self._fit(on_ready)
            except (DiskFull, WriteFailed) as error:
                raise type(error)(f"{error}; {self._kept()}") from error
            except Exception as error:
                if self.world.lost_contact(error):
                    healthy = False
                    raise self._lost_contact(error) from error
                if isinstance(error, (RuntimeError, ConnectionError, EOFError)):
                    killed = worker_killed(error, getattr(self, "data", None))
                    if killed is not None:
                        raise DataWorkerKilled(f"{killed}; {self._kept()}") from None
                raise
            finally:
                self.lock.release()
                if hasattr(self, "parts"):
                    self.parts.train_model = None  # DDP holds the process group
                if healthy:  # tearing down a broken group may block; the process ends anyway
                    self.world.close()

    def _fit(self, on_ready: Callable[[Trainer], None] | None) -> Outcome:
        self.prepare()
        if self.start_step >= self.max_iters or self.stopped_early is not None:
            self.events = RunEvents(None, enabled=False)
            return self._outcome(
                0, self.start_step, finished_already=True, stopped_early=self.stopped_early
            )
        if on_ready is not None and self.world.is_main:
            on_ready(self)
        data = self.data = start_workers(self.loader)  # before any logger thread starts
        self.skips = SkipLog()
        manager = get_plugins().manager
        self.events = RunEvents(manager, enabled=self.world.is_main)
        self.watch = NonFiniteWatch(self.runtime.device, self.start_step)
        self.window = LogWindow(self.runtime.device)
        self.parts.model.train()
        registered = []
        try:
            for name, logger in self.parts.loggers.items() if self.world.is_main else ():
                manager.register(logger, name=name)
                registered.append(logger)
            self.events.segkit_on_train_start(run=self.run)
            outcome = self._loop(self.skips.watching(data), self.events)
        finally:
            try:
                self.events.segkit_on_train_end(run=self.run)
            finally:
                for logger in registered:
                    manager.unregister(logger)
        if self.world.is_main:
            outcome.logger_outputs, outcome.watch = logger_reports(self.parts.loggers)
        if self.events.must_stop:  # a hook failed after the last checkpoint was written
            raise self.events.stop_error(self._kept())
        return outcome

    def _loop(self, data: Iterator[dict], hook) -> Outcome:
        train_cfg = self.config["train"]
        eval_interval, log_interval = train_cfg["eval_interval"], train_cfg["log_interval"]
        checkpoint_interval = train_cfg["checkpoint_interval"]
        vote = StopVote(self.world)
        step = self.start_step
        images_per_step = self.run.images_per_step
        while step < self.max_iters:
            self.phase = f"in iteration {step + 1}"
            train_step(
                self.parts,
                data,
                step,
                accumulate=train_cfg["accumulate"],
                grad_clip=train_cfg["grad_clip"],
                window=self.window,
                watch=self.watch,
            )
            if self.ema is not None:
                self.ema.update(self.parts.model)
            step += 1
            self.run.step = step
            finished = step == self.max_iters
            drawn = self.position + (step - self.start_step) * images_per_step
            epochs = drawn // len(self.parts.train_set)
            if epochs > (drawn - images_per_step) // len(self.parts.train_set):
                self._report_skips(f"in training epoch {epochs}")
            elif finished:
                self._report_skips(f"in training epoch {epochs + 1} (the last, unfinished)")
            logs = self._logs(step) if step % log_interval == 0 or finished else {}
            hook.segkit_on_train_iter_end(run=self.run, step=step, logs=logs)
            # a plugin that failed under SEGKIT_STRICT_PLUGINS stops every process as a signal
            # would; rank 0 then ends with the plugin's error
            stop = vote(self.stop.signal or (signal.SIGTERM if hook.must_stop else None))
            # a stopping run saves at once: its data workers may have ended with the signal
            validate = (
                self.val_loader is not None
                and stop is None
                and (finished or (eval_interval > 0 and step % eval_interval == 0))
            )
            numbered = checkpoint_interval > 0 and step % checkpoint_interval == 0
            saving = validate or numbered or finished or stop is not None
            if saving:
                self._check_finite(step)
            if validate:
                self._validate(step, hook)
            if saving:
                self._save(step, numbered, hook)
                self.window.restart_clock()  # validation and saving are not training speed
            if stop is not None and hook.must_stop:
                vote.settle()
                raise hook.stop_error(self._kept())
            if stop is not None and not finished:
                vote.settle()
                return self._outcome(128 + stop, step, stopped_by=signal.Signals(stop).name)
            if self.stopped_early is not None:
                vote.settle()
                return self._outcome(0, step, stopped_early=self.stopped_early)
        vote.settle()
        return self._outcome(0, step)

    def _report_skips(self, where: str, skips: SkipLog | None = None) -> None:
        """Every process reports its own skipped samples (each reads other files)."""
        process = f" (process {self.world.rank})" if self.world.size > 1 else ""
        (skips or self.skips).report(where + process)

    def _outcome(self, status: int, step: int, **facts: Any) -> Outcome:
        return Outcome(
            status=status,
            run_dir=self.rundir.path,
            step=step,
            max_iters=self.max_iters,
            last_checkpoint=self.saved[0] if self.saved else None,
            best=self.best,
            final_metrics=self.final_metrics,
            plugin_failures=self.events.failures,
            **facts,
        )

    def _logs(self, step: int) -> dict[str, float]:
        """Read the window's sums (the one host sync of a logging step) and write the line."""
        self._check_finite(step, weights=False)
        logs = self.window.read(self.world)
        logs.update(learning_rates(self.parts.optimizer))
        peak = torch.tensor([peak_memory_gb(self.runtime.device)], dtype=torch.float64)
        logs["peak_mem_gb"] = float(self.world.max_(peak))
        if self.world.is_main:
            self.rundir.log_metrics({"split": "train", "step": step, **logs})
        return logs

    def _check_finite(self, step: int, weights: bool = True) -> None:
        """The losses since the last check, and before anything is saved the weights too, which
        an update can ruin while the loss that led to it was still finite."""
        bad = self.watch.first_bad_step(self.world)
        if bad is not None:
            what = f"the loss became non-finite (NaN or infinite) at iteration {bad}"
        elif weights and not self._weights_finite():
            what = (
                f"the weights became non-finite (NaN or infinite) by iteration {step}, "
                "although the losses were finite: an update diverged"
            )
        else:
            return
        remedies = "a lower optimizer.lr or train.grad_clip"
        if self.runtime.precision.name != "fp32":
            remedies += ", or train.precision=fp32"
        raise TrainingDiverged(
            f"{what}; training stopped without saving the broken state; {self._kept()}. "
            f"Try {remedies}."
        )

    def _weights_finite(self) -> bool:
        model = self.parts.model
        tensors = [
            t.detach() for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()
        ]
        finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
        return bool(self.world.min_(finite.to(torch.int64)))

    def _kept(self) -> str:
        if self.saved is not None:
            return f"the last good checkpoint is {self.saved[0]} (iteration {self.saved[1]})"
        return "no checkpoint had been written yet"

    def _lost_contact(self, error: BaseException) -> LostContact:
        lines = str(error).strip().splitlines()
        return LostContact(
            f"process {self.world.rank} of {self.world.size} lost contact with the others "
            f"{self.phase}: another process died, was stopped or cannot be reached (torchrun's "
            f"report names the one that failed first); {self._kept()}. "
            f"[{type(error).__name__}: {lines[0][:300] if lines else ''}]"
        )

    # ---- validation and checkpoints ------------------------------------------------------------

    def _validate(self, step: int, hook) -> None:
        """Every process evaluates its share; all get the same metrics, rank 0 records them."""
        self.phase = f"in the validation after iteration {step}"
        model = self._scored_model()
        # Unsynchronised batch norms keep per-process running statistics; every process
        # evaluates with rank 0's, the model that is saved, so the metric is that model's.
        for buffer in model.buffers():
            self.world.broadcast_(buffer)
        metrics = self.parts.evaluator.evaluate(model, self.val_loader)
        self._report_skips(f"in the validation after iteration {step}", self.parts.evaluator.skips)
        samples = metrics.pop("samples")
        self.final_metrics = {"step": step, **metrics}
        miou = metrics["mIoU"]
        improved = miou is not None and (self.best is None or miou > self.best["mIoU"])
        if improved:
            self.best = {"mIoU": miou, "step": step}
            if metrics.get("ci") is not None:
                self.best["mIoU_ci"] = metrics["ci"]["mIoU"]
        if self.early_stop is not None and self.early_stop.observe(metrics, step):
            self.stopped_early = self.early_stop.reason()
        with self.world.together("recording the validation"):
            if not self.world.is_main:
                return
            self.rundir.log_metrics({"split": "val", "step": step, **metrics})
            self.rundir.write_panels(samples, self.parts.palette)
            hook.segkit_on_eval_end(
                run=self.run, step=step, metrics={**metrics, "samples": samples}
            )
            print(f"validation at iteration {step}:\n{format_metrics(metrics)}", flush=True)
            if self.stopped_early is not None:
                print(f"segkit: {self.stopped_early}; the run ends at iteration {step}", flush=True)
            if improved:
                best = {
                    **self._record(step),
                    "metric": {"name": "mIoU", "value": miou},
                    "metrics": metrics,
                }
                path = self.rundir.checkpoints.save_best(best)
                hook.segkit_on_checkpoint(run=self.run, path=path)

    def _scored_model(self) -> torch.nn.Module:
        """What validation scores and every checkpoint's ``model`` holds: the weight average
        with ``train.ema``, else the trained model."""
        return self.ema.module if self.ema is not None else self.parts.model

    def _record(self, step: int) -> dict[str, Any]:
        return model_record(
            self._scored_model().state_dict(),
            step,
            self.config,
            self.parts.classes,
            self.parts.palette,
            ema=self.ema.state() if self.ema is not None else None,
        )

    def _save(self, step: int, numbered: bool, hook) -> None:
        """Rank 0 writes the checkpoint, with every process's random-number state."""
        self.phase = f"while saving the checkpoint of iteration {step}"
        rng = self.world.gather(capture_rng())
        with self.world.together("writing the checkpoint"):
            if self.world.is_main:
                parts = self.parts
                state = training_state(
                    self._record(step),
                    optimizer=parts.optimizer.state_dict(),
                    scheduler=parts.scheduler.state_dict(),
                    scaler=parts.scaler.state_dict(),
                    rng_per_rank=rng,
                    sampler=self.sampler.state_dict(
                        self.position + (step - self.start_step) * self.run.images_per_step
                    ),
                    best=self.best,
                    raw_model=parts.model.state_dict() if self.ema is not None else None,
                    early_stop=self.early_stop.state() if self.early_stop is not None else None,
                )
                if numbered:
                    path = self.rundir.checkpoints.save_numbered(state)
                    hook.segkit_on_checkpoint(run=self.run, path=path)
                path = self.rundir.checkpoints.save_last(state)
                hook.segkit_on_checkpoint(run=self.run, path=path)
        self.saved = (self.rundir.checkpoints.last, step)


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """``lr``: the schedule's rate (for groups without a multiplier); ``lr_<name>`` for groups
    with one."""
    rates: dict[str, float] = {}
    for group in optimizer.param_groups:
        multiplier = group.get("lr_mult", 1.0)
        if multiplier == 1.0:
            rates.setdefault("lr", group["lr"])
        else:
            rates.setdefault(f"lr_{group.get('name', 'group')}", group["lr"])
            rates.setdefault("lr", group["lr"] / multiplier)
    return rates


def train(
    config: str | Path | dict[str, Any],
    work_dir: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    resume: str | Path | bool | None = None,
    overwrite: bool = False,
    allow_changes: bool = False,
) -> Outcome:
    """Train from Python as ``segkit train`` does, without its messages: ``config`` is a YAML
    path (with ``overrides``) or an already resolved config (:func:`segkit.load_config`);
    ``work_dir`` defaults to ``train.work_dir``, then ``runs/<config name>``; ``resume=True``
    continues the run in ``work_dir`` from its ``last.pt`` (or, where that was never written, its
    newest numbered checkpoint), a path from that checkpoint; ``allow_changes`` lets the resumed
    run use values that differ from the checkpoint's config."""
    from segkit.validation import load_config

    if isinstance(config, dict):
        if overrides:
            raise SegkitError("overrides go with a config file; change the dict itself instead")
        name = "run"
    else:
        name = Path(config).stem
        config = load_config(config, overrides)
    work_dir = Path(work_dir or config["train"]["work_dir"] or Path("runs") / name)
    config = {**config, "train": {**config["train"], "work_dir": str(work_dir)}}
    if resume is True:
        resume = RunDirectory(work_dir).checkpoints.resumable()
        if resume is None:
            raise CheckpointError(f"{work_dir}: no checkpoint to resume from")
    trainer = Trainer(
        config,
        work_dir,
        resume=resume or None,
        overwrite=overwrite,
        overrides=overrides,
        allow_changes=allow_changes,
    )
    return trainer.fit()
