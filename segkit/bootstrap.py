"""Bootstrap intervals over images, for one model and for the difference of two.

A validation set is a sample of images; another sample would give another mIoU. Resampling
the images with replacement, summing the resampled images' confusion matrices and scoring the
sum (as the dataset's score is scored) shows how far the score moves: the percentile interval
of the resampled scores (Efron's percentile bootstrap). Comparing two models, both are scored on
the same resampled images each time (a paired bootstrap), so that the images' own difficulty,
shared by both, cancels out of the difference.

Only three numbers per image and class enter IoU (true positives, labelled and predicted
pixels), so a resample's counts are a matrix product: resample counts ``[R, images]`` times
per-image counts ``[images, C]``. Nothing ``[images, C, C]`` is formed, which keeps ADE20K's
150 classes as cheap as three.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segkit.metrics import class_scores, mean_iou
from segkit.perimage import PerImageMatrices

# Resamples drawn and scored at a time: bounds the memory of the count matrices.
CHUNK = 100


@dataclass(frozen=True)
class Bootstrap:
    """How the intervals are drawn (docs/training.md, "Confidence intervals")."""

    resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def describe(self) -> dict[str, Any]:
        return {"level": self.level, "resamples": self.resamples, "seed": self.seed}


def resample_counts(images: int, settings: Bootstrap) -> Iterator[np.ndarray]:
    """How often each image is drawn in each resample, ``CHUNK`` resamples at a time (``[r,
    images]``); the same for the same ``images``, ``resamples`` and ``seed``."""
    generator = np.random.default_rng(settings.seed)
    for start in range(0, settings.resamples, CHUNK):
        rows = min(CHUNK, settings.resamples - start)
        drawn = generator.integers(0, images, size=(rows, images))
        flat = (np.arange(rows)[:, None] * images + drawn).ravel()
        yield np.bincount(flat, minlength=rows * images).reshape(rows, images).astype(np.float64)


def _resampled_iou(
    per_image: Sequence[PerImageMatrices], settings: Bootstrap
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each set of matrices (all of the same images): mIoU ``[R]`` and IoU ``[R, C]`` of
    every resample, the same resampled images for every set."""
    counts = [matrices.counts() for matrices in per_image]
    miou: list[list[np.ndarray]] = [[] for _ in per_image]
    iou: list[list[np.ndarray]] = [[] for _ in per_image]
    for weights in resample_counts(len(per_image[0]), settings):
        for k, (tp, labelled, predicted) in enumerate(counts):
            summed = (weights @ tp, weights @ labelled, weights @ predicted)
            miou[k].append(mean_iou(*summed))
            iou[k].append(class_scores(*summed)["IoU"])
    return [(np.concatenate(m), np.concatenate(i)) for m, i in zip(miou, iou)]


def _bounds(samples: np.ndarray, level: float) -> list[float] | None:
    """The percentile interval of ``samples`` (NaN: a resample without the score), or None."""
    present = samples[~np.isnan(samples)]
    if present.size == 0:
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(present, [tail, 100 - tail])
    return [float(low), float(high)]


def check_images(per_image: PerImageMatrices, what: str) -> None:
    from segkit.errors import SegkitError

    if len(per_image) < 2:
        raise SegkitError(
            f"{what}: a bootstrap interval needs at least 2 images, the evaluation has "
            f"{len(per_image)}"
        )


def confidence_interval(per_image: PerImageMatrices, settings: Bootstrap) -> dict[str, Any]:
    """``{"level", "resamples", "seed", "mIoU": [lo, hi], "IoU": {class: [lo, hi] or None}}``:
    intervals of mIoU and of each class's IoU over resampled images. A class's interval counts
    the resamples where the class has an IoU; None if it has none in any."""
    check_images(per_image, "--ci")
    ((miou, iou),) = _resampled_iou([per_image], settings)
    return {
        **settings.describe(),
        "mIoU": _bounds(miou, settings.level),
        "IoU": {
            name: _bounds(iou[:, c], settings.level) for c, name in enumerate(per_image.classes)
        },
    }


def paired_difference(
    a: PerImageMatrices, b: PerImageMatrices, settings: Bootstrap
) -> dict[str, Any]:
    """Intervals of B - A (mIoU and each class's IoU) over the same resampled images for both;
    ``a`` and ``b`` hold the same images in the same order."""
    check_images(a, "compare")
    (miou_a, iou_a), (miou_b, iou_b) = _resampled_iou([a, b], settings)
    return {
        **settings.describe(),
        "mIoU": _bounds(miou_b - miou_a, settings.level),
        "IoU": {
            name: _bounds(iou_b[:, c] - iou_a[:, c], settings.level)
            for c, name in enumerate(a.classes)
        },
    }
