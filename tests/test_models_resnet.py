"""ResNet backbones: stage features, parameter counts, torchvision compatibility, options."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from segkit.engine.sync_bn import CPUSyncBatchNorm, synchronize_batch_norms
from segkit.errors import CheckpointError
from segkit_plugins.resnet.model import ResNet, resnet18, resnet34, resnet50, resnet101, resnet152

FACTORIES = {18: resnet18, 34: resnet34, 50: resnet50, 101: resnet101, 152: resnet152}
EXPECTED_STRIDES = {32: [4, 8, 16, 32], 16: [4, 8, 16, 16], 8: [4, 8, 8, 8]}


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomise_norm_statistics(model: nn.Module) -> None:
    """Fresh BN layers are the identity; give them statistics so comparisons mean something."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            nn.init.normal_(module.weight, 1.0, 0.1)
            nn.init.normal_(module.bias, 0.0, 0.1)


@pytest.mark.parametrize("output_stride", [32, 16, 8])
@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_stage_features_have_expected_channels_and_strides(depth, output_stride):
    model = FACTORIES[depth](output_stride=output_stride).eval()
    with torch.no_grad():
        features = model(torch.randn(1, 3, 64, 64))
    expansion = 1 if depth < 50 else 4
    assert model.out_channels == [64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]
    assert model.strides == EXPECTED_STRIDES[output_stride]
    assert [f.shape[1] for f in features] == model.out_channels
    assert [64 // f.shape[-1] for f in features] == model.strides
    assert all(f.shape[-2] == f.shape[-1] for f in features)


@pytest.mark.parametrize("output_stride", [32, 16, 8])
@pytest.mark.parametrize("depth", [18, 50])
def test_deep_stem_gives_the_same_stages(depth, output_stride):
    model = FACTORIES[depth](stem="deep", output_stride=output_stride).eval()
    with torch.no_grad():
        features = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in features] == model.out_channels
    assert [64 // f.shape[-1] for f in features] == EXPECTED_STRIDES[output_stride]
    assert model.layer1[0].conv1.in_channels == 128


@pytest.mark.parametrize(
    "depth, expected",
    [(18, 11_689_512), (34, 21_797_672), (50, 25_557_032), (101, 44_549_160), (152, 60_192_808)],
)
def test_parameter_count_with_classifier_matches_the_paper(depth, expected):
    with torch.device("meta"):  # shapes only: counting needs no values
        model = FACTORIES[depth](num_classes=1000)
    assert parameter_count(model) == expected


@pytest.mark.parametrize("depth, expected", [(50, 23_631_808), (101, 42_623_936)])
def test_deep_stem_feature_backbone_matches_the_csail_encoder_count(depth, expected):
    with torch.device("meta"):
        model = FACTORIES[depth](stem="deep")
    assert parameter_count(model) == expected


def test_generic_resnet_and_named_variants_agree():
    with torch.device("meta"):
        assert parameter_count(ResNet(depth=34)) == parameter_count(resnet34())
        assert parameter_count(resnet50(depth=18)) == parameter_count(resnet18())


@pytest.fixture(scope="module")
def torchvision_resnet50(tmp_path_factory):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50()
    with torch.no_grad():
        randomise_norm_statistics(reference)
    path = tmp_path_factory.mktemp("weights") / "resnet50_torchvision.pth"
    torch.save(reference.state_dict(), path)
    return reference.eval(), path


def test_torchvision_checkpoint_gives_identical_logits(torchvision_resnet50):
    reference, path = torchvision_resnet50
    model = resnet50(num_classes=1000, pretrained=str(path)).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images), rtol=0, atol=0)


def test_torchvision_checkpoint_gives_identical_features(torchvision_resnet50):
    reference, path = torchvision_resnet50
    model = resnet50(pretrained=str(path)).eval()  # feature backbone: the file's fc is dropped
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(images))))
        expected = []
        for layer in (reference.layer1, reference.layer2, reference.layer3, reference.layer4):
            x = layer(x)
            expected.append(x)
        for ours, theirs in zip(model(images), expected):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_state_dict_keys_are_torchvisions():
    with torch.device("meta"):
        ours = resnet18(num_classes=1000).state_dict()
        theirs = torchvision.models.resnet18().state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)


