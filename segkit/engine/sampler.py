"""Samplers: the endless, resumable training stream of ``(index, draw)`` keys, and the split of
the validation set among processes.

The training stream is one sequence shared by all processes: epoch ``e`` is a permutation of the
dataset seeded with (seed, e), and ``draw`` is a sample's position in the whole stream. Process
``rank`` of ``world_size`` takes positions rank, rank + world_size, ...; so the data order depends
only on the seed, never on the worker count, and a run resumed at position ``p`` sees exactly the
samples the uninterrupted run saw after ``p``. ``TransformedDataset[(index, draw)]`` seeds
augmentation from ``draw``, so the augmentations are the same too.

This does what torch's ``DistributedSampler`` does for an epoch (every process a disjoint share,
shuffled by seed and epoch) for an endless stream: with ``b`` images per process, global batch
``k`` is stream positions ``[k * b * world_size, (k + 1) * b * world_size)``, each process taking
every ``world_size``-th of them, which is exactly the batch one process with ``b * world_size``
images would take. Epoch boundaries fall inside batches instead of padding or dropping samples,
and ``set_epoch`` is not needed: the position says which epoch it is.
"""

from __future__ import annotations

from collections.abc import Iterator

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


class ShardSampler(Sampler):
    """One process's share of an evaluation set: a contiguous block of indices. The blocks of
    all processes cover every index exactly once; earlier ranks take one more when the count
    does not divide evenly, and a rank may get none. Unlike ``DistributedSampler``, which pads the
    shares to equal length by repeating images, no image is evaluated twice, so the summed
    confusion matrix is that of one process going through the whole set."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        share, extra = divmod(size, world_size)
        self.start = rank * share + min(rank, extra)
        self.stop = self.start + share + (1 if rank < extra else 0)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start
