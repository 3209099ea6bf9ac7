"""Serving an exported ONNX file with onnxruntime alone: ``segkit predict --model FILE.onnx``
and ``segkit.load("FILE.onnx")``, the same pixels as the checkpoint, no torch, and the refusals."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_segkit
from onnx import TensorProto, helper
from PIL import Image

import segkit
from segkit.cli import main

CLASSES = ["sky", "grass", "road"]
PALETTE = [[10, 20, 30], [0, 200, 0], [90, 90, 90]]
# the tiny graph's 1x1 convolution: class c's logit is WEIGHTS[c] . (r, g, b)
WEIGHTS = np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)


def tiny_onnx(path: Path, size: tuple[int, int] | None = None, report: bool = True) -> Path:
    """An ONNX file shaped as segkit export writes them (uint8 ``images`` in, ``logits`` out),
    built by hand so that it takes no time: a 1x1 convolution of the RGB values. ``size``
    fixes the height and width; without it they are free, as with --dynamic."""
    height, width = size or ("H", "W")
    batch = 1 if size else "N"
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
            helper.make_node("Conv", ["pixels", "weights"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, [batch, 3, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3, height, width])],
        [helper.make_tensor("weights", TensorProto.FLOAT, [3, 3, 1, 1], WEIGHTS.ravel())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    if report:
        described = {"classes": CLASSES, "palette": PALETTE, "input": {"dynamic": size is None}}
        path.with_name(path.name + ".json").write_text(json.dumps(described))
    return path


def expected_labels(image: np.ndarray) -> np.ndarray:
    return np.einsum("cr,hwr->chw", WEIGHTS, image.astype(np.float32)).argmax(axis=0)


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (height, width) in enumerate(sizes):
        pixels = np.random.default_rng(index).integers(0, 256, (height, width, 3), dtype=np.uint8)
        path = folder / f"img{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture).copy()


def pixels_of(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB")).copy()


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_predict_with_an_onnx_file_runs_without_torch(dynamic_model, tmp_path):
    shim = tmp_path / "shim"
    (shim / "torch").mkdir(parents=True)
    (shim / "torch" / "__init__.py").write_text("raise ImportError('torch hidden by the test')\n")
    images = write_images(tmp_path / "photos", [(20, 28), (16, 16)])
    (tmp_path / "photos" / "sub").mkdir()
    images[1].rename(tmp_path / "photos" / "sub" / "img1.png")
    out = tmp_path / "out"
    result = run_segkit(
        "predict",
        "--backend",
        "onnxruntime",
        "--model",
        str(dynamic_model),
        str(tmp_path / "photos"),
        "--out",
        str(out),
        "--overlay",
        pythonpath=shim,
    )
    assert result.returncode == 0, result.stderr
    for name, source in (("img0", images[0]), ("sub/img1", tmp_path / "photos/sub/img1.png")):
        np.testing.assert_array_equal(
            read_png(out / f"{name}.png"), expected_labels(pixels_of(source))
        )
        assert (out / f"{name}_overlay.png").is_file()
    classes = json.loads((out / "classes.json").read_text())
    assert [entry["name"] for entry in classes] == CLASSES
    assert [entry["color"] for entry in classes] == PALETTE
    with Image.open(out / "img0.png") as picture:
        assert picture.getpalette()[:9] == [c for colour in PALETTE for c in colour]


def test_a_fixed_size_file_resizes_other_sizes_and_says_so_once(tmp_path, capsys):
    model = tiny_onnx(tmp_path / "fixed.onnx", size=(16, 16))
    images = write_images(tmp_path / "photos", [(16, 16), (24, 40), (9, 13)])
    out = tmp_path / "out"
    assert (
        main(["predict", "--model", str(model), str(tmp_path / "photos"), "--out", str(out)]) == 0
    )
    err = capsys.readouterr().err
    assert err.count("segkit: note: fixed.onnx takes 16x16 images only") == 1, err
    # the export size itself goes through untouched
    np.testing.assert_array_equal(read_png(out / "img0.png"), expected_labels(pixels_of(images[0])))
    for index, path in enumerate(images[1:], start=1):
        image = pixels_of(path)
        labels = read_png(out / f"img{index}.png")
        assert labels.shape == image.shape[:2]
        resized = np.asarray(Image.fromarray(image).resize((16, 16), Image.Resampling.BILINEAR))
        # nearest back: every label comes from the class map at the export size
        assert set(np.unique(labels)) <= set(np.unique(expected_labels(resized)))


def test_load_of_an_onnx_file_predicts_what_the_command_writes(dynamic_model, tmp_path):
    images = write_images(tmp_path / "photos", [(20, 28), (12, 30)])
    out = tmp_path / "out"
    assert (
        main(["predict", "--model", str(dynamic_model), *map(str, images), "--out", str(out)]) == 0
    )
    served = segkit.load(dynamic_model)
    assert served.classes == CLASSES and [list(c) for c in served.palette] == PALETTE
    masks = served.predict([str(images[0]), Image.open(images[1])])
    for index, mask in enumerate(masks):
        assert mask.dtype == np.int64
        np.testing.assert_array_equal(mask, read_png(out / f"img{index}.png"))
    single, probabilities = served.predict(pixels_of(images[0]), return_probs=True)
    np.testing.assert_array_equal(single, masks[0])
    assert probabilities.shape == (3, 20, 28)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probabilities.argmax(axis=0), single)
    assert served.colorize(single).shape == (20, 28, 3)
    assert tuple(served.colorize(single)[0, 0]) == tuple(PALETTE[single[0, 0]])
    assert served.overlay(str(images[0]), single).shape == (20, 28, 3)


@pytest.mark.parametrize(
    "options, named",
    [
        ({"mode": "slide"}, "mode='slide'"),
        ({"tta": True}, "tta=True"),
        ({"merge": "ade20k25"}, "merge"),
        ({"resize": 12}, "resize=12"),
    ],
)
def test_load_of_an_onnx_file_says_what_onnx_serving_supports(dynamic_model, options, named):
    served = segkit.load(dynamic_model)
    with pytest.raises(segkit.SegkitError, match="whole-image prediction") as raised:
        served.predict(np.zeros((8, 8, 3), np.uint8), **options)
    assert named in str(raised.value)
    with pytest.raises(segkit.SegkitError, match="image is a numpy array of shape"):
        served.predict(np.zeros((8, 8), np.float32))
    with pytest.raises(segkit.SegkitError, match="device cannot be given for an ONNX file"):
        segkit.load(dynamic_model, device="cuda")


def test_an_onnx_file_without_its_json_gets_default_classes_and_a_note(tmp_path, capsys):
    model = tiny_onnx(tmp_path / "bare.onnx", report=False)
    (image,) = write_images(tmp_path / "photos", [(8, 8)])
    out = tmp_path / "out"
    assert main(["predict", "--model", str(model), str(image), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "segkit: note:" in err and "bare.onnx.json is missing" in err and "class_0" in err
    names = [entry["name"] for entry in json.loads((out / "classes.json").read_text())]
    assert names == ["class_0", "class_1", "class_2"]
    with pytest.warns(UserWarning, match="bare.onnx.json is missing"):
        assert segkit.load(model).classes == names


@pytest.mark.parametrize(
    "options, message",
    [
        ([], "no model to predict with; give --checkpoint CK"),
        (["--checkpoint", "ck.pt", "--model", "m.onnx"], "--checkpoint and --model exclude"),
        (["--backend", "onnxruntime", "--checkpoint", "ck.pt"], "give it as --model FILE.onnx"),
        (["--backend", "torch", "--model", "m.onnx"], "run it with --backend onnxruntime"),
        (["--model", "m.onnx", "--tta"], "--tta: not for --model"),
        (["--model", "m.onnx", "eval.crop=[8,8]"], "eval.crop=[8,8]: not for --model"),
    ],
)
def test_predict_refuses_a_wrong_choice_of_model(tmp_path, capsys, options, message):
    (image,) = write_images(tmp_path / "photos", [(8, 8)])
    tiny_onnx(tmp_path / "m.onnx")
    (tmp_path / "ck.pt").write_bytes(b"")
    arguments = [
        option if not option.endswith((".pt", ".onnx")) else str(tmp_path / option)
        for option in options
    ]
    status = main(["predict", *arguments, str(image), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and message in err, err
    assert not (tmp_path / "out").exists()


def test_predict_with_an_onnx_file_without_onnxruntime_names_the_extra(dynamic_model, tmp_path):
    shim = tmp_path / "shim"
    (shim / "onnxruntime").mkdir(parents=True)
    (shim / "onnxruntime" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    (image,) = write_images(tmp_path / "photos", [(8, 8)])
    result = run_segkit(
        "predict",
        "--model",
        str(dynamic_model),
        str(image),
        "--out",
        str(tmp_path / "out"),
        pythonpath=shim,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'segkit[export]'" in result.stderr and "onnxruntime" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("dynamic", [True, False])
def test_an_exported_model_predicts_the_checkpoints_pixels(tmp_path, capsys, dynamic):
    """A real export of the quickstart model: onnxruntime and torch agree on every pixel of
    images at the export size, and with --dynamic on nearly every pixel at others."""
    from test_export import FAMILIES, make_checkpoint

    checkpoint = make_checkpoint(tmp_path / "ck.pt", *FAMILIES["quickstart"])
    model = tmp_path / "model.onnx"
    size = ["--size", "64", "64"] + (["--dynamic"] if dynamic else [])
    export = ["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(model)]
    assert main([*export, *size]) == 0
    sizes = [(64, 64), (64, 64), (48, 80), (70, 50)] if dynamic else [(64, 64), (64, 64)]
    images = write_images(tmp_path / "photos", sizes)
    by_torch, by_onnx = tmp_path / "torch", tmp_path / "onnx"
    assert (
        main(
            ["predict", "--checkpoint", str(checkpoint), *map(str, images), "--out", str(by_torch)]
        )
        == 0
    )
    assert main(["predict", "--model", str(model), *map(str, images), "--out", str(by_onnx)]) == 0
    for index, size in enumerate(sizes):
        served, checked = (
            read_png(by_onnx / f"img{index}.png"),
            read_png(by_torch / f"img{index}.png"),
        )
        if size == (64, 64):
            np.testing.assert_array_equal(served, checked)
        else:
            # the file equals the model run on the whole image; predict --checkpoint resizes the
            # logits its own way, which flips near-ties of these random weights (0.23% at 70x50)
            assert (served == checked).mean() >= 0.995, (size, (served == checked).mean())
    assert (by_onnx / "classes.json").read_text() == (by_torch / "classes.json").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the report is there: no note
        assert segkit.load(model).classes == segkit.load(checkpoint).classes
