"""The files of one evaluation: the JSON report and, beside it, the confusion matrix (CSV and
.npy) and every image's matrix (.per_image.npz), written together as one set so that a report
never points at matrices of another run.

For ``eval_best_whole.json``: ``eval_best_whole.confusion.csv`` (a header of class names, one
row per ground-truth class), ``eval_best_whole.confusion.npy`` (int64 ``[C, C]``, rows: ground
truth) and ``eval_best_whole.per_image.npz`` (segkit.perimage). The report's ``files`` entry
names them, relative to the report's folder.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segkit.errors import DataError
from segkit.files import atomic_write_files
from segkit.perimage import PerImageMatrices

SUFFIXES = {
    "confusion_csv": ".confusion.csv",
    "confusion_npy": ".confusion.npy",
    "per_image": ".per_image.npz",
}


def sibling_paths(report: Path) -> dict[str, Path]:
    """Where the matrices of the report ``report`` go."""
    return {key: report.with_suffix(suffix) for key, suffix in SUFFIXES.items()}


def confusion_csv(matrix: np.ndarray, classes: Sequence[str]) -> str:
    """A header row ``label \\ prediction, class...`` and one row per ground-truth class."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["label \\ prediction", *classes])
    for name, row in zip(classes, np.asarray(matrix)):
        writer.writerow([name, *(int(v) for v in row)])
    return buffer.getvalue()


def write_evaluation(
    out: Path,
    report: dict[str, Any],
    matrix: np.ndarray,
    classes: Sequence[str],
    per_image: PerImageMatrices | None,
) -> dict[str, Any]:
    """Write the report (with ``classes``, ``confusion_matrix`` and ``files`` added) and its
    matrices; returns the report as written."""
    paths = sibling_paths(out)
    if per_image is None:
        del paths["per_image"]
    npy = io.BytesIO()
    np.save(npy, np.asarray(matrix, dtype=np.int64))
    report = {
        **report,
        "classes": list(classes),
        "confusion_matrix": np.asarray(matrix, dtype=np.int64).tolist(),
        "files": {key: path.name for key, path in paths.items()},
    }
    # the report first: a disk that is full from the start is reported on the file asked for
    contents: dict[Path, bytes] = {
        out: (json.dumps(report, indent=2) + "\n").encode("utf-8"),
        paths["confusion_csv"]: confusion_csv(matrix, classes).encode("utf-8"),
        paths["confusion_npy"]: npy.getvalue(),
    }
    if per_image is not None:
        contents[paths["per_image"]] = per_image.to_bytes()
    atomic_write_files(contents, "the evaluation report")
    return report


def read_report(path: Path) -> dict[str, Any]:
    """An eval JSON report, or a DataError naming the file."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a JSON report of segkit eval ({error})") from None
    if not isinstance(report, dict) or "mIoU" not in report:
        raise DataError(f"{path}: not a report of segkit eval (no mIoU)")
    return report


def per_image_of(path: Path, report: dict[str, Any]) -> PerImageMatrices:
    """The per-image matrices a report names (or the default file beside it)."""
    name = (report.get("files") or {}).get("per_image")
    matrices = path.parent / name if name else sibling_paths(path)["per_image"]
    if not matrices.is_file():
        raise DataError(
            f"{path}: its per-image matrices {matrices} are missing; evaluate the checkpoint "
            "again with this version of segkit eval, which writes them"
        )
    return PerImageMatrices.load(matrices)
