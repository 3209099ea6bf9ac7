"""Checking an exported file on real images: the first images of the config's validation set.

Random images exercise every shape but no real scene, and a file can agree on noise and still
lose the classes a trained model sees; so where the validation data is present both models also
score it, and the report gives the mIoU of each. A fixed-size file takes only its size: the
images are resized to it (bilinear) and their labels with them (nearest), and the last batch is
filled by repeating its last image, whose repeats are not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from segkit.engine.segmenter import nearest, resize_image
from segkit.errors import SegkitError
from segkit.export.catalog import VAL_IMAGES
from segkit.export.verify import MIN_AGREEMENT
from segkit.label_map import IGNORE_INDEX
from segkit.metrics import ConfusionMatrix, segmentation_metrics


@dataclass(frozen=True)
class ValidationCheck:
    images: int
    input_size: str  # "each image's own" or "HxW" (resized to the file's size)
    max_abs_diff: float
    argmax_agreement: float
    miou_pytorch: float | None
    miou_exported: float | None

    @property
    def passed(self) -> bool:
        return self.argmax_agreement >= MIN_AGREEMENT

    def describe(self) -> str:
        scores = " ".join(
            f"{who} {'-' if value is None else f'{100 * value:.2f}%'}"
            for who, value in (("PyTorch", self.miou_pytorch), ("exported", self.miou_exported))
        )
        return (
            f"{self.images} validation images ({self.input_size}): argmax agreement "
            f"{self.argmax_agreement:.4%}, max difference {self.max_abs_diff:.3g}, mIoU {scores}"
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def validation_check(
    config: dict[str, Any],
    reference: Callable[[torch.Tensor], torch.Tensor],
    exported: Callable[[torch.Tensor], torch.Tensor],
    fixed_shape: tuple[int, int, int] | None,
    limit: int = VAL_IMAGES,
) -> ValidationCheck | str:
    """Both models on the first ``limit`` images of ``data.val``; or, where that data cannot be
    read here, the reason as a string (an export on a machine without the dataset is normal).
    ``fixed_shape``: (batch, height, width) of a fixed-size file, None for a dynamic one."""
    from segkit.data import build_dataset

    try:
        dataset = build_dataset(config, "val")
    except SegkitError as error:
        return f"data.val not read ({str(error).splitlines()[0]})"
    count = min(limit, len(dataset))
    classes = list(getattr(dataset, "classes", None) or [])
    num_classes = config["model"]["num_classes"]
    if len(classes) != num_classes:
        classes = [f"class_{index}" for index in range(num_classes)]
    matrices = [ConfusionMatrix(num_classes, "cpu", IGNORE_INDEX) for _ in range(2)]
    agreeing = pixels = 0
    difference = 0.0
    for images, labels in _batches(dataset, count, fixed_shape):
        with torch.no_grad():
            expected = reference(images)
        answer = exported(images).float()
        expected_classes, answer_classes = expected.argmax(1), answer.argmax(1)
        # repeats that fill a fixed batch are left out of every figure
        used = len(labels)
        expected_classes, answer_classes = expected_classes[:used], answer_classes[:used]
        agreeing += int((expected_classes == answer_classes).sum())
        pixels += expected_classes.numel()
        difference = max(difference, (answer[:used] - expected[:used]).abs().max().item())
        for matrix, predicted in zip(matrices, (expected_classes, answer_classes)):
            matrix.update(predicted, labels)
    scores = [segmentation_metrics(matrix.matrix, classes)["mIoU"] for matrix in matrices]
    input_size = "each image's own" if fixed_shape is None else "x".join(map(str, fixed_shape[1:]))
    return ValidationCheck(count, input_size, difference, agreeing / pixels, *scores)


def _batches(dataset, count: int, fixed_shape: tuple[int, int, int] | None):
    """(integer images [N, C, H, W], labels [n, H, W]) with n <= N real images."""
    if fixed_shape is None:
        for index in range(count):
            sample = dataset[index]
            yield sample["image"][None], sample["mask"][None]
        return
    batch, height, width = fixed_shape
    for start in range(0, count, batch):
        samples = [dataset[index] for index in range(start, min(start + batch, count))]
        images = torch.stack([resize_image(s["image"], (height, width)) for s in samples])
        labels = torch.stack(
            [nearest(s["mask"][None, None].float(), (height, width))[0, 0].long() for s in samples]
        )
        filler = images[-1:].expand(batch - len(samples), -1, -1, -1)
        yield torch.cat([images, filler]), labels
