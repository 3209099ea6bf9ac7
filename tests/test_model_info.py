"""`segkit model-info`, and the CLI's answer to bad model options (exit status 2)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import segkit
from segkit.cli import main
from segkit.commands.model_info import forward_flops, model_info
from segkit_plugins.resnet.model import resnet18, resnet50


class StandIns:
    """A full config also names a loss, optimizer, scheduler and loggers, which other plugins
    provide; stand-ins under their own names keep these tests about the model alone."""

    @segkit.hookimpl
    def segkit_register_losses(self, register):
        register("stand_in_loss", lambda ignore_index: None)

    @segkit.hookimpl
    def segkit_register_optimizers(self, register):
        register("stand_in_optimizer", lambda params: None)

    @segkit.hookimpl
    def segkit_register_lr_schedulers(self, register):
        register("stand_in_scheduler", lambda optimizer, max_iters: None)


OTHER_SECTIONS = """
loss: {type: stand_in_loss}
optimizer: {type: stand_in_optimizer}
lr_scheduler: {type: stand_in_scheduler}
logging: {loggers: []}
"""


@pytest.fixture
def model_config(use_plugins, write_config):
    use_plugins({"stand_ins": StandIns()}, load_entry_points=True)

    def write(model_yaml: str):
        return write_config("config.yaml", model_yaml.strip("\n") + "\n" + OTHER_SECTIONS)

    return write


TINY_PSPNET = """
model:
  num_classes: 7
  backbone: {type: resnet18, output_stride: 8}
  head: {type: ppm, fuse_channels: 64}
  aux_heads:
    - {type: fcn, channels: 32}
"""


def test_text_output_lists_parts_totals_and_gflops(model_config, capsys):
    path = model_config(TINY_PSPNET)
    assert main(["model-info", str(path), "--size", "64x96"]) == 0
    out = capsys.readouterr().out
    for part in ("backbone", "head", "aux_heads.0", "total"):
        assert part in out
    assert "11,176,512" in out  # resnet18 without its classifier
    assert "1x3x64x96" in out and "GFLOPs" in out and "GMACs" in out


def test_json_counts_match_the_built_model(model_config, capsys):
    path = model_config(TINY_PSPNET)
    assert main(["model-info", str(path), "--size", "64", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    model = segkit.build_model(segkit.load_config(path))
    params = info["params"]
    assert params["backbone"] == sum(p.numel() for p in model.backbone.parameters())
    assert params["head"] == sum(p.numel() for p in model.head.parameters())
    assert params["aux_heads.0"] == sum(p.numel() for p in model.aux_heads[0].parameters())
    assert params["total"] == sum(p.numel() for p in model.parameters())
    assert params["total"] == params["backbone"] + params["head"] + params["aux_heads.0"]
    assert info["input"] == [1, 3, 64, 64]
    assert info["gflops"] == pytest.approx(info["flops"] / 1e9)


def conv_and_linear_flops(model: nn.Module, images: torch.Tensor) -> int:
    """FLOPs counted another way: from each layer's output size (2 per multiply-add)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            height, width = module.kernel_size
            total += 2 * output.numel() * module.in_channels // module.groups * height * width
        elif isinstance(module, nn.Linear):
            total += 2 * output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    model.eval()
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return total


def test_flops_equal_a_layer_by_layer_count_and_skip_aux_heads():
    config = {
        "model": {
            "num_classes": 7,
            "backbone": {"type": "resnet18", "stem": "deep", "output_stride": 16},
            "head": {"type": "fcn", "num_convs": 2},
            "aux_heads": [{"type": "fcn"}],
        }
    }
    info = model_info(config, (64, 80))
    model = segkit.build_model(config)
    assert info["flops"] == conv_and_linear_flops(model, torch.zeros(1, 3, 64, 80))
    without_aux = dict(config["model"], aux_heads=[])
    assert model_info({"model": without_aux}, (64, 80))["flops"] == info["flops"]


class ValueReadingBackbone(nn.Module):
    """A third-party backbone whose forward looks at tensor values (impossible on meta)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.out_channels, self.strides = [4], [1]

    def forward(self, x):
        x = self.conv(x)
        return [x if x.abs().max().item() >= 0 else -x]


class ValueReading:
    @segkit.hookimpl
    def segkit_register_backbones(self, register):
        register("value_reading", ValueReadingBackbone)


def test_components_that_read_values_are_counted_on_the_cpu(use_plugins):
    use_plugins({"value_reading": ValueReading()}, load_entry_points=True)
    config = {
        "model": {
            "num_classes": 2,
            "backbone": {"type": "value_reading"},
            "head": {"type": "fcn", "channels": 8},
        }
    }
    info = model_info(config, (8, 8))
    conv, fcn, classifier = 3 * 9 * 4, 4 * 9 * 8, 8 * 2
    assert info["flops"] == 2 * 64 * (conv + fcn + classifier)


def test_resnet50_classifier_costs_the_published_4_1_gmacs():
    with torch.device("meta"):
        model = resnet50(num_classes=1000)
        flops = forward_flops(model, torch.zeros(1, 3, 224, 224))
    assert flops / 2e9 == pytest.approx(4.09, abs=0.01)


@pytest.mark.parametrize(
    "backbone, message",
    [
        (
            "{type: resnet50, depth: 77}",
            "depth: backbone 'resnet50' expects 18 or 34 or 50 or 101 or 152, got int 77",
        ),
        (
            "{type: resnet50, output_stride: 4}",
            "output_stride: backbone 'resnet50' expects 8 or 16 or 32, got int 4",
        ),
        (
            "{type: resnet50, dpeth: 50}",
            "unknown argument of backbone 'resnet50'; did you mean 'depth'?",
        ),
        (
            "{type: resnet, depth: 18, pretrained: missing.pth}",
            "missing.pth: weight file not found",
        ),
        (
            "{type: resnet18, norm: gn, gn_groups: 48}",
            "model.backbone: group norm cannot split 64 channels into 48 groups",
        ),
    ],
)
def test_bad_backbone_options_exit_2_with_one_clear_line(model_config, capsys, backbone, message):
    path = model_config(
        f"model:\n  num_classes: 3\n  backbone: {backbone}\n  head: {{type: fcn}}\n"
    )
    assert main(["model-info", str(path), "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert "config.yaml:3" in err or "model.backbone" in err


def test_mismatched_pretrained_file_exits_2_naming_the_keys(model_config, capsys, tmp_path):
    weights = tmp_path / "r18.pth"
    torch.save(resnet18().state_dict(), weights)
    path = model_config(
        f"model:\n  num_classes: 3\n  backbone: {{type: resnet34, pretrained: {weights}}}\n"
        "  head: {type: fcn}\n"
    )
    assert main(["model-info", str(path), "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert "model.backbone" in err and "the weights do not fit the model" in err
    assert "missing (" in err and "layer1.2.conv1.weight" in err and "Traceback" not in err


def test_bad_size_is_a_usage_error(model_config, capsys):
    path = model_config(TINY_PSPNET)
    with pytest.raises(SystemExit) as exit_info:
        main(["model-info", str(path), "--size", "big"])
    assert exit_info.value.code == 2
    assert "expected HxW" in capsys.readouterr().err
