"""The example third-party plugin, installed for real with pip, as a user would."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_segkit

import segkit

EXAMPLE = Path(__file__).resolve().parents[1] / "plugins" / "example-plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """pip-install the example plugin into a fresh target directory (no network needed)."""
    source = tmp_path_factory.mktemp("source") / "example-plugin"
    shutil.copytree(EXAMPLE, source)
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def test_segkit_list_names_the_installed_plugin(site):
    result = run_segkit("list", "--json", pythonpath=site)
    assert result.returncode == 0, result.stderr
    provided = {
        (c["kind"], c["name"]): (c["plugin"], c["distribution"], c["version"])
        for c in json.loads(result.stdout)
    }
    assert provided[("backbone", "tiny_cnn")] == ("example", "segkit-example-plugin", "0.3.0")
    assert provided[("loss", "poly1")] == ("example", "segkit-example-plugin", "0.3.0")


def test_segkit_show_describes_a_plugin_component(site):
    result = run_segkit("show", "backbone", "tiny", pythonpath=site)
    assert result.returncode == 0, result.stderr
    assert "from example (segkit-example-plugin 0.3.0)" in result.stdout
    assert "width" in result.stdout and "16" in result.stdout


class TestComponents:
    """What the config needs beside the plugin's own components."""

    @staticmethod
    @segkit.hookimpl
    def segkit_register_heads(register):
        register(
            "one_by_one",
            lambda in_channels, num_classes: torch.nn.Conv2d(in_channels, num_classes, 1),
        )

    @staticmethod
    @segkit.hookimpl
    def segkit_register_optimizers(register):
        register("plain_sgd", lambda params, lr=0.1: torch.optim.SGD(params, lr=lr))

    @staticmethod
    @segkit.hookimpl
    def segkit_register_lr_schedulers(register):
        register(
            "fixed",
            lambda optimizer, max_iters: torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0),
        )


def test_config_with_plugin_components_builds_and_learns(
    site, monkeypatch, use_plugins, write_config
):
    monkeypatch.syspath_prepend(str(site))
    use_plugins({"test_components": TestComponents}, load_entry_points=True)
    path = write_config(
        "plugin.yaml",
        """
        model:
          backbone: {type: tiny_cnn, width: 4}
          head: {type: one_by_one}
          num_classes: 3
        loss: {type: poly1, epsilon: 1.0}
        optimizer: {type: plain_sgd, lr: 0.1}
        lr_scheduler: {type: fixed}
        logging: {loggers: []}
    """,
    )
    config = segkit.load_config(path)
    assert config["model"]["backbone"] == {"type": "tiny_cnn", "width": 4, "in_channels": 3}
    model = segkit.build_model(config)
    loss_fn = segkit.build("loss", config["loss"], ignore_index=255)
    optimizer = segkit.build("optimizer", config["optimizer"], params=model.parameters())
    images = torch.randn(2, 3, 32, 32)
    target = torch.randint(0, 3, (2, 32, 32))
    target[:, :4] = 255
    losses = []
    for _ in range(5):
        loss = loss_fn(model(images)["main"], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
