"""The multi-stage decoders: DeepLabv3+ (``deeplabv3plus``), Semantic FPN (``fpn``) and the
U-Net decoder (``unet``) on several backbones, their parameter counts, and short trainings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import segkit
from segkit.cli import main
from segkit.errors import ConfigError
from segkit_plugins.aspp.deeplabv3plus import DeepLabV3PlusHead
from segkit_plugins.fpn.head import SemanticFPNHead
from segkit_plugins.unet.head import UNetHead

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"

# backbone -> (its spec, the stages each head reads, the head output's stride on that backbone)
BACKBONES = {
    "resnet18_os32": ({"type": "resnet18", "output_stride": 32}, None),
    "resnet18_os8": ({"type": "resnet18", "output_stride": 8}, None),
    # DRN-D-22's levels have strides 1, 2, 4, 8, 8, 8, 8, 8; level 2 (index 1) is stride 2
    "drn_d_22": (
        {"type": "drn_d_22"},
        {"deeplabv3plus": [2, 7], "fpn": [2, 3, 5, 7], "unet": [1, 2, 3, 7]},
    ),
}
RESNET_STAGES = {"deeplabv3plus": [0, 3], "fpn": [0, 1, 2, 3], "unet": [0, 1, 2, 3]}
# small widths, so that the tests run in a moment; on DRN the unet has one block per skip plus
# one from its stride-2 skip to full resolution
HEADS = {
    "deeplabv3plus": {"channels": 16, "low_level_channels": 8, "dilations": [2, 3]},
    "fpn": {"fpn_channels": 16, "channels": 8, "gn_groups": 4},
    "unet": {"decoder_channels": [32, 16, 8, 8, 8]},
}
OUTPUT_STRIDE = {"deeplabv3plus": 4, "fpn": 4, "unet": 1}


def conv_norm(cin: int, cout: int, k: int) -> int:
    """A bias-free k x k conv and its norm's weight and bias."""
    return cin * cout * k * k + 2 * cout


def conv_bias(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build(head: str, backbone: str, **options) -> nn.Module:
    spec, stages = BACKBONES[backbone]
    in_index = (stages or RESNET_STAGES)[head]
    head_spec = {"type": head, "in_index": in_index, **HEADS[head], **options}
    if backbone == "drn_d_22" and head == "unet":
        head_spec["decoder_channels"] = [32, 16, 8, 8]
    torch.manual_seed(0)
    return segkit.build_model({"model": {"num_classes": 5, "backbone": spec, "head": head_spec}})


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("head", HEADS)
def test_decoder_gives_logits_at_its_stride_on_every_backbone(head, backbone):
    model = build(head, backbone).eval()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        features = model.backbone(images)
        stages = [features[i] for i in model.head_index]
        logits = model.head(stages)
        assert model(images)["main"].shape == (2, 5, 64, 96)
    stride = OUTPUT_STRIDE[head]
    assert logits.shape == (2, 5, 64 // stride, 96 // stride)


@pytest.mark.parametrize("head", HEADS)
def test_every_stage_a_decoder_reads_reaches_its_output(head):
    """A skip that is built but not wired in would leave its stage without gradient."""
    model = build(head, "resnet18_os32").eval()
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, 64, 64))
    stages = [features[i].clone().requires_grad_() for i in model.head_index]
    model.head(stages).square().sum().backward()
    for index, stage in zip(model.head_index, stages):
        assert stage.grad is not None and stage.grad.abs().sum() > 0, f"stage {index} unused"


def test_unet_output_matches_odd_input_sizes():
    model = build("unet", "resnet18_os32").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 50, 70))["main"].shape == (1, 5, 50, 70)


def test_deeplabv3plus_parameters_are_the_papers_layers():
    head = DeepLabV3PlusHead([4, 8], 3, channels=6, low_level_channels=2, dilations=(2,))
    aspp = conv_norm(8, 6, 1) + conv_norm(8, 6, 3) + conv_norm(8, 6, 1)  # 1x1, rate 2, pool
    project = conv_norm(3 * 6, 6, 1)
    low_level = conv_norm(4, 2, 1)
    decoder = conv_norm(6 + 2, 6, 3) + conv_norm(6, 6, 3)
    assert parameter_count(head) == aspp + project + low_level + decoder + conv_bias(6, 3, 1)


def test_deeplabv3plus_shares_the_aspp_heads_parameter_names():
    from segkit_plugins.aspp.head import ASPPHead

    head = DeepLabV3PlusHead([4, 8], 3, channels=6, dilations=(2,))
    aspp = ASPPHead(8, 3, channels=6, dilations=(2,))
    pyramid = {k.removeprefix("aspp.") for k in head.state_dict() if k.startswith("aspp.")}
    assert pyramid == {k for k in aspp.state_dict() if not k.startswith("classifier.")}


