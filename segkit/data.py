"""From dataset specs to batches: transforms, per-draw randomness, bad samples, data loaders.

A dataset item is a dict: ``image`` (uint8 or uint16 tensor, CxHxW), ``mask`` (int64 tensor, HxW, 255 =
ignore) and ``name``. Transforms take the item and a ``numpy.random.Generator`` and return it.

Randomness. A training sample is addressed by ``(index, draw)``: ``draw`` counts the samples
drawn since the start of training (over all processes), and the transforms' generator is seeded
from (config seed, draw). Augmentation therefore depends neither on the number of data-loading
workers nor on which worker loads a sample (a stronger guarantee than seeding per worker), and a
resumed run draws exactly what the uninterrupted run would have drawn.
:class:`segkit.engine.sampler.InfiniteSampler` produces those keys. Validation samples are
addressed by index alone.

Bad samples. A dataset raises :class:`segkit.errors.SampleError` for a sample it cannot serve
(unreadable file, mask of the wrong size, label values out of range) and lists in its
``problems`` attribute what it found wrong while indexing (an image without a mask); it leaves
those files out. ``data.on_bad_sample`` decides: ``error`` stops with that message; ``skip``
goes on, replacing a bad training sample by another one drawn from the same generator (the
replacement carries the skipped messages in ``skipped``); a bad validation sample becomes a
:class:`segkit.badsamples.SkippedSample`, which the evaluator passes over. The main process
prints one summary of the skips per epoch and per validation (segkit.badsamples).

Speed. Datasets may offer ``load(index)``, which returns the image still encoded
(:class:`segkit.imagefiles.EncodedImage`) and the mask as uint8. Transforms that set
``accepts_encoded_image = True`` (resizes) decode it at the size they need; before any other
transform it is decoded in full, fitted to the model's channels and checked against
``data.image_dtype`` (:mod:`segkit.inputs`). Images keep their integer type (uint8, or uint16 at
full depth) until ``normalize``; masks become int64 at the end.
"""

from __future__ import annotations

import inspect
import os
import signal
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from segkit.badsamples import SkippedSample
from segkit.builder import explaining, registry, split_extras
from segkit.errors import ConfigError, DataError, SampleError
from segkit.imagefiles import EncodedImage, decode_image
from segkit.inputs import InputSpec
from segkit.schema import DatasetExtras

# Consecutive bad samples after which skipping gives up: the dataset is broken, not a file.
MAX_CONSECUTIVE_BAD = 10

Transform = Callable[[dict, np.random.Generator], dict]


class BadSampleWarning(UserWarning):
    """Files a dataset left out while indexing, under ``data.on_bad_sample: skip``."""


class TransformedDataset(Dataset):
    """A dataset with its transform pipeline. Index it with ``i`` (validation: deterministic,
    randomness seeded from the index) or with ``(i, draw)`` (training: seeded from the draw)."""

    def __init__(
        self,
        dataset: Dataset,
        transforms: Sequence[Transform],
        seed: int = 0,
        on_bad_sample: str = "error",
        inputs: InputSpec | None = None,
    ):
        if on_bad_sample not in ("error", "skip"):
            raise ValueError(f"on_bad_sample must be 'error' or 'skip', got {on_bad_sample!r}")
        self.dataset = dataset
        self.transforms = list(transforms)
        self.seed = seed
        self.on_bad_sample = on_bad_sample
        self.inputs = inputs

    @property
    def classes(self) -> list[str]:
        return list(self.dataset.classes)

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        return [tuple(c) for c in self.dataset.palette]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> dict | SkippedSample:
        """The transformed sample (with the messages of the training samples it replaced in
        ``skipped``), or a :class:`SkippedSample` for a skipped validation sample."""
        if isinstance(key, tuple):
            index, draw = key
            seed_key = [self.seed, draw]
        else:
            index, draw = key, None
            seed_key = [self.seed, index]
        skipped: list[str] = []
        for attempt in range(MAX_CONSECUTIVE_BAD):
            try:
                sample = self.transformed(index, np.random.default_rng(seed_key))
            except SampleError as error:
                if self.on_bad_sample == "error":
                    raise
                last_error = error
                if draw is None:
                    return SkippedSample(str(error))
                skipped.append(str(error))
                index = int(np.random.default_rng([*seed_key, attempt]).integers(len(self)))
                continue
            if skipped:
                sample["skipped"] = skipped
            return sample
        raise DataError(
            f"{MAX_CONSECUTIVE_BAD} bad samples in a row (the last: {last_error}); "
            "run `segkit data check CONFIG` to list every problem"
        )

    def transformed(self, index: int, rng: np.random.Generator) -> dict:
        load = getattr(self.dataset, "load", None)
        sample = dict(load(index) if load is not None else self.dataset[index])
        sample["image"] = self.fitted(sample["image"], sample.get("name", index))
        for transform in self.transforms:
            if isinstance(sample["image"], EncodedImage) and not getattr(
                transform, "accepts_encoded_image", False
            ):
                sample["image"] = sample["image"].decode()
            sample = transform(sample, rng)
        sample["image"] = decode_image(sample["image"]).contiguous()
        sample["mask"] = sample["mask"].long().contiguous()
        return sample

    def fitted(self, image: torch.Tensor | EncodedImage, name: object):
        """The image as the model takes it: a file decodes to the model's channels and type
        (:class:`EncodedImage`); a dataset's tensor must have them already."""
        if self.inputs is None:
            return image
        channels, dtype = self.inputs.channels, self.inputs.dtype
        if isinstance(image, EncodedImage):
            return image.fitted(channels, dtype)
        if image.shape[0] != channels or str(image.dtype).removeprefix("torch.") != dtype:
            raise DataError(
                f"sample '{name}': the dataset gives {image.shape[0]}-channel "
                f"{str(image.dtype).removeprefix('torch.')} images, but the model takes "
                f"{channels}-channel {dtype} ones (model.backbone.in_channels, data.image_dtype)"
            )
        return image


