"""Per-channel mean and std of images, class pixel frequencies, and class weights from them.

Moments are gathered per image (two passes over its pixels, in float64) and merged with Chan,
Golub and LeVeque's pairwise formula, so that no sum of squares of millions of large values
loses the small difference that the variance is. Nothing here knows how many channels an image
has: the first axis of an image is its channels, whatever their number.

Class weights (the training set's pixel counts ``n_c``; ``N`` the labelled pixels in all):

- ``median``, median frequency balancing (Eigen & Fergus, 2015): ``f_c = n_c / P_c`` with
  ``P_c`` the labelled pixels of the images that contain class c, and ``w_c = median(f) / f_c``
  (median over the classes present): the median class gets 1, rarer ones more.
- ``enet`` (Paszke et al., 2016): ``p_c = n_c / N`` and ``w_c = 1 / ln(1.02 + p_c)``, which
  lies between 1.4 (a class covering everything) and 50.5 (a class covering nothing).

A class absent from the training set has no pixel whose loss a weight could scale; it gets
:data:`ABSENT_WEIGHT` (1, the unweighted value) with either formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

WEIGHTINGS = ("median", "enet")
ABSENT_WEIGHT = 1.0
ENET_C = 1.02  # ENet's constant: bounds the weights to [1/ln(2.02), 1/ln(1.02)]
IGNORE = 255


@dataclass
class ImageMoments:
    """Pixel count, per-channel mean and per-channel sum of squared deviations of one or more
    images."""

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray) -> ImageMoments:
        """The moments of a CxHxW image (any C, any numeric dtype)."""
        pixels = np.asarray(image).reshape(image.shape[0], -1).astype(np.float64)
        mean = pixels.mean(axis=1) if pixels.shape[1] else np.zeros(pixels.shape[0])
        m2 = ((pixels - mean[:, None]) ** 2).sum(axis=1)
        return cls(pixels.shape[1], mean, m2)

    def merged(self, other: ImageMoments) -> ImageMoments:
        if self.count == 0:
            return other
        if other.count == 0:
            return self
        if len(self.mean) != len(other.mean):
            raise ValueError(f"images with {len(self.mean)} and {len(other.mean)} channels")
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / count)
        return ImageMoments(count, mean, m2)

    @property
    def std(self) -> np.ndarray:
        """The population standard deviation over all pixels."""
        return np.sqrt(self.m2 / max(self.count, 1))


@dataclass
class ClassCounts:
    """Per class: labelled pixels, and labelled pixels of the images that contain the class."""

    num_classes: int
    pixels: np.ndarray = field(init=False)
    pixels_of_images_with: np.ndarray = field(init=False)
    images_with: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.pixels = np.zeros(self.num_classes, dtype=np.int64)
        self.pixels_of_images_with = np.zeros(self.num_classes, dtype=np.int64)
        self.images_with = np.zeros(self.num_classes, dtype=np.int64)

    def add(self, counts: np.ndarray) -> None:
        """One image's counts of mask values (``counts[v]`` pixels of value v; 255 ignored)."""
        counts = np.asarray(counts, dtype=np.int64)[: self.num_classes]
        counts = np.pad(counts, (0, self.num_classes - len(counts)))
        present = counts > 0
        self.pixels += counts
        self.pixels_of_images_with[present] += int(counts.sum())
        self.images_with += present

    @property
    def labelled(self) -> int:
        return int(self.pixels.sum())


def class_weights(counts: ClassCounts, weighting: str) -> np.ndarray:
    """One weight per class by ``weighting`` (one of :data:`WEIGHTINGS`, see the module)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    weights = np.full(counts.num_classes, ABSENT_WEIGHT, dtype=np.float64)
    present = counts.pixels > 0
    if not present.any():
        return weights
    if weighting == "median":
        frequency = counts.pixels[present] / counts.pixels_of_images_with[present]
        weights[present] = np.median(frequency) / frequency
    else:
        share = counts.pixels[present] / counts.labelled
        weights[present] = 1.0 / np.log(ENET_C + share)
    return weights


def rounded(values: np.ndarray, digits: int) -> list[float]:
    """Plain floats with ``digits`` significant digits, for a config a person reads."""
    return [float(f"{v:.{digits}g}") if math.isfinite(v) else float(v) for v in values]
