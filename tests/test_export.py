"""``segkit export``: every shipped model family to every format, checked against PyTorch, and
the refusals (an export that does not reproduce the model, a missing extra, no config)."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import pytest
import torch
from conftest import run_segkit
from torch import nn

import segkit.cli
from segkit.builder import build_model
from segkit.export import exporter
from segkit.export.catalog import SUFFIXES
from segkit.export.graph import WindowPool
from segkit.validation import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# small versions of the shipped families: their backbones at full size (they have no width
# option), their heads narrow, random weights
FAMILIES = {
    "quickstart": ("quickstart.yaml", ["model.head.channels=16", "model.aux_heads=[]"]),
    "pspnet_r50_d8": (
        "pspnet_r50_ade20k.yaml",
        ["model.head.channels=8", "model.head.fuse_channels=16", "model.aux_heads=[]"],
    ),
    "drn_d_22": ("drn_d_22_cityscapes.yaml", []),
    "drnseg_c_26": ("drn/drnseg_c_26_cityscapes.yaml", []),
    "deeplab_aspp": (
        "quickstart.yaml",
        [
            "model.backbone.output_stride=8",
            "model.head={type: aspp, channels: 16, dilations: [2, 4], in_index: -1}",
            "model.aux_heads=[]",
        ],
    ),
    "segformer_b0": ("segformer_b0_ade20k.yaml", ["model.head.channels=32"]),
    "deeplabv3plus": (
        "quickstart.yaml",
        [
            "model.head={type: deeplabv3plus, channels: 16, low_level_channels: 8, "
            "dilations: [1, 2], in_index: [0, 3]}",
            "model.aux_heads=[]",
        ],
    ),
    "semantic_fpn": (
        "quickstart.yaml",
        [
            "model.head={type: fpn, fpn_channels: 16, channels: 8, gn_groups: 4, "
            "in_index: [0, 1, 2, 3]}",
            "model.aux_heads=[]",
        ],
    ),
    "unet": (
        "quickstart.yaml",
        [
            "model.head={type: unet, decoder_channels: [32, 16, 8, 8, 8], in_index: [0, 1, 2, 3]}",
            "model.aux_heads=[]",
        ],
    ),
}


def make_checkpoint(path: Path, config_name: str, overrides: list[str]) -> Path:
    """A segkit checkpoint (weights, resolved config) of a randomly initialised model."""
    config = load_config(CONFIGS / config_name, overrides, check_val_classes=False)
    config["model"]["pretrained"] = None
    torch.manual_seed(0)
    model = build_model(config)
    torch.save({"model": model.state_dict(), "config": config, "step": 0}, path)
    return path


def export(tmp_path: Path, checkpoint: Path, fmt: str, *options: str) -> tuple[int, Path]:
    out = tmp_path / f"model{SUFFIXES[fmt]}"
    arguments = ["export", "--checkpoint", str(checkpoint), "--format", fmt, "--out", str(out)]
    return segkit.cli.main([*arguments, *options]), out


def load_torchscript(path: Path):
    with warnings.catch_warnings():  # TorchScript's deprecation notice
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path))


def report_of(out: Path) -> dict:
    return json.loads(out.with_name(out.name + ".json").read_text())


@pytest.mark.parametrize("bins", [1, 2, 3, 6])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_window_pool_cuts_the_windows_adaptive_pooling_cuts(bins, mode):
    reference = nn.AdaptiveAvgPool2d(bins) if mode == "avg" else nn.AdaptiveMaxPool2d(bins)
    for height, width in [(1, 1), (2, 3), (5, 7), (13, 6), (64, 50)]:
        x = torch.randn(2, 3, height, width)
        torch.testing.assert_close(WindowPool((bins, bins), mode)(x), reference(x))


@pytest.mark.slow
def test_torchscript_export_takes_uint8_and_matches_the_model(tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "ck.pt", *FAMILIES["quickstart"])
    status, out = export(tmp_path, checkpoint, "torchscript", "--size", "64", "64")
    assert status == 0
    report = report_of(out)
    assert report["input"]["dtype"] == "uint8" and report["input"]["shape"] == [1, 3, 64, 64]
    (check,) = report["verification"]["checks"]
    assert check["argmax_agreement"] == 1.0 and check["max_abs_diff"] < 1e-4
    # the graph normalises by itself: raw uint8 in, the model's logits of normalised input out
    graph = load_torchscript(out)
    config = load_config(CONFIGS / "quickstart.yaml", FAMILIES["quickstart"][1])
    model = build_model({**config, "model": {**config["model"], "pretrained": None}}).eval()
    model.load_state_dict(torch.load(checkpoint)["model"])
    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    mean = torch.tensor(config["data"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["data"]["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model((images.float() - mean) / std)["main"]
        torch.testing.assert_close(graph(images), expected, atol=1e-4, rtol=1e-4)
    assert f"wrote {out}" in capsys.readouterr().out


@pytest.mark.slow
def test_probs_output_sums_to_one_over_the_classes(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ck.pt", *FAMILIES["drn_d_22"])
    status, out = export(
        tmp_path, checkpoint, "torchscript", "--size", "32", "48", "--output", "probs"
    )
    assert status == 0
    with torch.no_grad():
        probs = load_torchscript(out)(torch.zeros(1, 3, 32, 48, dtype=torch.uint8))
    assert probs.shape == (1, 19, 32, 48)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(1, 32, 48))
    assert report_of(out)["output"]["name"] == "probs"


@pytest.mark.slow
def test_a_checkpoint_without_config_needs_one_on_the_command_line(tmp_path, capsys):
    bare = tmp_path / "bare.pt"
    config = load_config(CONFIGS / "drn_d_22_cityscapes.yaml", check_val_classes=False)
    torch.save(
        build_model({**config, "model": {**config["model"], "pretrained": None}}).state_dict(), bare
    )
    status, out = export(tmp_path, bare, "torchscript")
    assert status == 2
    assert "stores no config" in capsys.readouterr().err
    status, out = export(tmp_path, bare, "torchscript", "--size", "32", "32")
    arguments = ["export", str(CONFIGS / "drn_d_22_cityscapes.yaml"), "--checkpoint", str(bare)]
    status = segkit.cli.main(
        [*arguments, "--format", "torchscript", "--out", str(out), "--size", "32", "32"]
    )
    assert status == 0 and out.is_file()


@pytest.mark.slow
def test_onnx_without_the_export_extra_says_which_extra_to_install(tmp_path):
    shim = tmp_path / "shim"
    (shim / "onnxruntime").mkdir(parents=True)
    (shim / "onnxruntime" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    out = tmp_path / "model.onnx"
    result = run_segkit(
        "export",
        "--checkpoint",
        str(tmp_path / "ck.pt"),
        "--format",
        "onnx",
        "--out",
        str(out),
        pythonpath=shim,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'segkit[export]'" in result.stderr and "onnxruntime" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "exported"])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_exports_to_every_format(tmp_path, family, fmt):
    checkpoint = make_checkpoint(tmp_path / "ck.pt", *FAMILIES[family])
    status, out = export(tmp_path, checkpoint, fmt, "--size", "64", "64")
    assert status == 0 and out.is_file()
    for check in report_of(out)["verification"]["checks"]:
        assert check["argmax_agreement"] >= 0.999, check


@pytest.mark.slow
@pytest.mark.parametrize(
    "family", ["quickstart", "pspnet_r50_d8", "deeplabv3plus", "semantic_fpn", "unet"]
)
def test_dynamic_onnx_is_exact_at_other_sizes(tmp_path, family):
    """Pyramid pooling's windows and the decoders' resizes to their skips follow the input."""
    checkpoint = make_checkpoint(tmp_path / "ck.pt", *FAMILIES[family])
    status, out = export(tmp_path, checkpoint, "onnx", "--size", "64", "64", "--dynamic")
    assert status == 0
    checks = report_of(out)["verification"]["checks"]
    assert [c["shape"] for c in checks] == [[1, 3, 64, 64], [2, 3, 49, 83], [1, 3, 101, 39]]
    assert all(c["argmax_agreement"] == 1.0 and c["max_abs_diff"] < 1e-4 for c in checks), checks


@pytest.mark.slow
def test_an_export_that_does_not_reproduce_the_model_is_refused_and_removed(
    tmp_path, monkeypatch, capsys
):
    """A file whose answers disagree with PyTorch (here: negated logits) is refused, and
    neither it nor its report is left behind."""
    load = exporter.formats.load
    monkeypatch.setattr(exporter.formats, "load", lambda path, fmt: lambda x: -load(path, fmt)(x))
    checkpoint = make_checkpoint(tmp_path / "ck.pt", *FAMILIES["drn_d_22"])
    status, out = export(tmp_path, checkpoint, "torchscript", "--size", "32", "32", "--dynamic")
    assert status == 2
    error = capsys.readouterr().err
    assert "not written" in error and "argmax agreement" in error and "fixed --size" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


def test_a_free_graph_is_traced_where_no_size_would_be_specialised_to_one():
    request = exporter.ExportRequest(
        config={}, checkpoint=Path("ck.pt"), format="onnx", out=Path("m.onnx"), size=(32, 48)
    )
    assert exporter.example_shape(request) == (1, 3, 32, 48)
    free = dataclasses.replace(request, dynamic=True)
    assert exporter.example_shape(free) == (2, 3, 64, 64)


@pytest.mark.slow
def test_a_dynamic_export_asked_at_a_small_size_runs_at_every_size(tmp_path):
    """At 32x32 the stride-32 features of the quickstart are 1x1; traced there, the ONNX graph
    failed in onnxruntime at every other size."""
    checkpoint = make_checkpoint(tmp_path / "ck.pt", *FAMILIES["quickstart"])
    status, out = export(tmp_path, checkpoint, "onnx", "--size", "32", "32", "--dynamic")
    assert status == 0
    checks = report_of(out)["verification"]["checks"]
    assert len(checks) == 3 and checks[0]["shape"] == [1, 3, 32, 32]
    assert all(c["argmax_agreement"] >= 0.999 for c in checks), checks


def test_an_export_is_also_checked_on_the_validation_images_where_they_are_present(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ck.pt", *FAMILIES["quickstart"])
    status, out = export(
        tmp_path, checkpoint, "torchscript", "--size", "48", "80", "--batch", "3",
        "--val-images", "7",
    )  # fmt: skip
    assert status == 0
    validation = report_of(out)["verification"]["validation"]
    assert validation["images"] == 7 and validation["input_size"] == "48x80"
    assert validation["argmax_agreement"] == 1.0 and validation["max_abs_diff"] < 1e-4
    assert validation["miou_pytorch"] == pytest.approx(validation["miou_exported"])


def test_without_the_validation_data_the_report_says_why_it_was_not_checked(tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "ck.pt", *FAMILIES["drn_d_22"])
    status, out = export(tmp_path, checkpoint, "torchscript", "--size", "32", "32")
    assert status == 0
    skipped = report_of(out)["verification"]["validation"]["skipped"]
    assert skipped.startswith("data.val not read") and "cityscapes" in skipped.lower()
    assert "not checked on validation images" in capsys.readouterr().out
