"""``segkit train`` in a real subprocess (signals), ``segkit predict``, and the CLI's answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import engine_toys
import numpy as np
import pytest
import torch
from conftest import run_segkit
from engine_toys import write_toy_config as write
from PIL import Image

from segkit.cli import main

TESTS = Path(__file__).parent


def toy_plugin_path(tmp_path) -> str:
    """A PYTHONPATH on which the toy components are an installed plugin (a hand-made dist-info)."""
    site = tmp_path / "site"
    info = site / "segkit_engine_toys-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: segkit-engine-toys\nVersion: 0.0\n"
    )
    (info / "entry_points.txt").write_text("[segkit]\ntoys = engine_toys\n")
    return os.pathsep.join([str(site), str(TESTS), os.environ.get("PYTHONPATH", "")])


@pytest.mark.slow
@pytest.mark.parametrize("workers, whole_group", [(0, False), (2, True)], ids=["process", "group"])
def test_sigterm_to_a_training_process_saves_last_pt_and_the_run_resumes(
    toys, tmp_path, workers, whole_group
):
    """The signal to the process alone, or to its whole process group as torchrun, SLURM and a
    terminal send it, data-loading workers included."""
    step_file = tmp_path / "step.txt"
    config = write(
        tmp_path,
        train="train: {max_iters: 300, eval_interval: 0, log_interval: 10, precision: fp32, device: cpu}\n",
        data=f"""
data:
  train: {{type: toy_shapes, count: 16, transforms: [{{type: toy_flip}}]}}
  val: {{type: toy_shapes, count: 6, seed: 1}}
  batch_size: 4
  workers: {workers}
