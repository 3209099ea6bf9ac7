"""Log a run to Weights & Biases: the resolved config, every logged value with its step, and
the best and last validation in the run's summary.

Offline by default: the run is written under ``<work_dir>/wandb`` and nothing touches the
network or asks for a login; ``wandb sync <work_dir>/wandb/offline-run-*`` uploads it later.
``mode: online`` logs live (after ``wandb login``). The run's id is kept in
``<work_dir>/wandb_run.json`` so that ``--resume`` continues the same W&B run.

wandb runs a service process (``wandb-core``) beside training; ``finish`` at the end of the run
(also when it fails or is interrupted) waits for it to write everything, at most
``finish_timeout`` seconds. An error from wandb raises from the hook that meets it; the trainer
reports it in one warning and trains on without this logger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import segkit
from segkit.constraints import AtLeast
from segkit.engine.run import validation_scalars
from segkit.errors import SegkitError
from segkit.files import atomic_write_text

RUN_FILE = "wandb_run.json"


class WandbLogger:
    """Log the config, metrics and summary to Weights & Biases (offline in the run dir by default)."""

    def __init__(
        self,
        project: str = "segkit",
        name: str | None = None,
        mode: Literal["offline", "online", "disabled"] = "offline",
        dir: str | None = None,
        finish_timeout: Annotated[float, AtLeast(1)] = 60,
    ):
        try:
            import wandb
        except ImportError:
            raise SegkitError(
                "logger 'wandb' needs wandb, which is not installed: pip install 'segkit[wandb]'"
            ) from None
        self._wandb = wandb
        self.project = project
        self.name = name
        self.mode = mode
        self.dir = dir
        self.finish_timeout = finish_timeout
        self.run = None
        self.best: dict[str, float] | None = None
        self.outputs: list[tuple[Path, str]] = []  # read by the run's summary

    @segkit.hookimpl
    def segkit_on_train_start(self, run):
        work_dir = Path(run.work_dir)
        folder = Path(self.dir) if self.dir else work_dir
        folder.mkdir(parents=True, exist_ok=True)
        run_id = _recorded_id(work_dir) if run.start_step else None
        settings = self._wandb.Settings(
            mode=self.mode,
            silent=True,
            console="off",
            disable_git=True,
            save_code=False,
            x_disable_stats=True,
            x_disable_machine_info=True,
            finish_timeout=self.finish_timeout,
        )
        self.run = self._wandb.init(
            project=self.project,
            name=self.name or work_dir.name,
            dir=str(folder),
            config=run.config,
            id=run_id,
            resume="allow" if run_id else None,
            settings=settings,
        )
        atomic_write_text(work_dir / RUN_FILE, json.dumps({"run_id": self.run.id}) + "\n")
        self.outputs = [(work_dir / RUN_FILE, "the W&B run's id, continued by --resume")]
        if self.mode == "offline":
            offline = Path(self.run.dir).parent
            self.outputs.append((offline, f"the offline W&B run; upload: wandb sync {offline}"))

    @segkit.hookimpl
    def segkit_on_train_iter_end(self, run, step, logs):
        if logs and self.run is not None:
            self.run.log({f"train/{name}": value for name, value in logs.items()}, step=step)

    @segkit.hookimpl
    def segkit_on_eval_end(self, run, step, metrics):
        if self.run is None:
            return
        self.run.log(validation_scalars(metrics, "val/"), step=step)
        miou = metrics.get("mIoU")
        if miou is not None and (self.best is None or miou > self.best["mIoU"]):
            self.best = {"mIoU": miou, "step": step}
            self.run.summary["best/mIoU"] = miou
            self.run.summary["best/step"] = step

    @segkit.hookimpl
    def segkit_on_train_end(self, run):
        if self.run is None:
            return
        active, self.run = self.run, None
        active.summary["step"] = run.step
        active.finish(exit_code=0 if run.step >= run.max_iters else 1)


def _recorded_id(work_dir: Path) -> str | None:
    try:
        recorded: Any = json.loads((work_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded.get("run_id") if isinstance(recorded, dict) else None
