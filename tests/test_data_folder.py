"""The folder dataset: a user's own images and masks, configured without code."""

from __future__ import annotations

import io
import os
import textwrap

import numpy as np
import pytest
from conftest import run_segkit
from PIL import Image
from test_data_fixtures import photo, write_data_config, write_jpeg, write_png

from segkit.builder import build
from segkit.cli import main
from segkit.commands.table import printable
from segkit.errors import SegkitError


@pytest.fixture
def user_data(tmp_path):
    """Two sub-folders of JPEGs, masks with a '_mask.png' suffix; values 0..2 and 255."""
    root = tmp_path / "mydata"
    masks = {
        "street/a": np.array([[0, 1, 2, 255]] * 6),
        "street/b": np.array([[2, 2, 1, 0]] * 6),
        "park/c": np.array([[1, 1, 1, 1]] * 6),
    }
    for name, mask in masks.items():
        write_jpeg(root / "img" / f"{name}.jpg", photo(6, 4))
        write_png(root / "ann" / f"{name}_mask.png", mask)
    return root, masks


def folder(root, **options):
    spec = {
        "type": "folder",
        "root": str(root),
        "images": "img",
        "masks": "ann",
        "mask_suffix": "_mask.png",
        "classes": ["road", "car", "tree"],
        **options,
    }
    return build("dataset", spec)


def test_pairs_by_relative_name_with_custom_suffixes(user_data):
    root, masks = user_data
    dataset = folder(root)
    assert [dataset[i]["name"] for i in range(len(dataset))] == ["park/c", "street/a", "street/b"]
    for index, name in enumerate(sorted(masks)):
        assert np.array_equal(dataset[index]["mask"].numpy(), masks[name])
    assert dataset.classes == ["road", "car", "tree"] and len(dataset.palette) == 3
    assert len(set(dataset.palette)) == 3


def test_reads_by_default_every_image_suffix_segkit_predict_reads(tmp_path):
    from segkit.imagefiles import IMAGE_SUFFIXES

    (tmp_path / "img").mkdir()
    for index, suffix in enumerate(IMAGE_SUFFIXES):
        Image.fromarray(photo(6, 4, seed=index)).save(tmp_path / "img" / f"s{index}{suffix}")
        write_png(tmp_path / "ann" / f"s{index}_mask.png", np.zeros((6, 4)))
    assert len(folder(tmp_path)) == len(IMAGE_SUFFIXES) == 7


def test_label_map_and_ignore_value(user_data):
    root, _ = user_data
    inline = folder(
        root, classes=["ground", "thing"], label_map={0: 0, 1: 1, 2: 1}, ignore_index=255
    )
    assert inline[2]["mask"][0].tolist() == [1, 1, 1, 0]  # street/b: 2, 2, 1, 0
    (root / "map.csv").write_text("source,target\n0,1\n1,0\n2,\n", encoding="utf-8")
    from_file = folder(root, classes=["a", "b"], label_map="map.csv")
    assert from_file[1]["mask"][0].tolist() == [1, 0, 255, 255]
    ignore_zero = folder(root, classes=["x", "y", "z"], ignore_index=0)
    assert ignore_zero[2]["mask"][0].tolist() == [2, 2, 1, 255]
    with pytest.raises(SegkitError, match="label values 255 are outside"):
        ignore_zero[1]  # 255 is no longer "ignore", and not a class
    with pytest.raises(SegkitError, match="label_map maps to class 1 but there are only 1 classes"):
        folder(root, classes=["only"], label_map={0: 0, 1: 1})
    with pytest.raises(SegkitError, match="label_map maps 255, which is also ignore_index"):
        folder(root, classes=["a", "b"], label_map={0: 0, 255: 1})


def test_binary_masks_stored_as_0_and_255(tmp_path):
    write_jpeg(tmp_path / "img" / "a.jpg", photo(4, 4))
    write_png(tmp_path / "ann" / "a.png", np.array([[0, 255, 255, 0]] * 4))
    dataset = build(
        "dataset",
        {
            "type": "folder",
            "images": str(tmp_path / "img"),
            "masks": str(tmp_path / "ann"),
            "classes": ["background", "object"],
            "label_map": {0: 0, 255: 1},
            "ignore_index": None,
        },
    )
    assert dataset[0]["mask"][0].tolist() == [0, 1, 1, 0]


def test_values_beyond_the_class_list_are_named(user_data):
    root, _ = user_data
    dataset = folder(root, classes=["road", "car"])
    with pytest.raises(
        SegkitError, match=r"street/a_mask.png: label values 2 are outside .*allowed: 0..1, 255"
    ):
        dataset[1]


