"""train.ema: the weight average follows its formula, is what validation, best.pt, eval and
segkit.load use, and a resumed run continues both the weights and their average exactly."""

from __future__ import annotations

import json

import pytest
import torch
from engine_toys import write_toy_config as write
from test_engine_train import RESUME_MODEL, RESUME_TRAIN, assert_same_tensors, resume_data
from torch import nn

import segkit
from segkit.cli import main
from segkit.engine.ema import WeightAverage


def load(path):
    return torch.load(path, weights_only=True)


def val_lines(run):
    lines = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [line for line in lines if line["split"] == "val"]


def test_the_average_follows_the_warmup_ramp_and_copies_the_buffers():
    model = nn.BatchNorm1d(1)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.running_mean.fill_(3.0)
    average.update(model)
    # first update: decay min(0.5, 1/10) = 0.1 -> 0.1 * 0 + 0.9 * 1
    assert average.module.weight.item() == pytest.approx(0.9)
    assert average.module.running_mean.item() == 3.0  # copied, not averaged
    with torch.no_grad():
        model.weight.fill_(2.0)
    average.update(model)
    # second: min(0.5, 2/11) = 2/11 -> 2/11 * 0.9 + 9/11 * 2
    assert average.module.weight.item() == pytest.approx(2 / 11 * 0.9 + 9 / 11 * 2)
    average.update(model)
    average.update(model)  # (1 + 3) / 13 < 0.5 still; then 5/14 ... until 0.5 caps it
    assert [average.decay_at(t) for t in (0, 8, 9, 100)] == [0.1, 0.5, 0.5, 0.5]
    assert average.updates == 4 and not average.module.weight.requires_grad


def test_without_warmup_the_decay_is_constant():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, decay=0.75, warmup=False)
    with torch.no_grad():
        model.weight.fill_(4.0)
    average.update(model)
    assert average.module.weight.item() == pytest.approx(0.25 * 4.0)


EMA = "  ema: {decay: 0.9}\n"


def test_a_resumed_run_continues_the_weights_and_their_average_exactly(toys, tmp_path, capsys):
    data = resume_data(0)
    straight = write(
        tmp_path, "straight.yaml", model=RESUME_MODEL, train=RESUME_TRAIN + EMA, data=data
    )
    assert main(["train", str(straight), "--work-dir", str(tmp_path / "straight")]) == 0
    stopped = write(
        tmp_path,
        "stopped.yaml",
        model=RESUME_MODEL,
        train=RESUME_TRAIN + EMA,
        data=data,
        logging="logging: {loggers: [{type: toy_signal_at, step: 5}]}\n",
    )
    run = tmp_path / "stopped"
    assert main(["train", str(stopped), "--work-dir", str(run)]) == 143
    assert load(run / "checkpoints/last.pt")["ema"]["updates"] == 5
    assert main(["train", str(stopped), "--work-dir", str(run), "--resume"]) == 0
    a, b = load(tmp_path / "straight/checkpoints/last.pt"), load(run / "checkpoints/last.pt")
    assert b["step"] == 12 and b["ema"] == {"decay": 0.9, "warmup": True, "updates": 12}
    for key in ("model", "raw_model", "optimizer", "scheduler", "sampler", "ema"):
        assert_same_tensors(a[key], b[key], key)
    assert val_lines(run) == val_lines(tmp_path / "straight")
    # the average is not the trained weights
    assert not torch.equal(
        b["model"]["head.classifier.weight"], b["raw_model"]["head.classifier.weight"]
    )


def test_eval_and_load_use_the_average_that_validation_scored(toys, tmp_path, capsys):
    config = write(
        tmp_path,
        train="train: {max_iters: 12, eval_interval: 4, log_interval: 4, precision: fp32, "
        "device: cpu, ema: {decay: 0.8}}\n",
    )
    run = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(run)]) == 0
    best = load(run / "checkpoints/best.pt")
    recorded = max(val_lines(run), key=lambda line: line["mIoU"])
    assert best["step"] == recorded["step"] and best["ema"]["updates"] == recorded["step"]
    out = tmp_path / "eval.json"
    checkpoint = str(run / "checkpoints/best.pt")
    assert main(["eval", str(config), "--checkpoint", checkpoint, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mIoU"] == pytest.approx(recorded["mIoU"], abs=1e-9)
    assert report["IoU"] == pytest.approx(recorded["IoU"], abs=1e-9)

    last = load(run / "checkpoints/last.pt")
    loaded = segkit.load(run / "checkpoints/last.pt", device="cpu").trained.model.state_dict()
    assert_same_tensors({k: loaded[k] for k in last["model"]}, last["model"], "model")
    trained = last["raw_model"]["head.classifier.weight"]
    assert not torch.equal(loaded["head.classifier.weight"], trained)


def test_ema_settings_are_checked_with_the_key(toys, tmp_path, capsys):
    config = write(tmp_path, train="train: {ema: {decay: 1.0, warmup: maybe}}\n")
    assert main(["config", str(config), "--check"]) == 2
    err = capsys.readouterr().err
    assert "train.ema.decay: expected float above 0, below 1 or null, got float 1.0" in err
    assert "train.ema.warmup: expected bool" in err and "Traceback" not in err


@pytest.mark.slow
def test_the_quickstart_trains_with_ema_and_early_stopping(tmp_path, capsys):
    from pathlib import Path

    quickstart = Path(__file__).resolve().parents[1] / "configs/quickstart.yaml"
    run = tmp_path / "run"
    small = [
        "train.max_iters=6",
        "train.eval_interval=2",
        "train.device=cpu",
        "train.ema.decay=0.999",
        "train.early_stop.patience=1",
        "train.early_stop.min_delta=1.0",  # nothing beats the first validation by that much
        "data.train.size=[64, 64]",
        "data.val.size=[64, 64]",
        "data.val.length=2",
        "data.batch_size=2",
        "data.workers=0",
        "logging.loggers=[]",
    ]
    assert main(["train", str(quickstart), *small, "--work-dir", str(run)]) == 0
    assert "early stop: mIoU has not improved by more than 1 for 1 validation" in (
        capsys.readouterr().out
    )
    last = load(run / "checkpoints/last.pt")
    assert last["step"] == 4 and last["ema"]["updates"] == 4
    assert [line["step"] for line in val_lines(run)] == [2, 4]


def test_a_checkpoint_from_before_these_keys_resumes_and_switching_ema_on_is_a_change(
    toys, tmp_path, capsys
):
    config = write(tmp_path, train="train: {max_iters: 4, eval_interval: 0, device: cpu}\n")
    run = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(run)]) == 0
    path = run / "checkpoints/last.pt"
    older = load(path)
    del older["config"]["train"]["ema"], older["config"]["train"]["early_stop"]
    torch.save(older, path)  # as a segkit without train.ema and train.early_stop wrote it
    capsys.readouterr()
    assert main(["train", str(config), "--work-dir", str(run), "--resume"]) == 0
    assert "finished already" in capsys.readouterr().out
    switched = ["train.ema.decay=0.9", "--resume"]
    assert main(["train", str(config), *switched, "--work-dir", str(run)]) == 2
    assert "train.ema: None -> {'decay': 0.9, 'warmup': True}" in capsys.readouterr().err
