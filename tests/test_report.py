"""``segkit report``: the HTML page of a run, its numbers against ``segkit eval``'s, its answers to
bad input, and the page as a browser shows it."""

from __future__ import annotations

import io
import json
import os
import re

import numpy as np
import pytest
import torch
from browser import find_chromium, open_page
from engine_toys import write_toy_config
from PIL import Image

import segkit.plugins
from segkit.cli import main
from segkit.components import Provider
from segkit.config import dump_config
from segkit.metrics import ConfusionMatrix, segmentation_metrics
from segkit.report.confusion import row_normalised, top_confusions
from segkit.report.page import ReportContent, render
from segkit.report.predictions import image_iou

TOY_TRAIN = (
    "train: {max_iters: 6, eval_interval: 3, log_interval: 1, precision: fp32, device: cpu}\n"
)
SECTIONS = ["summary", "curves", "classes", "confusion", "worst", "config", "environment"]
VALIDATION_IMAGES = 6  # engine_toys' default data.val


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A finished tiny run (6 iterations, validated twice) and ``segkit eval``'s JSON of its
    best checkpoint; trained once for the tests of this file that need a trained model."""
    import engine_toys

    folder = tmp_path_factory.mktemp("report")
    loaded = segkit.plugins.Plugins()
    loaded.load_entry_points()
    loaded.add(engine_toys, Provider("toys", "test-plugins", "0.0"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segkit.plugins, "_loaded", loaded)
        config = write_toy_config(folder, train=TOY_TRAIN)
        run = folder / "run"
        assert main(["train", str(config), "--work-dir", str(run)]) == 0
        evaluation = folder / "eval.json"
        checkpoint = run / "checkpoints/best.pt"
        assert main(["eval", "--checkpoint", str(checkpoint), "--out", str(evaluation)]) == 0
    segkit.plugins.reset()
    return run, evaluation


@pytest.fixture
def handmade_run(toys, tmp_path):
    """A run directory written by hand: the toy config, two metric lines and an untrained
    model's checkpoint; enough for every check that comes before the model runs."""
    from segkit.builder import build_model
    from segkit.validation import load_config

    config = load_config(write_toy_config(tmp_path, train=TOY_TRAIN))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    lines = [
        {"split": "train", "step": 1, "loss": 1.0, "lr": 0.05},
        {"split": "val", "step": 1, "mIoU": 0.2, "mAcc": 0.3, "aAcc": 0.5, "IoU": {}},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    state = {"model": build_model(config).state_dict(), "step": 0, "config": config}
    torch.save(state, run / "checkpoints/last.pt")
    return run


def report(*args: str) -> int:
    return main(["report", *map(str, args)])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("segkit: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# ---- the numbers ---------------------------------------------------------------------------


def test_per_image_confusions_are_each_images_own_matrix():
    """The matrices the report ranks images by: each image's own, from the set's one count."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (3, 9, 7), generator=generator)
    labels[0, :2] = 255  # not annotated
    labels[2] = 255  # an image without a labelled pixel
    predictions = torch.randint(0, 4, (3, 9, 7), generator=generator)
    matrices = ConfusionMatrix(4).update(predictions, labels, per_image=True)
    for index in range(3):
        expected = ConfusionMatrix(4)
        expected.update(predictions[index], labels[index])
        assert torch.equal(matrices[index], expected.matrix)
    assert image_iou(matrices[2].numpy()) is None
    assert image_iou(matrices[0].numpy()) == pytest.approx(
        segmentation_metrics(matrices[0], ["a", "b", "c", "d"])["mIoU"]
    )


def test_top_confusions_rank_the_off_diagonal_cells_by_pixels():
    matrix = np.array([[90, 10, 0], [30, 60, 10], [0, 0, 0]])
    pairs = top_confusions(matrix, ["sky", "tree", "car"], count=5)
    assert [(p.truth, p.predicted, p.pixels) for p in pairs] == [
        ("tree", "sky", 30),
        ("sky", "tree", 10),
        ("tree", "car", 10),
    ]
    assert pairs[0].share_of_truth == pytest.approx(0.3)
    assert pairs[0].share_of_all == pytest.approx(30 / 200)
    normalised = row_normalised(matrix)
    assert normalised[0].tolist() == [0.9, 0.1, 0.0]
    assert normalised[2].tolist() == [0.0, 0.0, 0.0]  # a class never labelled: zeros, not NaN


@pytest.mark.slow
def test_the_pass_counts_what_segkit_eval_counts_and_keeps_the_lowest_images(toy_run, toys):
    from segkit.data import build_dataset
    from segkit.engine.inference import InferenceSettings
    from segkit.engine.loaded_model import load_trained
    from segkit.report.predictions import predict_validation
    from segkit.validation import load_config

    run, evaluation = toy_run
    config = load_config(run / "config.yaml")
    dataset = build_dataset(config, "val")
    trained = load_trained(config, run / "checkpoints/best.pt", "cpu")
    settings = InferenceSettings.from_config(config["eval"])
    every = predict_validation(trained, settings, dataset, config, worst=len(dataset))
    two = predict_validation(trained, settings, dataset, config, worst=2)

    scored = json.loads(evaluation.read_text())
    metrics = segmentation_metrics(torch.from_numpy(every.confusion), list(dataset.classes))
    assert metrics["IoU"] == scored["IoU"] and metrics["mIoU"] == scored["mIoU"]
    ious = [image.iou for image in every.worst]
    assert len(ious) == len(dataset) == every.scored and ious == sorted(ious)
    assert [image.name for image in two.worst] == [image.name for image in every.worst[:2]]
    for image in every.worst:  # each kept picture is the prediction that was scored
        recount = ConfusionMatrix(3)
        recount.update(torch.from_numpy(image.prediction), torch.from_numpy(image.label))
        assert image_iou(recount.matrix.numpy()) == image.iou


def test_the_curves_are_the_loss_terms_rates_and_validation_scores():
    from segkit.report.figures import curves

    records = [
        {"split": "train", "step": 10, "loss": 2.0, "loss_aux0": 1.0, "lr": 0.1,
         "lr_backbone": 0.01, "imgs_per_s": 50.0, "peak_mem_gb": 1.0, "grad_norm": 3.0},
        {"split": "val", "step": 10, "mIoU": 0.5, "mAcc": 0.6, "aAcc": 0.9, "IoU": {"a": 0.5}},
        {"split": "train", "step": 20, "loss": 1.0, "loss_aux0": 0.5, "lr": 0.05,
         "lr_backbone": 0.005},
    ]  # fmt: skip
    assert curves(records) == {
        "loss": {"loss": [(10, 2.0), (20, 1.0)], "loss_aux0": [(10, 1.0), (20, 0.5)]},
        "lr": {"lr": [(10, 0.1), (20, 0.05)], "lr_backbone": [(10, 0.01), (20, 0.005)]},
        "validation": {"mIoU": [(10, 0.5)], "mAcc": [(10, 0.6)], "aAcc": [(10, 0.9)]},
    }


# ---- the page ------------------------------------------------------------------------------


def content(**changes) -> ReportContent:
    fields = dict(
        run="runs/x",
        checkpoint="runs/x/checkpoints/best.pt",
        step=6,
        made="today",
        classes=["road", "car"],
        metrics={"mIoU": 0.5, "IoU": {"road": 0.9, "car": 0.1}, "Acc": {"road": 1.0, "car": 0.2}},
        metrics_source="counted by this report's pass",
        settings="whole image",
        images=2,
        curves=None,
        heatmap=None,
        pixels=None,
        confusions=[],
        confusion_source="counted",
        worst=[],
        config="model: {}\n",
        environments=[("report (this machine)", {"segkit": "0.1"})],
    )
    fields.update(changes)
    return ReportContent(**fields)


def test_text_from_the_run_is_escaped():
    hostile = "<script>alert(1)</script>"
    page = render(
        content(
            classes=[hostile, "car"],
            metrics={"mIoU": 0.5, "IoU": {hostile: 0.9, "car": 0.1}},
            config=f"name: '</pre>{hostile}'\n",
            run="runs/<b>bold</b>",
        )
    )
    assert "<script>" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("</pre>") == 1


def test_the_page_allows_no_source_but_itself_and_data_uris():
    page = render(content())
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy and "default-src 'none'" in policy.group(1)
    assert not re.search(r"(src|href)=\"(?!data:|#)", page)


# ---- bad input -----------------------------------------------------------------------------


def test_a_missing_run_directory_is_one_message(tmp_path, capsys):
    assert report(tmp_path / "nowhere", "--out", tmp_path / "r.html") == 2
    assert "nowhere: no such run directory" in one_line_error(capsys)


def test_a_run_without_metrics_jsonl_is_one_message(handmade_run, capsys):
    (handmade_run / "metrics.jsonl").unlink()
    assert report(handmade_run) == 2
    assert "metrics.jsonl: missing" in one_line_error(capsys)
    assert not (handmade_run / "report.html").exists()


def test_a_metrics_jsonl_without_a_metric_line_is_one_message(handmade_run, capsys):
    (handmade_run / "metrics.jsonl").write_text('{"split": "train", "step": 1, "lo')  # torn
    assert report(handmade_run) == 2
    assert "metrics.jsonl: holds no metric lines yet" in one_line_error(capsys)


def test_a_run_without_a_checkpoint_is_one_message(handmade_run, capsys):
    (handmade_run / "checkpoints/last.pt").unlink()
    assert report(handmade_run) == 2
    assert "holds neither best.pt nor last.pt" in one_line_error(capsys)


def test_an_eval_json_of_another_class_list_is_refused(handmade_run, tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"mIoU": 0.5, "IoU": {"road": 0.5, "car": 0.5}}))
    assert report(handmade_run, "--eval", other) == 2
    error = one_line_error(capsys)
    assert "scores 2 classes (road, car)" in error and "has 3 (background, red, green)" in error


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not JSON"),
        ('{"mIoU": 0.5}', "not a segkit eval report"),
        (
            '{"IoU": {"background": 1, "red": 1, "green": 1}, "confusion_matrix": [[1, 2], [3, 4]]}',
            "'confusion_matrix' is not a 3 x 3 matrix",
        ),
    ],
    ids=["broken", "no-IoU", "confusion-of-another-size"],
)
def test_an_unreadable_eval_json_is_one_message(handmade_run, tmp_path, capsys, text, message):
    broken = tmp_path / "eval.json"
    broken.write_text(text)
    assert report(handmade_run, "--eval", broken) == 2
    assert message in one_line_error(capsys)


def test_an_out_file_in_a_missing_folder_is_refused_before_any_work(handmade_run, capsys):
    assert report(handmade_run, "--out", handmade_run / "no/such/report.html") == 2
    assert "does not exist" in one_line_error(capsys)


def test_a_negative_worst_count_is_a_usage_error(handmade_run, capsys):
    with pytest.raises(SystemExit) as stopped:
        report(handmade_run, "--worst", "-1")
    assert stopped.value.code == 2
    assert "'-1' is not a whole number >= 0" in capsys.readouterr().err


# ---- whole reports -------------------------------------------------------------------------


def test_a_torn_metrics_line_and_a_missing_env_json_are_noted(handmade_run, capsys):
    with open(handmade_run / "metrics.jsonl", "a") as metrics:
        metrics.write('{"split": "train", "st')  # a write cut short by a crash
    assert report(handmade_run, "--worst", 1) == 0
    page = (handmade_run / "report.html").read_text(encoding="utf-8")
    assert "metrics.jsonl: 1 line(s) that are not JSON objects were left out" in page
    assert "env.json is missing or unreadable" in page
    assert "run (env.json)" not in page and "report (this machine)" in page
    assert page.count("lowest IoU:") == 1


@pytest.mark.slow
def test_the_report_of_a_run_shows_every_section(toy_run, toys, tmp_path, capsys):
    run, evaluation = toy_run
    out = tmp_path / "report.html"
    assert report(run, "--out", out, "--worst", 2) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    assert page.count('src="data:image/svg+xml;base64,') == 2  # the curves, the heatmap
    assert page.count('src="data:image/png;base64,') == 2 * 4  # 2 images, 4 panels each
    scored = json.loads(evaluation.read_text())
    assert f"<b>{100 * scored['mIoU']:.2f}</b>" in page  # the pass's mIoU is eval's
    assert "counted by this report&#x27;s pass" in page
    assert "run (env.json)" in page and "report (this machine)" in page
    assert "toy_cnn" in page  # the config


@pytest.mark.slow
def test_the_eval_json_supplies_intervals_dice_and_the_confusion(toy_run, toys, tmp_path):
    run, evaluation = toy_run
    scored = json.loads(evaluation.read_text())
    classes = list(scored["IoU"])
    by_class = {name: 0.5 for name in classes}
    scored.update(
        Dice=by_class,
        Precision=by_class,
        Recall=by_class,
        fwIoU=0.75,
        confusion_matrix=[[1000, 12345, 0], [0, 500, 0], [7, 0, 300]],
        ci={"level": 0.95, "resamples": 200, "seed": 3, "mIoU": [0.25, 0.5],
            "IoU": {name: [0.125, 0.625] for name in classes}},
    )  # fmt: skip
    extended = tmp_path / "eval.json"
    extended.write_text(json.dumps(scored))
    out = tmp_path / "report.html"
    assert report(run, "--eval", extended, "--out", out, "--worst", 0) == 0
    page = out.read_text(encoding="utf-8")
    for header in ("Dice", "precision", "recall", "IoU 95% interval"):
        assert f"<th>{header}</th>" in page
    assert "<span>fwIoU</span><b>75.00</b>" in page
    assert "25.00&ndash;50.00" in page and "12.50&ndash;62.50" in page
    assert "200 resamples" in page
    # the largest mistake of the given matrix heads the pairs: 12345 of background's 13345
    assert "<td>background</td><td>red</td><td>12,345</td><td>92.51</td>" in page
    assert "from the eval JSON" in page
    assert 'src="data:image/png' not in page  # --worst 0


# ---- in a browser --------------------------------------------------------------------------

BROWSER_REQUIRED = os.environ.get("SEGKIT_TEST_BROWSER") == "required"  # .ci/run sets it
INSPECT = """(() => ({
  sections: [...document.querySelectorAll("section")].map(s => s.id),
  images: [...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0, alt: i.alt})),
  rows: document.querySelectorAll("#classes tbody tr").length,
}))()"""


@pytest.fixture
def chromium():
    path = find_chromium()
    if path is None:
        if BROWSER_REQUIRED:
            pytest.fail("SEGKIT_TEST_BROWSER=required but no chromium on PATH")
        pytest.skip(
            "chromium is not installed (apt-get install chromium); the browser check needs it"
        )
    return path


def test_the_browser_check_sees_console_errors_and_outside_requests(chromium, tmp_path):
    """The check below can fail: a page with a script error and an outside image is caught."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
        '<script>console.error("broken"); missing();</script></body></html>'
    )
    visit = open_page(chromium, page, "document.images.length", tmp_path / "profile")
    assert visit.requests == ["http://127.0.0.1:9/x.png"]
    assert any("broken" in e for e in visit.console_errors)
    assert any("missing is not defined" in e for e in visit.console_errors)


@pytest.mark.slow
def test_the_report_opens_in_a_browser_without_errors_and_draws(chromium, toy_run, toys, tmp_path):
    run, evaluation = toy_run
    out = tmp_path / "report.html"
    assert report(run, "--eval", evaluation, "--out", out) == 0
    visit = open_page(chromium, out, INSPECT, tmp_path / "profile")
    assert visit.console_errors == [] and visit.requests == []
    assert visit.value["sections"] == SECTIONS
    assert visit.value["rows"] == 3  # one per class
    images = visit.value["images"]
    assert len(images) == 2 + 4 * VALIDATION_IMAGES
    assert all(image["ok"] for image in images), [i["alt"] for i in images if not i["ok"]]
    with Image.open(io.BytesIO(visit.screenshot)) as shot:
        grey = np.asarray(shot.convert("L"), dtype=np.float64)
    assert grey.shape[1] >= 1000 and grey.std() > 20, f"a blank-looking page: std {grey.std():.1f}"
