"""The files a report is made of: the run directory's and, optionally, ``segkit eval``'s JSON.

Everything is read and checked here, before a model is built, so that a wrong path or a JSON of
another class list costs a second and one message, not a pass over the validation set first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segkit.errors import SegkitError


@dataclass
class RunFiles:
    path: Path
    config_path: Path
    config_text: str
    records: list[dict[str, Any]]  # the lines of metrics.jsonl, in order
    unreadable_lines: int  # lines of metrics.jsonl that are not JSON objects (a torn write)
    environment: dict[str, Any] | None  # env.json, where the run wrote one
    checkpoint: Path


def read_run(path: str | Path, checkpoint: str | Path | None = None) -> RunFiles:
    """The run at ``path``; its checkpoint is ``checkpoint`` if given, else ``best.pt`` (the one
    worth reporting on), else ``last.pt``."""
    run = Path(path)
    if not run.is_dir():
        raise SegkitError(
            f"{run}: no such run directory; give the train.work_dir of a segkit train run"
        )
    config_path = run / "config.yaml"
    if not config_path.is_file():
        raise SegkitError(f"{config_path}: missing; {run} is not a segkit run directory")
    records, unreadable = _read_metrics(run / "metrics.jsonl")
    return RunFiles(
        path=run,
        config_path=config_path,
        config_text=config_path.read_text(encoding="utf-8", errors="replace"),
        records=records,
        unreadable_lines=unreadable,
        environment=_read_environment(run / "env.json"),
        checkpoint=_checkpoint(run, checkpoint),
    )


def _read_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    if not path.is_file():
        raise SegkitError(
            f"{path}: missing; the report draws its learning curves from it (a run writes it "
            "from its first logged iteration on)"
        )
    records, unreadable = [], 0
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except ValueError:  # a line cut short by a crash mid-write; UnicodeDecodeError too
            record = None
        if isinstance(record, dict) and isinstance(record.get("step"), (int, float)):
            records.append(record)
        else:
            unreadable += 1
    if not records:
        raise SegkitError(
            f"{path}: holds no metric lines yet; make the report once the run has logged "
            "(train.log_interval) or validated (train.eval_interval)"
        )
    return records, unreadable


def _read_environment(path: Path) -> dict[str, Any] | None:
    """env.json, or None where it is missing or unreadable: the report then says so and shows
    the versions of the machine that made it."""
    try:
        environment = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return environment if isinstance(environment, dict) else None


def _checkpoint(run: Path, given: str | Path | None) -> Path:
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise SegkitError(f"--checkpoint {path}: no such file")
        return path
    for name in ("best.pt", "last.pt"):
        path = run / "checkpoints" / name
        if path.is_file():
            return path
    raise SegkitError(
        f"{run / 'checkpoints'}: holds neither best.pt nor last.pt; the report needs the trained "
        "model to find the worst images (give one with --checkpoint)"
    )


def read_evaluation(path: str | Path) -> dict[str, Any]:
    """``segkit eval``'s JSON: its metrics and, where that version of eval writes them, more
    (Dice, Precision, Recall, fwIoU, the confusion matrix, bootstrap intervals)."""
    path = Path(path)
    try:
        evaluation = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SegkitError(f"--eval {path}: cannot read it ({error.strerror or error})") from error
    except ValueError as error:
        raise SegkitError(f"--eval {path}: not JSON ({error})") from error
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("IoU"), dict):
        raise SegkitError(
            f"--eval {path}: not a segkit eval report (it has no 'IoU' by class); write one "
            "with segkit eval --checkpoint CK --out FILE"
        )
    return evaluation


def check_evaluation(evaluation: dict[str, Any], path: str | Path, classes: list[str]) -> None:
    """The evaluation must score the run's validation classes, in their order: a JSON of another
    dataset (or of merged classes) would put its numbers against the wrong names."""
    scored = list(evaluation["IoU"])
    if scored != classes:
        raise SegkitError(
            f"--eval {path}: scores {len(scored)} classes ({_first(scored)}), but the run's "
            f"data.val has {len(classes)} ({_first(classes)}); give the eval JSON of this run's "
            "validation set"
        )
    confusion = evaluation.get("confusion_matrix")
    if confusion is not None and not _is_square(confusion, len(classes)):
        raise SegkitError(
            f"--eval {path}: 'confusion_matrix' is not a {len(classes)} x {len(classes)} matrix of "
            "pixel counts (one row per ground-truth class)"
        )


def _is_square(matrix: Any, size: int) -> bool:
    return (
        isinstance(matrix, list)
        and len(matrix) == size
        and all(
            isinstance(row, list)
            and len(row) == size
            and all(isinstance(c, (int, float)) and not isinstance(c, bool) and c >= 0 for c in row)
            for row in matrix
        )
    )


def _first(names: list[str], count: int = 3) -> str:
    shown = ", ".join(names[:count])
    return shown + (", ..." if len(names) > count else "")
