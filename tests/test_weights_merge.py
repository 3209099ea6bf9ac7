"""25-class inference from a 150-class ADE20K model: ``--merge ade20k25`` (or a label-map file)
sums the softmax probabilities of each group's classes, for ``segkit predict`` and for
``segkit eval`` against 25-class labels."""

from __future__ import annotations

import json

import engine_toys
import numpy as np
import pytest
import torch
from PIL import Image
from test_data_fixtures import make_ade20k

import segkit
from segkit.cli import main
from segkit.engine.inference import InferenceSettings, Predictor
from segkit.engine.merge import ClassMerge, MergedModel
from segkit.segmentor import Segmentor
from segkit_plugins.ade20k.dataset import ADE20K, ADE20K25

WALL, TABLE, CHAIR, ARMCHAIR, DESK, WINDOWPANE = 0, 15, 19, 30, 33, 8  # 0-based ADE20K classes
TABLE_GROUP = ADE20K25.classes.index("table")


@pytest.fixture
def ade_val(tmp_path):
    """Two validation images labelled table (annotation value 16), with a few unlabelled (0)
    and windowpane (dropped in the 25 classes) pixels."""
    masks = []
    for height, width in ((24, 32), (20, 20)):
        mask = np.full((height, width), TABLE + 1, dtype=np.uint8)
        mask[0, :] = 0
        mask[1, :3] = WINDOWPANE + 1
        masks.append(mask)
    return make_ade20k(tmp_path / "data", {"validation": masks})


@pytest.fixture
def model_150(toys, ade_val, write_config, tmp_path):
    """A 150-class model whose every pixel scores wall highest, but the table group (table,
    chair, armchair, desk) higher together: wall unmerged, table merged."""
    config = write_config(
        "toy150.yaml",
        f"""
        model:
          backbone: {{type: toy_cnn, width: 4}}
          head: {{type: toy_head}}
          num_classes: 150
        data:
          val: {{type: ade20k25, root: {ade_val}, split: validation}}
          workers: 0
        train: {{device: cpu, precision: fp32}}
        eval: {{crop: [16, 16], stride: [8, 8]}}
        logging: {{loggers: []}}
    """,
    )
    model = segkit.build_model(segkit.load_config(config, check_val_classes=False))
    bias = torch.full((150,), -20.0)
    bias[WALL] = 2.0
    bias[[TABLE, CHAIR, ARMCHAIR, DESK]] = 1.5  # 4 e^1.5 > e^2 > e^1.5
    with torch.no_grad():
        model.head.classifier.weight.zero_()
        model.head.classifier.bias.copy_(bias)
    checkpoint = tmp_path / "ade150.pt"
    torch.save(
        {
            "model": model.state_dict(),
            "step": 7,
            "classes": ADE20K.classes,
            "palette": ADE20K.palette,
        },
        checkpoint,
    )
    return config, checkpoint


