"""Segmentation metrics from one confusion matrix.

The matrix is accumulated on the device that made the predictions (a bincount per batch, no
copy to the host), so validation never waits for the GPU until the very end; several
processes can sum their matrices before the metrics are derived. The same count can also give
each image's own matrix, from which bootstrap intervals are drawn (segkit.bootstrap).

Conventions (as MMSegmentation and the Cityscapes scripts): rows are ground truth, columns are
predictions; pixels labelled ``ignore_index`` do not count. Every score is a ratio of pixel
counts; where its denominator is 0 it is undefined (``None``) and left out of its mean: a class
absent from labels and predictions has no IoU or Dice, one absent from the labels no accuracy
(recall), one never predicted no precision. All metrics are fractions in [0, 1]; the
definitions are in docs/training.md, "Scores".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segkit.errors import DataError
from segkit.perimage import PerImageMatrices


class ConfusionMatrix:
    """Counts of (label, prediction) pairs over every pixel seen since the last reset."""

    def __init__(
        self, num_classes: int, device: torch.device | str = "cpu", ignore_index: int = 255
    ):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self._bad_labels = torch.zeros((), dtype=torch.int64, device=device)

    def update(
        self, prediction: torch.Tensor, label: torch.Tensor, per_image: bool = False
    ) -> torch.Tensor | None:
        """Add a batch: ``prediction`` and ``label`` hold class indices of the same shape
        (images along the first dimension). With ``per_image`` the batch's own matrices come
        back, one per image (``[images, C, C]``, on the device), from the same single count."""
        if prediction.shape != label.shape:
            raise ValueError(
                f"prediction {tuple(prediction.shape)} and label {tuple(label.shape)} differ in shape"
            )
        label = label.to(self.matrix.device)
        prediction = prediction.to(self.matrix.device)
        n = self.num_classes
        images = label.shape[0] if per_image else 1
        counted = label != self.ignore_index
        in_range = (label >= 0) & (label < n)
        self._bad_labels += (counted & ~in_range).sum()
        # A bincount of (image * n + label) * n + prediction; pixels that do not count go to an
        # extra bin. scatter_add instead of torch.bincount and boolean indexing: those wait for
        # the GPU.
        pairs = label * n + prediction
        if per_image:
            offsets = torch.arange(images, device=pairs.device) * (n * n)
            pairs = pairs + offsets.view(-1, *([1] * (pairs.dim() - 1)))
        pairs = torch.where(counted & in_range, pairs, images * n * n).flatten()
        counts = torch.zeros(images * n * n + 1, dtype=torch.int64, device=pairs.device)
        counts.scatter_add_(0, pairs, torch.ones_like(pairs))
        matrices = counts[: images * n * n].view(images, n, n)
        self.matrix += matrices.sum(0)
        return matrices if per_image else None

    def combine(self, sum_over_processes: Callable[[torch.Tensor], Any]) -> None:
        """Add up the counts of several processes; ``sum_over_processes`` replaces a tensor, in
        place, by its sum over them (an all-reduce). One collective for all the counts."""
        n = self.num_classes
        packed = torch.cat([self.matrix.flatten(), self._bad_labels.view(1)])
        sum_over_processes(packed)
        self.matrix = packed[: n * n].view(n, n)
        self._bad_labels = packed[n * n]

    def check_labels(self, source: str = "the validation data") -> None:
        """Raise if some label values were neither a class nor the ignore value (a sync point)."""
        bad = int(self._bad_labels)
        if bad:
            raise DataError(
                f"{source}: {bad} labelled pixels hold values outside 0..{self.num_classes - 1} "
                f"that are not the ignore value {self.ignore_index}; check the dataset's label "
                "mapping and model.num_classes"
            )


# The per-class scores, each a ratio of pixel counts; 0/0 is undefined (NaN here, None in the
# reports) and left out of the class mean.
CLASS_SCORES = ("IoU", "Dice", "Precision", "Recall", "Acc")
MEANS = {
    "IoU": "mIoU",
    "Dice": "mDice",
    "Precision": "mPrecision",
    "Recall": "mRecall",
    "Acc": "mAcc",
}


def class_scores(
    true_positive: np.ndarray, labelled: np.ndarray, predicted: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-class scores from the three counts that determine them (true positives, labelled
    and predicted pixels per class), over any leading dimensions (a bootstrap passes one
    matrix of counts per resample); NaN where the score's denominator is 0."""
    tp = np.asarray(true_positive, dtype=np.float64)
    labelled = np.asarray(labelled, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(labelled > 0, tp / labelled, np.nan)
        return {
            "IoU": np.where(labelled + predicted > 0, tp / (labelled + predicted - tp), np.nan),
            "Dice": np.where(labelled + predicted > 0, 2 * tp / (labelled + predicted), np.nan),
            "Precision": np.where(predicted > 0, tp / predicted, np.nan),
            "Recall": recall,
            "Acc": recall,
        }


def mean_iou(true_positive: np.ndarray, labelled: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """mIoU over the last dimension (classes), leaving out classes absent from labels and
    predictions; NaN where every class is absent."""
    iou = class_scores(true_positive, labelled, predicted)["IoU"]
    present = ~np.isnan(iou)
    with np.errstate(invalid="ignore"):
        return np.where(present, iou, 0).sum(-1) / present.sum(-1)


def matrix_counts(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, labelled and predicted pixels per class of a confusion matrix (rows:
    ground truth), over any leading dimensions."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return np.diagonal(matrix, axis1=-2, axis2=-1), matrix.sum(-1), matrix.sum(-2)


def load_per_image(path: str | Path) -> PerImageMatrices:
    """The per-image confusion matrices ``segkit eval`` wrote beside its JSON (``*.per_image.npz``)."""
    return PerImageMatrices.load(path)


def segmentation_metrics(
    matrix: torch.Tensor | np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """The means (mIoU, mDice, mPrecision, mRecall, mAcc), fwIoU, aAcc and the per-class
    scores (by class name) of a confusion matrix; docs/training.md, "Scores"."""
    if len(classes) != matrix.shape[0]:
        raise ValueError(f"{len(classes)} class names for a {matrix.shape[0]}-class matrix")
    counts = matrix.cpu().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix)
    tp, labelled, predicted = matrix_counts(counts)
    scores = class_scores(tp, labelled, predicted)
    total = labelled.sum()
    metrics: dict[str, Any] = {MEANS[name]: _mean(scores[name]) for name in CLASS_SCORES}
    metrics["aAcc"] = float(tp.sum() / total) if total > 0 else None
    metrics["fwIoU"] = (
        float(np.nansum(labelled / total * np.nan_to_num(scores["IoU"]))) if total > 0 else None
    )
    for name in CLASS_SCORES:
        metrics[name] = dict(zip(classes, _values(scores[name])))
    return metrics


def _values(scores: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in scores]


def _mean(values: np.ndarray) -> float | None:
    present = [v for v in _values(values) if v is not None]
    return math.fsum(present) / len(present) if present else None


def format_metrics(metrics: dict[str, Any]) -> str:
    """The per-class table and the summary lines, in percent, as printed after a validation;
    with a ``ci`` entry the IoU column carries its interval, with ``boundary`` a column of
    boundary IoU follows."""
    from segkit.commands.table import format_table

    ci = metrics.get("ci")
    boundary = metrics.get("boundary")
    header = ["CLASS", "IoU"]
    if ci:
        header.append(f"{round(100 * ci['level'])}% CI")
    header += ["Acc", "Dice", "Prec"]
    if boundary:
        header.append("BIoU")
    rows = []
    for name, iou in metrics["IoU"].items():
        row = [name, _percent(iou)]
        if ci:
            row.append(_interval(ci["IoU"].get(name)))
        row += [_percent(metrics[key].get(name)) for key in ("Acc", "Dice", "Precision")]
        if boundary:
            row.append(_percent(boundary["IoU"].get(name)))
        rows.append(row)
    miou = f"mIoU {_percent(metrics['mIoU'])}"
    if ci:
        miou += f" ({round(100 * ci['level'])}% CI {_interval(ci['mIoU'])})"
    keys = ("mAcc", "aAcc", "fwIoU", "mDice", "mPrecision")
    summary = "  ".join([miou, *(f"{key} {_percent(metrics.get(key))}" for key in keys)])
    if boundary:
        summary += f"\nboundary mIoU {_percent(boundary['mIoU'])} (band {boundary['describe']})"
    return format_table(header, rows) + "\n" + summary


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _interval(bounds: Sequence[float] | None) -> str:
    return "-" if bounds is None else f"{100 * bounds[0]:.2f}..{100 * bounds[1]:.2f}"
