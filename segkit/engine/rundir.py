"""The files of a run directory: resolved config, overrides, environment, metrics, pictures.

::

    config.yaml        the resolved config (every default written out; runs again as is)
    overrides.txt      the command-line overrides, one a line
    env.json           versions of segkit, torch and every plugin; device, precision, world size
    metrics.jsonl      one JSON object a line: {"split": "train"|"val", "step", ...}
    checkpoints/       last.pt, best.pt, iter_NNNNNN.pt
    predictions/       image | ground truth | prediction panels of the last validation

and whatever the run's loggers write, which is theirs to name (their ``outputs``) and to keep
fresh: ``--overwrite`` deletes the files above, a logger replaces its own at a fresh start.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterable

from segkit.config import dump_config
from segkit.engine.checkpoint import CheckpointDirectory
from segkit.engine.visualize import panel, save_rgb
from segkit.errors import SegkitError

RUN_FILES = ("config.yaml", "overrides.txt", "env.json", "metrics.jsonl")
RUN_FOLDERS = ("checkpoints", "predictions")


class RunExists(SegkitError):
    """A fresh run was asked for in a directory that holds an earlier one."""

    def __init__(self, path: Path):
        super().__init__(f"{path} already holds a run; resume it, overwrite it or use another")
        self.path = path


class RunDirectory:
    def __init__(self, path: str | Path, keep_checkpoints: int = 3):
        self.path = Path(path)
        self.checkpoints = CheckpointDirectory(self.path / "checkpoints", keep_checkpoints)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def predictions(self) -> Path:
        return self.path / "predictions"

    def holds_run(self) -> bool:
        return self.checkpoints.last.exists() or self.metrics_path.exists()

    def start(self, resume_step: int | None, overwrite: bool) -> None:
        """Make the directory ready: a fresh run refuses to mix with an earlier one unless told
        to overwrite it; a resumed run drops the metric lines logged after its checkpoint."""
        if resume_step is None and self.holds_run():
            if not overwrite:
                raise RunExists(self.path)
            for name in RUN_FILES:
                (self.path / name).unlink(missing_ok=True)
            for name in RUN_FOLDERS:
                shutil.rmtree(self.path / name, ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.metrics_path.exists():
            kept = [
                line for line in self.metrics_path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.metrics_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write_config(self, config: dict[str, Any], overrides: Iterable[str]) -> None:
        (self.path / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        text = "".join(f"{override}\n" for override in overrides)
        (self.path / "overrides.txt").write_text(text, encoding="utf-8")

    def write_environment(self, environment: dict[str, Any]) -> None:
        text = json.dumps(environment, indent=2) + "\n"
        (self.path / "env.json").write_text(text, encoding="utf-8")

    def log_metrics(self, line: dict[str, Any]) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as file:
            file.write(json.dumps(line) + "\n")

    def write_panels(self, samples: list[dict[str, Any]], palette) -> None:
        self.predictions.mkdir(parents=True, exist_ok=True)
        for old in self.predictions.glob("*.png"):
            old.unlink()
        for number, sample in enumerate(samples):
            name = str(sample["name"]).replace("/", "_").replace("\\", "_")
            picture = panel(sample["image"], sample["label"], sample["prediction"], palette)
            save_rgb(picture, self.predictions / f"{number:02d}_{name}.png")


def environment(**facts: Any) -> dict[str, Any]:
    """What env.json records: versions of everything that shaped the run, plus ``facts``."""
    from segkit.plugins import get_plugins

    return {
        "segkit": _version("segkit"),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "numpy": _version("numpy"),
        "platform": platform.platform(),
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "plugins": [
            {"name": r.name, "distribution": r.distribution, "version": r.version, "status": r.status}
            for r in get_plugins().records
        ],
        **facts,
    }


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None
