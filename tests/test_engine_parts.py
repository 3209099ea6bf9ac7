"""The engine's parts used directly, as Python users and the benchmarks use them: the runtime,
the training parts, ``train_step``, ``segkit.train`` and the checkpoint reader's field checks."""

from __future__ import annotations

import pytest
import torch
from engine_toys import write_toy_config as write

import segkit
from segkit.engine.checkpoint import read_training_state
from segkit.engine.parts import build_training_parts, train_loader
from segkit.engine.runtime import Runtime
from segkit.engine.step import train_step
from segkit.errors import CheckpointError

TRAIN = """
train:
  max_iters: 6
  eval_interval: 3
  log_interval: 2
  precision: fp32
  device: cpu
"""


def test_train_step_is_a_plain_function_over_the_built_parts(toys, tmp_path):
    config = segkit.load_config(write(tmp_path, train=TRAIN))
    runtime = Runtime.resolve(config["train"])
    parts = build_training_parts(config, runtime)
    loader, sampler = train_loader(config, parts)
    data = iter(loader)
    before = [p.detach().clone() for p in parts.model.parameters()]
    train_step(parts, data, 0)
    after = list(parts.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "the step changed no weight"
    assert parts.scheduler.last_epoch == 1
    assert (
        sampler.state_dict(config["data"]["batch_size"])["position"] == config["data"]["batch_size"]
    )


def test_runtime_is_resolved_once_from_the_train_section():
    train = {"device": "cpu", "precision": "fp32", "channels_last": True, "deterministic": False}
    runtime = Runtime.resolve(train)
    assert runtime.device == torch.device("cpu") and runtime.precision.name == "fp32"
    assert runtime.channels_last and "channels-last" in runtime.describe()
    assert Runtime.resolve(train, precision="bf16").precision.name == "bf16"


def test_segkit_train_returns_the_outcome_with_metrics_and_paths(toys, tmp_path):
    config = write(tmp_path, train=TRAIN)
    outcome = segkit.train(str(config), tmp_path / "run")
    assert outcome.status == 0 and outcome.step == 6 and outcome.stopped_by is None
    assert outcome.last_checkpoint == tmp_path / "run" / "checkpoints" / "last.pt"
    assert outcome.final_metrics["step"] == 6 and 0 <= outcome.final_metrics["mIoU"] <= 1
    assert outcome.best_checkpoint is not None and outcome.best["step"] in (3, 6)
    again = segkit.train(str(config), tmp_path / "run", resume=True)
    assert again.finished_already and again.status == 0


def test_segkit_train_refuses_a_directory_holding_a_run_unless_told(toys, tmp_path):
    config = write(tmp_path, train=TRAIN)
    segkit.train(str(config), tmp_path / "run", overrides=["train.max_iters=2"])
    with pytest.raises(segkit.SegkitError, match="already holds a run"):
        segkit.train(str(config), tmp_path / "run", overrides=["train.max_iters=2"])
    assert (
        segkit.train(
            str(config), tmp_path / "run", overrides=["train.max_iters=2"], overwrite=True
        ).status
        == 0
    )


@pytest.fixture
def good_checkpoint(toys, tmp_path):
    config = write(tmp_path, train=TRAIN)
    segkit.train(str(config), tmp_path / "run", overrides=["train.max_iters=2"])
    return torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)


@pytest.mark.parametrize(
    "field, value",
    [
        ("step", "abc"),
        ("step", None),
        ("step", -3),
        ("step", 10**15),
        ("step", True),
        ("sampler", [1, 2]),
        ("sampler", {"position": "x"}),
        ("rng", "seed"),
        ("rng", {"python": 1}),
        ("optimizer", []),
        ("best", {"mIoU": "high"}),
    ],
)
def test_a_checkpoint_with_a_broken_field_is_refused_naming_it(
    good_checkpoint, tmp_path, field, value
):
    broken = dict(good_checkpoint, **{field: value})
    path = tmp_path / "broken.pt"
    torch.save(broken, path)
    with pytest.raises(CheckpointError, match=f"field '{field}' is broken"):
        read_training_state(path)


def test_a_checkpoint_of_a_newer_format_is_refused(good_checkpoint, tmp_path):
    path = tmp_path / "future.pt"
    torch.save(dict(good_checkpoint, format=99), path)
    with pytest.raises(CheckpointError, match="format 99"):
        read_training_state(path)


def test_resuming_with_another_optimizer_says_what_changed(toys, tmp_path):
    config = write(tmp_path, train=TRAIN)
    segkit.train(str(config), tmp_path / "run", overrides=["train.max_iters=2"])
    with pytest.raises(CheckpointError, match="optimizer 'sgd'.*'adamw'"):
        segkit.train(
            str(config),
            tmp_path / "run",
            resume=True,
            overrides=["optimizer={type: adamw, lr: 0.001}"],
        )


def test_resuming_with_another_schedule_says_what_changed(toys, tmp_path):
    config = write(tmp_path, train=TRAIN)
    segkit.train(str(config), tmp_path / "run", overrides=["train.max_iters=2"])
    with pytest.raises(
        CheckpointError, match="lr_scheduler 'poly'.*'cosine'.*lr_scheduler.type=poly"
    ):
        segkit.train(
            str(config),
            tmp_path / "run",
            resume=True,
            allow_changes=True,
            overrides=["lr_scheduler={type: cosine}"],
        )
