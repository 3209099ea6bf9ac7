"""ADE20K (150 classes) and its 25-class merge, read from fixtures in the original layout."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_fixtures import (
    every_value_mask,
    make_ade20k,
    write_data_config,
    write_odgt,
)

from segkit.builder import build
from segkit.cli import main
from segkit.errors import SegkitError

# The corrected 150 -> 25 merge, as ADE20K annotation values (1..150) per merged class.
MERGED = {
    "wall": [1, 43],
    "building": [2, 26, 49, 85],
    "sky": [3],
    "floor": [4],
    "tree": [5, 73],
    "ceiling": [6],
    "road": [7, 12, 53, 55],
    "bed": [8, 58],
    "cabinet": [11, 36, 45],
    "person": [13],
    "ground": [14, 30, 47],
    "door": [15, 59],
    "table": [16, 20, 31, 34, 46, 57, 65, 70, 71, 76, 100, 111],
    "mountain": [17, 35, 69],
    "plant": [10, 18, 67],
    "curtain": [19, 102],
    "vehicle": [21, 81, 84, 91, 103, 117, 128],
    "sofa": [24],
    "shelf": [25],
    "water": [22, 27, 61, 110, 129, 141],
    "lamp": [37, 83, 88],
    "signboard": [44, 101, 124, 143, 145],
    "stairs": [54, 60, 97, 122],
    "toilet": [38, 66],
    "screen": [75, 79, 90, 142, 144],
}
ALL_VALUES = list(range(151))  # 0 = "other", 1..150 = the classes


@pytest.fixture
def ade_root(tmp_path):
    masks = {
        "training": [
            every_value_mask(ALL_VALUES, 24, 32),
            every_value_mask(ALL_VALUES[::-1], 20, 30),
        ],
        "validation": [every_value_mask(ALL_VALUES, 16, 12)],
    }
    return make_ade20k(tmp_path / "data", masks)


def annotation(root, split, number):
    prefix = "ADE_train" if split == "training" else "ADE_val"
    path = root / "ADEChallengeData2016" / "annotations" / split / f"{prefix}_{number:08d}.png"
    return np.array(Image.open(path))


def test_ade20k_labels_are_annotation_minus_one_and_zero_is_ignored(ade_root):
    dataset = build("dataset", {"type": "ade20k", "root": str(ade_root), "split": "training"})
    assert len(dataset) == 2 and dataset.problems == []
    for index in range(2):
        raw = annotation(ade_root, "training", index + 1)
        sample = dataset[index]
        expected = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
        assert sample["mask"].dtype == torch.int64
        assert np.array_equal(sample["mask"].numpy(), expected)
        assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, *raw.shape)
    assert dataset[0]["name"] == "ADE_train_00000001"


def test_ade20k_has_150_named_classes_with_reference_colours(ade_root):
    dataset = build("dataset", {"type": "ade20k", "root": str(ade_root), "split": "val"})
    assert len(dataset.classes) == 150 and len(set(dataset.classes)) == 150
    assert dataset.classes[:5] == ["wall", "building", "sky", "floor", "tree"]
    assert dataset.classes[149] == "flag"
    assert dataset.palette[0] == (120, 120, 120) and dataset.palette[2] == (6, 230, 230)
    assert dataset.palette[149] == (92, 0, 255)


def test_ade20k25_relabels_every_one_of_the_150_labels(ade_root):
    dataset = build("dataset", {"type": "ade20k25", "root": str(ade_root), "split": "training"})
    assert dataset.classes == list(MERGED)
    target = {value: index for index, values in enumerate(MERGED.values()) for value in values}
    for index in range(2):
        raw = annotation(ade_root, "training", index + 1)
        expected = np.vectorize(lambda v: target.get(int(v), 255))(raw)
        got = dataset[index]["mask"].numpy()
        assert np.array_equal(got, expected)
    # The fixture holds all 151 values: 80 labels are kept or merged, the other 70 dropped.
    assert len(target) == 80 and set(np.unique(annotation(ade_root, "training", 1))) == set(
        ALL_VALUES
    )
    assert dataset.palette[6] == (140, 140, 140)  # road keeps ADE20K's road colour


def test_split_names_and_the_layout_folder_itself_are_accepted(ade_root):
    layout = ade_root / "ADEChallengeData2016"
    for root, split in ((ade_root, "train"), (layout, "training"), (layout, "val")):
        dataset = build("dataset", {"type": "ade20k", "root": str(root), "split": split})
        assert len(dataset) == (1 if split == "val" else 2)
    with pytest.raises(SegkitError, match="unknown split 'test'"):
        build("dataset", {"type": "ade20k", "root": str(ade_root), "split": "test"})


def test_odgt_index_lists_the_samples(ade_root):
    index = write_odgt(ade_root / "validation.odgt", ade_root, "validation")
    dataset = build("dataset", {"type": "ade20k", "index": str(index), "split": "val"})
    assert [dataset[i]["name"] for i in range(len(dataset))] == ["ADE_val_00000001"]
    with_root = build(
        "dataset", {"type": "ade20k", "root": str(ade_root), "index": "validation.odgt"}
    )
    assert len(with_root) == 1


def test_odgt_index_beside_the_layout_folder_is_found_from_either_root(ade_root):
    write_odgt(ade_root / "validation.odgt", ade_root, "validation")
    layout = ade_root / "ADEChallengeData2016"
    dataset = build("dataset", {"type": "ade20k", "root": str(layout), "index": "validation.odgt"})
    assert len(dataset) == 1


def test_missing_odgt_index_gives_the_layout_and_how_to_set_root(tmp_path):
    with pytest.raises(SegkitError) as caught:
        build("dataset", {"type": "ade20k", "root": str(tmp_path), "index": "validation.odgt"})
    message = str(caught.value)
    assert "no index file validation.odgt" in message
    assert "validation}.odgt" in message and "data.root=" in message


def ade20k_config(tmp_path, ade_root):
    """A config whose training and validation sets are the ADE20K fixture's."""
    return write_data_config(
        tmp_path / "ade.yaml",
        f"""
        root: {ade_root}
        workers: 0
        train: {{type: ade20k, split: training}}
        val: {{type: ade20k, split: validation}}
        """,
        num_classes=150,
    )


