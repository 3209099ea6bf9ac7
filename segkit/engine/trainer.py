"""The training loop: iteration-based, resumable exactly, safe to interrupt.

The hot loop never waits for the device: loss terms are summed on the device and read only every
``train.log_interval`` steps, and so is the check for a non-finite loss (the device remembers the
first bad iteration, so the message still names it). Before any checkpoint is written the loss is
checked, so a diverged state is never saved over a good one.

SIGINT and SIGTERM set a flag; the loop finishes the step it is in, writes ``last.pt`` and
returns 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a process
ended by that signal. A second Ctrl-C stops at once.

Under torchrun every process runs this loop on its share of each global batch, the model wrapped
in DistributedDataParallel. Rank 0 alone writes files and calls the run-event hooks; the
processes agree on stopping (:class:`StopVote`), on a non-finite loss and on the validation
metrics before acting, so that they always stop together, and a process that dies makes the
others fail with a message instead of waiting forever.
"""

from __future__ import annotations

import random
import shlex
import signal
import socket
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from segkit.builder import build_lr_scheduler, build_model, build_optimizer, explaining, registry
from segkit.data import build_dataset, collate, leave_stop_signals_to_the_main_process
from segkit.engine.checkpoint import capture_rng, load_for_resume, restore_rng
from segkit.engine.distributed import LostContact, StopVote, World, rank_seed
from segkit.engine.evaluator import Evaluator, validation_loader
from segkit.engine.inference import InferenceSettings, InputNormalizer
from segkit.engine.losses import build_criterion
from segkit.engine.precision import (
    Precision,
    configure_backends,
    device_name,
    resolve_device,
    resolve_precision,
)
from segkit.engine.run import Run
from segkit.engine.rundir import RunDirectory, environment
from segkit.engine.sampler import InfiniteSampler
from segkit.engine.sync_bn import synchronize_batch_norms
from segkit.engine.visualize import default_palette
from segkit.engine.watch import LogWindow, NonFiniteWatch, StopRequest, peak_memory_gb
from segkit.errors import CheckpointError, ConfigError, SegkitError
from segkit.metrics import format_metrics
from segkit.plugins import get_plugins
from segkit.weights import load_into


