"""What a confusion matrix says at a glance: each class's row as shares, the pairs most mixed up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Confusion:
    truth: str
    predicted: str
    pixels: int
    share_of_truth: float  # of the ground-truth class's labelled pixels
    share_of_all: float  # of all labelled pixels


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the class's labelled pixels); a class never labelled keeps a
    row of zeros rather than a row of NaN."""
    counts = np.asarray(matrix, dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)


def top_confusions(matrix: np.ndarray, classes: Sequence[str], count: int = 10) -> list[Confusion]:
    """The ``count`` largest off-diagonal cells, by pixels: the mistakes that cost the most."""
    counts = np.asarray(matrix, dtype=np.float64)
    total = counts.sum()
    rows = counts.sum(axis=1)
    off_diagonal = counts.copy()
    np.fill_diagonal(off_diagonal, 0)
    flat = np.argsort(-off_diagonal, axis=None, kind="stable")[:count]
    pairs = []
    for truth, predicted in zip(*np.unravel_index(flat, counts.shape)):
        pixels = off_diagonal[truth, predicted]
        if pixels <= 0:
            break
        pairs.append(
            Confusion(
                truth=classes[truth],
                predicted=classes[predicted],
                pixels=int(pixels),
                share_of_truth=float(pixels / rows[truth]),
                share_of_all=float(pixels / total),
            )
        )
    return pairs
