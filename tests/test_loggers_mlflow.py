"""The mlflow logger, read back with MLflow's own client after short real trainings: params,
metrics with their steps, the summary and artifacts, and --resume continuing the same run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from logger_runs import train_quickstart

pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402

# MLflow 3.17's own use of SQLAlchemy, not this logger's
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


@pytest.mark.slow
def test_a_run_and_its_resume_land_in_one_mlflow_run_with_params_metrics_and_artifacts(tmp_path):
    run = tmp_path / "run"
    first = train_quickstart(run, "[{type: mlflow}]", iterations=2)
    assert first.returncode == 0, first.stderr
    uri = f"sqlite:///{run / 'mlflow' / 'mlflow.db'}"
    assert f"watch it: mlflow ui --backend-store-uri {uri}" in first.stdout
    resumed = train_quickstart(run, "[{type: mlflow}]", "--resume", "--allow-changes", iterations=4)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr and "warning: plugin 'mlflow'" not in resumed.stderr

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("segkit")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "the resume started a second MLflow run"
    found = runs[0]
    assert json.loads((run / "mlflow_run.json").read_text())["run_id"] == found.info.run_id
    assert found.info.status == "FINISHED" and found.info.run_name == "run"
    params = found.data.params
    assert params["model.backbone.type"] == "resnet18"
    assert params["data.train.transforms.0.type"] == "random_flip"
    assert params["train.max_iters"] == "2"  # the value the run started with is kept
    history = client.get_metric_history(found.info.run_id, "train/loss")
    assert [m.step for m in history] == [2, 4]
    assert [m.step for m in client.get_metric_history(found.info.run_id, "val/mIoU")] == [2, 4]
    assert client.get_metric_history(found.info.run_id, "val/IoU/road")

    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"summary.json", "config.yaml", "env.json"} <= artifacts
    assert "checkpoints" not in artifacts  # log_checkpoints is off by default
    local = client.download_artifacts(found.info.run_id, "summary.json", str(tmp_path))
    summary = json.loads(Path(local).read_text(encoding="utf-8"))
    assert summary["step"] == 4 and summary["finished"] is True
    assert summary["best"]["step"] in (2, 4) and 0 <= summary["best"]["mIoU"] <= 1
    assert (run / "mlflow" / "artifacts").is_dir()  # not ./mlruns in the working directory
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 4


@pytest.mark.slow  # MLflow's import and a new store's tables take over 5 s here
def test_a_run_stopped_early_is_killed_and_its_resume_finishes_the_same_mlflow_run(tmp_path):
    import segkit
    from segkit.engine.run import Run

    def run_at(start_step: int, step: int) -> Run:
        return Run(
            config={"train": {"max_iters": 4}, "model": {"head": {"type": "uper"}}},
            work_dir=tmp_path,
            model=torch.nn.Identity(),
            classes=["road"],
            palette=[(0, 0, 0)],
            max_iters=4,
            device=torch.device("cpu"),
            precision="fp32",
            batch_size=2,
            start_step=start_step,
            step=step,
        )

    spec = {"type": "mlflow", "experiment": "short", "run_name": "probe"}
    first = segkit.build("logger", spec)
    stopped = run_at(0, 2)
    first.segkit_on_train_start(run=stopped)
    first.segkit_on_eval_end(run=stopped, step=2, metrics={"mIoU": 0.25, "IoU": {"a b?": 0.5}})
    first.segkit_on_train_end(run=stopped)  # interrupted at step 2 of 4
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    run_id = json.loads((tmp_path / "mlflow_run.json").read_text())["run_id"]
    assert client.get_run(run_id).info.status == "KILLED"
    assert client.get_metric_history(run_id, "val/IoU/a b_")[0].value == 0.5

    again = segkit.build("logger", spec)
    resumed = run_at(2, 4)
    again.segkit_on_train_start(run=resumed)
    again.segkit_on_train_iter_end(run=resumed, step=3, logs={"loss": 0.5})
    again.segkit_on_train_end(run=resumed)
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED" and finished.info.run_name == "probe"
    assert finished.data.params == {"train.max_iters": "4", "model.head.type": "uper"}
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [3]
    assert len(client.search_runs([client.get_experiment_by_name("short").experiment_id])) == 1
