"""The README's commands run as written.

Every `segkit ...` line of the README's bash blocks runs in a scratch folder that sees the
repository's configs and holds small ADE20K and Cityscapes datasets in their real on-disk layout
where the configs expect them (``data/ade20k``, ``data/cityscapes``), so the commands on real
datasets run for real. Training commands get a shortened schedule and small crops appended
(later overrides win), so the test takes seconds, not minutes. A command that needs a file only
the user can have (a checkpoint, pretrained weights, photos) must stop with status 2 and a
message naming that file, without a traceback. `make`, `pip` and
`tensorboard` lines are left out: CI runs `make test` itself, and the example plugin's
installation is tested in tests/test_example_plugin.py. YAML blocks that inherit from a shipped
config must validate.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from conftest import run_segkit
from test_data_fixtures import make_ade20k, make_cityscapes

import segkit

REPO = Path(__file__).resolve().parents[1]
SHORT_TRAINING = [
    "train.max_iters=2",
    "train.eval_interval=0",
    "lr_scheduler.warmup_iters=0",
    "data.val.length=2",
    "data.train.length=8",
]
SHORT_REAL_TRAINING = [
    "train.max_iters=1",
    "train.eval_interval=0",
    "lr_scheduler.warmup_iters=0",
    "data.batch_size=2",
    "data.workers=0",
    "data.persistent_workers=false",
    "data.train.transforms=[{type: random_crop, size: [48, 48]}]",
    "data.val.transforms=[]",
    "eval.mode=whole",
]
# absolute paths in the README, and the workspace folders that stand in for them
README_PATHS = {"/data/ade": "data/ade20k"}


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
    rng = np.random.default_rng(0)
    ade_masks = [rng.integers(0, 151, (48, 64)).astype(np.uint8) for _ in range(3)]
    make_ade20k(
        folder / "data" / "ade20k", {"training": ade_masks[:2], "validation": ade_masks[2:]}
    )
    city_ids = [rng.integers(0, 34, (48, 96)).astype(np.uint8) for _ in range(3)]
    make_cityscapes(folder / "data" / "cityscapes", "train", city_ids[:2])
    make_cityscapes(folder / "data" / "cityscapes", "val", city_ids[2:], city="frankfurt")
    return folder


def in_workspace(arguments: list[str]) -> list[str]:
    for outside, inside in README_PATHS.items():
        arguments = [a.replace(f"={outside}", f"={inside}") for a in arguments]
    return arguments


def files_only_the_user_has(arguments: list[str], workspace: Path) -> list[str]:
    """Checkpoints, weights and photos the command names that no earlier README command wrote:
    a fresh machine has none of them."""
    named = []
    for argument in arguments:
        value = argument.partition("=")[2] if "=" in argument else argument
        if value.endswith((".pt", ".pth", "/")) and not (workspace / value).exists():
            named.append(value.rstrip("/").rpartition("/")[2])
    return named


def test_the_readme_has_commands_to_check():
    assert len(readme_commands()) >= 10


def readme_params() -> list:
    """Training and evaluation take seconds each: those are marked slow."""
    return [
        pytest.param(
            arguments,
            id=" ".join(arguments)[:60],
            marks=[pytest.mark.slow] if arguments[0] in ("train", "eval") else [],
        )
        for arguments in readme_commands()
    ]


@pytest.mark.parametrize("arguments", readme_params())
def test_readme_command_runs_as_written(arguments, workspace):
    arguments = in_workspace(arguments)
    missing = files_only_the_user_has(arguments, workspace)
    if arguments[0] == "train" and not missing:
        arguments = [
            *arguments,
            *(SHORT_REAL_TRAINING if uses_real_data(arguments) else SHORT_TRAINING),
        ]
    result = run_segkit(*arguments, cwd=workspace)
    if missing:
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert any(name in result.stderr for name in missing), result.stderr
    else:
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("block", [b for b in blocks("yaml") if b.startswith("_base_: configs/")])
def test_readme_config_snippet_is_valid(block, workspace):
    (workspace / "snippet.yaml").write_text(block, encoding="utf-8")
    result = run_segkit("config", "snippet.yaml", "--check", cwd=workspace)
    assert result.returncode == 0, result.stderr
