"""Training end to end on the CPU with tiny in-test components (tests/engine_toys.py)."""

from __future__ import annotations

import json
import math
from importlib.metadata import version

import engine_toys
import pytest
import torch
import yaml
from engine_toys import write_toy_config as write

from segkit.cli import main
from segkit.components import Provider
from segkit.plugins import Plugins


def lines(run_dir, split):
    text = (run_dir / "metrics.jsonl").read_text(encoding="utf-8")
    return [line for line in map(json.loads, text.splitlines()) if line["split"] == split]


def load(path):
    return torch.load(path, weights_only=True)


LEARN = """
train:
  max_iters: 40
  eval_interval: 20
  log_interval: 5
  device: cpu
  precision: auto
"""


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """One training run shared by the tests that only read its results."""
    import segkit.plugins

    tmp_path = tmp_path_factory.mktemp("learned")
    plugins = Plugins()
    plugins.load_entry_points()
    plugins.add(engine_toys, Provider("toys", "test-plugins", "0.0"))
    previous, segkit.plugins._loaded = segkit.plugins._loaded, plugins
    try:
        config = write(
            tmp_path,
            train=LEARN,
            logging="logging: {loggers: [{type: progress}, {type: tensorboard}]}\n",
        )
        status = main(["train", str(config), "--work-dir", str(tmp_path / "run")])
    finally:
        segkit.plugins._loaded = previous
    assert status == 0
    return config, tmp_path / "run"


def test_training_lowers_the_loss_and_beats_the_chance_baseline(learned):
    _, run = learned
    train = lines(run, "train")
    assert [line["step"] for line in train] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert train[-1]["loss"] < 0.5 * train[0]["loss"]
    final = lines(run, "val")[-1]
    # Chance (every pixel the most frequent class) scores mIoU of about 0.25 on this data.
    assert final["step"] == 40 and final["mIoU"] > 0.7


def test_metrics_lines_have_the_documented_shape(learned):
    _, run = learned
    for line in lines(run, "train"):
        assert {"split", "step", "loss", "loss_main", "lr", "imgs_per_s", "peak_mem_gb"} <= set(
            line
        )
        assert line["imgs_per_s"] > 0
        assert line["lr"] > 0 or line["step"] == 40  # poly decays to 0 at the last step
    for line in lines(run, "val"):
        means = {"mIoU", "mDice", "mPrecision", "mRecall", "mAcc", "aAcc", "fwIoU"}
        per_class = {"IoU", "Dice", "Precision", "Recall", "Acc"}
        assert set(line) == {"split", "step"} | means | per_class
        assert all(list(line[key]) == engine_toys.CLASSES for key in per_class)
        assert all(0 <= line[key] <= 1 for key in means)


def test_run_directory_holds_config_environment_checkpoints_and_panels(learned, toys):
    config, run = learned
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["work_dir"] == str(run)
    assert resolved["optimizer"]["momentum"] == 0.9  # defaults are written out
    env = json.loads((run / "env.json").read_text())
    assert env["precision"] in ("bf16", "fp32") and env["device"] == "cpu"
    assert env["world_size"] == 1 and env["batch_size_per_process"] == 4
    assert env["torch"] == version("torch") and env["segkit"] == version("segkit")
    assert {"losses", "tensorboard", "toys"} <= {p["name"] for p in env["plugins"]}

    last, best = load(run / "checkpoints/last.pt"), load(run / "checkpoints/best.pt")
    assert last["step"] == 40 and {"optimizer", "scheduler", "scaler", "rng", "sampler"} <= set(
        last
    )
    assert last["classes"] == engine_toys.CLASSES
    best_line = max(lines(run, "val"), key=lambda line: line["mIoU"])
    assert best["metric"] == {"name": "mIoU", "value": best_line["mIoU"]}
    assert best["step"] == best_line["step"] and "optimizer" not in best

    panels = sorted(p.name for p in (run / "predictions").iterdir())
    assert panels == ["00_toy_000.png", "01_toy_001.png", "02_toy_002.png", "03_toy_003.png"]


def test_tensorboard_events_hold_the_scalars_panels_and_config(learned):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run = learned
    events = EventAccumulator(
        str(run / "tb"), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    events.Reload()
    tags = events.Tags()
    expected = {
        "train/loss",
        "train/loss_main",
        "train/lr",
        "train/imgs_per_s",
        "train/peak_mem_gb",
        "val/mIoU",
        "val/mAcc",
        "val/aAcc",
        *(f"val/IoU/{name}" for name in engine_toys.CLASSES),
    }
    assert expected <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("val/mIoU")] == [20, 40]
    assert events.Scalars("val/mIoU")[-1].value == pytest.approx(lines(run, "val")[-1]["mIoU"])
    assert "val/panels/0" in tags["images"]
    image = events.Images("val/panels/0")[-1]
    assert image.width > 3 * image.height - 20  # image | label | prediction side by side
    assert "config/text_summary" in tags["tensors"]


