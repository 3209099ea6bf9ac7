"""Cityscapes, read from fixtures with the official file names and formats."""

from __future__ import annotations

import numpy as np
import pytest
from test_data_fixtures import every_value_mask, make_cityscapes, write_data_config

from segkit.builder import build
from segkit.cli import main
from segkit.errors import SegkitError

# The official labelId -> trainId table (cityscapesScripts' labels.py); all other ids -> 255.
TRAIN_ID = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}
CLASSES = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
]


def test_every_label_id_converts_to_its_train_id(tmp_path):
    label_ids = [
        every_value_mask(list(range(34)), 8, 10),
        every_value_mask(list(range(33, -1, -1)), 6, 9),
    ]
    make_cityscapes(tmp_path, "train", label_ids)
    dataset = build("dataset", {"type": "cityscapes", "root": str(tmp_path), "split": "train"})
    assert len(dataset) == 2 and dataset.problems == []
    for index, raw in enumerate(label_ids):
        expected = np.vectorize(lambda v: TRAIN_ID.get(int(v), 255))(raw)
        sample = dataset[index]
        assert np.array_equal(sample["mask"].numpy(), expected)
        assert sample["image"].shape == (3, *raw.shape)
    assert dataset[0]["name"] == "aachen_000000_000019"


def test_train_id_files_are_preferred_when_present(tmp_path):
    label_ids = [np.full((6, 8), 7)]  # road everywhere ...
    train_ids = [every_value_mask([*range(19), 255], 6, 8)]  # ... but the trainId file differs
    make_cityscapes(tmp_path, "val", label_ids, train_ids=train_ids)
    dataset = build("dataset", {"type": "cityscapes", "root": str(tmp_path), "split": "val"})
    assert np.array_equal(dataset[0]["mask"].numpy(), train_ids[0])


def test_nineteen_classes_with_official_colours(tmp_path):
    make_cityscapes(tmp_path, "test", [np.zeros((4, 4))])
    dataset = build("dataset", {"type": "cityscapes", "root": str(tmp_path), "split": "test"})
    assert dataset.classes == CLASSES
    assert dataset.palette[0] == (128, 64, 128) and dataset.palette[18] == (119, 11, 32)
    assert (dataset[0]["mask"] == 255).all()  # "unlabeled" only


def test_label_ids_beyond_33_are_reported_with_the_file(tmp_path):
    make_cityscapes(tmp_path, "train", [np.array([[7, 34], [40, 8]])])
    dataset = build("dataset", {"type": "cityscapes", "root": str(tmp_path), "split": "train"})
    with pytest.raises(SegkitError) as caught:
        dataset[0]
    message = str(caught.value)
    assert "aachen_000000_000019_gtFine_labelIds.png" in message
    assert "label values 34, 40" in message and "allowed: 0..33" in message


def test_missing_root_gives_layout_source_and_how_to_set_root(tmp_path):
    with pytest.raises(SegkitError) as caught:
        build("dataset", {"type": "cityscapes", "root": str(tmp_path), "split": "val"})
    message = str(caught.value)
    assert "Cityscapes not found" in message and "leftImg8bit/val" in message
    assert "gtFine_trainvaltest.zip" in message and "cityscapes-dataset.com" in message
    assert "data.root=" in message
    with pytest.raises(SegkitError, match="unknown split 'training'"):
        build("dataset", {"type": "cityscapes", "root": str(tmp_path), "split": "training"})


def test_image_without_annotation_is_a_problem_that_data_check_reports(
    tmp_path, data_plugins, capsys
):
    make_cityscapes(tmp_path / "cs", "val", [np.full((4, 6), 26), np.full((4, 6), 24)])
    label = tmp_path / "cs/gtFine/val/aachen/aachen_000001_000019_gtFine_labelIds.png"
    label.unlink()
    config = write_data_config(
        tmp_path / "cs.yaml",
        f"""
        root: {tmp_path / "cs"}
        workers: 0
        val: {{type: cityscapes, split: val}}
        """,
        num_classes=19,
    )
    assert main(["data", "check", str(config)]) == 2
    out = capsys.readouterr().out
    assert "aachen_000001_000019_leftImg8bit.png: image without a mask" in out
    assert "data.val: PROBLEMS" in out
