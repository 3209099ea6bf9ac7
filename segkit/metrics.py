"""Segmentation metrics from one confusion matrix.

The matrix is accumulated on the device that made the predictions (a bincount per batch, no
copy to the host), so validation never waits for the GPU until the very end; several
processes can sum their matrices before the metrics are derived.

Conventions (as MMSegmentation and the Cityscapes scripts): rows are ground truth, columns are
predictions; pixels labelled ``ignore_index`` do not count. A class that appears neither in the
labels nor in the predictions has no IoU (``None``) and is left out of the mean; a class absent
from the labels has no accuracy and is left out of mAcc. All metrics are fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from segkit.errors import DataError


class ConfusionMatrix:
    """Counts of (label, prediction) pairs over every pixel seen since the last reset."""

    def __init__(
        self, num_classes: int, device: torch.device | str = "cpu", ignore_index: int = 255
    ):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self._bad_labels = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, prediction: torch.Tensor, label: torch.Tensor) -> None:
        """Add a batch: ``prediction`` and ``label`` hold class indices of the same shape."""
        if prediction.shape != label.shape:
            raise ValueError(
                f"prediction {tuple(prediction.shape)} and label {tuple(label.shape)} differ in shape"
            )
        label = label.to(self.matrix.device)
        prediction = prediction.to(self.matrix.device)
        n = self.num_classes
        counted = label != self.ignore_index
        in_range = (label >= 0) & (label < n)
        self._bad_labels += (counted & ~in_range).sum()
        # A bincount of label * n + prediction; pixels that do not count go to an extra bin.
        # scatter_add instead of torch.bincount and boolean indexing: those wait for the GPU.
        pairs = torch.where(counted & in_range, label * n + prediction, n * n).flatten()
        counts = torch.zeros(n * n + 1, dtype=torch.int64, device=pairs.device)
        counts.scatter_add_(0, pairs, torch.ones_like(pairs))
        self.matrix += counts[: n * n].view(n, n)

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


def segmentation_metrics(matrix: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """mIoU, mAcc, aAcc and per-class IoU and accuracy (by class name) of a confusion matrix."""
    if len(classes) != matrix.shape[0]:
        raise ValueError(f"{len(classes)} class names for a {matrix.shape[0]}-class matrix")
    counts = matrix.double().cpu()
    true_positive = counts.diagonal()
    labelled = counts.sum(dim=1)
    predicted = counts.sum(dim=0)
    union = labelled + predicted - true_positive
    iou = [(tp / u).item() if u > 0 else None for tp, u in zip(true_positive, union)]
    accuracy = [(tp / lab).item() if lab > 0 else None for tp, lab in zip(true_positive, labelled)]
    total = labelled.sum().item()
    return {
        "mIoU": _mean(iou),
        "mAcc": _mean(accuracy),
        "aAcc": true_positive.sum().item() / total if total > 0 else None,
        "IoU": dict(zip(classes, iou)),
        "Acc": dict(zip(classes, accuracy)),
    }


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) / len(present) if present else None


def format_metrics(metrics: dict[str, Any]) -> str:
    """The per-class table and the summary line, in percent, as printed after a validation."""
    from segkit.commands.table import format_table

    rows = [
        (name, _percent(iou), _percent(metrics["Acc"].get(name)))
        for name, iou in metrics["IoU"].items()
    ]
    summary = "  ".join(f"{key} {_percent(metrics[key])}" for key in ("mIoU", "mAcc", "aAcc"))
    return format_table(("CLASS", "IoU", "Acc"), rows) + "\n" + summary


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"