def test_eval_command_reproduces_the_validation_miou(learned, toys, tmp_path, capsys):
    config, run = learned
    out = tmp_path / "eval.json"
    status = main(
        ["eval", str(config), "--checkpoint", str(run / "checkpoints/best.pt"), "--out", str(out)]
    )
    assert status == 0
    report = json.loads(out.read_text())
    recorded = max(lines(run, "val"), key=lambda line: line["mIoU"])
    assert report["mIoU"] == pytest.approx(recorded["mIoU"], abs=1e-9)
    assert report["IoU"] == pytest.approx(recorded["IoU"], abs=1e-9)
    printed = capsys.readouterr().out
    assert "background" in printed and f"mIoU {100 * recorded['mIoU']:.2f}" in printed


def test_eval_writes_into_the_run_directory_by_default(learned, toys):
    config, run = learned
    assert (
        main(["eval", str(config), "--checkpoint", str(run / "checkpoints/last.pt"), "--tta"]) == 0
    )
    report = json.loads((run / "eval_last_whole_tta.json").read_text())
    assert report["flip"] and report["scales"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert report["mIoU"] > 0.5


# ---- exact resume ------------------------------------------------------------------------------

RESUME_MODEL = """
model:
  backbone: {type: toy_cnn, width: 8, dropout: 0.2}
  head: {type: toy_head}
  aux_heads: [{type: toy_head, in_index: 0, loss_weight: 0.4, loss_decay: true}]
  num_classes: 3
"""
RESUME_TRAIN = """
train:
  max_iters: 12
  eval_interval: 4
  log_interval: 2
  accumulate: 2
  grad_clip: 5.0
  precision: fp32
  device: cpu
"""


def resume_data(workers):
    return f"""
data:
  train: {{type: toy_shapes, count: 10, transforms: [{{type: toy_flip}}]}}
  val: {{type: toy_shapes, count: 4, seed: 1}}
  batch_size: 3
  workers: {workers}
"""


def assert_same_tensors(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a} != {b}"


@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_stopped_and_resumed_ends_with_the_weights_of_one_never_stopped(
    toys, tmp_path, capsys, workers
):
    straight = write(
        tmp_path, "straight.yaml", model=RESUME_MODEL, train=RESUME_TRAIN, data=resume_data(workers)
    )
    assert main(["train", str(straight), "--work-dir", str(tmp_path / "straight")]) == 0

    stopped = write(
        tmp_path,
        "stopped.yaml",
        model=RESUME_MODEL,
        train=RESUME_TRAIN,
        data=resume_data(workers),
        logging="logging: {loggers: [{type: toy_signal_at, step: 5}]}\n",
    )
    run = tmp_path / "stopped"
    assert main(["train", str(stopped), "--work-dir", str(run)]) == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM after iteration 5" in err and "--resume" in err
    assert load(run / "checkpoints/last.pt")["step"] == 5

    assert main(["train", str(stopped), "--work-dir", str(run), "--resume"]) == 0
    a, b = load(tmp_path / "straight/checkpoints/last.pt"), load(run / "checkpoints/last.pt")
    assert b["step"] == 12
    for key in ("model", "optimizer", "scheduler", "sampler"):
        assert_same_tensors(a[key], b[key], key)
    assert lines(run, "val") == lines(tmp_path / "straight", "val")
    assert [line["step"] for line in lines(run, "train")] == [2, 4, 6, 8, 10, 12]


def test_a_finished_run_resumed_with_more_iterations_follows_the_longer_schedule(toys, tmp_path):
    config = write(tmp_path, train=RESUME_TRAIN)
    run = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(run)]) == 0
    # a longer schedule is a change to the run, said so on the command line
    assert (
        main(
            [
                "train",
                str(config),
                "train.max_iters=24",
                "--resume",
                "--allow-changes",
                "--work-dir",
                str(run),
            ]
        )
        == 0
    )
    longer = {line["step"]: line["lr"] for line in lines(run, "train")}
    # poly 0.9 from lr 0.05 over 24 iterations, not the 12 of the checkpoint (lr 0 after 12)
    for step in (14, 20):
        assert longer[step] == pytest.approx(0.05 * (1 - step / 24) ** 0.9, rel=1e-6)


def test_resume_from_a_numbered_checkpoint_continues_in_its_run_directory(toys, tmp_path):
    config = write(
        tmp_path,
        train=RESUME_TRAIN.replace(
            "accumulate: 2", "checkpoint_interval: 4\n  keep_checkpoints: 2"
        ),
    )
    run = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(run)]) == 0
    assert sorted(p.name for p in (run / "checkpoints").glob("iter_*")) == [
        "iter_000008.pt",
        "iter_000012.pt",
    ]
    finished = load(run / "checkpoints/last.pt")
    assert main(["train", str(config), "--resume", str(run / "checkpoints/iter_000008.pt")]) == 0
    assert_same_tensors(finished["model"], load(run / "checkpoints/last.pt")["model"], "model")


# ---- faults ------------------------------------------------------------------------------------

