"""The README's commands run as written.

Every `segkit ...` line of the README's bash blocks runs in a scratch folder that sees the
repository's configs. Commands on the synthetic data must succeed; training commands get a
shortened schedule appended (later overrides win), so the test takes seconds, not minutes.
Commands on real datasets (ADE20K, Cityscapes), which a fresh machine does not have, must stop
with status 2 and a message saying what was not found, without a traceback. `make`, `pip` and
`tensorboard` lines are left out: CI runs `make test` itself, and the example plugin's
installation is tested in tests/test_example_plugin.py. YAML blocks that inherit from a shipped
config must validate.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import segkit
from conftest import run_segkit

REPO = Path(__file__).resolve().parents[1]
SHORT_TRAINING = ["train.max_iters=2", "train.eval_interval=0", "lr_scheduler.warmup_iters=0",
                  "data.val.length=2", "data.train.length=8"]


def blocks(language: str) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def readme_commands() -> list[list[str]]:
    commands = []
    for block in blocks("bash"):
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("segkit ") and "&&" not in line:
                commands.append(shlex.split(line)[1:])
    return commands


def uses_real_data(arguments: list[str]) -> bool:
    config = next((a for a in arguments if a.endswith(".yaml")), None)
    if config is None:
        return False
    data = segkit.load_config(REPO / config)["data"]
    return (data.get("train") or {}).get("type") != "synthetic"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme")
    (folder / "configs").symlink_to(REPO / "configs")
    return folder


def test_the_readme_has_commands_to_check():
    assert len(readme_commands()) >= 10


@pytest.mark.parametrize("arguments", readme_commands(), ids=lambda a: " ".join(a)[:60])
def test_readme_command_runs_as_written(arguments, workspace):
    if arguments[0] == "train" and not uses_real_data(arguments):
        arguments = [*arguments, *SHORT_TRAINING]
    result = run_segkit(*arguments, cwd=workspace)
    if uses_real_data(arguments):
        # stopped for want of data or files, not for a mistake in the command itself
        config = next(a for a in arguments if a.endswith(".yaml"))
        segkit.load_config(REPO / config, [a for a in arguments if "=" in a and not a.startswith("-")])
        assert result.returncode == 2, result.stdout + result.stderr
        assert re.search(r"not found|no such image", result.stderr), result.stderr
        assert "Traceback" not in result.stderr
    else:
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("block", [b for b in blocks("yaml") if b.startswith("_base_: configs/")])
def test_readme_config_snippet_is_valid(block, workspace):
    (workspace / "snippet.yaml").write_text(block, encoding="utf-8")
    result = run_segkit("config", "snippet.yaml", "--check", cwd=workspace)
    assert result.returncode == 0, result.stderr
