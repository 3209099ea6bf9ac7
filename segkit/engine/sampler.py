"""The training sampler: an endless, resumable stream of ``(index, draw)`` keys.

The stream is one sequence shared by all processes: epoch ``e`` is a permutation of the dataset
seeded with (seed, e), and ``draw`` is a sample's position in the whole stream. Process ``rank``
of ``world_size`` takes positions rank, rank + world_size, ...; so the data order depends only on
the seed, never on the worker count, and a run resumed at position ``p`` sees exactly the samples
the uninterrupted run saw after ``p``. ``TransformedDataset[(index, draw)]`` seeds augmentation
from ``draw``, so the augmentations are the same too.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler


class InfiniteSampler(Sampler):
    def __init__(
        self,
        size: int,
        seed: int = 0,
        shuffle: bool = True,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if size <= 0:
            raise ValueError("the training dataset is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.start = start
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start + self.rank
        epoch, order = -1, None
        while True:
            wanted_epoch, offset = divmod(position, self.size)
            if wanted_epoch != epoch:
                epoch, order = wanted_epoch, self.epoch_order(wanted_epoch)
            yield int(order[offset]), position
            position += self.world_size

    def epoch_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def state_dict(self, consumed: int) -> dict[str, int]:
        """What a checkpoint records: the stream position after ``consumed`` samples (all
        processes together), the seed and the dataset size the order was drawn for."""
        return {"position": consumed, "seed": self.seed, "size": self.size}