def build_raw_dataset(config: dict[str, Any], split: str) -> Dataset:
    """The dataset component of ``data.<split>`` alone: no transforms, no bad-sample policy.
    ``data.root`` fills a missing ``root``."""
    spec = config["data"].get(split)
    if not spec:
        raise ConfigError(f"data.{split}: no {split} dataset in the config")
    dataset_spec, _ = split_extras(spec, DatasetExtras)
    with explaining(f"data.{split}"):
        factory = registry().get("dataset", dataset_spec["type"]).load()
    takes_root = "root" in inspect.signature(factory).parameters
    if takes_root and dataset_spec.get("root") is None and config["data"].get("root") is not None:
        dataset_spec = {**dataset_spec, "root": config["data"]["root"]}
    try:
        with explaining(f"data.{split}"):
            dataset = registry().build("dataset", dataset_spec)
    except ConfigError as error:
        if isinstance(error.__cause__, DataError):  # missing files stay a DataError
            raise DataError(str(error)) from error.__cause__
        raise
    if len(dataset) == 0:
        problems = list(getattr(dataset, "problems", None) or ())
        found = f": none of its files pair up, e.g.\n  {_listing(problems)}" if problems else ""
        raise DataError(f"data.{split}: the dataset '{dataset_spec['type']}' has no samples{found}")
    return dataset


def _listing(problems: list[str], shown: int = 10) -> str:
    more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
    return "\n  ".join(problems[:shown]) + more


def build_dataset(config: dict[str, Any], split: str) -> TransformedDataset:
    """The dataset of ``data.<split>`` with its transforms and ``data.on_bad_sample`` applied."""
    dataset = build_raw_dataset(config, split)
    policy = config["data"].get("on_bad_sample", "error")
    problems = list(getattr(dataset, "problems", None) or ())
    if problems:
        if policy == "error":
            raise DataError(
                f"data.{split}: {len(problems)} problem(s) with the dataset's files:\n  "
                f"{_listing(problems)}\n(`segkit data check CONFIG` lists them all; "
                "data.on_bad_sample=skip leaves those files out)"
            )
        warnings.warn(
            f"data.{split}: leaving out {len(problems)} file(s):\n  {_listing(problems)}",
            BadSampleWarning,
            stacklevel=2,
        )
    _, extras = split_extras(config["data"][split], DatasetExtras)
    inputs = InputSpec.of(config)
    transforms = []
    for number, transform_spec in enumerate(extras["transforms"]):
        with explaining(f"data.{split}.transforms.{number} ({transform_spec['type']})"):
            transform = registry().build("transform", transform_spec)
            check = getattr(transform, "check_input", None)
            if check is not None:  # refuses, before any sample, images it cannot change
                check(inputs.channels, inputs.dtype)
            transforms.append(transform)
    return TransformedDataset(dataset, transforms, config["train"]["seed"], policy, inputs)


def leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """A DataLoader worker's ``worker_init_fn``. Ctrl-C and SIGTERM go to a whole process group
    (a terminal, torchrun, SLURM, Kubernetes). A worker that ended on them would make PyTorch
    fail the main process ('worker exited unexpectedly') in the middle of a step or of a
    validation, before it could save ``last.pt``; so a worker ignores both and serves data until
    the main process, which decides, shuts it down. A SIGTERM from the worker's own parent still
    ends it at once: that is how PyTorch and multiprocessing stop workers left over at exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The sender of a signal is known only to sigwaitinfo: SIGTERM is blocked in this thread
    # (and so in every thread started later) and a watcher thread takes it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=_end_worker_when_its_parent_says, daemon=True).start()


def _end_worker_when_its_parent_says() -> None:
    while True:
        info = signal.sigwaitinfo({signal.SIGTERM})
        if info.si_pid == os.getppid():
            os._exit(0)


def collate(samples: Sequence[dict]) -> dict:
    """Stack images and masks of equal size; keep names, and the messages of skipped samples
    (``skipped``), as lists."""
    sizes = {tuple(s["image"].shape[-2:]) for s in samples}
    if len(sizes) > 1:
        raise DataError(
            f"images of one batch differ in size ({', '.join(f'{h}x{w}' for h, w in sorted(sizes))}, "
            "HxW): use batch size 1 for them, or transforms that give every image the same size "
            "(random_crop + pad for training; resize + pad for validation)"
        )
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "mask": torch.stack([s["mask"] for s in samples]),
        "name": [s["name"] for s in samples],
        "skipped": [message for s in samples for message in s.get("skipped", ())],
    }
