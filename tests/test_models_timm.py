"""The ``timm`` backbone: timm's feature models behind segkit's backbone contract, their local
weight files checked and loaded, and clear messages when timm or a name is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_segkit

pytest.importorskip("timm")

import timm  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from segkit import build  # noqa: E402
from segkit.cli import main  # noqa: E402
from segkit.errors import CheckpointError, ConfigError  # noqa: E402
from segkit.weights import adapt_input_conv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timm_backbone(**options):
    return build("backbone", {"type": "timm", **options})


def count(module: torch.nn.Module, skip: str | None = None) -> int:
    return sum(
        p.numel() for n, p in module.named_parameters() if skip is None or not n.startswith(skip)
    )


def test_stage_features_follow_timms_feature_info():
    backbone = timm_backbone(name="resnet18")
    assert backbone.out_channels == [64, 128, 256, 512] and backbone.strides == [4, 8, 16, 32]
    features = backbone(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape) for f in features] == [
        (1, 64, 16, 16),
        (1, 128, 8, 8),
        (1, 256, 4, 4),
        (1, 512, 2, 2),
    ]


def test_out_indices_and_output_stride_reach_timm():
    backbone = timm_backbone(name="resnet18", out_indices=[0, 4], output_stride=8)
    assert backbone.out_channels == [64, 512] and backbone.strides == [2, 8]
    assert [f.shape[-1] for f in backbone(torch.zeros(1, 3, 64, 64))] == [32, 8]


def test_a_model_with_fewer_than_four_levels_returns_all_by_default():
    with torch.device("meta"):
        levit = timm_backbone(name="levit_128s")
    assert levit.strides == [16, 32, 64] and levit.out_channels == [128, 256, 384]


def test_with_num_classes_it_is_timms_classifier(tmp_path):
    path = tmp_path / "resnet18.pth"
    state = save_classifier("resnet18", path)
    classifier = timm_backbone(name="resnet18", num_classes=1000, pretrained=str(path)).eval()
    assert torch.equal(classifier.model.fc.weight, state["fc.weight"])
    assert classifier(torch.zeros(2, 3, 64, 64)).shape == (2, 1000)
    with pytest.raises(ConfigError, match="wrong shape \\(2\\): fc.weight"):
        timm_backbone(name="resnet18", num_classes=10, pretrained=str(path))


def test_channels_last_models_give_nchw_features():
    with torch.device("meta"):  # Swin's shapes without its 28 M weights
        backbone = timm_backbone(name="swin_tiny_patch4_window7_224")
        features = backbone(torch.zeros(1, 3, 224, 224))
    assert [tuple(f.shape[1:]) for f in features] == [
        (96, 56, 56),
        (192, 28, 28),
        (384, 14, 14),
        (768, 7, 7),
    ]


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"name": "convnext_tiniy"},
            "'convnext_tiniy' is not a timm model; did you mean 'convnext_tiny'",
        ),
        (
            {"name": "convnext_tiniy"},
            "python -c \"import timm; print(timm.list_models('convnext*'))\"",
        ),
        (
            {"name": "vit_tiny_patch16_224", "output_stride": 8},
            "timm's 'vit_tiny_patch16_224' cannot change its output stride",
        ),
        ({"name": "resnet18", "out_indices": [7]}, "has 5 feature levels (0..4, or -5..-1)"),
        ({"name": "resnet18", "frozen_stages": 5}, "frozen_stages must be -1 (none) to 4"),
    ],
)
def test_options_timm_cannot_honour_are_named(options, message):
    with pytest.raises(ConfigError) as raised:
        timm_backbone(**options)
    assert message in str(raised.value)


def test_timm_options_reach_timm_unless_an_own_option_sets_them():
    with torch.device("meta"):
        atto = timm_backbone(name="convnext_atto", timm_options={"drop_path_rate": 0.1})
    assert max(getattr(m, "drop_prob", 0.0) for m in atto.modules()) == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="'in_chans' \\(set it with in_channels\\)"):
        timm_backbone(name="resnet18", timm_options={"in_chans": 4})
    with pytest.raises(ConfigError, match="timm's 'resnet18' takes no argument 'colour'"):
        timm_backbone(name="resnet18", timm_options={"colour": "red"})


def test_a_fixed_size_vit_says_which_option_frees_its_input_size(write_config, capsys):
    def model_info(backbone: str) -> int:
        config = write_config(
            "vit.yaml",
            f"""
            _base_: {ROOT / "configs/quickstart.yaml"}
            model:
              backbone: {{_delete_: true, type: timm, name: vit_tiny_patch16_224{backbone}}}
              head: {{type: uper, in_index: [0, 1, 2, 3]}}
            """,
        )
        return main(["model-info", str(config), "--size", "64x64"])

    assert model_info("") == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert "timm's 'vit_tiny_patch16_224' takes one input size only" in error
    assert "timm_options: {dynamic_img_size: true}" in error
    assert model_info(", timm_options: {dynamic_img_size: true}") == 0


def test_parameter_counts_are_the_classifier_models_minus_the_classifier():
    with torch.device("meta"):
        resnet18 = timm_backbone(name="resnet18")
        ours18 = build("backbone", {"type": "resnet18"})
        resnet50 = timm_backbone(name="resnet50")
        ours = build("backbone", {"type": "resnet50"})
        classifier = timm.create_model("resnet50")
        atto = timm_backbone(name="convnext_atto")
        atto_classifier = timm.create_model("convnext_atto")
    assert count(resnet18) == count(ours18) == 11_176_512
    assert count(resnet50) == count(ours) == count(classifier, skip="fc.") == 23_508_032
    assert count(atto) == count(atto_classifier, skip="head.")


@pytest.mark.parametrize("output_stride", [32, 8])
def test_a_timm_resnet_costs_what_segkits_resnet_costs(output_stride):
    def flops(spec):
        with torch.device("meta"):
            backbone = build("backbone", {**spec, "output_stride": output_stride}).eval()
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                backbone(torch.zeros(1, 3, 128, 128))
        return counter.get_total_flops()

    assert flops({"type": "timm", "name": "resnet18"}) == flops({"type": "resnet18"}) > 0


@pytest.mark.parametrize("stages", [0, 1, 2, 3, 4])
def test_frozen_stages_freeze_what_segkits_resnet_freezes(stages):
    with torch.device("meta"):
        theirs = timm_backbone(name="resnet18", frozen_stages=stages)
        ours = build("backbone", {"type": "resnet18", "frozen_stages": stages})

    def frozen(model):
        return {n for n, p in model.named_parameters() if not p.requires_grad}

    assert {n.removeprefix("model.") for n in frozen(theirs)} == frozen(ours)
    assert frozen(theirs)


def test_a_norm_swapped_in_later_is_held_in_eval_mode_too():
    with torch.device("meta"):
        backbone = timm_backbone(name="resnet18", frozen_stages=1)
        backbone.model.bn1 = torch.nn.BatchNorm2d(64)  # as the engine's synchronised BN does
    assert not backbone.train().model.bn1.training and backbone.model.layer2.training


def test_the_stem_of_a_vit_is_everything_before_the_first_returned_block():
    with torch.device("meta"):
        vit = timm_backbone(name="vit_tiny_patch16_224", frozen_stages=0)
    frozen = {
        n.removeprefix("model.model.") for n, p in vit.named_parameters() if not p.requires_grad
    }
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.7.mlp.fc2.bias"} <= frozen
    assert not any(n.startswith(("blocks.8.", "norm.")) for n in frozen)


def test_frozen_norms_stay_in_eval_mode_and_the_rest_trains():
    backbone = timm_backbone(name="convnext_atto", frozen_stages=1).train()
    stem, first, second = (
        backbone.model.get_submodule(n) for n in ("stem_0", "stages_0", "stages_1")
    )
    assert not stem.weight.requires_grad and not stem.training
    assert not any(p.requires_grad for p in first.parameters()) and not first.training
    assert all(p.requires_grad for p in second.parameters()) and second.training


def save_classifier(name: str, path: Path, wrap: str | None = None) -> dict[str, torch.Tensor]:
    """A randomly initialised timm classification model's weights, saved as timm saves them."""
    state = timm.create_model(name, pretrained=False).state_dict()
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({wrap: state} if wrap else state, path)
    return state


