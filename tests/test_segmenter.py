"""``segkit.load(...).predict`` and ``segkit predict`` around it: one code path, the same pixels,
and the command's files, names and failures."""

from __future__ import annotations

import json

import engine_toys
import numpy as np
import pytest
import torch
from engine_toys import write_toy_config
from PIL import Image

import segkit
import segkit.plugins
from segkit.cli import main
from segkit.components import Provider

SIZES = [(32, 32), (32, 32), (20, 28), (32, 32), (24, 16)]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A toy model trained for 3 iterations whose stored config has a sliding window and
    batches two validation images: (config file, last.pt, folder of images of mixed sizes)."""
    folder = tmp_path_factory.mktemp("model")
    with pytest.MonkeyPatch.context() as patch:
        loaded = segkit.plugins.Plugins()
        loaded.load_entry_points()
        loaded.add(engine_toys, Provider("toys", "test-plugins", "0.0"))
        patch.setattr(segkit.plugins, "_loaded", loaded)
        config = write_toy_config(
            folder,
            train="train: {max_iters: 3, eval_interval: 0, precision: fp32, device: cpu}\n",
            data="data:\n  train: {type: toy_shapes, count: 8}\n  val: {type: toy_shapes, "
            "count: 2, seed: 1}\n  batch_size: 4\n  val_batch_size: 2\n  workers: 0\n",
            eval="eval: {crop: [16, 16], stride: [10, 10]}\n",
        )
        assert main(["train", str(config), "--work-dir", str(folder / "run")]) == 0
        images = write_images(folder / "images", SIZES)
        yield config, folder / "run/checkpoints/last.pt", images
    segkit.plugins.reset()


def write_images(folder, sizes, prefix="img"):
    folder.mkdir(parents=True)
    paths = []
    for index, (height, width) in enumerate(sizes):
        sample = engine_toys.ToyShapes(count=index + 1, sizes=[[height, width]], seed=7)[index]
        path = folder / f"{prefix}{index}.png"
        Image.fromarray(sample["image"].permute(1, 2, 0).numpy()).save(path)
        paths.append(path)
    return paths


def read_png(path):
    with Image.open(path) as picture:
        return np.asarray(picture).copy()


@pytest.fixture
def merge_map(tmp_path):
    path = tmp_path / "merge.csv"
    path.write_text("source,target,target_name\n0,0,background\n1,1,coloured\n2,1,coloured\n")
    return path


MODES = {
    "whole": ({}, []),
    "slide": ({"mode": "slide"}, ["--mode", "slide"]),
    "tta": ({"tta": True}, ["--tta"]),
    "resize": ({"resize": 12}, ["--resize", "12"]),
}


@pytest.mark.parametrize("mode", [*MODES, "merge"])
def test_python_predict_equals_segkit_predict_pixel_for_pixel(model, tmp_path, merge_map, mode):
    _, checkpoint, images = model
    options, flags = MODES.get(mode, ({"merge": merge_map}, ["--merge", str(merge_map)]))
    out = tmp_path / "out"
    command = ["predict", "--checkpoint", str(checkpoint), str(images[0].parent), "--out"]
    assert main([*command, str(out), *flags]) == 0
    masks = segkit.load(checkpoint).predict(images, **options)
    for path, mask in zip(images, masks):
        assert mask.dtype == np.int64 and mask.shape == read_png(path).shape[:2]
        assert np.array_equal(read_png(out / f"{path.stem}.png"), mask), path.name
    if mode == "merge":
        assert set(np.unique(np.concatenate([m.ravel() for m in masks]))) <= {0, 1}


def test_every_input_form_gives_the_same_class_map(model):
    _, checkpoint, images = model
    segmenter = segkit.load(checkpoint)
    with Image.open(images[2]) as opened:
        picture = opened.copy()
    array = np.asarray(picture)
    expected = segmenter.predict(images[2])
    for form in (str(images[2]), picture, array, torch.from_numpy(array.copy()).permute(2, 0, 1)):
        assert np.array_equal(segmenter.predict(form), expected), type(form).__name__
    assert [m.shape for m in segmenter.predict([array, images[4]])] == [(20, 28), (24, 16)]
    assert segmenter.predict([]) == []


@pytest.mark.parametrize(
    "given, named",
    [
        (
            np.zeros((8, 8, 3), dtype=np.float32),
            "a numpy array of shape (8, 8, 3) and dtype float32",
        ),
        (np.zeros((8, 8, 3, 1), dtype=np.uint8), "a numpy array of shape (8, 8, 3, 1)"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "a tensor of shape (1, 3, 8, 8)"),
        (7, "a int"),
    ],
    ids=["float", "4d-array", "4d", "int"],
)
def test_predict_refuses_what_it_cannot_take_and_says_what_it_takes(model, given, named):
    segmenter = segkit.load(model[1])
    with pytest.raises(segkit.SegkitError) as refused:
        segmenter.predict([np.zeros((8, 8, 3), dtype=np.uint8), given])
    message = str(refused.value)
    assert message.startswith(f"image 1 of the list is {named}")
    assert (
        "accepted: a path, a PIL image, an HxWxC numpy array (HxW for one channel), a CxHxW"
        in message
    )


def test_probabilities_sum_to_one_and_their_argmax_is_the_mask(model):
    _, checkpoint, images = model
    mask, probabilities = segkit.load(checkpoint).predict(images[2], return_probs=True)
    assert probabilities.shape == (3, 20, 28) and probabilities.dtype == np.float32
    assert np.allclose(probabilities.sum(axis=0), 1, atol=1e-5)
    assert np.array_equal(probabilities.argmax(axis=0), mask)


def test_classes_palette_colorize_and_overlay(model):
    _, checkpoint, images = model
    segmenter = segkit.load(checkpoint)
    assert segmenter.classes == engine_toys.CLASSES
    assert [tuple(c) for c in segmenter.palette] == [tuple(c) for c in engine_toys.PALETTE]
    mask = segmenter.predict(images[2])
    colours = segmenter.colorize(mask)
    assert colours.shape == (20, 28, 3) and colours.dtype == np.uint8
    assert np.array_equal(colours, np.asarray(engine_toys.PALETTE, dtype=np.uint8)[mask])
    picture = np.asarray(Image.open(images[2]).convert("RGB"))
    blended = segmenter.overlay(images[2], mask, alpha=0.5)
    expected = (picture.astype(np.float32) * 0.5 + colours * 0.5).round().astype(np.uint8)
    assert np.array_equal(blended, expected)
    assert np.array_equal(segmenter.overlay(picture, mask, alpha=0.0), picture)


def test_load_takes_a_config_file_or_dict_and_a_state_dict_needs_one(model, tmp_path):
    config, checkpoint, images = model
    expected = segkit.load(checkpoint).predict(images[0])
    stored = torch.load(checkpoint, weights_only=True)
    assert np.array_equal(segkit.load(checkpoint, config).predict(images[0]), expected)
    assert np.array_equal(segkit.load(checkpoint, stored["config"]).predict(images[0]), expected)
    bare = tmp_path / "weights.pt"
    torch.save(stored["model"], bare)
    with pytest.raises(segkit.SegkitError, match="weights.pt stores no config .* give the model"):
        segkit.load(bare)
    with pytest.raises(segkit.SegkitError, match="precision 'fp8' is not one of auto, fp32"):
        segkit.load(checkpoint, precision="fp8")
    assert segkit.load(bare, config, device="cpu").device == torch.device("cpu")


# ---- the command ----------------------------------------------------------------------------


def test_predict_and_eval_without_config_use_the_stored_one(model, tmp_path, capsys):
    config, checkpoint, images = model
    out = tmp_path / "out"
    # overrides anywhere on the line, also after the options
    assert (
        main(["predict", "--checkpoint", str(checkpoint), "--out", str(out), str(images[0])]) == 0
    )
    assert (
        main(
            ["predict", str(config), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "c")]
            + [str(images[0])]
        )
        == 0
    )
    assert np.array_equal(read_png(out / "img0.png"), read_png(tmp_path / "c/img0.png"))
    report = tmp_path / "eval.json"
    argv = ["eval", "--checkpoint", str(checkpoint), "--out", str(report), "eval.mode=slide"]
    assert main(argv) == 0
    written = json.loads(report.read_text())
    assert written["mode"] == "slide" and written["config"].endswith("(its stored config)")
    bare = tmp_path / "weights.pt"
    torch.save(torch.load(checkpoint, weights_only=True)["model"], bare)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(bare)]) == 2
    err = capsys.readouterr().err
    assert "weights.pt stores no config" in err and "give the model's config" in err
    assert "Traceback" not in err
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(checkpoint),
                str(images[0]),
                "--out",
                str(out),
                "eval.crpo=1",
            ]
        )
        == 2
    )
    assert "eval.crpo: no such key 'crpo'; did you mean 'crop'?" in capsys.readouterr().err


def test_predict_keeps_the_layout_of_folders_and_searches_them_recursively(model, tmp_path):
    _, checkpoint, _ = model
    photos = tmp_path / "photos"
    write_images(photos, [(32, 32)], prefix="a")
    write_images(photos / "sub", [(20, 28)], prefix="a")
    (photos / "sub/notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), str(photos), "--out", str(out)]) == 0
    assert read_png(out / "a0.png").shape == (32, 32)
    assert read_png(out / "sub/a0.png").shape == (20, 28)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "a0.png",
        "sub/a0.png",
    ]


def test_skip_bad_goes_on_past_unreadable_images_and_lists_them(model, tmp_path, capsys):
    _, checkpoint, _ = model
    photos = tmp_path / "photos"
    write_images(photos, [(32, 32), (20, 28)])
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    command = ["predict", "--checkpoint", str(checkpoint), str(photos), "--out", str(out)]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "broken.png: cannot read the image" in err and "--skip-bad" in err
    assert main([*command, "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "segkit: warning: skipped 1 unreadable image(s):\n  " in err and "broken.png" in err
    assert sorted(p.name for p in out.glob("img*.png")) == ["img0.png", "img1.png"]
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.jpg").write_bytes(b"junk")
    argv = ["predict", "--checkpoint", str(checkpoint), str(only_bad), "--out", str(out)]
    assert main([*argv, "--skip-bad"]) == 2
    assert "none of the 1 image(s) could be read" in capsys.readouterr().err


def test_probs_writes_the_confidence_and_the_class_probabilities(model, tmp_path):
    _, checkpoint, images = model
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", str(checkpoint), str(images[2]), "--out", str(out)]
    assert main([*argv, "--probs", "--probs-npy"]) == 0
    _, probabilities = segkit.load(checkpoint).predict(images[2], return_probs=True)
    with Image.open(out / "img2_conf.png") as picture:
        assert picture.mode == "L" and picture.size == (28, 20)
        confidence = np.asarray(picture)
    assert np.array_equal(confidence, np.round(probabilities.max(axis=0) * 255).astype(np.uint8))
    stored = np.load(out / "img2_probs.npy")
    assert stored.dtype == np.float16 and stored.shape == (3, 20, 28)
    assert np.allclose(stored, probabilities, atol=1e-3)


def test_resize_runs_at_the_validation_scale_and_returns_the_input_size(model, tmp_path, capsys):
    _, checkpoint, images = model
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", str(checkpoint), str(images[2]), "--out", str(out)]
    assert main([*argv, "--resize", "val"]) == 2
    assert "data.val.transforms has no resize transform" in capsys.readouterr().err
    resize = "data.val.transforms=[{type: resize, size: [14, 10]}]"
    assert main([*argv, "--resize", "val", resize]) == 0
    assert read_png(out / "img2.png").shape == (20, 28)
    # the validation resize fits [long 14, short 10]: 20x28 -> 10x14, i.e. the shorter side 10
    assert np.array_equal(
        read_png(out / "img2.png"), segkit.load(checkpoint).predict(images[2], resize=10)
    )
    with pytest.raises(segkit.SegkitError, match="resize 0: give the shorter side"):
        segkit.load(checkpoint).predict(images[2], resize=0)
