"""What a finished training run prints last: the result, and where everything is."""

from __future__ import annotations

import json
import shlex
from pathlib import Path


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


def run_summary(run_dir: Path, best: dict | None) -> str:
    """Final mIoU, the best one, the run's files and the TensorBoard command."""
    lines = []
    final = last_validation(run_dir / "metrics.jsonl")
    if final is not None and final.get("mIoU") is not None:
        result = f"final validation mIoU {final['mIoU']:.3f} at iteration {final['step']}"
        if best is not None:
            result += f" (best {best['mIoU']:.3f} at iteration {best['step']})"
        lines.append(result)
    lines.append(f"run directory: {run_dir}")
    entries = [
        ("config.yaml", "the resolved config (runs again as is)"),
        ("metrics.jsonl", "training and validation metrics"),
        ("checkpoints/last.pt", "the latest state, for --resume"),
        ("checkpoints/best.pt", "the best model by validation mIoU"),
        ("predictions", "validation pictures: image | ground truth | prediction"),
        ("tb", "TensorBoard events"),
    ]
    for name, meaning in entries:
        if (run_dir / name).exists():
            lines.append(f"  {name + ('/' if (run_dir / name).is_dir() else ''):<22}{meaning}")
    if (run_dir / "tb").is_dir():
        lines.append(f"watch it: tensorboard --logdir {shlex.quote(str(run_dir / 'tb'))}")
    return "\n".join(f"segkit: {line}" for line in lines)