def test_images_without_annotations_are_listed_when_nothing_pairs_up(
    ade_root, data_plugins, tmp_path, capsys
):
    for mask in (ade_root / "ADEChallengeData2016" / "annotations" / "validation").iterdir():
        mask.unlink()
    config = ade20k_config(tmp_path, ade_root)
    assert main(["data", "check", str(config), "--split", "val"]) == 2
    out = capsys.readouterr().out
    assert "has no samples: none of its files pair up" in out
    assert re.search(
        r"ADE_val_00000001.jpg: image without a mask \(expected .*ADE_val_00000001.png\)", out
    )


def test_broken_odgt_line_names_file_and_line(tmp_path):
    index = tmp_path / "broken.odgt"
    index.write_text('{"fpath_img": "a.jpg", "fpath_segm": "a.png"}\nnot json\n', encoding="utf-8")
    with pytest.raises(SegkitError, match=r"broken.odgt:2: expected a JSON object"):
        build("dataset", {"type": "ade20k", "index": str(index)})


def odgt_with_an_entry_outside(ade_root, tmp_path, key, path):
    """validation.odgt beside the layout folder: line 1 the real sample, line 2 the same sample
    with ``key`` replaced by ``path``. The file ``path`` leads to exists (a copy outside the
    root), so only the location can be wrong."""
    index = write_odgt(ade_root / "validation.odgt", ade_root, "validation")
    good = json.loads(index.read_text(encoding="utf-8").splitlines()[0])
    outside = tmp_path / "elsewhere" / Path(good[key]).name
    outside.parent.mkdir()
    shutil.copy(ade_root / good[key], outside)
    escaped = {**good, key: path.format(outside=outside)}
    index.write_text(json.dumps(good) + "\n" + json.dumps(escaped) + "\n", encoding="utf-8")
    return index, escaped[key]


ESCAPES = [
    ("fpath_img", "../elsewhere/ADE_val_00000001.jpg"),
    ("fpath_segm", "ADEChallengeData2016/../../elsewhere/ADE_val_00000001.png"),
    ("fpath_img", "{outside}"),
    ("fpath_segm", "{outside}"),
]


@pytest.mark.parametrize(
    "key, path", ESCAPES, ids=["dotdot", "dotdot-inside", "absolute-img", "absolute-segm"]
)
def test_odgt_entry_outside_the_data_root_names_index_line_and_path(ade_root, tmp_path, key, path):
    index, written = odgt_with_an_entry_outside(ade_root, tmp_path, key, path)
    with pytest.raises(SegkitError) as caught:
        build("dataset", {"type": "ade20k", "root": str(ade_root), "index": "validation.odgt"})
    message = str(caught.value)
    assert f"{index}:2: {key} '{written}' is outside the data root {ade_root};" in message
    assert "allow_outside_root: true" in message


