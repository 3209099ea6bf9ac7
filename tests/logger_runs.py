"""Short real trainings of the quickstart for the logger tests: 64x64 scenes, batch 2, no data
workers, a validation of two images at the last iteration."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import run_segkit

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
SMALL = (
    "train.log_interval=2",
    "lr_scheduler.warmup_iters=0",
    "data.batch_size=2",
    "data.workers=0",
    "data.val.length=2",
    "data.train.size=[64,64]",
    "data.val.size=[64,64]",
)


def train_quickstart(
    run: Path, loggers: str, *overrides: str, iterations: int = 4, **options
) -> subprocess.CompletedProcess:
    """``segkit train`` of the quickstart for ``iterations`` steps (validated at the last) with
    ``logging.loggers`` set to ``loggers`` (YAML); ``options`` go to ``run_segkit``."""
    return run_segkit(
        "train",
        QUICKSTART,
        f"train.max_iters={iterations}",
        f"train.eval_interval={iterations}",
        *SMALL,
        f"logging.loggers={loggers}",
        *overrides,
        "--work-dir",
        str(run),
        **options,
    )
