"""What a finished training run prints last: the result, and where everything is.

The core lists its own files; every other file or folder of the run is a logger's, and the
logger says so itself (docs/plugins.md, "What the engine reads from components"): ``outputs``, a
list of ``(path, description)`` pairs, and ``watch``, a command that follows the run live. The
summary prints them as they are; it knows no logger by name.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

CORE_ENTRIES = (
    ("config.yaml", "the resolved config (runs again as is)"),
    ("metrics.jsonl", "training and validation metrics"),
    ("checkpoints/last.pt", "the latest state, for --resume"),
    ("checkpoints/best.pt", "the best model by validation mIoU"),
    ("predictions", "validation pictures: image | ground truth | prediction"),
)


def last_validation(metrics_path: Path) -> dict | None:
    """The last validation line of a run's metrics.jsonl, if any."""
    if not metrics_path.is_file():
        return None
    found = None
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            if record.get("split") == "val":
                found = record
    return found


def logger_reports(loggers: dict[str, object]) -> tuple[list[tuple[Path, str]], list[str]]:
    """The files and folders the loggers say they wrote, and their lines on how to watch the run.
    A logger that says nothing is fine; one that says it in another shape is pointed out (a
    plugin's bug, which must not cost the summary)."""
    outputs: list[tuple[Path, str]] = []
    watch: list[str] = []
    for name, logger in loggers.items():
        written = getattr(logger, "outputs", None) or ()
        try:
            outputs += [(Path(path), str(what)) for path, what in written]
        except (TypeError, ValueError):
            print(
                f"segkit: warning: {name}: 'outputs' must be a list of (path, description) "
                f"pairs, got {written!r}; its files are not listed",
                file=sys.stderr,
            )
        line = getattr(logger, "watch", None)
        if isinstance(line, str) and line.strip():
            watch.append(" ".join(line.split()))
    return outputs, watch


def run_summary(
    run_dir: Path,
    best: dict | None,
    outputs: Iterable[tuple[Path, str]] = (),
    watch: Iterable[str] = (),
    ended: str | None = None,
) -> str:
    """Why the run ended where that was not ``max_iters`` (``ended``: early stopping), final
    mIoU, the best one, the run's files (the core's, then the loggers' ``outputs``) and the
    loggers' ``watch`` lines."""
    lines = [] if ended is None else [ended]
    final = last_validation(run_dir / "metrics.jsonl")
    if final is not None and final.get("mIoU") is not None:
        result = f"final validation mIoU {final['mIoU']:.3f}"
        result += _interval((final.get("ci") or {}).get("mIoU"))
        result += f" at iteration {final['step']}"
        if best is not None:
            result += f" (best {best['mIoU']:.3f}{_interval(best.get('mIoU_ci'))}"
            result += f" at iteration {best['step']})"
        lines.append(result)
    lines.append(f"run directory: {run_dir}")
    entries = [(run_dir / name, meaning) for name, meaning in CORE_ENTRIES] + list(outputs)
    for path, meaning in entries:
        if path.exists():
            label = _shown(path, run_dir) + ("/" if path.is_dir() else "")
            lines.append(f"  {label:<21} {meaning}")
    lines += [f"watch it: {line}" for line in watch]
    return "\n".join(f"segkit: {line}" for line in lines)


def _interval(bounds: list[float] | None) -> str:
    """A bootstrap interval (eval.ci) after its score, or nothing."""
    return "" if not bounds else f" [95% interval {bounds[0]:.3f}..{bounds[1]:.3f}]"


def _shown(path: Path, run_dir: Path) -> str:
    """A path inside the run directory by its name there, any other as it is."""
    try:
        return path.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(path)