@pytest.mark.parametrize("options", [[], ["--mode", "slide", "--tta"]])
def test_eval_merge_scores_a_150_class_model_against_25_class_labels(model_150, tmp_path, options):
    config, checkpoint = model_150
    out = tmp_path / "metrics.json"
    assert (
        main(
            [
                "eval",
                str(config),
                "--checkpoint",
                str(checkpoint),
                "--merge",
                "ade20k25",
                *options,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["merge"] == "ade20k25" and report["images"] == 2
    assert report["aAcc"] == 1.0 and report["mIoU"] == 1.0
    assert report["IoU"]["table"] == 1.0 and report["IoU"]["wall"] is None


def test_the_same_model_unmerged_predicts_wall_on_150_class_labels(model_150, tmp_path):
    config, checkpoint = model_150
    out = tmp_path / "metrics.json"
    assert (
        main(
            [
                "eval",
                str(config),
                "data.val.type=ade20k",
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["aAcc"] == 0.0 and report["IoU"]["wall"] == 0.0


def test_eval_default_report_name_says_merged(model_150):
    config, checkpoint = model_150
    assert main(["eval", str(config), "--checkpoint", str(checkpoint), "--merge", "ade20k25"]) == 0
    assert (checkpoint.parent / "eval_ade150_whole_ade20k25.json").is_file()


def test_eval_of_a_150_class_model_on_25_classes_without_merge_says_to_merge(model_150, capsys):
    config, checkpoint = model_150
    assert main(["eval", str(config), "--checkpoint", str(checkpoint)]) == 2
    assert (
        "model.num_classes: is 150 but data.val (ade20k25) has 25 classes; set "
        "model.num_classes: 25; to score a model on merged classes, use segkit eval --merge"
        in capsys.readouterr().err
    )


def test_eval_merge_needs_labels_of_the_merged_classes(model_150, capsys):
    config, checkpoint = model_150
    assert (
        main(
            [
                "eval",
                str(config),
                "data.val.type=ade20k",
                "--checkpoint",
                str(checkpoint),
                "--merge",
                "ade20k25",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "merges the model's classes into 25 groups" in err and "data.val has 150 classes" in err


def write_image(path, height=24, width=32):
    Image.fromarray(np.full((height, width, 3), 120, dtype=np.uint8)).save(path)
    return path


def test_predict_merge_by_dataset_name(model_150, tmp_path):
    config, checkpoint = model_150
    image = write_image(tmp_path / "room.png")
    for merge, expected_value, expected_names in (
        (["--merge", "ade20k25"], TABLE_GROUP, ADE20K25.classes),
        ([], WALL, ADE20K.classes),
    ):
        out = tmp_path / f"out{len(merge)}"
        assert (
            main(
                [
                    "predict",
                    str(config),
                    "--checkpoint",
                    str(checkpoint),
                    str(image),
                    "--out",
                    str(out),
                    *merge,
                ]
            )
            == 0
        )
        with Image.open(out / "room.png") as prediction:
            assert set(np.unique(np.asarray(prediction))) == {expected_value}
            palette = prediction.getpalette()
        names = [c["name"] for c in json.loads((out / "classes.json").read_text())]
        assert names == expected_names
        colours = ADE20K25.palette if merge else ADE20K.palette
        assert palette[3 * expected_value : 3 * expected_value + 3] == list(colours[expected_value])


def test_predict_merge_by_label_map_file(model_150, tmp_path):
    config, checkpoint = model_150
    rows = ["source,target,target_name", f"{WALL},0,wall"]
    rows += [f"{c},1,everything else" for c in range(1, 149)] + ["149,,"]  # the last is dropped
    label_map = tmp_path / "two_groups.csv"
    label_map.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(config),
                "--checkpoint",
                str(checkpoint),
                str(write_image(tmp_path / "room.png")),
                "--out",
                str(out),
                "--merge",
                str(label_map),
            ]
        )
        == 0
    )
    with Image.open(out / "room.png") as prediction:
        assert set(np.unique(np.asarray(prediction))) == {1}
    classes = json.loads((out / "classes.json").read_text())
    assert [c["name"] for c in classes] == ["wall", "everything else"]
    # a group's colour: its class named like it, else its first class (building)
    assert [tuple(c["color"]) for c in classes] == [ADE20K.palette[WALL], ADE20K.palette[1]]


@pytest.mark.parametrize(
    "merge, message",
    [
        (
            "ade20k52",
            "--merge ade20k52: no such label-map file, and unknown dataset 'ade20k52'; did you mean 'ade20k25'",
        ),
        ("cityscapes", "the dataset 'cityscapes' declares no label_map"),
        ("maps/nowhere.csv", "--merge maps/nowhere.csv: label-map file not found"),
    ],
)
def test_predict_merge_that_cannot_be_found_is_a_user_error(
    model_150, tmp_path, capsys, merge, message
):
    config, checkpoint = model_150
    assert (
        main(
            [
                "predict",
                str(config),
                "--checkpoint",
                str(checkpoint),
                str(write_image(tmp_path / "a.png")),
                "--out",
                str(tmp_path / "out"),
                "--merge",
                merge,
            ]
        )
        == 2
    )
    assert message in capsys.readouterr().err


def test_merge_for_another_number_of_classes_is_refused(model_150, tmp_path, capsys):
    config, checkpoint = model_150
    label_map = tmp_path / "three.csv"
    label_map.write_text("source,target\n0,0\n1,0\n2,1\n", encoding="utf-8")
    assert (
        main(
            [
                "predict",
                str(config),
                "--checkpoint",
                str(checkpoint),
                str(write_image(tmp_path / "a.png")),
                "--out",
                str(tmp_path / "out"),
                "--merge",
                str(label_map),
            ]
        )
        == 2
    )
    assert "the label map merges 3 classes, but the model predicts 150" in capsys.readouterr().err


def test_merged_model_gives_the_evaluator_the_merged_probabilities_of_every_inference_mode():
    """Windows, scales and flips are all applied before merging, as ``segkit predict --merge``
    does; the evaluator's softmax of the merged model's output gives the merged probabilities
    renormalised over the kept groups, so the argmax is the merged argmax."""
    torch.manual_seed(0)
    model = Segmentor(engine_toys.ToyCNN(width=4), engine_toys.ToyHead(8, 150)).eval()
    settings = InferenceSettings(
        mode="slide", crop=(16, 16), stride=(8, 8), scales=(1.0, 1.5), flip=True
    )
    merge = ClassMerge(ADE20K25.label_map, ADE20K25.classes, ADE20K25.palette)
    images = torch.randn(2, 3, 24, 28)
    expected = merge(Predictor(model, settings).probabilities(images))
    scored = Predictor(
        MergedModel(Predictor(model, settings), merge), InferenceSettings()
    ).probabilities(images)
    torch.testing.assert_close(scored, expected / expected.sum(dim=1, keepdim=True))
    assert torch.equal(scored.argmax(dim=1), expected.argmax(dim=1))
