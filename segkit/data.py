"""From dataset specs to training samples: transforms, per-draw randomness, batching.

A dataset item is a dict: ``image`` (uint8 tensor, 3xHxW), ``mask`` (int64 tensor, HxW, 255 =
ignore) and ``name``. Transforms take the item and a ``numpy.random.Generator``. The generator of
a training draw is seeded from (config seed, draw number), not from the worker that happens to
load it, so augmentation is the same whatever the number of workers, and a resumed run draws
exactly what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from segkit.build import explaining, registry, split_extras
from segkit.errors import ConfigError
from segkit.schema import DatasetExtras

IGNORE_INDEX = 255

Transform = Callable[[dict, np.random.Generator], dict]


class TransformedDataset(Dataset):
    """A dataset with its transform pipeline. Index it with ``i`` (deterministic randomness
    from the index; for validation) or with ``(i, draw)`` (randomness from the draw number)."""

    def __init__(self, dataset: Dataset, transforms: Sequence[Transform], seed: int = 0):
        self.dataset = dataset
        self.transforms = list(transforms)
        self.seed = seed

    @property
    def classes(self) -> list[str]:
        return list(self.dataset.classes)

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        return [tuple(c) for c in self.dataset.palette]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, draw = key if isinstance(key, tuple) else (key, key)
        sample = self.dataset[index]
        rng = np.random.default_rng([self.seed, draw])
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


def build_dataset(config: dict[str, Any], split: str) -> TransformedDataset:
    """The dataset of ``data.<split>`` with its transforms; ``data.root`` fills a missing root."""
    spec = config["data"].get(split)
    if not spec:
        raise ConfigError(f"data.{split}: no {split} dataset in the config")
    dataset_spec, extras = split_extras(spec, DatasetExtras)
    key_path = f"data.{split}"
    with explaining(key_path):
        component = registry().get("dataset", dataset_spec["type"])
        factory = component.load()
        if dataset_spec.get("root") is None and "root" in inspect.signature(factory).parameters:
            if config["data"].get("root") is not None:
                dataset_spec = {**dataset_spec, "root": config["data"]["root"]}
        dataset = registry().build("dataset", dataset_spec)
    transforms = []
    for number, transform_spec in enumerate(extras["transforms"]):
        with explaining(f"{key_path}.transforms.{number}"):
            transforms.append(registry().build("transform", transform_spec))
    return TransformedDataset(dataset, transforms, seed=config["train"]["seed"])


def collate(samples: Sequence[dict]) -> dict:
    """Stack images and masks of equal size; keep names as a list."""
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "mask": torch.stack([s["mask"] for s in samples]),
        "name": [s["name"] for s in samples],
    }