def test_classes_and_palette_from_a_csv_file(user_data):
    root, _ = user_data
    (root / "classes.csv").write_text(
        "name,r,g,b\nroad,1,2,3\ncar,4,5,6\ntree,7,8,9\n", encoding="utf-8"
    )
    dataset = folder(root, classes="classes.csv")
    assert dataset.classes == ["road", "car", "tree"] and dataset.palette[2] == (7, 8, 9)
    (root / "names.txt").write_text("road\ncar\ntree\n", encoding="utf-8")
    assert folder(root, classes="names.txt").classes == ["road", "car", "tree"]


def test_images_and_masks_in_one_folder(tmp_path):
    write_jpeg(tmp_path / "all" / "x.png", photo(4, 4))  # a PNG image ...
    Image.fromarray(photo(4, 4)).save(tmp_path / "all" / "x.png")
    write_png(tmp_path / "all" / "x_mask.png", np.zeros((4, 4)))  # ... beside its mask
    dataset = build(
        "dataset",
        {
            "type": "folder",
            "images": str(tmp_path / "all"),
            "masks": str(tmp_path / "all"),
            "mask_suffix": "_mask.png",
            "classes": ["a"],
        },
    )
    assert len(dataset) == 1 and dataset.problems == []


def test_missing_folder_and_unmatched_files_are_reported(user_data):
    root, _ = user_data
    with pytest.raises(SegkitError, match="images folder .*nothere' not found"):
        folder(root, images="nothere")
    (root / "ann/park/c_mask.png").unlink()
    write_png(root / "ann/extra_mask.png", np.zeros((6, 4)))
    dataset = folder(root)
    assert len(dataset) == 2
    assert any("park/c.jpg: image without a mask" in p for p in dataset.problems)
    assert any("extra_mask.png: mask without an image" in p for p in dataset.problems)


def test_data_check_is_clean_on_a_folder_dataset(user_data, data_plugins, tmp_path, capsys):
    root, _ = user_data
    config = write_data_config(
        tmp_path / "mine.yaml",
        f"""
        root: {root}
        workers: 0
        train: {{type: folder, images: img, masks: ann, mask_suffix: _mask.png, classes: [road, car, tree]}}
        """,
        num_classes=3,
    )
    assert main(["data", "check", str(config)]) == 0
    out = capsys.readouterr().out
    assert "data.train: folder, 3 samples, 3 classes" in out and "data.train: OK" in out
    assert "(66 labelled pixels; 8.3% ignored)" in out


UNDECODABLE = os.fsdecode(b"bad\xff")  # a name that is not UTF-8, as Python reads it from disk


@pytest.mark.parametrize("encoding, cafe", [("ascii", "caf\\xe9"), ("utf-8", "caf\u00e9")])
def test_data_check_prints_undecodable_file_names_under_any_stdout_encoding(
    user_data, tmp_path, encoding, cafe
):
    root, _ = user_data
    write_jpeg(root / "img" / f"{UNDECODABLE}.jpg", photo(6, 4))
    write_jpeg(root / "img" / "caf\u00e9.jpg", photo(6, 4))
    config = tmp_path / "mine.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        model:
          backbone: {{type: resnet18}}
          head: {{type: fcn, channels: 8}}
          num_classes: 3
        data:
          root: {root}
          workers: 0
          train: {{type: folder, images: img, masks: ann, mask_suffix: _mask.png, classes: [road, car, tree]}}
        """),
        encoding="utf-8",
    )
    result = run_segkit("data", "check", str(config), env={"PYTHONIOENCODING": encoding})
    assert result.returncode == 2, result.stderr  # two images without masks
    assert "UnicodeEncodeError" not in result.stderr and "Traceback" not in result.stderr
    assert (
        f"img/bad\\xff.jpg: image without a mask (expected {root}/ann/bad\\xff_mask.png)"
        in result.stdout
    )
    assert f"img/{cafe}.jpg: image without a mask" in result.stdout
    assert result.stdout.rstrip().endswith("data.train: PROBLEMS")


def test_printable_escapes_only_what_the_stream_cannot_encode():
    ascii_stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    utf8_stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    name = f"{UNDECODABLE}/caf\u00e9\ud800.png"
    assert printable(name, ascii_stream) == "bad\\xff/caf\\xe9\\ud800.png"
    assert printable(name, utf8_stream) == "bad\\xff/caf\u00e9\\ud800.png"
    assert printable("plain/name.png", ascii_stream) == "plain/name.png"
