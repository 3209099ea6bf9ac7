"""The built-in loggers are optional plugins: with one disabled, every shipped config still
checks and the quickstart still trains; a logger the config writes itself is not dropped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_segkit

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(str(p) for p in (ROOT / "configs").rglob("*.yaml") if "_base_" not in p.parts)

# One interpreter checks every config, as `segkit config CONFIG --check` does for each.
CHECK_ALL = (
    "import sys; from segkit.cli import main; "
    "failed = [p for p in sys.argv[1:] if main(['config', p, '--check']) != 0]; "
    "sys.exit(f'refused: {failed}' if failed else 0)"
)


@pytest.mark.parametrize("plugin", ["tensorboard", "progress"])
def test_every_shipped_config_checks_with_a_default_logger_plugin_disabled(plugin):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SEGKIT_")}
    environment["SEGKIT_DISABLE_PLUGINS"] = plugin
    result = subprocess.run(
        [sys.executable, "-c", CHECK_ALL, *SHIPPED],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": OK") == len(SHIPPED)


def test_resolved_config_leaves_out_the_default_logger_of_a_disabled_plugin():
    result = run_segkit(
        "config",
        str(ROOT / "configs/quickstart.yaml"),
        env={"SEGKIT_DISABLE_PLUGINS": "tensorboard"},
    )
    assert result.returncode == 0, result.stderr
    loggers = result.stdout.split("loggers:")[1]
    assert "type: progress" in loggers and "tensorboard" not in loggers


def test_a_logger_the_config_writes_is_refused_when_its_plugin_is_disabled(tmp_path):
    config = tmp_path / "with_tb.yaml"
    config.write_text(
        f"_base_: {ROOT / 'configs/quickstart.yaml'}\n"
        "logging:\n  loggers: [{type: tensorboard}]\n",
        encoding="utf-8",
    )
    result = run_segkit(
        "config", str(config), "--check", env={"SEGKIT_DISABLE_PLUGINS": "tensorboard"}
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{config}:3: logging.loggers.0.type: unknown logger 'tensorboard'" in result.stderr
    assert "SEGKIT_DISABLE_PLUGINS disables tensorboard" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("plugin", ["tensorboard", "progress"])
def test_quickstart_trains_with_a_default_logger_plugin_disabled(plugin, tmp_path):
    run = tmp_path / "run"
    result = run_segkit(
        "train",
        str(ROOT / "configs/quickstart.yaml"),
        "train.max_iters=21",  # above the quickstart's 20 warm-up iterations
        "train.eval_interval=0",
        "data.batch_size=2",
        "data.workers=0",
        "data.val.length=4",
        "--work-dir",
        str(run),
        env={"SEGKIT_DISABLE_PLUGINS": plugin},
    )
    assert result.returncode == 0, result.stderr
    assert (run / "checkpoints" / "last.pt").is_file()
    assert (run / "tb").is_dir() == (plugin != "tensorboard")
    assert ("watch it: tensorboard" in result.stdout) == (plugin != "tensorboard")
    assert ("train 21/21" in result.stderr) == (plugin != "progress")
