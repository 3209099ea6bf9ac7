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
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from segkit.config import dump_config
from segkit.engine.checkpoint import CheckpointDirectory
from segkit.engine.visualize import panel, png_bytes
from segkit.errors import SegkitError
from segkit.files import append_line, atomic_write_files, atomic_write_text

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
        """Whether an earlier run is here: its last.pt, or a metric line (a run whose first line
        met a full disk leaves an empty metrics.jsonl, and nothing worth keeping)."""
        metrics = self.metrics_path
        return self.checkpoints.last.exists() or (metrics.exists() and metrics.stat().st_size > 0)

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
            self._keep_metrics_until(resume_step)

    def _keep_metrics_until(self, step: int) -> None:
        """Drop the metric lines logged after ``step``. A line that is not a whole JSON object
        (the last one, cut short by a crash mid-write) is dropped too, with a note: it must not
        stop the run from resuming."""
        kept, unreadable = [], 0
        for line in self.metrics_path.read_bytes().splitlines():
            record = _metric_record(line)
            if record is None:
                unreadable += bool(line.strip())
            elif record.get("step", 0) <= step:
                kept.append(line.decode("utf-8") + "\n")
        if unreadable:
            lines = (
                "1 line that is not a whole JSON object"
                if unreadable == 1
                else f"{unreadable} lines that are not whole JSON objects"
            )
            print(
                f"segkit: note: {self.metrics_path}: dropped {lines} (a write cut short, "
                "e.g. by a crash)",
                file=sys.stderr,
            )
        atomic_write_text(self.metrics_path, "".join(kept))

    def write_config(self, config: dict[str, Any], overrides: Iterable[str]) -> None:
        atomic_write_text(self.path / "config.yaml", dump_config(config))
        atomic_write_text(self.path / "overrides.txt", "".join(f"{o}\n" for o in overrides))

    def write_environment(self, environment: dict[str, Any]) -> None:
        atomic_write_text(self.path / "env.json", json.dumps(environment, indent=2) + "\n")

    def log_metrics(self, line: dict[str, Any]) -> None:
        append_line(self.metrics_path, json.dumps(line))

    def write_panels(self, samples: list[dict[str, Any]], palette) -> None:
        """This validation's panels replace the previous ones as a set: a failed write (a full
        disk) leaves those as they were."""
        pictures = {}
        for number, sample in enumerate(samples):
            name = str(sample["name"]).replace("/", "_").replace("\\", "_")
            picture = panel(sample["image"], sample["label"], sample["prediction"], palette)
            pictures[self.predictions / f"{number:02d}_{name}.png"] = png_bytes(picture)
        stale = set(self.predictions.glob("*.png")) - set(pictures)
        atomic_write_files(pictures, "the prediction panel")
        for old in stale:
            old.unlink()


def _metric_record(line: bytes) -> dict[str, Any] | None:
    """The JSON object of one line of metrics.jsonl, or None for a line that is not one."""
    try:
        record = json.loads(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        return None
    if not isinstance(record, dict) or not isinstance(record.get("step", 0), (int, float)):
        return None
    return record


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
            {
                "name": r.name,
                "distribution": r.distribution,
                "version": r.version,
                "status": r.status,
            }
            for r in get_plugins().records
        ],
        **facts,
    }


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None