def test_fpn_parameters_are_the_papers_layers():
    head = SemanticFPNHead([4, 8, 16], 3, fpn_channels=8, channels=4, gn_groups=2)
    neck = sum(conv_bias(c, 8, 1) for c in (4, 8, 16)) + 3 * conv_bias(8, 8, 3)
    # one conv on stride 4, one on stride 8 (then 2x), two on stride 16 (2x, 2x)
    scale_heads = conv_norm(8, 4, 3) + conv_norm(8, 4, 3) + conv_norm(8, 4, 3) + conv_norm(4, 4, 3)
    assert parameter_count(head) == neck + scale_heads + conv_bias(4, 3, 1)
    assert all(isinstance(s.norm, nn.GroupNorm) for steps in head.scale_heads for s in steps)


def test_fpn_brings_each_level_to_the_finest_in_as_many_steps_as_its_level():
    head = SemanticFPNHead([8, 8, 8, 8], 3, fpn_channels=8, channels=8, gn_groups=2)
    assert [len(steps) for steps in head.scale_heads] == [1, 1, 2, 3]


def test_unet_parameters_are_smps_blocks_without_the_stride_2_skip():
    head = UNetHead([4, 8, 16], 3, decoder_channels=(8, 4, 2))
    blocks = (
        conv_norm(16 + 8, 8, 3)
        + conv_norm(8, 8, 3)  # stride 16 -> 8, skip of 8 channels
        + conv_norm(8 + 4, 4, 3)
        + conv_norm(4, 4, 3)  # -> stride 4, skip of 4 channels
        + conv_norm(4, 2, 3)
        + conv_norm(2, 2, 3)  # -> stride 2, no skip left
    )
    assert parameter_count(head) == blocks + conv_bias(2, 3, 3)


def test_unet_on_resnet34_is_smps_unet_less_the_stride_2_skip():
    """smp's Unet(resnet34, classes=1) has 24,436,369 parameters; its fourth block also takes
    the 64-channel conv1 output, 64 x 32 x 3 x 3 weights that segkit's has not."""
    model = segkit.build_model(
        {
            "model": {
                "num_classes": 1,
                "backbone": {"type": "resnet34"},
                "head": {"type": "unet", "in_index": [0, 1, 2, 3]},
            }
        }
    )
    assert parameter_count(model) == 24_436_369 - 64 * 32 * 9


@pytest.mark.parametrize(
    "head, in_index, options, message",
    [
        ("deeplabv3plus", -1, {}, "reads two backbone stages"),
        ("deeplabv3plus", [0, 1, 3], {}, "reads two backbone stages"),
        ("fpn", -1, {}, "reads several backbone stages"),
        ("unet", -1, {}, "reads several backbone stages"),
        ("unet", [0, 1, 2, 3], {"decoder_channels": [64, 32]}, "at least 3 widths"),
        ("fpn", [0, 1, 2, 3], {"gn_groups": 5}, "group norm cannot split"),
    ],
)
def test_bad_decoder_options_are_config_errors(head, in_index, options, message):
    spec = {"type": head, "in_index": in_index, **options}
    with pytest.raises(ConfigError, match=f"model.head: .*{message}"):
        segkit.build_model(
            {"model": {"num_classes": 3, "backbone": {"type": "resnet18"}, "head": spec}}
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    "head",
    [
        "{type: deeplabv3plus, in_index: [0, 3], channels: 32, dilations: [1, 2]}",
        "{type: fpn, in_index: [0, 1, 2, 3], fpn_channels: 32, channels: 16, gn_groups: 8}",
        "{type: unet, in_index: [0, 1, 2, 3], decoder_channels: [64, 32, 16, 8, 8]}",
    ],
    ids=["deeplabv3plus", "fpn", "unet"],
)
def test_the_quickstart_trains_with_the_decoder(head, tmp_path, capsys):
    run = tmp_path / "run"
    overrides = [
        f"model.head={head}",
        "train.max_iters=3",
        "train.eval_interval=3",
        "data.train.size=[64, 64]",
        "data.val.size=[64, 64]",
        "data.val.length=4",
        "data.batch_size=2",
        "data.workers=0",
        "logging.loggers=[]",
    ]
    assert main(["train", str(QUICKSTART), *overrides, "--work-dir", str(run)]) == 0, (
        capsys.readouterr().err
    )
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [line["loss"] for line in lines if line["split"] == "train"]
    (val,) = [line for line in lines if line["split"] == "val"]
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert val["step"] == 3 and 0 <= val["mIoU"] <= 1
    assert (run / "checkpoints" / "last.pt").is_file()