def test_odgt_entry_outside_the_index_folder_is_refused_without_a_root(ade_root, tmp_path):
    index, _ = odgt_with_an_entry_outside(
        ade_root, tmp_path, "fpath_img", "../elsewhere/ADE_val_00000001.jpg"
    )
    with pytest.raises(SegkitError, match=r"validation.odgt:2: fpath_img '\.\./elsewhere/"):
        build("dataset", {"type": "ade20k25", "index": str(index)})


@pytest.mark.parametrize("key, path", ESCAPES[::2], ids=["dotdot", "absolute"])
def test_allow_outside_root_reads_entries_from_elsewhere(ade_root, tmp_path, key, path):
    odgt_with_an_entry_outside(ade_root, tmp_path, key, path)
    spec = {
        "type": "ade20k",
        "root": str(ade_root),
        "index": "validation.odgt",
        "allow_outside_root": True,
    }
    dataset = build("dataset", spec)
    assert len(dataset) == 2 and dataset.problems == []
    second = dataset.pairs[1]
    assert tmp_path / "elsewhere" in {second.image.resolve().parent, second.mask.resolve().parent}


@pytest.mark.usefixtures("data_plugins")
def test_data_check_refuses_an_escaping_index_unless_the_config_allows_it(
    ade_root, tmp_path, capsys
):
    index, _ = odgt_with_an_entry_outside(
        ade_root, tmp_path, "fpath_segm", "../elsewhere/ADE_val_00000001.png"
    )
    config = write_data_config(
        tmp_path / "ade.yaml",
        f"""
        root: {ade_root}
        workers: 0
        val: {{type: ade20k, index: validation.odgt}}
        """,
        num_classes=150,
    )
    assert main(["data", "check", str(config)]) == 2
    assert (
        f"{index}:2: fpath_segm '../elsewhere/ADE_val_00000001.png' is outside"
        in capsys.readouterr().out
    )
    assert main(["data", "check", str(config), "+data.val.allow_outside_root=true"]) == 0
    assert "data.val: ade20k, 2 samples, 150 classes" in capsys.readouterr().out


@pytest.mark.parametrize("root", [None, "missing"])
def test_missing_root_gives_layout_source_and_how_to_set_root(tmp_path, root):
    spec = {"type": "ade20k", "split": "training"}
    if root is not None:
        spec["root"] = str(tmp_path / root)
    with pytest.raises(SegkitError) as caught:
        build("dataset", spec)
    message = str(caught.value)
    assert "ADE20K not found" in message
    assert "ADEChallengeData2016/images/training" in message
    assert "ADEChallengeData2016.zip" in message and "sceneparsing.csail.mit.edu" in message
    assert "data.root=" in message


def test_data_check_is_clean_on_ade20k_fixture(ade_root, data_plugins, tmp_path, capsys):
    config = ade20k_config(tmp_path, ade_root)
    assert main(["data", "check", str(config)]) == 0
    out = capsys.readouterr().out
    assert "data.train: ade20k, 2 samples, 150 classes" in out
    assert "data.val: OK" in out and "data.train: OK" in out
    # Every class occurs in every training image; value 0 is the ignored share.
    assert "  149  flag" in out


def test_data_check_of_ade20k25_counts_merged_classes(ade_root, data_plugins, tmp_path, capsys):
    config = write_data_config(
        tmp_path / "ade25.yaml",
        f"""
        root: {ade_root}
        workers: 0
        val: {{type: ade20k25, split: validation}}
        """,
        num_classes=25,
    )
    assert main(["data", "check", str(config)]) == 0
    out = capsys.readouterr().out
    rows = dict(re.findall(r"(?m)^\s+\d+\s+(\w+)\s+([\d,]+)\s", out))
    # 192 pixels cycle through the 151 values: value v occurs twice when v < 41, else once.
    assert rows["road"] == str(sum(2 if v < 41 else 1 for v in MERGED["road"]))
    assert rows["sky"] == "2" and rows["table"] == str(
        sum(2 if v < 41 else 1 for v in MERGED["table"])
    )
