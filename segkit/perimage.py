"""Every evaluated image's own confusion matrix, kept sparse.

One pass over the validation set then serves the dataset's scores (the sum of the matrices),
per-image scores and bootstrap intervals over images (segkit.bootstrap), and a paired
comparison of two models on the same images. An image touches few classes, so only the nonzero
entries are stored: for ADE20K's 150 classes about a hundred numbers per image instead of 22500.

On disk (``*.per_image.npz``, written by ``segkit eval`` beside its JSON): ``names`` (one per
image, in evaluation order), ``classes``, and the entries of all images one after another:
``offsets`` (image i's entries are ``offsets[i]:offsets[i + 1]``), ``index`` (label * C +
prediction) and ``count`` (pixels).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from segkit.errors import DataError

FORMAT_VERSION = 1


@dataclass
class PerImageMatrices:
    """Sparse per-image confusion matrices (rows: ground truth, columns: prediction)."""

    names: list[str]
    classes: list[str]
    offsets: np.ndarray  # int64, len(names) + 1
    index: np.ndarray  # int64, label * C + prediction
    count: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def image_of_entries(self) -> np.ndarray:
        """The image each stored entry belongs to."""
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))

    def dense(self) -> np.ndarray:
        """All matrices as one ``[images, C, C]`` array (for moderate C)."""
        c = self.num_classes
        out = np.zeros((len(self), c * c), dtype=np.int64)
        out[self.image_of_entries(), self.index] = self.count
        return out.reshape(len(self), c, c)

    def total(self) -> np.ndarray:
        """The dataset's confusion matrix: the sum over images."""
        c = self.num_classes
        return (
            np.bincount(self.index, weights=self.count, minlength=c * c)
            .astype(np.int64)
            .reshape(c, c)
        )

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per image and class (``[images, C]`` each): true positives, labelled and predicted
        pixels, the three numbers every score of a class depends on. Sums of these over any
        multiset of images are that multiset's counts, which is what a bootstrap needs."""
        c, images = self.num_classes, len(self)
        image = self.image_of_entries()
        label, prediction = np.divmod(self.index, c)
        weights = self.count.astype(np.float64)

        def summed(where: np.ndarray, column: np.ndarray) -> np.ndarray:
            flat = np.bincount(
                image[where] * c + column[where], weights=weights[where], minlength=images * c
            )
            return flat.reshape(images, c)

        everything = np.ones(len(self.index), dtype=bool)
        return (
            summed(label == prediction, label),
            summed(everything, label),
            summed(everything, prediction),
        )

    def image_scores(self) -> dict[str, np.ndarray]:
        """Each image's own scores (docs/training.md, "Scores", applied to its matrix alone):
        ``mIoU`` and ``aAcc`` ``[images]``, ``IoU`` ``[images, C]``; NaN where undefined. For
        finding the images a model fails on; the dataset's scores sum the matrices instead."""
        from segkit.metrics import class_scores, mean_iou

        tp, labelled, predicted = self.counts()
        total = labelled.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = np.where(total > 0, tp.sum(1) / total, np.nan)
        return {
            "mIoU": mean_iou(tp, labelled, predicted),
            "aAcc": accuracy,
            "IoU": class_scores(tp, labelled, predicted)["IoU"],
        }

    def reordered(self, names: Sequence[str]) -> PerImageMatrices:
        """The same matrices in the order of ``names`` (which must be exactly this set)."""
        position = {name: i for i, name in enumerate(self.names)}
        order = np.array([position[name] for name in names], dtype=np.int64)
        starts, ends = self.offsets[order], self.offsets[order + 1]
        lengths = ends - starts
        picks = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)] or [[]]).astype(
            np.int64
        )
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return PerImageMatrices(
            list(names), self.classes, offsets, self.index[picks], self.count[picks]
        )

    @classmethod
    def concatenate(cls, parts: Sequence[PerImageMatrices]) -> PerImageMatrices:
        """The images of several parts (processes' shards), one after another."""
        if not parts:
            raise ValueError("nothing to concatenate")
        sizes = np.concatenate([[0], np.cumsum([len(p.index) for p in parts])])
        offsets = [parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, sizes)]
        return cls(
            [name for p in parts for name in p.names],
            parts[0].classes,
            np.concatenate(offsets).astype(np.int64),
            np.concatenate([p.index for p in parts]).astype(np.int64),
            np.concatenate([p.count for p in parts]).astype(np.int64),
        )

    def to_bytes(self) -> bytes:
        """The ``.npz`` file's contents (written by the caller, atomically, with its siblings)."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            version=np.array(FORMAT_VERSION),
            names=np.array(self.names, dtype=str),
            classes=np.array(self.classes, dtype=str),
            offsets=self.offsets,
            index=self.index,
            count=self.count,
        )
        return buffer.getvalue()

    @classmethod
    def load(cls, path: str | Path) -> PerImageMatrices:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = {
                    key: data[key] for key in ("names", "classes", "offsets", "index", "count")
                }
        except FileNotFoundError:
            raise DataError(
                f"{path}: no such file; it is written by segkit eval beside its JSON report"
            ) from None
        except (OSError, ValueError, KeyError) as error:
            raise DataError(
                f"{path}: not a per-image matrix file of segkit eval ({error}); evaluate again"
            ) from None
        matrices = cls(
            [str(n) for n in fields["names"]],
            [str(c) for c in fields["classes"]],
            fields["offsets"].astype(np.int64),
            fields["index"].astype(np.int64),
            fields["count"].astype(np.int64),
        )
        if len(matrices.offsets) != len(matrices) + 1 or matrices.offsets[-1] != len(
            matrices.index
        ):
            raise DataError(f"{path}: the offsets do not match the entries; evaluate again")
        return matrices


class PerImageCollector:
    """Gathers the per-image matrices of the batches of one evaluation from the device.

    Copying a batch's matrices to the host waits for the device; done one batch late (after
    the next batch is queued) the device keeps working meanwhile."""

    def __init__(self, classes: Sequence[str]):
        self.classes = list(classes)
        self._pending: tuple[list[str], torch.Tensor] | None = None
        self._names: list[str] = []
        self._lengths: list[int] = []
        self._index: list[np.ndarray] = []
        self._count: list[np.ndarray] = []

    def add(self, names: Sequence[str], matrices: torch.Tensor) -> None:
        """``matrices``: ``[images, C, C]`` for the images ``names``, possibly on a GPU."""
        self._flush()
        self._pending = (list(names), matrices)

    def _flush(self) -> None:
        if self._pending is None:
            return
        names, matrices = self._pending
        self._pending = None
        flat = matrices.reshape(len(names), -1).cpu().numpy()
        for name, row in zip(names, flat):
            where = np.flatnonzero(row)
            self._names.append(name)
            self._lengths.append(len(where))
            self._index.append(where.astype(np.int64))
            self._count.append(row[where].astype(np.int64))

    def result(self) -> PerImageMatrices:
        self._flush()
        offsets = np.concatenate([[0], np.cumsum(self._lengths, dtype=np.int64)]).astype(np.int64)
        empty = np.zeros(0, dtype=np.int64)
        return PerImageMatrices(
            self._names,
            self.classes,
            offsets,
            np.concatenate(self._index) if self._index else empty,
            np.concatenate(self._count) if self._count else empty,
        )
