"""``segkit eval --ci --boundary`` and ``segkit compare`` end to end on a tiny trained toy model,
and validation with ``eval.ci: true`` during training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from engine_toys import CLASSES
from engine_toys import write_toy_config as write

from segkit.cli import main
from segkit.metrics import load_per_image

TRAIN = "train: {max_iters: 3, eval_interval: 0, precision: fp32, device: cpu}\n"


@pytest.fixture
def trained(toys, tmp_path):
    config = write(tmp_path, train=TRAIN)
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run")]) == 0
    return config, tmp_path / "run/checkpoints/last.pt"


def evaluate(config, checkpoint, out, *options) -> int:
    return main(["eval", str(config), "--checkpoint", str(checkpoint), "--out", str(out), *options])


@pytest.mark.slow
def test_eval_ci_writes_intervals_the_confusion_matrix_and_per_image_matrices(
    trained, tmp_path, capsys
):
    config, checkpoint = trained
    out = tmp_path / "scores.json"
    assert evaluate(config, checkpoint, out, "--ci", "--resamples", "200", "--boundary") == 0
    printed = capsys.readouterr().out
    assert "95% CI" in printed and "boundary mIoU" in printed
    report = json.loads(out.read_text())
    ci = report["ci"]
    assert (ci["level"], ci["resamples"], ci["seed"]) == (0.95, 200, 0)
    assert ci["mIoU"][0] <= report["mIoU"] <= ci["mIoU"][1]
    assert list(ci["IoU"]) == CLASSES
    assert report["boundary"]["ratio"] == 0.02 and list(report["boundary"]["IoU"]) == CLASSES
    for key in ("mDice", "mPrecision", "mRecall", "fwIoU", "Dice", "Precision", "Recall"):
        assert key in report, key
    assert report["classes"] == CLASSES
    assert report["files"] == {
        "confusion_csv": "scores.confusion.csv",
        "confusion_npy": "scores.confusion.npy",
        "per_image": "scores.per_image.npz",
    }
    matrix = np.load(tmp_path / "scores.confusion.npy")
    assert matrix.tolist() == report["confusion_matrix"] and matrix.sum() > 0
    csv_lines = (tmp_path / "scores.confusion.csv").read_text().splitlines()
    assert csv_lines[0] == "label \\ prediction,background,red,green"
    assert csv_lines[1] == "background," + ",".join(str(v) for v in matrix[0])
    per_image = load_per_image(tmp_path / "scores.per_image.npz")
    assert per_image.names == [f"toy_{i:03d}" for i in range(6)]
    assert np.array_equal(per_image.total(), matrix)

    again = tmp_path / "again.json"
    assert evaluate(config, checkpoint, again, "--ci", "--resamples", "200") == 0
    assert json.loads(again.read_text())["ci"] == ci  # seed 0: the same resamples
    assert "boundary" not in json.loads(again.read_text())


def test_compare_of_a_report_with_itself_is_zero_and_not_distinguishable(trained, tmp_path, capsys):
    config, checkpoint = trained
    out = tmp_path / "a.json"
    assert evaluate(config, checkpoint, out) == 0
    capsys.readouterr()
    saved = tmp_path / "comparison.json"
    assert main(["compare", str(out), str(out), "--resamples", "100", "--json", str(saved)]) == 0
    printed = capsys.readouterr().out
    assert "B and A have the same mIoU" in printed and "not distinguishable from noise" in printed
    comparison = json.loads(saved.read_text())
    assert comparison["difference"]["mIoU"] == 0.0
    assert comparison["ci"]["mIoU"] == [0.0, 0.0]
    assert comparison["distinguishable"] is False and comparison["images"] == 6
    assert set(comparison["difference"]["IoU"]) == set(CLASSES)


def test_compare_refuses_reports_of_different_images_or_without_matrices(trained, tmp_path, capsys):
    config, checkpoint = trained
    six, five = tmp_path / "six.json", tmp_path / "five.json"
    assert evaluate(config, checkpoint, six) == 0
    assert evaluate(config, checkpoint, five, "data.val.count=5") == 0
    capsys.readouterr()
    assert main(["compare", str(six), str(five)]) == 2
    error = capsys.readouterr().err
    assert "do not cover the same images: 1 only in A (e.g. toy_005), 0 only in B" in error
    assert "Traceback" not in error
    (tmp_path / "five.per_image.npz").unlink()
    assert main(["compare", str(six), str(five)]) == 2
    assert "five.per_image.npz are missing" in capsys.readouterr().err
    assert main(["compare", str(six)]) == 2
    assert "compare takes two eval reports" in capsys.readouterr().err


def test_bad_bootstrap_options_are_refused_before_any_work(toys, tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "x.pt"), "--ci", "--resamples", "3"]) == 2
    assert "--resamples 3: give at least 10" in capsys.readouterr().err
    assert main(["compare", "--checkpoint", "a.pt", "b.json"]) == 2
    assert "compare takes --checkpoint twice" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_two_checkpoints_with_their_stored_configs(trained, tmp_path, capsys):
    config, first = trained
    other = write(
        tmp_path, "seed1.yaml", train=TRAIN.replace("device: cpu", "device: cpu, seed: 1")
    )
    assert main(["train", str(other), "--work-dir", str(tmp_path / "seed1")]) == 0
    second = tmp_path / "seed1/checkpoints/last.pt"
    capsys.readouterr()
    saved = tmp_path / "cmp.json"
    code = main(
        ["compare", "--checkpoint", str(first), "--checkpoint", str(second), "--resamples", "100"]
        + ["--json", str(saved)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.count("segkit: evaluating") == 2
    assert "distinguishable from noise" in printed
    comparison = json.loads(saved.read_text())
    assert comparison["a"]["source"] == str(first) and comparison["b"]["source"] == str(second)
    assert comparison["difference"]["mIoU"] == pytest.approx(
        comparison["b"]["mIoU"] - comparison["a"]["mIoU"]
    )
    low, high = comparison["ci"]["mIoU"]
    assert comparison["distinguishable"] == (low > 0 or high < 0)


def test_validation_with_eval_ci_records_the_interval_of_best_pt(toys, tmp_path, capsys):
    config = write(tmp_path, train=TRAIN)
    run = tmp_path / "run"
    assert (
        main(["train", str(config), "eval.ci=true", "eval.resamples=50", "--work-dir", str(run)])
        == 0
    )
    printed = capsys.readouterr().out
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (validation,) = [line for line in lines if line["split"] == "val"]
    assert validation["ci"]["resamples"] == 50 and len(validation["ci"]["mIoU"]) == 2
    best = torch.load(run / "checkpoints/best.pt", weights_only=True)
    assert best["metrics"]["ci"] == validation["ci"]
    last = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert last["best"]["mIoU_ci"] == validation["ci"]["mIoU"]
    assert "95% interval" in printed


def test_eval_ci_settings_are_validated_in_the_config(toys, tmp_path, capsys):
    config = write(tmp_path, train=TRAIN)
    assert main(["config", str(config), "eval.resamples=5", "eval.ci=maybe", "--check"]) == 2
    error = capsys.readouterr().err
    assert "eval.resamples" in error and "eval.ci" in error