class TrainingDiverged(SegkitError):
    """The loss became NaN or infinite; the run stopped without saving the broken state."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Builds everything a config describes and trains it: ``Trainer(config, ...).fit()``
    returns the process exit status (0 finished, 130/143 interrupted)."""

    def __init__(
        self,
        config: dict[str, Any],
        work_dir: str | Path,
        resume: str | Path | None = None,
        overwrite: bool = False,
        overrides: Sequence[str] = (),
        config_path: str | Path | None = None,
    ):
        self.config = config
        self.config_path = config_path
        self.train_cfg = config["train"]
        self.data_cfg = config["data"]
        self.max_iters = self.train_cfg["max_iters"]
        self.accumulate = self.train_cfg["accumulate"]
        self.rundir = RunDirectory(work_dir, self.train_cfg["keep_checkpoints"])
        self.resume_path = Path(resume) if resume is not None else None
        self.overwrite = overwrite
        self.overrides = list(overrides)
        # With several processes (torchrun), each takes its share of the sample stream and
        # only rank 0 writes files and calls the run-event hooks.
        self.world = World.from_environment()
        self.rank, self.world_size = self.world.rank, self.world.size
        self.stop = StopRequest()
        self.best: dict[str, Any] | None = None
        self.saved: tuple[Path, int] | None = None  # the newest good checkpoint and its step
        self._check_settings()

    def _check_settings(self) -> None:
        problems = []
        for key in ("max_iters", "accumulate", "log_interval", "keep_checkpoints"):
            if self.train_cfg[key] < 1:
                problems.append(f"train.{key}: must be at least 1, got {self.train_cfg[key]}")
        for key in ("eval_interval", "checkpoint_interval"):
            if self.train_cfg[key] < 0:
                problems.append(f"train.{key}: must be 0 or more, got {self.train_cfg[key]}")
        if self.data_cfg["batch_size"] < 1:
            problems.append(f"data.batch_size: must be at least 1, got {self.data_cfg['batch_size']}")
        if self.data_cfg["workers"] < 0:
            problems.append(f"data.workers: must be 0 or more, got {self.data_cfg['workers']}")
        if problems:
            raise ConfigError(problems)

    # ---- set-up ------------------------------------------------------------------------------

    def setup(self) -> None:
        self.device = self.world.resolve_device(self.train_cfg["device"])
        self.world.start(self.device)
        hosts = self.world.all_gather(socket.gethostname())
        resumed = self.resume_path is not None
        # Whatever fails here on one process (a dataset missing on one machine, rank 0 finding
        # an earlier run) stops all of them with its message.
        with self.world.together("preparing the run"):
            self._build()
            if resumed:
                self._resume(self.resume_path)
            if self.world.is_main:
                self.rundir.start(self.start_step if resumed else None, self.overwrite)
                self.rundir.write_config(self.config, self.overrides)
                self.rundir.write_environment(self._environment(resumed, hosts))
        if resumed:
            self.world.agree_ints(
                [self.start_step, self.position], "the checkpoint to resume from (iteration, "
                "data position); is every machine reading the same file?"
            )
        self.train_model = self._distributed_model()
        seed = self.train_cfg["seed"]
        self.train_loader = self._train_loader(seed)
        self.val_loader = None
        if self.val_set is not None:
            self.val_loader = validation_loader(
                self.val_set, self.data_cfg["val_batch_size"], self.data_cfg["workers"],
                self._pin_memory(), self.data_cfg["persistent_workers"], seed,
                self.rank, self.world_size,
            )
        self.run = Run(
            config=self.config,
            work_dir=self.rundir.path,
            model=self.model,
            classes=self.classes,
            palette=self.palette,
            max_iters=self.max_iters,
            device=self.device,
            precision=self.precision.name,
            batch_size=self.data_cfg["batch_size"],
            accumulate=self.accumulate,
            start_step=self.start_step,
            step=self.start_step,
            rank=self.rank,
            world_size=self.world_size,
        )

    def _build(self) -> None:
        """Datasets, model, loss, optimizer, schedule, evaluator and loggers: this process's
        own work, no communication."""
        self.precision: Precision = resolve_precision(self.train_cfg["precision"], self.device)
        self.channels_last = self.train_cfg["channels_last"] and self.device.type != "mps"
        configure_backends(self.device, self.train_cfg["deterministic"])
        seed = self.train_cfg["seed"]
        seed_everything(seed)

        self.train_set = build_dataset(self.config, "train")
        self.val_set = build_dataset(self.config, "val") if self.data_cfg.get("val") else None
        self.classes = list(self.train_set.classes)
        palette = getattr(self.train_set, "palette", None)
        self.palette = list(palette or default_palette(len(self.classes)))
        self._check_classes()

        self.model = build_model(self.config).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.synced_norms = self._synchronize_batch_norms()
        if self.world.size > 1:
            # Same initial weights everywhere, then each process its own dropout masks.
            seed_everything(rank_seed(seed, self.rank))
        self.criterion = build_criterion(self.config).to(self.device)
        self.optimizer = build_optimizer(self.config, self.model)
        self.scheduler = build_lr_scheduler(self.config, self.optimizer)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.needs_grad_scaler)
        self.normalizer = InputNormalizer(
            self.data_cfg["mean"], self.data_cfg["std"], self.device, self.channels_last
        )
        eval_cfg = self.config["eval"]
        self.evaluator = Evaluator(
            InferenceSettings.from_config(eval_cfg), self.classes, self.normalizer, self.precision,
            panels=eval_cfg["panels"], world=self.world,
        )
        self.loggers = self._build_loggers()
        self.start_step, self.position = 0, 0

    def _environment(self, resumed: bool, hosts: list[str]) -> dict[str, Any]:
        per_process = self.data_cfg["batch_size"]
        return environment(
            device=str(self.device),
            device_name=device_name(self.device),
            precision=self.precision.name,
            precision_reason=self.precision.reason,
            channels_last=self.channels_last,
            world_size=self.world_size,
            backend=self.world.backend,
            hosts=sorted(set(hosts)),
            batch_size_per_process=per_process,
            accumulate=self.accumulate,
            global_batch_size=per_process * self.accumulate * self.world_size,
            batch_size_convention=(
                "data.batch_size is per process; one optimizer step takes batch_size x "
                "accumulate x world_size images"
            ),
            learning_rate=(
                "optimizer.lr is used as written, whatever the world size or global batch: "
                "segkit never rescales it"
            ),
            sync_bn=self.train_cfg["sync_bn"],
            synchronized_batch_norms=self.synced_norms,
            resumed_from=str(self.resume_path) if resumed else None,
            start_step=self.start_step,
        )

    def _synchronize_batch_norms(self) -> int:
        """With several processes, batch norm over the global batch where ``train.sync_bn``
        says (auto: the components built with ``norm: syncbn``); returns how many layers."""
        setting = self.train_cfg["sync_bn"]
        if self.world.size == 1 or setting is False:
            return 0
        scope = "all" if setting is True else "marked"
        count = synchronize_batch_norms(self.model, scope, self.device)
        norms = sum(isinstance(module, _BatchNorm) for module in self.model.modules())
        if norms > count and self.world.is_main:
            print(
                f"segkit: note: {norms - count} batch norm layer(s) normalise over each "
                "process's own images (built with norm: bn); norm: syncbn or "
                "train.sync_bn=true uses the global batch", file=sys.stderr,
            )
        return count

    def _distributed_model(self) -> torch.nn.Module:
        """The model the loop trains: wrapped in DistributedDataParallel with several
        processes (which averages the gradients), the model itself with one."""
        if self.world.size == 1:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(
            self.model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            gradient_as_bucket_view=True,
        )

    def _check_classes(self) -> None:
        num_classes = self.config["model"]["num_classes"]
        for split, dataset in (("train", self.train_set), ("val", self.val_set)):
            if dataset is not None and len(dataset.classes) != num_classes:
                raise ConfigError(
                    f"model.num_classes is {num_classes} but data.{split} has "
                    f"{len(dataset.classes)} classes"
                )
        if len(self.train_set) == 0:
            raise ConfigError("data.train: the training dataset is empty")

    def _pin_memory(self) -> bool:
        return pin_memory(self.data_cfg["pin_memory"], self.device)

    def _train_loader(self, seed: int) -> DataLoader:
        sampler = InfiniteSampler(
            len(self.train_set), seed=seed, start=self.position,
            rank=self.rank, world_size=self.world_size,
        )
        self.sampler = sampler
        return DataLoader(
            self.train_set,
            batch_size=self.data_cfg["batch_size"],
            sampler=sampler,
            num_workers=self.data_cfg["workers"],
            collate_fn=collate,
            worker_init_fn=leave_stop_signals_to_the_main_process,
            pin_memory=self._pin_memory(),
            # The base seed of the workers comes from this generator, not from the global RNG,
            # so that creating the loader does not shift the model's random stream.
            generator=torch.Generator().manual_seed(seed),
        )

    def _resume(self, path: Path) -> None:
        checkpoint = load_for_resume(path)
        load_into(self.model, checkpoint["model"], path)
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        except (ValueError, KeyError, RuntimeError) as error:
            raise CheckpointError(
                f"{path}: the optimizer or LR-scheduler state does not fit this config "
                f"(was optimizer, lr_mult or lr_scheduler changed?): {error}"
            ) from None
        if checkpoint["scaler"] and self.scaler.is_enabled():
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.start_step = int(checkpoint["step"])
        self.position = int(checkpoint["sampler"]["position"])
        self.best = checkpoint.get("best")
        self.saved = (path, self.start_step)
        self._restore_rng(checkpoint)
        if not self.world.is_main:
            return
        changed = config_changes(checkpoint.get("config") or {}, self.config)
        if changed:
            print(f"segkit: note: the config differs from the checkpoint's in {', '.join(changed)}",
                  file=sys.stderr)
        if checkpoint["sampler"].get("size") != len(self.train_set):
            print(
                f"segkit: warning: the training set has {len(self.train_set)} samples, the "
                f"checkpoint's had {checkpoint['sampler'].get('size')}: the data order differs "
                "from the interrupted run's",
                file=sys.stderr,
            )

    def _restore_rng(self, checkpoint: dict[str, Any]) -> None:
        """Every process continues its own random stream (``rng_per_rank``: one state per
        process). A checkpoint of another number of processes gives the streams of its rank 0
        to a single process, and fresh ones, seeded from the seed, rank and iteration, to
        several; the data stream continues at the same position either way."""
        states = checkpoint.get("rng_per_rank") or [checkpoint["rng"]]
        if len(states) == self.world.size:
            restore_rng(states[self.rank])
        elif self.world.size == 1:
            restore_rng(states[0])
        else:
            seed_everything(rank_seed(self.train_cfg["seed"], self.rank, self.start_step))
            if self.world.is_main:
                print(
                    f"segkit: note: the checkpoint was written by {len(states)} process(es), this "
                    f"run has {self.world.size}: the data continue where they were, the model's "
                    "random numbers (dropout) are drawn afresh",
                    file=sys.stderr,
                )

    # ---- the loop ----------------------------------------------------------------------------

    def fit(self) -> int:
        # The signal handlers stay until the end, so that a SIGTERM from torchrun, which stops
        # every process as soon as one fails, cannot cut short the message of a process that
        # noticed the failure.
        with self.stop.installed():
            healthy = True
            try:
                return self._fit()
            except Exception as error:
                if self.world.lost_contact(error):
                    healthy = False
                    raise self._lost_contact(error) from error
                raise
            finally:
                self.train_model = None  # DDP holds the process group
                if healthy:  # tearing down a broken group may block; the process ends anyway
                    self.world.close()

    def _fit(self) -> int:
        self.phase = "while preparing the run"
        self.setup()
        if self.start_step >= self.max_iters:
            if self.world.is_main:
                print(
                    f"segkit: {self.rundir.path} finished already ({self.start_step} of "
                    f"{self.max_iters} iterations); raise train.max_iters to train longer"
                )
            return 0
        self._announce()
        data = iter(self.train_loader)  # workers start before any logger thread does
        manager = get_plugins().manager
        hook = manager.hook if self.world.is_main else _NO_HOOKS
        self.watch = NonFiniteWatch(self.device, self.start_step)
        self.window = LogWindow(self.device)
        self.model.train()
        status = 0
        registered = []
        try:
            for logger in self.loggers if self.world.is_main else ():
                manager.register(logger)
                registered.append(logger)
            hook.segkit_on_train_start(run=self.run)
            status = self._loop(data, hook)
        finally:
            try:
                hook.segkit_on_train_end(run=self.run)
            finally:
                for logger in registered:
                    manager.unregister(logger)
        return status

    def _loop(self, data: Iterator[dict], hook) -> int:
        eval_interval = self.train_cfg["eval_interval"]
        checkpoint_interval = self.train_cfg["checkpoint_interval"]
        log_interval = self.train_cfg["log_interval"]
        vote = StopVote(self.world)
        step = self.start_step
        while step < self.max_iters:
            self.phase = f"in iteration {step + 1}"
            self._train_step(step, data)
            step += 1
            self.run.step = step
            finished = step == self.max_iters
            logs = self._logs(step) if step % log_interval == 0 or finished else {}
            hook.segkit_on_train_iter_end(run=self.run, step=step, logs=logs)
            stop = vote(self.stop.signal)
            # a stopping run saves at once: its data workers may have ended with the signal
            validate = self.val_loader is not None and stop is None and (
                finished or (eval_interval > 0 and step % eval_interval == 0)
            )
            numbered = checkpoint_interval > 0 and step % checkpoint_interval == 0
            if validate or numbered or finished or stop is not None:
                self._check_finite(step)
            if validate:
                self._validate(step, hook)
            if validate or numbered or finished or stop is not None:
                self._save(step, numbered, hook)
                self.window.restart_clock()  # validation and saving are not training speed
            if stop is not None and not finished:
                vote.settle()
                if self.world.is_main:
                    print(
                        f"segkit: stopped by {signal.Signals(stop).name} after iteration {step}; "
                        f"saved {self.rundir.checkpoints.last}. Resume with: segkit train "
                        f"{shlex.join([self.config_path or 'CONFIG', *self.overrides])} "
                        f"--resume --work-dir {self.rundir.path}"
                        + (", started as this run was (torchrun or --nproc)"
                           if self.world.size > 1 else ""),
                        file=sys.stderr,
                    )
                return 128 + stop
        vote.settle()
        return 0

    def _train_step(self, step: int, data: Iterator[dict]) -> None:
        for micro_batch in range(self.accumulate):
            batch = next(data)
            images = self.normalizer(batch["image"])
            target = batch["mask"].to(self.device, non_blocking=True)
            with self._gradient_sync(micro_batch == self.accumulate - 1):
                with self.precision.autocast():
                    outputs = self.train_model(images)
                loss, terms = self.criterion(outputs, target, step)
                scaled = loss / self.accumulate if self.accumulate > 1 else loss
                self.scaler.scale(scaled).backward()
            self.window.add(loss.detach(), terms, len(images))
            self.watch.observe(loss.detach())
        if self.train_cfg["grad_clip"] is not None:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), self.train_cfg["grad_clip"]
            )
            self.window.add_value("grad_norm", norm.detach())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.watch.step_done()

    def _gradient_sync(self, last_micro_batch: bool):
        """DDP averages the gradients in the backward pass of an optimizer step's last batch
        only; the batches accumulated before it keep theirs local."""
        if self.world.size > 1 and not last_micro_batch:
            return self.train_model.no_sync()
        return nullcontext()

    def _logs(self, step: int) -> dict[str, float]:
        """Read the window's sums (the one host sync of a logging step) and write the line."""
        self._check_finite(step, weights=False)
        logs = self.window.read(self.world)
        logs.update(self._learning_rates())
        peak = torch.tensor([peak_memory_gb(self.device)], dtype=torch.float64)
        logs["peak_mem_gb"] = float(self.world.max_(peak))
        if self.world.is_main:
            self.rundir.log_metrics({"split": "train", "step": step, **logs})
        return logs

    def _learning_rates(self) -> dict[str, float]:
        """``lr``: the schedule's rate (for groups without a multiplier); ``lr_<name>`` for
        groups with one."""
        rates: dict[str, float] = {}
        for group in self.optimizer.param_groups:
            multiplier = group.get("lr_mult", 1.0)
            if multiplier == 1.0:
                rates.setdefault("lr", group["lr"])
            else:
                rates.setdefault(f"lr_{group.get('name', 'group')}", group["lr"])
                rates.setdefault("lr", group["lr"] / multiplier)
        return rates

    def _check_finite(self, step: int, weights: bool = True) -> None:
        """The losses since the last check, and before anything is saved the weights too, which
        an update can ruin while the loss that led to it was still finite."""
        bad = self.watch.first_bad_step(self.world)
        if bad is not None:
            what = f"the loss became non-finite (NaN or infinite) at iteration {bad}"
        elif weights and not self._weights_finite():
            what = (f"the weights became non-finite (NaN or infinite) by iteration {step}, "
                    "although the losses were finite: an update diverged")
        else:
            return
        remedies = "a lower optimizer.lr or train.grad_clip"
        if self.precision.name != "fp32":
            remedies += ", or train.precision=fp32"
        raise TrainingDiverged(
            f"{what}; training stopped without saving the broken state; {self._kept()}. "
            f"Try {remedies}."
        )

    def _weights_finite(self) -> bool:
        tensors = [
            t.detach() for t in (*self.model.parameters(), *self.model.buffers())
            if t.is_floating_point()
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
            f"process {self.rank} of {self.world_size} lost contact with the others "
            f"{self.phase}: another process died, was stopped or cannot be reached (torchrun's "
            f"report names the one that failed first); {self._kept()}. "
            f"[{type(error).__name__}: {lines[0][:300] if lines else ''}]"
        )

    # ---- validation and checkpoints ------------------------------------------------------------

    def _validate(self, step: int, hook) -> None:
        """Every process evaluates its share; all get the same metrics, rank 0 records them."""
        self.phase = f"in the validation after iteration {step}"
        # Unsynchronised batch norms keep per-process running statistics; every process
        # evaluates with rank 0's, the model that is saved, so the metric is that model's.
        for buffer in self.model.buffers():
            self.world.broadcast_(buffer)
        metrics = self.evaluator.evaluate(self.model, self.val_loader)
        samples = metrics.pop("samples")
        miou = metrics["mIoU"]
        improved = miou is not None and (self.best is None or miou > self.best["mIoU"])
        if improved:
            self.best = {"mIoU": miou, "step": step}
        with self.world.together("recording the validation"):
            if not self.world.is_main:
                return
            self.rundir.log_metrics({"split": "val", "step": step, **metrics})
            self.rundir.write_panels(samples, self.palette)
            hook.segkit_on_eval_end(
                run=self.run, step=step, metrics={**metrics, "samples": samples}
            )
            print(f"validation at iteration {step}:\n{format_metrics(metrics)}", flush=True)
            if improved:
                best = {
                    **self._model_state(step),
                    "metric": {"name": "mIoU", "value": miou},
                    "metrics": metrics,
                }
                path = self.rundir.checkpoints.save_best(best)
                hook.segkit_on_checkpoint(run=self.run, path=path)

    def _model_state(self, step: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "step": step,
            "config": self.config,
            "classes": self.classes,
            "palette": [list(colour) for colour in self.palette],
        }

    def _save(self, step: int, numbered: bool, hook) -> None:
        """Rank 0 writes the checkpoint, with every process's random-number state."""
        self.phase = f"while saving the checkpoint of iteration {step}"
        rng = self.world.gather(capture_rng())
        with self.world.together("writing the checkpoint"):
            if self.world.is_main:
                state = {
                    **self._model_state(step),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "rng": rng[0],
                    "sampler": self.sampler.state_dict(
                        self.position + (step - self.start_step) * self.run.images_per_step
                    ),
                    "best": self.best,
                }
                if self.world.size > 1:
                    state["rng_per_rank"] = rng
                if numbered:
                    path = self.rundir.checkpoints.save_numbered(state)
                    hook.segkit_on_checkpoint(run=self.run, path=path)
                path = self.rundir.checkpoints.save_last(state)
                hook.segkit_on_checkpoint(run=self.run, path=path)
        self.saved = (self.rundir.checkpoints.last, step)

    # ---- loggers and messages ------------------------------------------------------------------

    def _build_loggers(self) -> list[object]:
        """The objects of ``logging.loggers``; the trainer registers them for this run only."""
        loggers = []
        for number, spec in enumerate(self.config["logging"]["loggers"]):
            with explaining(f"logging.loggers.{number}"):
                loggers.append(registry().build("logger", spec))
        return loggers

    def _announce(self) -> None:
        if not self.world.is_main:
            return
        state = f"resuming at iteration {self.start_step}" if self.start_step else "starting"
        processes = ""
        if self.world.size > 1:
            processes = (
                f"\nsegkit: {self.world.size} processes ({self.world.backend}), global batch "
                f"{self.run.images_per_step}, {self.synced_norms} batch norm layer(s) synchronised"
            )
        print(
            f"segkit: training {self.rundir.path} ({state}; {self.max_iters} iterations, "
            f"batch {self.data_cfg['batch_size']} per process"
            + (f" x {self.accumulate} accumulated" if self.accumulate > 1 else "")
            + f")\nsegkit: device {self.device} ({device_name(self.device)}), precision "
            f"{self.precision.describe()}" + (", channels-last" if self.channels_last else "")
            + processes,
            flush=True,
        )


class _NoHooks:
    """What processes other than rank 0 call instead of the run-event hooks: nothing."""

    def __getattr__(self, name: str):
        return lambda **kwargs: None


_NO_HOOKS = _NoHooks()


def pin_memory(setting: bool | None, device: torch.device) -> bool:
    """``data.pin_memory``: pinned host memory speeds copies to a CUDA device and nothing else."""
    return device.type == "cuda" if setting is None else bool(setting)


def config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, leaving out where the run lives and how it is watched."""
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
