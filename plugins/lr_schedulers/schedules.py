"""Learning-rate schedules stepped once per iteration.

Each schedule is a curve ``factor(t)`` from 1 at the start towards 0 at ``max_iters``; the rate
of a parameter group is ``floor + (base - floor) * factor(t)``, where ``base`` is the group's
learning rate (its ``lr_mult`` already applied) and ``floor`` is ``min_lr`` times that same
multiplier, so a head trained at 10x keeps its 10x down to the end. During the first
``warmup_iters`` iterations the rate is also scaled linearly from ``warmup_ratio`` up to 1.
"""

from __future__ import annotations

import math
from typing import Annotated

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from segkit.constraints import Above, AtLeast, Between, UpToRunLength

NonNegative = Annotated[float, AtLeast(0)]
WarmupIters = Annotated[int, AtLeast(0), UpToRunLength()]
WarmupRatio = Annotated[float, Above(0), Between(0, 1)]


class IterationSchedule(LRScheduler):
    def __init__(
        self,
        optimizer: Optimizer,
        max_iters: int,
        min_lr: NonNegative = 0.0,
        warmup_iters: WarmupIters = 0,
        warmup_ratio: WarmupRatio = 0.1,
    ):
        if max_iters <= 0:
            raise ValueError(f"max_iters must be positive, got {max_iters}")
        if min_lr < 0:
            raise ValueError(f"min_lr must be >= 0, got {min_lr}")
        if not 0 <= warmup_iters <= max_iters:
            raise ValueError(
                f"warmup_iters must be in 0..max_iters ({max_iters}), got {warmup_iters}"
            )
        if not 0.0 < warmup_ratio <= 1.0:
            raise ValueError(f"warmup_ratio must be in (0, 1], got {warmup_ratio}")
        self.max_iters = max_iters
        self.min_lr = min_lr
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        self.floors = [min_lr * group.get("lr_mult", 1.0) for group in optimizer.param_groups]
        super().__init__(optimizer)

    # A checkpoint keeps where the schedule is, not its shape, which comes from the config: a
    # run resumed with a larger train.max_iters (to train longer) follows the new curve.
    POSITION = ("last_epoch", "_step_count", "base_lrs")

    def state_dict(self) -> dict:
        return {key: self.__dict__[key] for key in self.POSITION}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update({key: state_dict[key] for key in self.POSITION})
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def warmup(self, step: int) -> float:
        if step >= self.warmup_iters:
            return 1.0
        return self.warmup_ratio + (1.0 - self.warmup_ratio) * step / self.warmup_iters

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        factor = self.factor(min(step, self.max_iters))
        warmup = self.warmup(step)
        return [
            (floor + (base - floor) * factor) * warmup
            for base, floor in zip(self.base_lrs, self.floors)
        ]


class PolyLR(IterationSchedule):
    """Polynomial decay: factor (1 - t / max_iters) ** power, as in DeepLab and PSPNet."""

    def __init__(
        self,
        optimizer: Optimizer,
        max_iters: int,
        power: NonNegative = 0.9,
        min_lr: NonNegative = 0.0,
        warmup_iters: WarmupIters = 0,
        warmup_ratio: WarmupRatio = 0.1,
    ):
        if power < 0:
            raise ValueError(f"power must be >= 0, got {power}")
        self.power = power
        super().__init__(optimizer, max_iters, min_lr, warmup_iters, warmup_ratio)

    def factor(self, step: int) -> float:
        return (1.0 - step / self.max_iters) ** self.power


class CosineLR(IterationSchedule):
    """Cosine annealing from the base rate to ``min_lr`` over ``max_iters``."""

    def __init__(
        self,
        optimizer: Optimizer,
        max_iters: int,
        min_lr: NonNegative = 0.0,
        warmup_iters: WarmupIters = 0,
        warmup_ratio: WarmupRatio = 0.1,
    ):
        super().__init__(optimizer, max_iters, min_lr, warmup_iters, warmup_ratio)

    def factor(self, step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * step / self.max_iters))


class StepLR(IterationSchedule):
    """Multiply the rate by ``gamma`` at each milestone iteration."""

    def __init__(
        self,
        optimizer: Optimizer,
        max_iters: int,
        milestones: list[int],
        gamma: Annotated[float, Above(0)] = 0.1,
        min_lr: NonNegative = 0.0,
        warmup_iters: WarmupIters = 0,
        warmup_ratio: WarmupRatio = 0.1,
    ):
        milestones = list(milestones)
        if not milestones or milestones != sorted(milestones) or milestones[0] <= 0:
            raise ValueError(f"milestones must be increasing positive iterations, got {milestones}")
        if gamma <= 0:
            raise ValueError(f"gamma must be positive, got {gamma}")
        self.milestones = milestones
        self.gamma = gamma
        super().__init__(optimizer, max_iters, min_lr, warmup_iters, warmup_ratio)

    def factor(self, step: int) -> float:
        return self.gamma ** sum(1 for milestone in self.milestones if step >= milestone)


class ConstantLR(IterationSchedule):
    """The base rate throughout (after the optional warmup)."""

    def __init__(
        self,
        optimizer: Optimizer,
        max_iters: int,
        warmup_iters: WarmupIters = 0,
        warmup_ratio: WarmupRatio = 0.1,
    ):
        super().__init__(optimizer, max_iters, 0.0, warmup_iters, warmup_ratio)

    def factor(self, step: int) -> float:
        return 1.0
