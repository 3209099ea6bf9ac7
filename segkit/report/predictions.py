"""One pass of a trained model over the validation set: the confusion matrix and the images it
gets most wrong.

The images go through ``segkit eval``'s own path (its loader, batching, normaliser, precision
and :class:`~segkit.engine.inference.Predictor`), so that the matrix is the one ``segkit eval``
counts and a worst image shows the very prediction that was scored. Only the worst few images
are kept in memory, whatever the size of the set.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from segkit.engine.evaluator import equal_size_runs, validation_loader
from segkit.engine.inference import InferenceSettings, Predictor
from segkit.engine.loaded_model import TrainedModel
from segkit.engine.progress import ProgressBar
from segkit.label_map import IGNORE_INDEX
from segkit.metrics import ConfusionMatrix


@dataclass
class ScoredImage:
    name: str
    iou: float  # the image's mIoU over the classes in its ground truth or prediction
    image: np.ndarray  # HxWx3 uint8
    label: np.ndarray  # HxW class indices, IGNORE_INDEX where not annotated
    prediction: np.ndarray  # HxW class indices
    confusion: np.ndarray  # CxC pixel counts of this image (rows: ground truth)


@dataclass
class ValidationPass:
    confusion: np.ndarray  # CxC int64 pixel counts over the set (rows: ground truth)
    worst: list[ScoredImage]  # lowest IoU first
    scored: int  # images with at least one labelled pixel


def predict_validation(
    trained: TrainedModel,
    settings: InferenceSettings,
    dataset: Any,
    config: dict[str, Any],
    worst: int,
    progress: ProgressBar | None = None,
) -> ValidationPass:
    """Predict every image of ``dataset`` as ``segkit eval`` does; keep the ``worst`` lowest."""
    data = config["data"]
    loader = validation_loader(
        dataset,
        data["val_batch_size"],
        data["workers"],
        trained.device.type == "cuda",
        False,
        config["train"]["seed"],
    )
    num_classes = config["model"]["num_classes"]
    total = ConfusionMatrix(num_classes, trained.normalizer.device, IGNORE_INDEX)
    predictor = Predictor(trained.model, settings, trained.precision)
    kept: list[tuple[float, int, ScoredImage]] = []  # a max-heap by IoU, through negation
    order = itertools.count()
    scored = seen = 0
    for batch in loader:
        for group in equal_size_runs(batch):
            labels = torch.stack([s["mask"] for s in group]).to(total.matrix.device)
            images = trained.normalizer(torch.stack([s["image"] for s in group]))
            predictions = predictor.labels(images, labels.shape[-2:])
            per_image = total.update(predictions, labels, per_image=True).cpu().numpy()
            for sample, prediction, label, confusion in zip(group, predictions, labels, per_image):
                iou = image_iou(confusion)
                if iou is None:
                    continue
                scored += 1
                if worst == 0 or (len(kept) == worst and -kept[0][0] <= iou):
                    continue
                entry = ScoredImage(
                    name=str(sample["name"]),
                    iou=iou,
                    image=_hwc(sample["image"]),
                    label=label.cpu().numpy(),
                    prediction=prediction.cpu().numpy(),
                    confusion=confusion,
                )
                heapq.heappush(kept, (-iou, -next(order), entry))
                if len(kept) > worst:
                    heapq.heappop(kept)
            seen += len(group)
        if progress is not None:
            progress.update(seen)
    total.check_labels()
    worst_first = [entry for _, _, entry in sorted(kept, key=lambda k: (-k[0], -k[1]))]
    return ValidationPass(total.matrix.cpu().numpy(), worst_first, scored)


def class_ious(confusion: np.ndarray) -> np.ndarray:
    """Each class's IoU in one confusion matrix; NaN for a class in neither the ground truth
    nor the prediction, which has none."""
    true_positive = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    return np.divide(true_positive, union, out=np.full_like(true_positive, np.nan), where=union > 0)


def image_iou(confusion: np.ndarray) -> float | None:
    """The mean IoU of the classes in an image's ground truth or prediction (as the set's mIoU
    leaves out a class in neither); None for an image without labelled pixels."""
    ious = class_ious(confusion)
    return None if np.isnan(ious).all() else float(np.nanmean(ious))


def _hwc(image: torch.Tensor) -> np.ndarray:
    """The dataset's 3xHxW image as HxWx3 uint8 to draw; one that a ``normalize`` transform
    made floating point is stretched to 0..255 for the eye."""
    array = image.permute(1, 2, 0).cpu().numpy()
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(array.min()), float(array.max())
        array = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
    return np.ascontiguousarray(np.clip(array, 0, 255).astype(np.uint8))
