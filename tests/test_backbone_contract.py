"""A backbone that breaks its contract is refused when the model is built, in one line naming
the component and its plugin (exit status 2), not by a shape error deep inside a head."""

from __future__ import annotations

import engine_toys
import pytest
import torch
from conftest import make_distribution, run_segkit
from engine_toys import write_toy_config
from torch import nn

import segkit
from segkit.cli import main


class Misbehaving(nn.Module):
    """engine_toys' two-stage CNN, broken in one way or another on purpose."""

    def __init__(self, fault: str = "none"):
        super().__init__()
        self.fault = fault
        self.body = engine_toys.ToyCNN(width=4)
        self.out_channels, self.strides = [4, 8], [1, 2]
        if fault == "no_out_channels":
            del self.out_channels
        elif fault == "strides_disagree":
            self.strides = [1, 2, 4]
        elif fault == "channels_as_int":
            self.out_channels = 8

    def forward(self, x):
        features = self.body(x)
        if self.fault == "tensor":
            return features[-1]
        if self.fault == "one_feature_short":
            return features[:1]
        if self.fault == "wrong_channels":
            return [features[1], features[1]]
        return features


class BrokenBackbones:
    @segkit.hookimpl
    def segkit_register_backbones(self, register):
        register("misbehaving", Misbehaving)


@pytest.fixture
def broken(use_plugins):
    return use_plugins({"toys": engine_toys, "broken": BrokenBackbones()}, load_entry_points=True)


@pytest.mark.parametrize(
    "fault, message",
    [
        ("no_out_channels", "has no 'out_channels' list of positive ints (got None)"),
        ("channels_as_int", "has no 'out_channels' list of positive ints (got 8)"),
        ("strides_disagree", "says 2 stages in out_channels [4, 8] but 3 in strides [1, 2, 4]"),
        ("tensor", "forward(x) returned a Tensor, not the list of stage features"),
        (
            "one_feature_short",
            "forward(x) returned 1 feature(s) [(1, 4, 32, 32)], but out_channels says 2",
        ),
        (
            "wrong_channels",
            "returned 2 feature(s) [(1, 8, 16, 16), (1, 8, 16, 16)], but out_channels says 2 of N x C x H x W with C = [4, 8]",
        ),
    ],
)
def test_a_broken_backbone_is_named_with_its_plugin_at_build_time(
    broken, tmp_path, capsys, fault, message
):
    model = f"model:\n  backbone: {{type: misbehaving, fault: {fault}}}\n  head: {{type: toy_head}}\n  num_classes: 3\n"
    config = write_toy_config(tmp_path, model=model)
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("segkit: error: model.backbone: backbone 'misbehaving' (plugin 'broken')")
    assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_backbone_that_keeps_its_contract_builds_and_keeps_its_state(broken, tmp_path):
    config = segkit.load_config(
        write_toy_config(
            tmp_path,
            model=(
                "model:\n  backbone: {type: misbehaving}\n  head: {type: toy_head}\n  num_classes: 3\n"
            ),
        )
    )
    torch.manual_seed(0)
    model = segkit.build_model(config)
    after_build = torch.rand(1)
    torch.manual_seed(0)
    Misbehaving(), engine_toys.ToyHead(8, 3)
    assert torch.equal(after_build, torch.rand(1))  # trying forward drew no random numbers
    assert model.training and model.backbone.training
    assert all(
        int(bn.num_batches_tracked) == 0 for bn in model.modules() if isinstance(bn, nn.BatchNorm2d)
    )


def test_an_installed_plugin_whose_backbone_returns_a_tensor_fails_the_real_command(tmp_path):
    source = """
        import segkit
        import torch
        from torch import nn

        class Flat(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3, padding=1)
                self.bn = nn.BatchNorm2d(4)
                self.out_channels, self.strides = [4], [1]

            def forward(self, x):
                return self.bn(self.conv(x))  # one tensor, not a list

        @segkit.hookimpl
        def segkit_register_backbones(register):
            register("flat_net", Flat)
    """
    site = make_distribution(
        tmp_path / "site", "flat-plugin", {"flat": "flat_plugin"}, {"flat_plugin": source}
    )
    config = tmp_path / "flat.yaml"
    config.write_text(
        "model:\n"
        "  backbone: {type: flat_net}\n"
        "  head: {type: fcn, in_index: 0, channels: 8}\n"
        "  num_classes: 8\n"
        "data:\n"
        "  train: {type: synthetic, split: train, length: 4, size: [32, 32]}\n"
        "  batch_size: 2\n"
        "  workers: 0\n"
        "train: {max_iters: 1, device: cpu}\n"
        "logging: {loggers: []}\n",
        encoding="utf-8",
    )
    result = run_segkit("train", str(config), "--work-dir", str(tmp_path / "run"), pythonpath=site)
    assert result.returncode == 2, result.stderr
    assert (
        "segkit: error: model.backbone: backbone 'flat_net' (plugin 'flat'): forward(x) returned "
        "a Tensor, not the list of stage features"
    ) in result.stderr
    assert "Traceback" not in result.stderr