def assert_loaded(backbone, state: dict[str, torch.Tensor]) -> None:
    """Every weight of the feature model equals the file's (feature models flatten the first
    level of Sequential containers: ``stem.0`` becomes ``stem_0``)."""
    own = backbone.model.state_dict()
    assert own
    for key, value in own.items():
        source = key if key in state else key.replace("_", ".", 1)
        assert torch.equal(value, state[source]), key


def test_a_timm_classifier_file_initialises_the_feature_model(tmp_path):
    path = tmp_path / "resnet18.pth"
    state = save_classifier("resnet18", path, wrap="state_dict")
    assert_loaded(timm_backbone(name="resnet18", pretrained=str(path)), state)


def test_safetensors_files_load_into_flattened_feature_models(tmp_path):
    path = tmp_path / "convnext_atto.safetensors"
    state = save_classifier("convnext_atto", path)
    assert_loaded(timm_backbone(name="convnext_atto", pretrained=str(path)), state)


def test_rgb_weights_are_adapted_to_more_input_channels(tmp_path, capsys):
    path = tmp_path / "resnet18.pth"
    state = save_classifier("resnet18", path)
    backbone = timm_backbone(name="resnet18", pretrained=str(path), in_channels=4)
    assert torch.equal(backbone.model.conv1.weight, adapt_input_conv(state["conv1.weight"], 4))
    assert (
        "conv1.weight holds RGB weights and the model takes 4 channels" in capsys.readouterr().err
    )