""",
        logging=f"logging: {{loggers: [{{type: toy_step_file, path: '{step_file}', sleep: 0.05}}]}}\n",
    )
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": toy_plugin_path(tmp_path), "SEGKIT_STRICT_PLUGINS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "segkit", "train", str(config), "--work-dir", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=whole_group,
    )
    deadline = time.monotonic() + 120
    while not (
        step_file.exists() and step_file.read_text().strip() and int(step_file.read_text()) >= 3
    ):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)
    if whole_group:
        os.killpg(process.pid, signal.SIGTERM)
    else:
        process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    last = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert 3 <= last["step"] < 300
    assert f"stopped by SIGTERM after iteration {last['step']}" in err
    assert f"Resume with: segkit train --resume {run}" in err

    assert (
        main(["train", str(config), "logging.loggers=[]", "--resume", "--work-dir", str(run)]) == 0
    )
    assert torch.load(run / "checkpoints/last.pt", weights_only=True)["step"] == 300


def test_ctrl_c_finishes_the_step_and_exits_with_130(toys, tmp_path, capsys):
    config = write(
        tmp_path, logging="logging: {loggers: [{type: toy_signal_at, step: 2, signal: SIGINT}]}\n"
    )
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run")]) == 130
    assert "stopped by SIGINT after iteration 2" in capsys.readouterr().err
    assert torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["step"] == 2


def test_progress_bar_prints_rate_and_eta_lines_when_not_a_terminal(toys, tmp_path, capsys):
    config = write(tmp_path, logging="logging: {loggers: [{type: progress, line_interval_s: 0}]}\n")
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run")]) == 0
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train ")]
    assert len(progress) == 12
    assert progress[-1].startswith("train 12/12 (100%)")
    assert "it/s" in progress[-1] and "ETA" in progress[-1] and "loss" in progress[-1]


@pytest.fixture
def trained(toys, tmp_path):
    config = write(
        tmp_path, train="train: {max_iters: 3, eval_interval: 0, precision: fp32, device: cpu}\n"
    )
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run")]) == 0
    return config, tmp_path / "run/checkpoints/last.pt"


def write_images(folder: Path, sizes, prefix="img") -> list[Path]:
    folder.mkdir()
    paths = []
    for index, (height, width) in enumerate(sizes):
        sample = engine_toys.ToyShapes(count=index + 1, sizes=[[height, width]])[index]
        path = folder / f"{prefix}{index}.png"
        Image.fromarray(sample["image"].permute(1, 2, 0).numpy()).save(path)
        paths.append(path)
    return paths


def test_predict_writes_palette_pngs_and_overlays(trained, tmp_path):
    config, checkpoint = trained
    images = write_images(tmp_path / "images", [(32, 32), (20, 28)])
    extra = write_images(tmp_path / "more", [(24, 16)], prefix="extra")
    out = tmp_path / "out"
    status = main(
        [
            "predict",
            str(config),
            "--checkpoint",
            str(checkpoint),
            str(images[0].parent),
            str(extra[0]),
            "--out",
            str(out),
            "--overlay",
        ]
    )
    assert status == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "classes.json",
        "extra0.png",
        "extra0_overlay.png",
        "img0.png",
        "img0_overlay.png",
        "img1.png",
        "img1_overlay.png",
    ]
    with Image.open(out / "img1.png") as prediction:
        assert prediction.mode == "P" and prediction.size == (28, 20)
        assert prediction.getpalette()[:9] == [c for colour in engine_toys.PALETTE for c in colour]
        assert set(np.unique(np.asarray(prediction))) <= {0, 1, 2}
    with Image.open(out / "img1_overlay.png") as picture:
        assert picture.mode == "RGB" and picture.size == (28, 20)
    classes = json.loads((out / "classes.json").read_text())
    assert [c["name"] for c in classes] == engine_toys.CLASSES


def test_predict_merge_sums_class_probabilities_into_groups(trained, tmp_path):
    config, checkpoint = trained
    images = write_images(tmp_path / "images", [(32, 32)])
    label_map = tmp_path / "merge.csv"
    label_map.write_text("source,target,target_name\n0,,\n1,0,coloured\n2,0,coloured\n")
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(config),
                "--checkpoint",
                str(checkpoint),
                str(images[0]),
                "--out",
                str(out),
                "--merge",
                str(label_map),
            ]
        )
        == 0
    )
    with Image.open(out / "img0.png") as prediction:
        assert set(np.unique(np.asarray(prediction))) == {0}  # one group left
    assert [c["name"] for c in json.loads((out / "classes.json").read_text())] == ["coloured"]


def test_predict_takes_config_overrides_among_the_images(trained, tmp_path, capsys):
    config, checkpoint = trained
    images = write_images(tmp_path / "images", [(32, 32)])
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(config),
                "--checkpoint",
                str(checkpoint),
                str(images[0]),
                "--mode",
                "slide",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "eval.crop" in capsys.readouterr().err  # slide needs a window size
    assert (
        main(
            [
                "predict",
                str(config),
                "--checkpoint",
                str(checkpoint),
                str(images[0]),
                "eval.crop=[16,16]",
                "--mode",
                "slide",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "img0.png").is_file()
    assert (
        main(
            [
                "predict",
                str(config),
                "--checkpoint",
                str(checkpoint),
                str(images[0]),
                "eval.crpo=[16,16]",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "did you mean 'crop'" in capsys.readouterr().err


def test_predict_of_a_missing_image_is_a_user_error(trained, tmp_path, capsys):
    config, checkpoint = trained
    status = main(
        [
            "predict",
            str(config),
            "--checkpoint",
            str(checkpoint),
            str(tmp_path / "nope.jpg"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert status == 2
    assert "nope.jpg: no such image file or folder" in capsys.readouterr().err


def test_predict_refuses_inputs_that_would_overwrite_each_other(trained, tmp_path, capsys):
    config, checkpoint = trained
    first = write_images(tmp_path / "a", [(32, 32)])
    second = write_images(tmp_path / "b", [(32, 32)])
    status = main(
        [
            "predict",
            str(config),
            "--checkpoint",
            str(checkpoint),
            str(first[0]),
            str(second[0]),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert status == 2
    assert "would both be written as img0.png" in capsys.readouterr().err


def test_eval_with_a_corrupt_checkpoint_is_a_user_error(trained, tmp_path, capsys):
    config, _ = trained
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    assert main(["eval", str(config), "--checkpoint", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "broken.pt" in err and "Traceback" not in err


def test_eval_of_weights_holding_nan_or_inf_warns_before_the_score(trained, tmp_path, capsys):
    config, checkpoint = trained
    assert (
        main(
            [
                "eval",
                str(config),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "clean.json"),
            ]
        )
        == 0
    )
    assert "segkit: warning" not in capsys.readouterr().err
    state = torch.load(checkpoint, weights_only=True)
    poisoned = [name for name, tensor in state["model"].items() if tensor.is_floating_point()][:2]
    for name, value in zip(poisoned, (float("nan"), float("inf"))):
        tensor = state["model"][name]
        tensor[(-1,) * tensor.ndim] = value
    broken = tmp_path / "poisoned.pt"
    torch.save(state, broken)
    # one stream, unbuffered: the order of the lines is the order they were written in
    env = {**os.environ, "PYTHONPATH": toy_plugin_path(tmp_path), "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "segkit", "eval", str(config), "--checkpoint", str(broken)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    warnings = [number for number, line in enumerate(lines) if line.startswith("segkit: warning:")]
    assert len(warnings) == 1, result.stdout
    assert lines[warnings[0]].startswith(
        f"segkit: warning: {broken}: 2 weight tensor(s) hold NaN or inf values ({poisoned[0]}, {poisoned[1]})"
    )
    score = next(number for number, line in enumerate(lines) if line.startswith("mIoU"))
    assert warnings[0] < score


def with_stored_labels(checkpoint: Path, out: Path, **stored) -> Path:
    """A copy of ``checkpoint`` whose stored ``classes`` and/or ``palette`` are replaced."""
    record = torch.load(checkpoint, weights_only=True)
    torch.save({**record, **stored}, out)
    return out


DEFAULT_NAMES = ["class_0", "class_1", "class_2"]
UNFIT_LABELS = [
    (
        {"classes": ["road", "car"]},
        DEFAULT_NAMES,
        engine_toys.PALETTE,
        "the stored class list has 2 names for the model's 3 classes; using the default class names",
    ),
    (
        {"palette": [[1, 2, 3], "red", 7]},
        engine_toys.CLASSES,
        None,
        "the stored palette's entry 1 is 'red', not [r, g, b] in 0..255; using the default colours",
    ),
    (
        {"palette": [[1, 2, 3], [4, 5, 6], [300, 0, 0]]},
        engine_toys.CLASSES,
        None,
        "the stored palette's entry 2 is [300, 0, 0], not [r, g, b] in 0..255; using the default colours",
    ),
    (
        {"classes": "abc", "palette": [[1, 2, 3]]},
        DEFAULT_NAMES,
        None,
        "the stored class list is not a list of names ('abc'); the stored palette has 1 colours for the "
        "model's 3 classes; using the default class names and colours",
    ),
]


@pytest.mark.parametrize(
    "stored, names, colours, note", UNFIT_LABELS, ids=["classes", "palette", "range", "both"]
)
def test_predict_with_stored_labels_that_do_not_fit_uses_the_defaults(
    trained, tmp_path, capsys, stored, names, colours, note
):
    from segkit.engine.visualize import default_palette

    config, checkpoint = trained
    edited = with_stored_labels(checkpoint, tmp_path / "edited.pt", **stored)
    images = write_images(tmp_path / "images", [(32, 32)])
    out = tmp_path / "out"
    assert (
        main(
            ["predict", str(config), "--checkpoint", str(edited), str(images[0]), "--out", str(out)]
        )
        == 0
    )
    notes = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("segkit: note:")
    ]
    assert notes == [f"segkit: note: {edited}: {note}"]
    classes = json.loads((out / "classes.json").read_text())
    assert [c["name"] for c in classes] == names
    assert [tuple(c["color"]) for c in classes] == [tuple(c) for c in colours or default_palette(3)]


@pytest.mark.slow
def test_eval_merge_with_a_malformed_stored_palette_uses_the_defaults(trained, tmp_path):
    config, checkpoint = trained
    edited = with_stored_labels(
        checkpoint, tmp_path / "edited.pt", palette=[[40, 40, 40], 220, None]
    )
    label_map = tmp_path / "merge.csv"
    label_map.write_text("source,target,target_name\n0,0,background\n1,1,red\n2,2,green\n")
    result = run_segkit(
        "eval",
        str(config),
        "--checkpoint",
        str(edited),
        "--merge",
        str(label_map),
        "--out",
        str(tmp_path / "eval.json"),
        env={"PYTHONPATH": toy_plugin_path(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("segkit: note:")]
    assert notes == [
        f"segkit: note: {edited}: the stored palette's entry 1 is 220, not [r, g, b] in 0..255; "
        "using the default colours"
    ]
    assert "Traceback" not in result.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["merge"] == str(label_map)
