import numpy as np
import pytest
import torch

from segkit.errors import DataError
from segkit.metrics import ConfusionMatrix, format_metrics, segmentation_metrics

CLASSES = ["sky", "road", "car", "person", "tree"]


def numpy_reference(labels: np.ndarray, predictions: np.ndarray, n: int):
    """The textbook computation, written independently of segkit.metrics."""
    keep = labels != 255
    matrix = np.bincount(n * labels[keep] + predictions[keep], minlength=n * n).reshape(n, n)
    tp = np.diag(matrix).astype(float)
    union = matrix.sum(0) + matrix.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    acc = np.where(matrix.sum(1) > 0, tp / np.maximum(matrix.sum(1), 1), np.nan)
    return matrix, np.nanmean(iou), np.nanmean(acc), tp.sum() / matrix.sum(), iou


def test_confusion_matrix_and_metrics_match_numpy_bincount():
    rng = np.random.default_rng(0)
    n = len(CLASSES)
    labels = rng.integers(0, n, (6, 20, 24))
    labels[rng.random(labels.shape) < 0.2] = 255
    # Predictions right 60% of the time, so the metrics are neither 0 nor 1.
    predictions = np.where(
        rng.random(labels.shape) < 0.6, labels % 255, rng.integers(0, n, labels.shape)
    )
    predictions[labels == 255] = rng.integers(0, n, (labels == 255).sum())

    matrix = ConfusionMatrix(n)
    for start in range(0, 6, 2):  # several batches accumulate
        matrix.update(
            torch.from_numpy(predictions[start : start + 2]),
            torch.from_numpy(labels[start : start + 2]),
        )
    expected_matrix, miou, macc, aacc, iou = numpy_reference(labels.ravel(), predictions.ravel(), n)

    assert np.array_equal(matrix.matrix.numpy(), expected_matrix)
    metrics = segmentation_metrics(matrix.matrix, CLASSES)
    assert metrics["mIoU"] == pytest.approx(miou, abs=1e-12)
    assert metrics["mAcc"] == pytest.approx(macc, abs=1e-12)
    assert metrics["aAcc"] == pytest.approx(aacc, abs=1e-12)
    assert list(metrics["IoU"]) == CLASSES
    assert [metrics["IoU"][c] for c in CLASSES] == pytest.approx(list(iou), abs=1e-12)
    assert 0.3 < metrics["mIoU"] < 0.9


def test_class_absent_from_labels_and_predictions_is_left_out_of_the_mean():
    labels = torch.tensor([[0, 0, 1, 1]])
    predictions = torch.tensor([[0, 0, 1, 0]])
    matrix = ConfusionMatrix(3)
    matrix.update(predictions, labels)
    metrics = segmentation_metrics(matrix.matrix, ["a", "b", "c"])
    assert metrics["IoU"]["c"] is None and metrics["Acc"]["c"] is None
    # IoU a = 2/3, b = 1/2: the mean over the two present classes, not over three.
    assert metrics["mIoU"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_class_predicted_but_never_labelled_counts_with_iou_zero():
    matrix = ConfusionMatrix(2)
    matrix.update(torch.tensor([1, 1, 0]), torch.tensor([0, 0, 0]))
    metrics = segmentation_metrics(matrix.matrix, ["a", "b"])
    assert metrics["IoU"] == {"a": pytest.approx(1 / 3), "b": 0.0}
    assert metrics["Acc"]["b"] is None  # no labelled pixel: accuracy undefined
    assert metrics["mIoU"] == pytest.approx(1 / 6)


def test_ignored_pixels_do_not_count():
    matrix = ConfusionMatrix(2)
    matrix.update(torch.tensor([0, 1, 1]), torch.tensor([0, 255, 255]))
    assert matrix.matrix.sum().item() == 1
    assert segmentation_metrics(matrix.matrix, ["a", "b"])["aAcc"] == 1.0


def test_label_values_outside_the_classes_are_reported():
    matrix = ConfusionMatrix(3)
    matrix.update(torch.tensor([0, 1, 2]), torch.tensor([0, 7, 2]))
    with pytest.raises(DataError, match="1 labelled pixels hold values outside 0..2"):
        matrix.check_labels()


def test_printed_table_names_every_class_in_percent():
    matrix = ConfusionMatrix(2)
    matrix.update(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 0]))
    text = format_metrics(segmentation_metrics(matrix.matrix, ["road", "car"]))
    assert "road" in text and "car" in text
    assert "mIoU 58.33" in text  # (2/3 + 1/2) / 2
    assert "aAcc 75.00" in text