def test_weights_of_another_model_are_refused_naming_file_and_keys(tmp_path):
    path = tmp_path / "resnet34.pth"
    save_classifier("resnet34", path, wrap="model")
    with pytest.raises(ConfigError) as raised:
        timm_backbone(name="resnet18", pretrained=str(path))
    assert isinstance(raised.value.__cause__, CheckpointError)
    message = str(raised.value)
    assert f"{path}: the weights do not fit timm's 'resnet18'" in message
    assert "unexpected (" in message and "layer1.2.conv1.weight" in message


@pytest.mark.parametrize(
    "content, message",
    [(None, "weight file not found"), (b"not a tensor file", "not a readable safetensors file")],
)
def test_unusable_safetensors_files_are_named(tmp_path, content, message):
    path = tmp_path / "weights.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"{path}: {message}"):
        timm_backbone(name="resnet18", pretrained=str(path))


def test_cli_reports_a_missing_weight_file_in_one_line(write_config, tmp_path, capsys):
    config = write_config(
        "timm.yaml",
        f"""
        _base_: {ROOT / "configs/quickstart.yaml"}
        model:
          backbone: {{_delete_: true, type: timm, name: resnet18, pretrained: {tmp_path}/no.pth}}
        """,
    )
    assert main(["model-info", str(config), "--size", "64x64"]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("segkit: error: model.backbone: ")
    assert f"{tmp_path}/no.pth: weight file not found" in error


@pytest.mark.slow
def test_without_timm_a_config_naming_it_says_which_extra_to_install(write_config, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "timm.py").write_text("raise ImportError(\"No module named 'timm'\")\n")
    config = write_config(
        "timm.yaml",
        f"""
        _base_: {ROOT / "configs/quickstart.yaml"}
        model:
          backbone: {{_delete_: true, type: timm, name: resnet18}}
        """,
    )
    for command in (("config", str(config), "--check"), ("show", "backbone", "timm")):
        result = run_segkit(*command, pythonpath=shim)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        error = [line for line in result.stderr.splitlines() if "error" in line]
        assert len(error) == 1 and "pip install 'segkit[timm]'" in error[0], result.stderr


def test_listing_backbones_imports_neither_timm_nor_torch():
    code = (
        "import sys; from segkit.cli import main; main(['list', 'backbone']); "
        "print(sorted(m for m in ('timm', 'torch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "timm " in done.stdout  # the row of the timm backbone
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_show_explains_how_to_find_names_and_the_options(capsys):
    assert main(["show", "backbone", "timm"]) == 0
    shown = capsys.readouterr().out
    assert "python -c \"import timm; print(timm.list_models('convnext*'))\"" in shown
    for option in ("name", "out_indices", "output_stride", "frozen_stages", "pretrained"):
        assert f"\n{option} " in shown


@pytest.mark.slow
def test_quickstart_trains_with_a_timm_backbone(tmp_path):
    run = tmp_path / "run"
    result = run_segkit(
        "train",
        str(ROOT / "configs/quickstart.yaml"),
        "model.backbone={type: timm, name: mobilenetv3_small_050, frozen_stages: 1}",
        "train.max_iters=3",
        "train.eval_interval=3",
        "data.batch_size=2",
        "data.workers=0",
        "data.train.size=[64,64]",
        "data.val.size=[64,64]",
        "data.val.length=2",
        "--work-dir",
        str(run),
    )
    assert result.returncode == 0, result.stderr
    checkpoint = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 3
    assert any(k.startswith("backbone.model.blocks.") for k in checkpoint["model"])
    assert '"split": "val"' in (run / "metrics.jsonl").read_text()
