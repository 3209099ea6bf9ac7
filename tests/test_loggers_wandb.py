"""The wandb logger, offline in the run dir: a short real training, its run file read back
(config, every value with its step, the summary), and a process that ends in bounded time."""

from __future__ import annotations

import json
import os

import pytest
import torch
import wandb_records
from logger_runs import train_quickstart

pytest.importorskip("wandb")


@pytest.mark.slow
def test_quickstart_trains_with_an_offline_wandb_run_in_the_run_dir(tmp_path):
    run = tmp_path / "run"
    # no key, no network settings: an offline run must not ask for either
    env = {k: "" for k in os.environ if k.startswith("WANDB_")} | {"HOME": str(tmp_path)}
    result = train_quickstart(run, "[{type: wandb}]", env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "warning: plugin 'wandb'" not in result.stderr
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 4

    offline = sorted((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, offline
    run_id = json.loads((run / "wandb_run.json").read_text())["run_id"]
    assert offline[0].name.endswith(run_id)
    assert f"wandb sync {offline[0]}" in result.stdout
    (records,) = offline[0].glob(f"run-{run_id}.wandb")

    config = wandb_records.config(records)
    assert config["train"]["max_iters"] == 4 and config["model"]["backbone"]["type"] == "resnet18"
    history = wandb_records.history(records)
    assert sorted(history["train/loss"]) == [2, 4]
    assert sorted(history["val/mIoU"]) == [4] and 4 in history["val/IoU/road"]
    summary = wandb_records.summary(records)
    assert summary["best/step"] == 4 and summary["best/mIoU"] == history["val/mIoU"][4]
    assert summary["step"] == 4
