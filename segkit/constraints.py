"""Constraints on config values, written into type hints: ``Annotated[int, AtLeast(1)]``.

A constraint sits where the key is declared (a schema section or a component's signature), so the
validator checks it with the type, ``segkit show`` and docs/configuration.md describe it, and no
code that runs later has to check it again. Plugins use the same markers in their signatures.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any


class Constraint:
    """A rule a value that already has the right type must also follow."""

    def allows(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def _show(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class AtLeast(Constraint):
    low: float

    def allows(self, value: Any) -> bool:
        return not _number(value) or value >= self.low

    def describe(self) -> str:
        return f"at least {_show(self.low)}"


@dataclass(frozen=True)
class Above(Constraint):
    """Strictly greater, for values such as a standard deviation where 0 cannot work."""

    low: float

    def allows(self, value: Any) -> bool:
        return not _number(value) or (value > self.low and math.isfinite(value))

    def describe(self) -> str:
        return f"above {_show(self.low)}"


@dataclass(frozen=True)
class Below(Constraint):
    """Strictly less, for values such as an averaging decay where 1 would freeze everything."""

    high: float

    def allows(self, value: Any) -> bool:
        return not _number(value) or value < self.high

    def describe(self) -> str:
        return f"below {_show(self.high)}"


@dataclass(frozen=True)
class Between(Constraint):
    low: float
    high: float

    def allows(self, value: Any) -> bool:
        return not _number(value) or self.low <= value <= self.high

    def describe(self) -> str:
        return f"in {_show(self.low)}..{_show(self.high)}"


@dataclass(frozen=True)
class Length(Constraint):
    """A list with exactly ``count`` items, or at least ``least`` of them."""

    count: int | None = None
    least: int | None = None

    def allows(self, value: Any) -> bool:
        if not isinstance(value, (list, tuple)):
            return True
        if self.count is not None:
            return len(value) == self.count
        return len(value) >= (self.least or 0)

    def describe(self) -> str:
        if self.count is not None:
            return f"of {self.count} values"
        return f"of at least {self.least} value{'s' if self.least != 1 else ''}"


@dataclass(frozen=True)
class OneOf(Constraint):
    """A string of a given shape, e.g. a device name ``cuda:1``; ``shown`` is how the docs and
    messages name the shapes."""

    pattern: str
    shown: str

    def allows(self, value: Any) -> bool:
        return not isinstance(value, str) or re.fullmatch(self.pattern, value) is not None

    def describe(self) -> str:
        return f"({self.shown})"


@dataclass(frozen=True)
class UpToRunLength(Constraint):
    """An iteration count that cannot exceed ``train.max_iters`` (a warmup): a longer one is
    shortened to the run with a note, so that a short trial run of any config works as written."""

    def allows(self, value: Any) -> bool:
        return True  # the validator shortens it once max_iters is known

    def describe(self) -> str:
        return "at most train.max_iters (a longer one is shortened to the run)"


@dataclass(frozen=True)
class OnePerClass(Constraint):
    """A list with one value per class (a loss's class weights): its length is checked against
    ``model.num_classes`` once the whole config is read, since the factory never sees it."""

    def allows(self, value: Any) -> bool:
        return True  # the validator compares the length with model.num_classes

    def describe(self) -> str:
        return "with one value per class (model.num_classes)"


@dataclass(frozen=True)
class ClassIndices(Constraint):
    """A list of class indices, each checked against ``model.num_classes`` once it is known."""

    def allows(self, value: Any) -> bool:
        return not isinstance(value, (list, tuple)) or all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
        )

    def describe(self) -> str:
        return "of class indices 0..model.num_classes-1"
