"""Decode heads (ppm, fcn, aspp, uper) and the segmentor that assembles them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import segkit
from segkit.errors import ConfigError
from segkit.layers import PyramidPooling
from segkit_plugins.aspp.head import ASPPHead
from segkit_plugins.pspnet.fcn import FCNHead
from segkit_plugins.pspnet.ppm import PPMHead
from segkit_plugins.uper.head import UPerHead


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build(model: dict) -> nn.Module:
    return segkit.build_model({"model": model})


def test_ppm_with_csail_widths_has_the_csail_decoder_parameter_count():
    """CSAIL's ppm_deepsup decoder (fc_dim 2048, 150 classes, 512-wide deep supervision)."""
    with torch.device("meta"):
        ppm = PPMHead(2048, 150)
        aux = FCNHead(1024, 150, channels=512)
    assert parameter_count(ppm) + parameter_count(aux) == 27_947_308


def test_ppm_reduces_each_level_to_in_channels_over_bins_by_default():
    with torch.device("meta"):
        head = PPMHead(2048, 150)
        fixed = PPMHead(2048, 150, channels=256, bins=(1, 3))
    assert [b.conv.out_channels for b in head.pyramid.branches] == [512] * 4
    assert [b.pool.output_size for b in head.pyramid.branches] == [1, 2, 3, 6]
    assert head.bottleneck.conv.in_channels == 4096 and head.bottleneck.conv.kernel_size == (3, 3)
    assert head.classifier.out_channels == 150 and head.dropout.p == 0.1
    assert [b.conv.out_channels for b in fixed.pyramid.branches] == [256, 256]


def test_pyramid_pooling_keeps_the_features_and_adds_each_level_at_full_size():
    pyramid = PyramidPooling(8, 2, bins=(1, 2, 3, 6)).eval()
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        out = pyramid(x)
    assert out.shape == (2, 16, 12, 12) and pyramid.out_channels == 16
    assert torch.equal(out[:, :8], x)
    # the 1x1 bin is one value per channel, spread over the whole map
    assert torch.allclose(out[:, 8:10], out[:, 8:10, :1, :1].expand(-1, -1, 12, 12))


def test_ppm_max_pooling_differs_from_average_pooling():
    average = PPMHead(8, 3, pool="avg").eval()
    maximum = PPMHead(8, 3, pool="max").eval()
    maximum.load_state_dict(average.state_dict())  # same weights, only the pooling differs
    x = torch.randn(1, 8, 12, 12)
    with torch.no_grad():
        assert not torch.allclose(average(x), maximum(x))
    assert isinstance(maximum.pyramid.branches[0].pool, nn.AdaptiveMaxPool2d)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"pool": "median"}, "pool must be 'avg' or 'max'"),
        ({"bins": ()}, "bins must be"),
        ({"bins": (1, 0)}, "bins must be"),
        ({"dropout": 1.5}, "dropout"),
        ({"norm": "gn", "gn_groups": 5}, "group norm cannot split"),
    ],
)
def test_ppm_bad_options_are_value_errors(options, message):
    with pytest.raises(ValueError, match=message):
        PPMHead(8, 3, **options)


def test_heads_keep_the_resolution_of_their_input():
    x = torch.randn(2, 16, 9, 11)
    for head in (PPMHead(16, 5), FCNHead(16, 5, channels=8), ASPPHead(16, 5, channels=8)):
        with torch.no_grad():
            assert head.eval()(x).shape == (2, 5, 9, 11)


def test_fcn_head_stacks_num_convs():
    head = FCNHead(32, 4, channels=8, num_convs=2)
    assert [c.conv.in_channels for c in head.convs] == [32, 8]
    assert all(c.conv.kernel_size == (3, 3) for c in head.convs)
    with pytest.raises(ValueError, match="num_convs"):
        FCNHead(32, 4, num_convs=0)


def test_aspp_branches_follow_the_dilations():
    head = ASPPHead(16, 3, channels=8, dilations=(2, 3))
    assert [b.conv.dilation for b in head.branches] == [(1, 1), (2, 2), (3, 3)]
    assert head.project.conv.in_channels == 8 * 4  # three branches and image pooling
    without = ASPPHead(16, 3, channels=8, dilations=(2, 3), image_pool=False)
    assert without.image_pool is None and without.project.conv.in_channels == 8 * 3