NAN_TRAIN = """
train:
  max_iters: 20
  eval_interval: 0
  checkpoint_interval: 3
  log_interval: 5
  precision: fp32
  device: cpu
"""


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(toys, tmp_path, capsys):
    config = write(tmp_path, train=NAN_TRAIN, loss="loss: {type: toy_nan_at_call, call: 8}\n")
    run = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert "non-finite" in err and "at iteration 8" in err and "Traceback" not in err
    assert f"{run / 'checkpoints/last.pt'} (iteration 6)" in err
    last = load(run / "checkpoints/last.pt")
    assert last["step"] == 6
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "iter_000003.pt",
        "iter_000006.pt",
        "last.pt",
    ]


def test_weights_that_became_non_finite_are_never_saved(toys, tmp_path, capsys):
    config = write(
        tmp_path, train=NAN_TRAIN, logging="logging: {loggers: [{type: toy_poison_at, step: 6}]}\n"
    )
    run = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert "the weights became non-finite (NaN or infinite) by iteration 6" in err
    assert "precision=fp32" not in err  # the run is in fp32 already
    assert f"{run / 'checkpoints/last.pt'} (iteration 3)" in err
    assert load(run / "checkpoints/last.pt")["step"] == 3


def test_a_fresh_run_refuses_a_directory_that_holds_one(toys, tmp_path, capsys):
    config = write(tmp_path, train=NAN_TRAIN.replace("20", "3"))
    run = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(run)]) == 0
    assert main(["train", str(config), "--work-dir", str(run)]) == 2
    assert "already holds a run; continue it with --resume" in capsys.readouterr().err
    assert main(["train", str(config), "--work-dir", str(run), "--overwrite"]) == 0
    assert main(["train", str(config), "--work-dir", str(run), "--resume"]) == 0
    assert "finished already (3 of 3 iterations)" in capsys.readouterr().out


def test_overwriting_a_run_replaces_its_tensorboard_events_and_the_summary_names_them(
    toys, tmp_path, capsys
):
    """The core neither deletes nor announces tb/: the tensorboard logger does both."""
    config = write(
        tmp_path,
        train=NAN_TRAIN.replace("20", "3"),
        logging="logging: {loggers: [{type: tensorboard}]}\n",
    )
    run = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(run)]) == 0
    first = sorted((run / "tb").iterdir())
    out = capsys.readouterr().out
    assert "segkit:   tb/                   TensorBoard events" in out
    assert f"segkit: watch it: tensorboard --logdir {run / 'tb'}" in out
    assert main(["train", str(config), "--work-dir", str(run), "--overwrite"]) == 0
    second = sorted((run / "tb").iterdir())
    assert len(first) == len(second) == 1 and first != second


def test_resume_without_a_checkpoint_is_a_clear_error(toys, tmp_path, capsys):
    config = write(tmp_path)
    assert main(["train", str(config), "--work-dir", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


def test_class_count_mismatch_is_a_config_error(toys, tmp_path, capsys):
    model = engine_toys.config_text().split("data:")[0].replace("num_classes: 3", "num_classes: 5")
    config = write(tmp_path, model=model)
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert (
        "model.num_classes: is 5 but data.train (toy_shapes) and data.val (toy_shapes) have 3 classes"
        in err
    )
    assert "set model.num_classes: 3" in err


def test_loss_terms_and_aux_outputs_are_logged(toys, tmp_path):
    config = write(
        tmp_path,
        model=RESUME_MODEL,
        loss="loss: [{type: cross_entropy, loss_weight: 1.0}, {type: dice, loss_weight: 0.5}]\n",
        train=NAN_TRAIN.replace("20", "4").replace("log_interval: 5", "log_interval: 2"),
    )
    run = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(run)]) == 0
    line = lines(run, "train")[0]
    expected = {
        "loss_main",
        "loss_main.cross_entropy",
        "loss_main.dice",
        "loss_aux0",
        "loss_aux0.cross_entropy",
        "loss_aux0.dice",
    }
    assert expected <= set(line)
    assert line["loss_main"] == pytest.approx(
        line["loss_main.cross_entropy"] + 0.5 * line["loss_main.dice"], rel=1e-5
    )
    assert all(math.isfinite(line[key]) for key in expected)


def test_validation_of_images_of_different_sizes_with_sliding_windows(toys, tmp_path):
    config = write(
        tmp_path,
        data="""
data:
  train: {type: toy_shapes, count: 8}
  val: {type: toy_shapes, count: 5, seed: 1, sizes: [[32, 32], [24, 40], [36, 20]]}
  batch_size: 4
  val_batch_size: 3
  workers: 0
""",
        train=NAN_TRAIN.replace("20", "2"),
    )
    config.write_text(
        config.read_text() + "eval: {mode: slide, crop: [16, 16], stride: [12, 12]}\n"
    )
    run = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(run)]) == 0
    val = lines(run, "val")
    assert [line["step"] for line in val] == [2] and 0 <= val[0]["mIoU"] <= 1
    assert len(list((run / "predictions").iterdir())) == 4
