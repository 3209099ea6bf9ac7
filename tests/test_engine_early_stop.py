"""train.early_stop: a real short training whose metric is made to stall ends early, says why,
leaves coherent checkpoints and is not trained on by a resume."""

from __future__ import annotations

import json

import pytest
import torch
from engine_toys import write_toy_config as write

from segkit.cli import main
from segkit.engine.early_stop import EarlyStop

# min_delta 1: no mIoU (a fraction) can beat the first one by more, so every validation after
# the first is stale whatever the model learns
STALLING = """
train:
  max_iters: 12
  eval_interval: 2
  log_interval: 2
  precision: fp32
  device: cpu
  early_stop: {patience: 2, min_delta: 1.0}
"""


def val_steps(run):
    lines = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [line["step"] for line in lines if line["split"] == "val"]


def test_a_stalled_run_ends_after_patience_validations_and_says_why(toys, tmp_path, capsys):
    config = write(tmp_path, train=STALLING)
    run = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(run)]) == 0
    out = capsys.readouterr().out
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[1])
    why = (
        "early stop: mIoU has not improved by more than 1 for 2 validations since "
        f"{first['mIoU']:.4g} at iteration 2"
    )
    assert f"segkit: {why}; the run ends at iteration 6" in out
    summary = out[out.index("; the run ends at iteration 6") :]
    assert f"segkit: {why}\nsegkit: final validation mIoU" in summary
    assert val_steps(run) == [2, 4, 6]
    last = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert last["step"] == 6 and last["early_stop"]["stopped"] == why
    assert last["early_stop"]["stale"] == 2 and last["early_stop"]["best_step"] == 2
    assert (run / "checkpoints/best.pt").is_file()

    # resumed, the run says it finished; with a larger patience it trains on
    assert main(["train", str(config), "--work-dir", str(run), "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"finished already at iteration 6 ({why})" in out
    assert "train.early_stop.patience" in out
    assert torch.load(run / "checkpoints/last.pt", weights_only=True)["step"] == 6
    longer = ["train.early_stop.patience=4", "--resume", "--allow-changes"]
    assert main(["train", str(config), *longer, "--work-dir", str(run)]) == 0
    # the count goes on from the checkpoint's 2 stale validations: two more at 8 and 10
    assert val_steps(run) == [2, 4, 6, 8, 10]
    assert "has not improved by more than 1 for 4 validations" in capsys.readouterr().out


def test_early_stopping_settings_are_checked_with_the_key(toys, tmp_path, capsys):
    config = write(tmp_path, train="train: {early_stop: {patience: 0, metric: miou}}\n")
    assert main(["config", str(config), "--check"]) == 2
    err = capsys.readouterr().err
    assert "train.early_stop.patience: expected int at least 1 or null, got int 0" in err
    assert "train.early_stop.metric: expected 'mIoU' or 'mAcc'" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "mode, min_delta, values, stops_after",
    [
        ("max", 0.0, [0.5, 0.6, 0.6, 0.59], 4),  # equal is no improvement
        ("max", 0.05, [0.5, 0.54, 0.56, 0.7, 0.7, 0.7], 6),  # 0.54 is within 0.05, 0.56 not
        ("min", 0.0, [0.5, 0.4, 0.45, 0.41], 4),
        ("max", 0.0, [None, None, 0.3], 2),  # a metric never computed counts as stale
    ],
)
def test_improvement_follows_mode_and_min_delta(mode, min_delta, values, stops_after):
    watch = EarlyStop("mIoU", patience=2, min_delta=min_delta, mode=mode)
    stopped = [watch.observe({"mIoU": v}, step) for step, v in enumerate(values, 1)]
    assert (stopped.index(True) + 1 if True in stopped else None) == stops_after
