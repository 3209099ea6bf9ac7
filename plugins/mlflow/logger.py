"""Log a run to MLflow through ``MlflowClient`` (no global active run, so nothing else in the
process is touched): the flattened resolved config as params, every logged value as a metric
with its step, and at the end a ``summary.json``, the run's ``config.yaml`` and any
``eval_*.json`` reports as artifacts (``best.pt`` too with ``log_checkpoints: true``; off by
default, since a checkpoint is large).

Without a ``tracking_uri`` the store is local to the run and needs no server:
``sqlite:///<work_dir>/mlflow/mlflow.db`` with artifacts in ``<work_dir>/mlflow/artifacts``
(MLflow 3 refuses a plain ``mlruns`` folder unless told otherwise). The MLflow run's id is kept in
``<work_dir>/mlflow_run.json``, so that ``--resume`` continues the same MLflow run.

A store that fails (unwritable, deleted, a server down) raises from the hook that meets it; the
trainer reports it in one warning and trains on without this logger."""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
from pathlib import Path
from typing import Any

import segkit
from segkit.config import flatten_config
from segkit.engine.run import validation_scalars
from segkit.errors import SegkitError
from segkit.files import atomic_write_text

RUN_FILE = "mlflow_run.json"
BATCH = 100  # MLflow takes at most 100 params and 1000 metrics per log_batch call
MAX_PARAM_LENGTH = 6000
ARTIFACTS = ("config.yaml", "env.json")


class MlflowLogger:
    """Log params, metrics and artifacts to MLflow (a local store in the run dir by default)."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str = "segkit",
        run_name: str | None = None,
        log_checkpoints: bool = False,
    ):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise SegkitError(
                "logger 'mlflow' needs MLflow, which is not installed: pip install 'segkit[mlflow]'"
            ) from None
        self._client_type = MlflowClient
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.log_checkpoints = log_checkpoints
        self.client = None
        self.run_id: str | None = None
        self.best: dict[str, Any] | None = None
        self.last_val: dict[str, float] = {}
        self.outputs: list[tuple[Path, str]] = []  # read by the run's summary
        self.watch: str | None = None

    @segkit.hookimpl
    def segkit_on_train_start(self, run):
        work_dir = Path(run.work_dir)
        store = work_dir / "mlflow"
        uri = self.tracking_uri or f"sqlite:///{store / 'mlflow.db'}"
        if not self.tracking_uri:
            store.mkdir(parents=True, exist_ok=True)
        _quiet_store_setup()
        self.client = self._client_type(tracking_uri=uri)
        self.run_id = self._resumed_run(work_dir, uri) if run.start_step else None
        if self.run_id is None:
            self.run_id = self._new_run(run, None if self.tracking_uri else store / "artifacts")
            atomic_write_text(
                work_dir / RUN_FILE,
                json.dumps({"tracking_uri": uri, "run_id": self.run_id}, indent=2) + "\n",
            )
        else:
            self.client.update_run(self.run_id, status="RUNNING")
        self._log_params(run.config)
        self.outputs = [(work_dir / RUN_FILE, "the MLflow run's id, continued by --resume")]
        if not self.tracking_uri:
            self.outputs.append((store, "the MLflow tracking store (params, metrics, artifacts)"))
            self.watch = f"mlflow ui --backend-store-uri {shlex.quote(uri)}"

    @segkit.hookimpl
    def segkit_on_train_iter_end(self, run, step, logs):
        if logs and self.run_id is not None:
            self._log_metrics({f"train/{name}": value for name, value in logs.items()}, step)

    @segkit.hookimpl
    def segkit_on_eval_end(self, run, step, metrics):
        if self.run_id is None:
            return
        values = validation_scalars(metrics, "val/")
        self._log_metrics(values, step)
        self.last_val = {"step": step, **values}
        if metrics.get("mIoU") is not None and (
            self.best is None or metrics["mIoU"] > self.best["mIoU"]
        ):
            self.best = {"mIoU": metrics["mIoU"], "step": step}

    @segkit.hookimpl
    def segkit_on_train_end(self, run):
        if self.run_id is None:
            return
        work_dir = Path(run.work_dir)
        summary = {
            "step": run.step,
            "max_iters": run.max_iters,
            "finished": run.step >= run.max_iters,
            "best": self.best,
            "last_validation": self.last_val or None,
        }
        self.client.log_dict(self.run_id, summary, "summary.json")
        for name in ARTIFACTS:
            if (work_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(work_dir / name))
        for report in sorted(work_dir.glob("eval_*.json")):
            self.client.log_artifact(self.run_id, str(report), "eval")
        best = work_dir / "checkpoints" / "best.pt"
        if self.log_checkpoints and best.is_file():
            self.client.log_artifact(self.run_id, str(best), "checkpoints")
        status = "FINISHED" if summary["finished"] else "KILLED"
        self.client.set_terminated(self.run_id, status=status)
        self.run_id = None

    def _resumed_run(self, work_dir: Path, uri: str) -> str | None:
        """The MLflow run this run started, when it is in the same store and still there."""
        try:
            recorded = json.loads((work_dir / RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(recorded, dict) or recorded.get("tracking_uri") != uri:
            return None
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(recorded["run_id"]).info.run_id
        except (MlflowException, KeyError):
            return None

    def _new_run(self, run, artifacts: Path | None) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            location = artifacts.as_uri() if artifacts is not None else None
            experiment_id = self.client.create_experiment(self.experiment, location)
        name = self.run_name or Path(run.work_dir).name
        created = self.client.create_run(experiment_id, run_name=name)
        return created.info.run_id

    def _log_params(self, config: dict[str, Any]) -> None:
        """The flattened config. A resumed run logs only the keys its MLflow run lacks: MLflow
        refuses to change a param, and the first value is the one the run started with."""
        from mlflow.entities import Param

        known = self.client.get_run(self.run_id).data.params
        params = [
            Param(key, _param_text(value))
            for key, value in flatten_config(config).items()
            if key not in known
        ]
        for start in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[start : start + BATCH])

    def _log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(_metric_key(k), float(v), stamp, step) for k, v in values.items()]
        for start in range(0, len(metrics), BATCH * 10):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + BATCH * 10])


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM_LENGTH]


def _metric_key(name: str) -> str:
    """MLflow allows letters, digits, ``_ - . / :`` and spaces in a metric name; a class name
    may hold anything else."""
    return re.sub(r"[^\w\-./: ]", "_", name)


def _quiet_store_setup() -> None:
    """MLflow logs at INFO level while it creates or upgrades a database store; that is noise
    in a training log."""
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
