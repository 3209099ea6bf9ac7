"""`segkit data import`: COCO and labelme files in their real formats -> masks, classes.csv."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from segkit.cli import main
from segkit.data import build_raw_dataset

coco_mask = pytest.importorskip("pycocotools.mask")

H, W = 6, 8


def image(path, height=H, width=W):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path)


def mask_of(out, name):
    return np.array(Image.open(out / "masks" / f"{name}.png"))


def compressed_rle(area):
    rle = coco_mask.encode(np.asfortranarray(area.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def uncompressed_rle(area):
    flat, counts, current, run = area.flatten(order="F"), [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    return {"size": list(area.shape), "counts": [*counts, run]}


def box(top, bottom, left, right):
    area = np.zeros((H, W), bool)
    area[top:bottom, left:right] = True
    return area


@pytest.fixture
def coco(tmp_path):
    """Image 1: a 4x4 'dog' polygon (pixels 0..3), a 'cat' square inside it (RLE, listed
    first), a crowd RLE, and a 'dog' uncompressed RLE overlapping the cat."""
    image(tmp_path / "images" / "city" / "x.jpg")
    image(tmp_path / "images" / "y.jpg")
    data = {
        "images": [
            {"id": 1, "file_name": "city/x.jpg", "height": H, "width": W},
            {"id": 2, "file_name": "y.jpg", "height": H, "width": W},
        ],
        "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
        "annotations": [
            {"image_id": 1, "category_id": 7, "segmentation": compressed_rle(box(1, 3, 1, 3))},
            {"image_id": 1, "category_id": 3, "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]},
            {
                "image_id": 1,
                "category_id": 7,
                "iscrowd": 1,
                "segmentation": compressed_rle(box(4, 6, 6, 8)),
            },
            {"image_id": 1, "category_id": 3, "segmentation": uncompressed_rle(box(2, 3, 2, 6))},
            {"image_id": 1, "category_id": 3, "segmentation": [[1, 1, 2, 2]]},
            {"image_id": 9, "category_id": 3, "segmentation": [[1, 1, 2, 1, 2, 2]]},
            {"image_id": 2, "category_id": 99, "segmentation": [[1, 1, 2, 1, 2, 2]]},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def run_coco(coco, out, *options):
    return main(
        [
            "data",
            "import",
            "--from",
            "coco",
            str(coco),
            "--images",
            str(coco.parent / "images"),
            "--out",
            str(out),
            *options,
        ]
    )


def test_coco_larger_rule_keeps_small_objects_and_crowd_is_ignored(coco, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_coco(coco, out) == 0
    # classes: background 0, dog (id 3) 1, cat (id 7) 2 -- sorted by category id
    expected = np.zeros((H, W), np.uint8)
    expected[0:4, 0:4] = 1  # the dog polygon (16 pixels) is drawn first, beneath the rest
    expected[1:3, 1:3] = 2  # then the 4-pixel regions in file order: the cat,
    expected[4:6, 6:8] = 255  # the crowd,
    expected[2:3, 2:6] = 1  # and the dog RLE, over the cat's corner (2, 2)
    np.testing.assert_array_equal(mask_of(out, "city/x"), expected)
    np.testing.assert_array_equal(mask_of(out, "y"), np.zeros((H, W), np.uint8))
    assert (out / "classes.csv").read_text().splitlines()[:3] == [
        "name,r,g,b",
        "background,0,0,0",
        "dog,0,59,203",
    ]
    report = capsys.readouterr().out
    assert "degenerate polygon" in report and "annotations[4]" in report
    assert "image id not listed in 'images'" in report and "annotations[5]" in report
    assert "category_id is not in 'categories'" in report and "annotations[6]" in report
    assert f"masks: {(out / 'masks').resolve()}" in report


def test_coco_later_rule_and_crowd_as_class_and_background_ignored(coco, tmp_path):
    out = tmp_path / "out"
    assert (
        run_coco(coco, out, "--overlap", "later", "--crowd", "class", "--background", "ignore") == 0
    )
    expected = np.full((H, W), 255, np.uint8)  # classes: dog 0, cat 1
    expected[0:4, 0:4] = 0  # the dog polygon covers the cat listed before it
    expected[4:6, 6:8] = 1  # crowd cat painted as its class
    expected[2:3, 2:6] = 0
    np.testing.assert_array_equal(mask_of(out, "city/x"), expected)


def test_coco_explicit_order_puts_later_names_on_top(coco, tmp_path):
    out = tmp_path / "out"
    assert run_coco(coco, out, "--order", "dog,cat", "--crowd", "skip") == 0
    expected = np.zeros((H, W), np.uint8)
    expected[0:4, 0:4] = 1
    expected[2:3, 2:6] = 1
    expected[1:3, 1:3] = 2  # cat above every dog
    np.testing.assert_array_equal(mask_of(out, "city/x"), expected)


def test_import_trains_through_the_folder_dataset(coco, tmp_path):
    out = tmp_path / "out"
    assert run_coco(coco, out) == 0
    config = {
        "data": {
            "train": {
                "type": "folder",
                "images": str(coco.parent / "images"),
                "masks": str(out / "masks"),
                "classes": str(out / "classes.csv"),
            }
        }
    }
    dataset = build_raw_dataset(config, "train")
    assert dataset.classes == ["background", "dog", "cat"] and len(dataset) == 2
    assert not dataset.problems
    sample = dataset[0]
    assert sample["name"] == "city/x" and int(sample["mask"][0, 0]) == 1
    assert int(sample["mask"][5, 7]) == 255


def test_bad_json_names_file_and_position(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [\n  {"id": 1,}\n]}')
    assert main(["data", "import", "--from", "coco", str(bad), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert f"{bad}:2:" in error and "not valid JSON" in error and "Traceback" not in error
    assert not (tmp_path / "o").exists()


def test_unknown_order_name_is_refused(coco, tmp_path, capsys):
    assert run_coco(coco, tmp_path / "out", "--order", "dog,cow") == 2
    assert "--order names cow" in capsys.readouterr().err


def test_an_earlier_import_is_not_mixed_in_without_overwrite(coco, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_coco(coco, out) == 0
    assert run_coco(coco, out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run_coco(coco, out, "--overwrite") == 0


def test_missing_coco_extra_names_it(coco, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "pycocotools.mask", None)  # import fails
    assert run_coco(coco, tmp_path / "out") == 2
    assert "pip install 'segkit[coco]'" in capsys.readouterr().err


def labelme_file(folder, name, shapes, **extra):
    image(folder / f"{name}.png", 10, 12)
    data = {"imagePath": f"{name}.png", "imageHeight": 10, "imageWidth": 12, "shapes": shapes}
    data.update(extra)
    (folder / f"{name}.json").write_text(json.dumps(data))


def shape(label, kind, points):
    return {"label": label, "points": points, "shape_type": kind, "group_id": None, "flags": {}}


def test_labelme_shapes_later_on_top_and_unsupported_reported(tmp_path, capsys):
    folder = tmp_path / "lm"
    folder.mkdir()
    labelme_file(
        folder,
        "a",
        [
            shape("road", "polygon", [[0, 0], [11, 0], [11, 9], [0, 9]]),
            shape("car", "rectangle", [[5, 4], [2, 2]]),
            shape("ball", "circle", [[8, 5], [8, 7]]),
            shape("lane", "line", [[0, 0], [5, 5]]),
            shape("car", "polygon", [[1, 1], [2, 2]]),
        ],
    )
    (folder / "empty.json").write_text("")
    out = tmp_path / "out"
    assert main(["data", "import", "--from", "labelme", str(folder), "--out", str(out)]) == 0
    mask = mask_of(out, "a")
    # classes: background 0, then the labels sorted: ball 1, car 2, road 3
    expected = np.full((10, 12), 3, np.uint8)
    expected[2:5, 2:6] = 2  # rectangle with its outline: x 2..5, y 2..4
    np.testing.assert_array_equal(mask[:, :6], expected[:, :6])
    # the circle (centre 8,5, radius 2) is drawn over the road: its extreme points are in
    for y, x in [(5, 8), (3, 8), (7, 8), (5, 6), (5, 10)]:
        assert mask[y, x] == 1
    assert mask[3, 6] == 3 and mask[8, 8] == 3 and (mask == 1).sum() == 21
    report = capsys.readouterr().out
    assert "shape type 'line' encloses no area" in report and "shapes[3]" in report
    assert "degenerate polygon (2 points)" in report and "shapes[4]" in report
    assert "empty file" in report and "empty.json" in report


def test_labelme_classes_file_fixes_order_and_reports_unknown_labels(tmp_path, capsys):
    folder = tmp_path / "lm"
    folder.mkdir()
    labelme_file(
        folder,
        "a",
        [
            shape("car", "rectangle", [[0, 0], [3, 3]]),
            shape("tree", "rectangle", [[4, 4], [6, 6]]),
            shape("road", "rectangle", [[2, 2], [5, 5]]),
        ],
    )
    classes = tmp_path / "labels.txt"
    classes.write_text("_background_\nroad\ncar\n")
    out = tmp_path / "out"
    args = ["data", "import", "--from", "labelme", str(folder / "a.json"), "--out", str(out)]
    assert main([*args, "--classes", str(classes), "--order", "road,car"]) == 0
    mask = mask_of(out, "a")
    expected = np.zeros((10, 12), np.uint8)
    expected[2:6, 2:6] = 1  # road
    expected[0:4, 0:4] = 2  # car on top by --order
    np.testing.assert_array_equal(mask, expected)
    assert "label not in the --classes file" in capsys.readouterr().out
    assert [line.split(",")[0] for line in (out / "classes.csv").read_text().splitlines()] == [
        "name",
        "_background_",
        "road",
        "car",
    ]


def test_labelme_file_naming_a_missing_image_is_reported(tmp_path, capsys):
    folder = tmp_path / "lm"
    folder.mkdir()
    labelme_file(folder, "a", [shape("car", "rectangle", [[0, 0], [3, 3]])])
    (folder / "b.json").write_text(json.dumps({"imagePath": "gone.png", "shapes": []}))
    assert (
        main(["data", "import", "--from", "labelme", str(folder), "--out", str(tmp_path / "o")])
        == 0
    )
    report = capsys.readouterr().out
    assert "image file not found" in report and "b.json" in report


def test_import_passes_data_check(coco, tmp_path):
    out = tmp_path / "out"
    assert run_coco(coco, out) == 0
    config = tmp_path / "config.yaml"
    config.write_text(
        "model: {backbone: {type: resnet18}, head: {type: fcn}, num_classes: 3}\n"
        "data:\n  workers: 0\n  train:\n    type: folder\n"
        f"    images: {coco.parent / 'images'}\n    masks: {out / 'masks'}\n"
        f"    classes: {out / 'classes.csv'}\n"
    )
    assert main(["data", "check", str(config)]) == 0
