"""``segkit convert --from drn``: official DRN ImageNet checkpoints become backbone weight files,
official DRNSeg checkpoints whole segkit models, with the original outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from original_formats import OfficialDRNSeg, official_drn
from weights_helpers import randomise_norms, wrapped

import segkit
from segkit.cli import main
from segkit.errors import SegkitError
from segkit_plugins.cityscapes.dataset import Cityscapes

CONFIGS = Path(__file__).parent.parent / "configs" / "drn"
IMAGES = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def drnseg_files(tmp_path_factory):
    """DRNSeg D-22 as the official model zoo stores it (a bare state dict), and C-26 as the
    official training script saves it (a dict with the DataParallel-wrapped state dict)."""
    folder = tmp_path_factory.mktemp("drnseg")
    models = {}
    for seed, name in enumerate(("drn_d_22", "drn_c_26", "drn_a_50")):
        torch.manual_seed(seed)
        model = randomise_norms(OfficialDRNSeg(name, classes=19), seed).eval()
        path = folder / f"{name}_cityscapes.pth"
        if name == "drn_c_26":
            torch.save(
                {
                    "epoch": 500,
                    "arch": name,
                    "state_dict": wrapped(model.state_dict()),
                    "best_prec1": 68.0,
                },
                path,
            )
        else:
            torch.save(model.state_dict(), path)
        models[name] = (model, path)
    return models


@pytest.mark.parametrize("name", ["drn_d_22", "drn_c_26", "drn_a_50"])
def test_converted_drnseg_gives_the_original_outputs(name, drnseg_files, tmp_path, capsys):
    original, path = drnseg_files[name]
    config = CONFIGS / f"drnseg_{name[4:]}_cityscapes.yaml"
    out = tmp_path / "drnseg.pt"
    assert (
        main(["convert", "--from", "drn", str(path), "--config", str(config), "--out", str(out)])
        == 0
    )
    assert "use it: segkit predict" in capsys.readouterr().out
    model = segkit.build_model(segkit.load_config(config, [f"model.pretrained={out}"])).eval()
    with torch.no_grad():
        expected = original(IMAGES)
        logits = model(IMAGES)["main"]
    assert expected.shape == (2, 19, 64, 64) and expected.abs().max() > 0.05
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    saved = torch.load(out, weights_only=True)
    assert saved["classes"] == Cityscapes.classes and saved["converted_from"]["format"] == "drn"


def test_drnseg_with_interpolating_head_config_is_told_to_use_the_transposed_conv(
    drnseg_files, tmp_path, capsys
):
    _, path = drnseg_files["drn_d_22"]
    config = tmp_path / "bilinear.yaml"
    config.write_text(
        f"_base_: {CONFIGS / 'drnseg_d_22_cityscapes.yaml'}\n"
        "model: {head: {upsample: bilinear}}\n",
        encoding="utf-8",
    )
    assert (
        main(
            [
                "convert",
                "--from",
                "drn",
                str(path),
                "--config",
                str(config),
                "--out",
                str(tmp_path / "o.pt"),
            ]
        )
        == 2
    )
    assert "set model.head.upsample: transposed_conv" in capsys.readouterr().err


def test_drnseg_upsampling_by_interpolation_converts_with_aligned_corners(tmp_path, capsys):
    torch.manual_seed(3)
    original = randomise_norms(OfficialDRNSeg("drn_d_22", classes=19, use_torch_up=True), 3).eval()
    path = tmp_path / "torch_up.pth"
    torch.save(original.state_dict(), path)
    config = tmp_path / "aligned.yaml"
    config.write_text(
        f"_base_: {CONFIGS / 'drnseg_d_22_cityscapes.yaml'}\n"
        "model: {head: {upsample: bilinear}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "o.pt"
    assert (
        main(["convert", "--from", "drn", str(path), "--config", str(config), "--out", str(out)])
        == 2
    )
    assert "set model.head.upsample: bilinear_aligned" in capsys.readouterr().err
    overrides = ["model.head.upsample=bilinear_aligned"]
    config.write_text(
        f"_base_: {CONFIGS / 'drnseg_d_22_cityscapes.yaml'}\n"
        "model: {head: {upsample: bilinear_aligned}}\n",
        encoding="utf-8",
    )
    assert (
        main(["convert", "--from", "drn", str(path), "--config", str(config), "--out", str(out)])
        == 0
    )
    model = segkit.build_model(
        segkit.load_config(config, [f"model.pretrained={out}", *overrides])
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(IMAGES)["main"], original(IMAGES), atol=1e-5, rtol=1e-5)


def test_official_drn_files_are_refused_for_drn_b(drnseg_files, tmp_path, capsys):
    """DRN-B has DRN-C's weight names and shapes but other connections; the official code has
    no DRN-B, so its files are DRN-C's and would silently give another network."""
    _, path = drnseg_files["drn_c_26"]
    config = tmp_path / "b26.yaml"
    config.write_text(
        f"_base_: {CONFIGS / 'drnseg_c_26_cityscapes.yaml'}\n"
        "model: {backbone: {type: drn_b_26}}\n",
        encoding="utf-8",
    )
    assert (
        main(
            [
                "convert",
                "--from",
                "drn",
                str(path),
                "--config",
                str(config),
                "--out",
                str(tmp_path / "o.pt"),
            ]
        )
        == 2
    )
    assert "is a DRNSeg with a DRN-C backbone, but" in capsys.readouterr().err
    imagenet = tmp_path / "drn_c_26.pth"
    torch.save(official_drn("drn_c_26").state_dict(), imagenet)
    assert (
        main(
            [
                "convert",
                "--from",
                "drn",
                str(imagenet),
                "--backbone",
                "drn_b_26",
                "--out",
                str(tmp_path / "b.pt"),
            ]
        )
        == 2
    )
    assert "no DRN-B" in capsys.readouterr().err
    converted = tmp_path / "c.pt"
    assert (
        main(
            [
                "convert",
                "--from",
                "drn",
                str(imagenet),
                "--backbone",
                "drn_c_26",
                "--out",
                str(converted),
            ]
        )
        == 0
    )
    with pytest.raises(SegkitError, match="converted for 'drn_c_26', not for 'drn_b_26'"):
        segkit.build("backbone", {"type": "drn_b_26", "pretrained": str(converted)})