def test_dilated_stages_start_at_half_the_dilation():
    model = resnet50(output_stride=8)
    assert model.layer3[0].conv2.stride == (1, 1)
    assert [b.conv2.dilation[0] for b in model.layer3[:2]] == [1, 2]
    assert [b.conv2.dilation[0] for b in model.layer4[:2]] == [2, 4]
    basic = resnet18(output_stride=16)
    assert (basic.layer4[0].conv1.dilation, basic.layer4[0].conv2.dilation) == ((1, 1), (2, 2))


def test_missing_pretrained_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        resnet18(pretrained=str(tmp_path / "nowhere.pth"))


def test_pretrained_of_another_depth_lists_missing_keys(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(resnet18().state_dict(), path)
    with pytest.raises(CheckpointError) as error:
        resnet34(pretrained=str(path))
    assert "missing (" in str(error.value) and "layer1.2.conv1.weight" in str(error.value)


@pytest.mark.parametrize("file_stem, model_stem", [("deep", "standard"), ("standard", "deep")])
def test_pretrained_with_another_stem_says_which_weights_fit(tmp_path, file_stem, model_stem):
    path = tmp_path / "other_stem.pth"
    torch.save(resnet18(stem=file_stem).state_dict(), path)
    with pytest.raises(CheckpointError) as error:
        resnet18(stem=model_stem, pretrained=str(path))
    message = str(error.value)
    assert ("with a 7x7 stem" if file_stem == "standard" else "with a deep stem") in message
    assert "resnet50-imagenet.pth" in message and "stem: standard" in message


def test_non_strict_pretrained_accepts_missing_keys(tmp_path):
    partial = {k: v for k, v in resnet18().state_dict().items() if not k.startswith("layer4.")}
    path = tmp_path / "partial.pth"
    torch.save({"model": partial, "step": 10}, path)  # a segkit-style checkpoint dict
    with pytest.raises(CheckpointError, match="missing"):
        resnet18(pretrained=str(path))
    model = resnet18(pretrained=str(path), pretrained_strict=False)
    torch.testing.assert_close(model.conv1.weight, partial["conv1.weight"])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"depth": 77}, "depth must be one of 18, 34, 50, 101, 152; got 77"),
        ({"output_stride": 4}, "output_stride must be 8, 16 or 32; got 4"),
        ({"stem": "wide"}, "stem must be"),
        ({"frozen_stages": 5}, "frozen_stages must be"),
        ({"norm": "ln"}, "norm must be one of bn, syncbn, gn"),
        ({"norm": "gn", "gn_groups": 48}, "gn_groups"),
    ],
)
def test_bad_options_are_value_errors_that_say_what_is_allowed(options, message):
    with pytest.raises(ValueError, match=message):
        ResNet(**options)


def test_frozen_stages_get_no_gradient_and_keep_their_statistics():
    model = resnet18(frozen_stages=1)
    model.train()
    frozen_mean = model.layer1[0].bn1.running_mean.clone()
    trained_mean = model.layer2[0].bn1.running_mean.clone()
    model(torch.randn(2, 3, 32, 32) * 3 + 1)[-1].mean().backward()
    assert not model.bn1.training and not model.layer1[0].bn1.training
    assert torch.equal(model.layer1[0].bn1.running_mean, frozen_mean)
    assert not torch.equal(model.layer2[0].bn1.running_mean, trained_mean)
    assert model.conv1.weight.grad is None and model.layer1[1].conv2.weight.grad is None
    assert model.layer2[0].conv1.weight.grad is not None


def test_group_norm_replaces_every_batch_norm():
    model = resnet50(norm="gn", gn_groups=16)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 53 and all(m.num_groups == 16 for m in norms)
    features = model(torch.randn(1, 3, 32, 32))  # group norm works on a single image
    assert features[-1].shape[1] == 2048


def test_syncbn_builds_batch_norm_that_the_engine_can_convert():
    backbone = resnet18(norm="syncbn")
    plain = resnet18()
    holder = nn.ModuleDict({"backbone": backbone, "plain": plain})
    assert backbone.sync_bn and not plain.sync_bn
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in backbone.modules())
    assert synchronize_batch_norms(holder, "marked", torch.device("cpu")) == 20
    assert holder["backbone"] is backbone
    assert isinstance(backbone.bn1, CPUSyncBatchNorm)
    assert not any(isinstance(m, CPUSyncBatchNorm) for m in plain.modules())
