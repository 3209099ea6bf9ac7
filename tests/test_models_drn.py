"""DRN backbones and the DRN segmentation head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import segkit
from segkit.errors import CheckpointError
from segkit.plugins import get_plugins
from segkit_plugins.drn import NAMES
from segkit_plugins.drn import model as drn
from segkit_plugins.drn.head import DRNSegHead

# published parameter counts with the 1000-class classifier
REFERENCE_COUNTS = {
    "drn_a_18": 11_689_512,
    "drn_a_34": 21_797_672,
    "drn_a_50": 25_557_032,
    "drn_b_26": 21_126_584,
    "drn_c_26": 21_126_584,
    "drn_c_42": 31_234_744,
    "drn_c_58": 41_591_608,
    "drn_d_22": 16_393_752,
    "drn_d_24": 21_114_392,
    "drn_d_38": 26_501_912,
    "drn_d_40": 31_222_552,
    "drn_d_54": 35_809_176,
    "drn_d_56": 40_529_816,
    "drn_d_105": 54_801_304,
    "drn_d_107": 59_521_944,
}
BOTTLENECK = {"drn_a_50", "drn_c_58", "drn_d_54", "drn_d_56", "drn_d_105", "drn_d_107"}


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def expected_layout(name: str) -> tuple[list[int], list[int]]:
    e = 4 if name in BOTTLENECK else 1
    if name.startswith("drn_a"):
        return [64 * e, 128 * e, 256 * e, 512 * e], [4, 8, 8, 8]
    return [16, 32, 64 * e, 128 * e, 256 * e, 512 * e, 512, 512], [1, 2, 4, 8, 8, 8, 8, 8]


def test_every_published_drn_is_registered():
    assert set(NAMES) == set(REFERENCE_COUNTS)
    names = {c.name for c in get_plugins().registry.list("backbone", "drn_*")}
    assert names == set(REFERENCE_COUNTS)


@pytest.mark.parametrize("name", NAMES)
def test_stage_features_have_expected_channels_and_strides(name):
    model = getattr(drn, name)().eval()
    with torch.no_grad():
        features = model(torch.randn(1, 3, 32, 32))
    channels, strides = expected_layout(name)
    assert model.out_channels == channels and model.strides == strides
    assert [f.shape[1] for f in features] == channels
    assert [32 // f.shape[-1] for f in features] == strides


def test_every_drn_says_its_official_layout_in_drn_arch():
    """The converters plugin reads this public attribute instead of importing the drn plugin."""
    for name in NAMES:
        with torch.device("meta"):
            backbone = segkit.build("backbone", {"type": name})
        assert backbone.drn_arch == name.split("_")[1], name


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_with_classifier_matches_the_reference(name):
    with torch.device("meta"):
        model = getattr(drn, name)(num_classes=1000)
    assert parameter_count(model) == REFERENCE_COUNTS[name]


def test_drn_c_58_without_the_unused_projection_matches_the_paper_count():
    with torch.device("meta"):
        model = drn.drn_c_58(num_classes=1000)
    unused = model.layer7[0].downsample
    assert parameter_count(model) - parameter_count(unused) == 40_542_008
    assert not any(p.requires_grad for p in unused.parameters())


def test_classifier_returns_logits():
    model = drn.drn_d_22(num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name, has_residual", [("drn_c_26", False), ("drn_b_26", True)])
def test_levels_7_and_8_residual_paths(name, has_residual):
    """With each block's last norm zeroed, a block's residual branch outputs nothing: what is
    left is the shortcut, so the level passes (ReLU'd) input through or outputs zeros."""
    model = getattr(drn, name)().eval()
    x = torch.rand(1, 512, 6, 6)  # non-negative, like the ReLU output that feeds these levels
    for level in (model.layer7, model.layer8):
        with torch.no_grad():
            for block in level:
                block.bn2.weight.zero_()
                block.bn2.bias.zero_()
            out = level(x)
        if has_residual:
            torch.testing.assert_close(out, x)
        else:
            assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("name, has_residual", [("drn_c_26", False), ("drn_b_26", True)])
def test_levels_7_and_8_depend_on_their_input_only_through_a_shortcut(name, has_residual):
    """The other direction: cut the residual branch off from its input (the first conv's
    weights zeroed); only a shortcut can still carry the input through."""
    model = getattr(drn, name)().eval()
    x = torch.rand(1, 512, 6, 6)
    for level in (model.layer7, model.layer8):
        with torch.no_grad():
            level[0].conv1.weight.zero_()
            level[0].bn1.bias.fill_(1.0)  # the branch now sees a constant, whatever x is
            first, second = level[0](x), level[0](x * 5)
        assert torch.equal(first, second) is not has_residual


def test_official_checkpoint_layout_of_drn_c():
    with torch.device("meta"):
        state = drn.drn_c_26(num_classes=1000).state_dict()
    assert state["conv1.weight"].shape == (16, 3, 7, 7)
    assert state["layer2.0.downsample.0.weight"].shape == (32, 16, 1, 1)
    assert state["layer8.0.conv2.weight"].shape == (512, 512, 3, 3)
    assert state["fc.weight"].shape == (1000, 512, 1, 1) and "fc.bias" in state
    assert not any(k.startswith("layer0") for k in state)
    with torch.device("meta"):
        c58 = drn.drn_c_58().state_dict()
    assert c58["layer7.0.downsample.0.weight"].shape == (512, 2048, 1, 1)


def test_official_checkpoint_layout_of_drn_d_plain_conv_levels():
    with torch.device("meta"):
        model = drn.drn_d_24(num_classes=1000)
    state = model.state_dict()
    assert state["layer0.0.weight"].shape == (16, 3, 7, 7) and "layer0.1.running_var" in state
    assert state["layer1.0.weight"].shape == (16, 16, 3, 3) and "layer1.1.weight" in state
    assert state["layer2.0.weight"].shape == (32, 16, 3, 3)
    assert state["layer7.0.weight"].shape == (512, 512, 3, 3) and "layer7.4.bias" in state
    assert state["layer8.3.weight"].shape == (512, 512, 3, 3)
    assert "layer3.0.conv1.weight" in state and "conv1.weight" not in state
    # plain levels are conv-BN-ReLU with no shortcut at all
    assert [type(m) for m in model.layer7] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2
    assert model.layer2[0].stride == (2, 2) and model.layer7[0].dilation == (2, 2)


def test_dilations_follow_the_official_code():
    model = drn.drn_c_26()
    assert (model.layer5[0].conv1.dilation, model.layer5[0].conv2.dilation) == ((2, 2), (2, 2))
    assert model.layer5[1].conv1.dilation == (2, 2)
    assert (model.layer6[0].conv1.dilation, model.layer6[0].conv2.dilation) == ((4, 4), (4, 4))
    assert model.layer7[0].conv1.dilation == (2, 2) and model.layer8[0].conv1.dilation == (1, 1)
    a = drn.drn_a_50()
    assert [b.conv2.dilation for b in a.layer4[:2]] == [(1, 1), (4, 4)]


def test_official_style_checkpoint_loads_into_a_feature_backbone(tmp_path):
    classifier = drn.drn_d_22(num_classes=1000).eval()
    path = tmp_path / "drn_d_22.pth"
    torch.save(classifier.state_dict(), path)
    backbone = drn.drn_d_22(pretrained=str(path)).eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        last = backbone(images)[-1]
        logits = classifier.fc(last.mean(dim=(2, 3), keepdim=True)).flatten(1)
        torch.testing.assert_close(logits, classifier(images))


def test_mismatched_pretrained_names_the_bad_keys(tmp_path):
    path = tmp_path / "c26.pth"
    torch.save(drn.drn_c_26().state_dict(), path)
    with pytest.raises(CheckpointError) as error:
        drn.drn_d_22(pretrained=str(path))
    assert "missing (" in str(error.value) and "layer0.0.weight" in str(error.value)
    assert "unexpected (" in str(error.value)


def test_bilinear_transposed_conv_upsamples_by_eight_without_training():
    head = DRNSegHead(in_channels=8, num_classes=3, upsample="transposed_conv")
    assert dict(head.named_parameters()).keys() == {"seg.weight", "seg.bias", "up.weight"}
    assert not head.up.weight.requires_grad
    assert head.up.weight.shape == (3, 1, 16, 16) and head.up.groups == 3
    with torch.no_grad():
        constant = head.up(torch.full((1, 3, 5, 5), 2.0))
        ramp = head.up(torch.arange(5.0).repeat(5, 1).expand(1, 3, 5, 5))
    assert constant.shape == (1, 3, 40, 40)
    torch.testing.assert_close(constant[..., 8:-8, 8:-8], torch.full((1, 3, 24, 24), 2.0))
    # linear interpolation: a ramp of slope 1 per input pixel rises by 1/8 per output pixel
    steps = ramp[0, 0, 20, 9:30].diff()
    torch.testing.assert_close(steps, torch.full_like(steps, 1 / 8))


def test_drn_seg_default_leaves_upsampling_to_the_segmentor():
    model = segkit.build_model(
        {"model": {"num_classes": 4, "backbone": {"type": "drn_d_22"}, "head": {"type": "drn_seg"}}}
    ).eval()
    assert model.head.up is None
    with torch.no_grad():
        assert model.head(torch.randn(1, 512, 4, 4)).shape == (1, 4, 4, 4)
        assert model(torch.randn(1, 3, 40, 48))["main"].shape == (1, 4, 40, 48)