def test_drnseg_needs_the_config_of_its_model(drnseg_files, tmp_path, capsys):
    _, path = drnseg_files["drn_d_22"]
    assert (
        main(
            [
                "convert",
                "--from",
                "drn",
                str(path),
                "--backbone",
                "drn_d_22",
                "--out",
                str(tmp_path / "o.pt"),
            ]
        )
        == 2
    )
    assert "DRNSeg" in capsys.readouterr().err
    other_arch = CONFIGS / "drnseg_c_26_cityscapes.yaml"
    assert (
        main(
            [
                "convert",
                "--from",
                "drn",
                str(path),
                "--config",
                str(other_arch),
                "--out",
                str(tmp_path / "o.pt"),
            ]
        )
        == 2
    )
    assert "is a DRNSeg with a DRN-D backbone, but" in capsys.readouterr().err
    other_depth = CONFIGS / "drnseg_d_38_cityscapes.yaml"
    assert (
        main(
            [
                "convert",
                "--from",
                "drn",
                str(path),
                "--config",
                str(other_depth),
                "--out",
                str(tmp_path / "o.pt"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        "the weights do not fit the model" in err
        and "missing (" in err
        and "backbone.layer3.2" in err
    )


def test_drnseg_file_given_to_model_pretrained_says_to_convert(drnseg_files):
    _, path = drnseg_files["drn_d_22"]
    config = segkit.load_config(
        CONFIGS / "drnseg_d_22_cityscapes.yaml", [f"model.pretrained={path}"]
    )
    with pytest.raises(SegkitError, match="DRNSeg.*segkit convert --from drn"):
        segkit.build_model(config)


@pytest.mark.parametrize("name", ["drn_d_22", "drn_c_26"])
def test_imagenet_checkpoint_converts_to_a_backbone_file_with_the_same_outputs(
    name, tmp_path, capsys
):
    torch.manual_seed(1)
    original = randomise_norms(official_drn(name), 1).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(original.state_dict(), path)
    out = tmp_path / "backbone.pt"
    assert main(["convert", "--from", "drn", str(path), "--backbone", name, "--out", str(out)]) == 0
    assert f"model.backbone.pretrained: {out}" in capsys.readouterr().out
    saved = torch.load(out, weights_only=True)
    assert saved["backbone"] == {"type": name} and "fc.weight" in saved["model"]

    features = segkit.build("backbone", {"type": name, "pretrained": str(out)}).eval()
    classifier = segkit.build(
        "backbone", {"type": name, "num_classes": 1000, "pretrained": str(out)}
    ).eval()
    direct = segkit.build(
        "backbone", {"type": name, "pretrained": str(path)}
    ).eval()  # no conversion
    with torch.no_grad():
        expected = original.features(IMAGES)
        # the official 28x28 pool is global at 224x224; at 64x64 pool globally by hand
        expected_logits = original.fc(expected.mean(dim=(2, 3), keepdim=True)).flatten(1)
        torch.testing.assert_close(features(IMAGES)[-1], expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(direct(IMAGES)[-1], expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(classifier(IMAGES), expected_logits, atol=1e-5, rtol=1e-5)


def test_imagenet_checkpoint_needs_to_know_its_backbone(tmp_path, capsys):
    path = tmp_path / "drn.pth"
    torch.save(official_drn("drn_d_22").state_dict(), path)
    assert main(["convert", "--from", "drn", str(path), "--out", str(tmp_path / "o.pt")]) == 2
    assert "--backbone NAME" in capsys.readouterr().err
    assert (
        main(
            [
                "convert",
                "--from",
                "drn",
                str(path),
                "--backbone",
                "drn_d_38",
                "--out",
                str(tmp_path / "o.pt"),
            ]
        )
        == 2
    )
    assert "missing (" in capsys.readouterr().err


def test_converted_drnseg_predicts_through_segkit_load_as_the_original_and_the_cli(
    drnseg_files, tmp_path, capsys
):
    """A converted official checkpoint is a whole segkit checkpoint: ``segkit.load`` takes it
    without a config, and its class map is the original model's and ``segkit predict``'s."""
    import numpy as np
    from PIL import Image

    original, path = drnseg_files["drn_d_22"]
    config = CONFIGS / "drnseg_d_22_cityscapes.yaml"
    out = tmp_path / "drnseg.pt"
    main(["convert", "--from", "drn", str(path), "--config", str(config), "--out", str(out)])
    picture = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "street.png")
    segmenter = segkit.load(out, device="cpu", precision="fp32")
    assert segmenter.classes == Cityscapes.classes
    mask = segmenter.predict(tmp_path / "street.png", mode="whole")
    settings = segkit.load_config(config)["data"]
    mean = torch.tensor(settings["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(settings["std"]).view(1, 3, 1, 1)
    image = torch.from_numpy(picture).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        expected = original((image - mean) / std).argmax(1)[0].numpy()
    assert np.mean(mask == expected) > 0.999
    masks = tmp_path / "masks"
    capsys.readouterr()
    command = ["predict", "--checkpoint", str(out), str(tmp_path / "street.png")]
    assert main([*command, "train.precision=fp32", "--mode", "whole", "--out", str(masks)]) == 0
    assert np.array_equal(np.asarray(Image.open(masks / "street.png")), mask)