def test_uper_fuses_several_stages_at_the_finest():
    head = UPerHead([8, 16, 32], 4, channels=8).eval()
    features = [torch.randn(1, 8, 16, 16), torch.randn(1, 16, 8, 8), torch.randn(1, 32, 4, 4)]
    with torch.no_grad():
        assert head(features).shape == (1, 4, 16, 16)
    with pytest.raises(ValueError, match="in_index to a list"):
        UPerHead(32, 4)


def test_single_stage_heads_refuse_a_list_of_stages():
    with pytest.raises(ConfigError, match="model.head: .*reads one backbone stage"):
        build(
            {
                "num_classes": 3,
                "backbone": {"type": "resnet18"},
                "head": {"type": "ppm", "in_index": [2, 3]},
            }
        )


def test_uper_on_a_resnet_through_the_config():
    model = build(
        {
            "num_classes": 3,
            "backbone": {"type": "resnet18"},
            "head": {"type": "uper", "in_index": [0, 1, 2, 3], "channels": 32},
        }
    ).eval()
    assert model.head.lateral[0].conv.in_channels == 64
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64))["main"].shape == (1, 3, 64, 64)


@pytest.fixture(scope="module")
def pspnet18():
    torch.manual_seed(0)
    return build(
        {
            "num_classes": 5,
            "backbone": {"type": "resnet18", "stem": "deep", "output_stride": 8},
            "head": {"type": "ppm", "fuse_channels": 64},
            "aux_heads": [{"type": "fcn", "channels": 32}],
        }
    )


def test_aux_head_reads_stage_3_by_default(pspnet18):
    assert pspnet18.aux_indices == [2]
    assert pspnet18.aux_heads[0].convs[0].conv.in_channels == 256  # resnet18's layer3


def test_aux_head_receives_gradient_in_training(pspnet18):
    pspnet18.train()
    pspnet18.zero_grad()
    target = torch.randint(0, 5, (2, 32, 32))
    outputs = pspnet18(torch.randn(2, 3, 32, 32))
    assert set(outputs) == {"main", "aux0"}
    assert all(o.shape == (2, 5, 32, 32) for o in outputs.values())
    loss_fn = nn.CrossEntropyLoss()
    (loss_fn(outputs["main"], target) + 0.4 * loss_fn(outputs["aux0"], target)).backward()
    aux = pspnet18.aux_heads[0]
    assert aux.classifier.weight.grad.abs().sum() > 0
    assert aux.convs[0].conv.weight.grad.abs().sum() > 0


def test_aux_loss_alone_reaches_the_stages_below_its_input(pspnet18):
    pspnet18.train()
    pspnet18.zero_grad(set_to_none=True)
    outputs = pspnet18(torch.randn(2, 3, 32, 32))
    outputs["aux0"].square().mean().backward()
    backbone = pspnet18.backbone
    assert backbone.layer3[0].conv1.weight.grad.abs().sum() > 0
    assert backbone.layer4[0].conv1.weight.grad is None  # above stage 3: main head only
    assert pspnet18.head.classifier.weight.grad is None


def test_aux_head_is_absent_from_evaluation_outputs(pspnet18):
    pspnet18.eval()
    with torch.no_grad():
        outputs = pspnet18(torch.randn(1, 3, 40, 56))
    assert set(outputs) == {"main"}
    assert outputs["main"].shape == (1, 5, 40, 56)


def test_syncbn_heads_are_marked_for_conversion():
    model = build(
        {
            "num_classes": 3,
            "backbone": {"type": "resnet18", "norm": "syncbn"},
            "head": {"type": "ppm", "norm": "syncbn"},
            "aux_heads": [{"type": "fcn"}],
        }
    )
    assert model.backbone.sync_bn and model.head.sync_bn and not model.aux_heads[0].sync_bn
    from segkit.engine.sync_bn import CPUSyncBatchNorm, synchronize_batch_norms

    synchronize_batch_norms(model, "marked", torch.device("cpu"))
    assert isinstance(model.head.bottleneck.norm, CPUSyncBatchNorm)
    assert isinstance(model.backbone.bn1, CPUSyncBatchNorm)
    assert type(model.aux_heads[0].convs[0].norm) is nn.BatchNorm2d
