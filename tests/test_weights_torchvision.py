"""``segkit convert --from torchvision``: an ImageNet ResNet becomes a backbone weight file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from weights_helpers import randomise_norms

import segkit
from segkit.cli import main

CONFIGS = Path(__file__).parent.parent / "configs"


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_resnet_converts_to_a_backbone_file_with_the_same_outputs(depth, tmp_path):
    torch.manual_seed(depth)
    original = randomise_norms(
        getattr(torchvision.models, f"resnet{depth}")(weights=None), depth
    ).eval()
    path = tmp_path / f"resnet{depth}.pth"
    torch.save(original.state_dict(), path)
    out = tmp_path / "backbone.pt"
    assert (
        main(
            [
                "convert",
                "--from",
                "torchvision",
                str(path),
                "--backbone",
                f"resnet{depth}",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    saved = torch.load(out, weights_only=True)
    assert saved["converted_from"]["format"] == "torchvision" and "fc.weight" in saved["model"]

    classifier = segkit.build(
        "backbone", {"type": f"resnet{depth}", "num_classes": 1000, "pretrained": str(out)}
    ).eval()
    features = segkit.build("backbone", {"type": f"resnet{depth}", "pretrained": str(out)}).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(classifier(images), original(images), atol=1e-5, rtol=1e-5)
        stem = original.maxpool(original.relu(original.bn1(original.conv1(images))))
        expected = original.layer4(original.layer3(original.layer2(original.layer1(stem))))
        torch.testing.assert_close(features(images)[-1], expected, atol=1e-5, rtol=1e-5)


def test_torchvision_resnet_against_a_deep_stem_config_lists_the_mismatch(tmp_path, capsys):
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    status = main(
        [
            "convert",
            "--from",
            "torchvision",
            str(path),
            "--config",
            str(CONFIGS / "csail/ppm_deepsup_r50_ade20k.yaml"),
            "--out",
            str(tmp_path / "o.pt"),
        ]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "conv1.weight (file (64, 3, 7, 7), model (64, 3, 3, 3))" in err
    assert "missing (" in err and "conv2.weight" in err


def test_convert_comes_from_a_plugin_that_imports_no_torch_until_it_runs():
    code = (
        "import sys, segkit_plugins.converters; "
        "print('torch' in sys.modules, hasattr(segkit_plugins.converters, 'segkit_register_commands'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "True"]


def test_a_file_given_to_the_wrong_pretrained_option_says_where_it_belongs(tmp_path):
    path, out = tmp_path / "resnet18.pth", tmp_path / "backbone.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    assert (
        main(
            [
                "convert",
                "--from",
                "torchvision",
                str(path),
                "--backbone",
                "resnet18",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    config = {
        "model": {
            "backbone": {"type": "resnet18"},
            "head": {"type": "fcn", "channels": 8},
            "num_classes": 3,
        }
    }
    for weights in (path, out):
        with pytest.raises(segkit.SegkitError, match="model.backbone.pretrained"):
            segkit.build_model({"model": {**config["model"], "pretrained": str(weights)}})
    whole = tmp_path / "whole.pt"
    torch.save({"model": segkit.build_model(config).state_dict()}, whole)
    with pytest.raises(segkit.SegkitError, match="whole segkit model: give it to model.pretrained"):
        segkit.build("backbone", {"type": "resnet18", "pretrained": str(whole)})
