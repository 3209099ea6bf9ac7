"""A run-event hook that raises never loses the run: real ``segkit train`` processes with a
logger that fails the way a buggy logger or an unreachable tracking service does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from engine_toys import write_toy_config as write
from test_engine_cli import toy_plugin_path

TRAIN = "train: {max_iters: 6, eval_interval: 3, log_interval: 1, precision: fp32, device: cpu}\n"


def train(tmp_path, hook, error="ConnectionError", step=2, strict=False):
    config = write(
        tmp_path,
        train=TRAIN,
        logging=f"logging: {{loggers: [{{type: toy_raise_in, hook: {hook}, step: {step}, "
        f"error: {error}}}]}}\n",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGKIT_")}
    env["PYTHONPATH"] = toy_plugin_path(tmp_path)
    if strict:
        env["SEGKIT_STRICT_PLUGINS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "segkit", "train", str(config), "--work-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "hook, error",
    [
        pytest.param("segkit_on_train_iter_end", "ConnectionError", marks=SLOW),
        pytest.param("segkit_on_train_iter_end", "SystemExit", marks=SLOW),
        pytest.param("segkit_on_eval_end", "ConnectionError", marks=SLOW),
        pytest.param("segkit_on_checkpoint", "ConnectionError", marks=SLOW),
        pytest.param("segkit_on_train_end", "RuntimeError", marks=SLOW),
    ],
)
def test_a_failing_hook_is_reported_once_and_training_goes_on(tmp_path, hook, error):
    result = train(tmp_path, hook, error)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if f"failed in {hook}" in line]
    # once when it happens, once more in the final summary
    assert len(warnings) == 2, result.stderr
    assert "logger toy_raise_in" in warnings[0] and "training goes on without it" in warnings[0]
    assert "Traceback" not in result.stderr
    assert torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["step"] == 6


@pytest.mark.parametrize(
    "hook",
    [
        "segkit_on_checkpoint",
        pytest.param("segkit_on_train_iter_end", marks=SLOW),
    ],
)
def test_with_strict_plugins_a_failing_hook_stops_the_run_after_saving(tmp_path, hook):
    result = train(tmp_path, hook, step=2, strict=True)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "SEGKIT_STRICT_PLUGINS is set, so the run stopped" in result.stderr
    last = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert 2 <= last["step"] < 6
    assert f"last good checkpoint is {tmp_path / 'run/checkpoints/last.pt'}" in result.stderr
