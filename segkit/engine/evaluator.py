"""Validation: predictions over a dataset accumulated into one confusion matrix.

The same code serves validation during training and ``segkit eval``, so that a checkpoint
evaluated later reproduces the number recorded when it was saved. Images of different sizes may
come in one run: a batch is split into runs of equal size, and each run is predicted at once.

With several processes each evaluates its own block of the set (:class:`ShardSampler`) and the
confusion matrices are summed, so the metrics are those of one process evaluating everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from segkit.badsamples import SkipLog, SkippedSample
from segkit.data import leave_stop_signals_to_the_main_process
from segkit.engine.distributed import World
from segkit.engine.inference import InferenceSettings, InputNormalizer, Predictor
from segkit.engine.precision import Precision
from segkit.engine.progress import ProgressBar
from segkit.engine.sampler import ShardSampler
from segkit.label_map import IGNORE_INDEX
from segkit.metrics import ConfusionMatrix, segmentation_metrics


class Evaluator:
    def __init__(
        self,
        settings: InferenceSettings,
        classes: Sequence[str],
        normalizer: InputNormalizer,
        precision: Precision | None = None,
        panels: int = 4,
        world: World | None = None,
    ):
        self.settings = settings
        self.classes = list(classes)
        self.normalizer = normalizer
        self.precision = precision
        self.panels = panels
        self.world = world
        self.skips = SkipLog()  # this process's skipped samples, until the caller reports them

    def confusion(
        self, model: nn.Module, batches: Iterable[list[dict]], progress: ProgressBar | None = None
    ) -> tuple[ConfusionMatrix, list[dict[str, Any]]]:
        """The confusion matrix over all batches (lists of samples) of every process, and the
        first few samples of this process with their predictions, for pictures."""
        device = self.normalizer.device
        matrix = ConfusionMatrix(len(self.classes), device, IGNORE_INDEX)
        predictor = Predictor(model, self.settings, self.precision)
        samples: list[dict[str, Any]] = []
        was_training = model.training
        model.eval()
        seen = 0
        try:
            for batch in batches:
                self.skips.add(s.message for s in batch if isinstance(s, SkippedSample))
                for group in _equal_size_runs(batch):
                    labels = torch.stack([s["mask"] for s in group]).to(device, non_blocking=True)
                    images = self.normalizer(torch.stack([s["image"] for s in group]))
                    prediction = predictor.labels(images, labels.shape[-2:])
                    matrix.update(prediction, labels)
                    for sample, predicted in zip(group, prediction):
                        if len(samples) < self.panels:
                            samples.append(
                                {
                                    "name": sample["name"],
                                    "image": sample["image"],
                                    "label": sample["mask"],
                                    "prediction": predicted.cpu(),
                                }
                            )
                    seen += len(group)
                if progress is not None:
                    progress.update(seen)
        finally:
            model.train(was_training)
        if self.world is not None:
            matrix.combine(self.world.sum_)
        matrix.check_labels()
        return matrix, samples

    def evaluate(
        self, model: nn.Module, batches: Iterable[list[dict]], progress: ProgressBar | None = None
    ) -> dict[str, Any]:
        """mIoU, mAcc, aAcc, per-class IoU and accuracy, and ``samples`` for pictures."""
        matrix, samples = self.confusion(model, batches, progress)
        metrics = segmentation_metrics(matrix.matrix, self.classes)
        metrics["samples"] = samples
        return metrics


def _equal_size_runs(samples: list[dict | SkippedSample]) -> list[list[dict]]:
    """Consecutive samples of one size; skipped samples (data.on_bad_sample: skip) are left
    out."""
    runs: list[list[dict]] = []
    for sample in samples:
        if isinstance(sample, SkippedSample):
            continue
        if (
            runs
            and runs[-1][0]["image"].shape == sample["image"].shape
            and runs[-1][0]["mask"].shape == sample["mask"].shape
        ):
            runs[-1].append(sample)
        else:
            runs.append([sample])
    return runs


def validation_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    pin_memory: bool,
    persistent_workers: bool,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Batches as lists of samples, in dataset order; sizes may differ between samples. Process
    ``rank`` of ``world_size`` gets its own block of the dataset."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ShardSampler(len(dataset), rank, world_size),
        num_workers=workers,
        collate_fn=list,
        worker_init_fn=leave_stop_signals_to_the_main_process,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
