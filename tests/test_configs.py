"""Every shipped config is valid, builds its model, and gives logits for every class."""

from pathlib import Path

import pytest
import torch

import segkit
from segkit.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = sorted(p for p in CONFIGS.rglob("*.yaml") if "_base_" not in p.parts)


def test_the_configs_of_the_papers_are_shipped():
    names = {p.name for p in SHIPPED}
    assert {
        "pspnet_ade25.yaml",
        "pspnet_r50_ade20k.yaml",
        "pspnet_r101_ade20k.yaml",
        "pspnet_r50_cityscapes.yaml",
        "drn_a_50_cityscapes.yaml",
        "drn_c_26_cityscapes.yaml",
        "drn_d_22_cityscapes.yaml",
        "quickstart.yaml",
        "segformer_b0_ade20k.yaml",
    } <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_checks_and_builds_a_working_model(path, capsys):
    assert main(["config", str(path), "--check"]) == 0, capsys.readouterr().err
    config = segkit.load_config(path)
    model = segkit.build_model(config).eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 64, 64))["main"]
    assert logits.shape == (1, config["model"]["num_classes"], 64, 64)


def test_headline_config_follows_the_pspnet_recipe():
    config = segkit.load_config(CONFIGS / "pspnet_ade25.yaml")
    model, data = config["model"], config["data"]
    assert model["backbone"]["type"] == "resnet50" and model["backbone"]["stem"] == "deep"
    assert model["backbone"]["output_stride"] == 8 and model["num_classes"] == 25
    assert model["head"]["type"] == "ppm" and model["head"]["bins"] == [1, 2, 3, 6]
    assert [(a["type"], a["in_index"], a["loss_weight"]) for a in model["aux_heads"]] == [
        ("fcn", 2, 0.4)
    ]
    assert {k: config["optimizer"][k] for k in ("type", "lr", "momentum", "weight_decay")} == {
        "type": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 0.0001,
    }
    assert (config["lr_scheduler"]["type"], config["lr_scheduler"]["power"]) == ("poly", 0.9)
    assert data["batch_size"] == 16 and data["train"]["type"] == "ade20k25"
    transforms = {t["type"]: t for t in data["train"]["transforms"]}
    assert transforms["random_resize"]["ratio_range"] == [0.5, 2.0]
    assert transforms["random_crop"]["size"] == [512, 512]
    assert transforms["random_rotate"]["degrees"] == 10 and "random_flip" in transforms


def test_missing_dataset_says_where_and_how_to_set_the_root(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = main(
        ["train", str(CONFIGS / "pspnet_ade25.yaml"), "--work-dir", str(tmp_path / "run")]
    )
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert "ADEChallengeData2016" in err and "data.root=" in err
    assert "sceneparsing.csail.mit.edu" in err
    assert not (tmp_path / "run").exists()
