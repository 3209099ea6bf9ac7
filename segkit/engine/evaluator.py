"""Validation: predictions over a dataset accumulated into one confusion matrix.

The same code serves validation during training and ``segkit eval``, so that a checkpoint
evaluated later reproduces the number recorded when it was saved. Images of different sizes may
come in one run: a batch is split into runs of equal size, and each run is predicted at once.

With several processes each evaluates its own block of the set (:class:`ShardSampler`) and the
confusion matrices are summed, so the metrics are those of one process evaluating everything;
per-image matrices are gathered to rank 0 in the dataset's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from segkit.badsamples import SkipLog, SkippedSample
from segkit.bootstrap import Bootstrap, confidence_interval
from segkit.boundary import BoundaryCounts
from segkit.data import leave_stop_signals_to_the_main_process
from segkit.engine.distributed import World
from segkit.engine.inference import InferenceSettings, InputNormalizer, Predictor
from segkit.engine.precision import Precision
from segkit.engine.progress import ProgressBar
from segkit.engine.sampler import ShardSampler
from segkit.label_map import IGNORE_INDEX
from segkit.metrics import ConfusionMatrix, segmentation_metrics
from segkit.perimage import PerImageCollector, PerImageMatrices


@dataclass
class Tally:
    """What one pass over the validation set counted: the dataset's confusion matrix (summed
    over processes), this process's first samples for pictures, and, where asked for, every
    image's matrix (rank 0, all processes' images) and the boundary-IoU counts."""

    matrix: ConfusionMatrix
    samples: list[dict[str, Any]]
    per_image: PerImageMatrices | None = None
    boundary: BoundaryCounts | None = None


class Evaluator:
    """``per_image`` keeps every image's confusion matrix; ``ci`` (implies it) adds bootstrap
    intervals to the metrics; ``boundary`` (a fraction of the image diagonal) adds boundary
    IoU."""

    def __init__(
        self,
        settings: InferenceSettings,
        classes: Sequence[str],
        normalizer: InputNormalizer,
        precision: Precision | None = None,
        panels: int = 4,
        world: World | None = None,
        per_image: bool = False,
        ci: Bootstrap | None = None,
        boundary: float | None = None,
    ):
        self.settings = settings
        self.classes = list(classes)
        self.normalizer = normalizer
        self.precision = precision
        self.panels = panels
        self.world = world
        self.skips = SkipLog()  # this process's skipped samples, until the caller reports them
        self.per_image = per_image or ci is not None
        self.ci = ci
        self.boundary = boundary

    def confusion(
        self, model: nn.Module, batches: Iterable[list[dict]], progress: ProgressBar | None = None
    ) -> tuple[ConfusionMatrix, list[dict[str, Any]]]:
        """The confusion matrix over all batches (lists of samples) of every process, and the
        first few samples of this process with their predictions, for pictures."""
        tally = self.count(model, batches, progress)
        return tally.matrix, tally.samples

    def count(
        self, model: nn.Module, batches: Iterable[list[dict]], progress: ProgressBar | None = None
    ) -> Tally:
        device = self.normalizer.device
        matrix = ConfusionMatrix(len(self.classes), device, IGNORE_INDEX)
        collector = PerImageCollector(self.classes) if self.per_image else None
        boundary = (
            BoundaryCounts(len(self.classes), device, IGNORE_INDEX, self.boundary)
            if self.boundary is not None
            else None
        )
        predictor = Predictor(model, self.settings, self.precision)
        samples: list[dict[str, Any]] = []
        was_training = model.training
        model.eval()
        seen = 0
        try:
            for batch in batches:
                self.skips.add(s.message for s in batch if isinstance(s, SkippedSample))
                for group in equal_size_runs(batch):
                    labels = torch.stack([s["mask"] for s in group]).to(device, non_blocking=True)
                    images = self.normalizer(torch.stack([s["image"] for s in group]))
                    prediction = predictor.labels(images, labels.shape[-2:])
                    matrices = matrix.update(prediction, labels, per_image=collector is not None)
                    if collector is not None:
                        collector.add([s["name"] for s in group], matrices)
                    if boundary is not None:
                        boundary.update(prediction, labels)
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
        per_image = collector.result() if collector is not None else None
        if self.world is not None:
            matrix.combine(self.world.sum_)
            if boundary is not None:
                boundary.combine(self.world.sum_)
            if per_image is not None:
                # the shards are consecutive blocks in rank order: joined, the dataset's order
                shards = self.world.gather(per_image)
                per_image = PerImageMatrices.concatenate(shards) if shards else None
        matrix.check_labels()
        return Tally(matrix, samples, per_image, boundary)

    def scores(self, tally: Tally) -> dict[str, Any]:
        """The metrics of a tally: segkit.metrics' scores, ``boundary`` and ``ci`` where asked
        for (``ci`` on rank 0 only, which holds every image's matrix)."""
        metrics = segmentation_metrics(tally.matrix.matrix, self.classes)
        if tally.boundary is not None:
            metrics["boundary"] = tally.boundary.metrics(self.classes)
        if self.ci is not None and tally.per_image is not None:
            metrics["ci"] = confidence_interval(tally.per_image, self.ci)
        return metrics

    def evaluate(
        self, model: nn.Module, batches: Iterable[list[dict]], progress: ProgressBar | None = None
    ) -> dict[str, Any]:
        """The metrics of :meth:`scores`, and ``samples`` for pictures."""
        tally = self.count(model, batches, progress)
        metrics = self.scores(tally)
        metrics["samples"] = tally.samples
        return metrics


def bootstrap_settings(section: dict[str, Any], resamples: int | None = None) -> Bootstrap:
    """The bootstrap of the ``eval`` section (``eval.resamples``, ``eval.ci_seed``), with
    ``resamples`` given on the command line taking precedence."""
    return Bootstrap(
        resamples=resamples or int(section.get("resamples", 1000)),
        seed=int(section.get("ci_seed", 0)),
    )


def equal_size_runs(samples: list[dict | SkippedSample]) -> list[list[dict]]:
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
