"""Skipped bad samples (``data.on_bad_sample: skip``), reported as one summary.

A sample is skipped inside a data-loading worker, where a Python warning would print once per
file with PyTorch's internal paths in it. Instead the skip travels with the data: a replaced
training sample carries the messages of the samples it replaced (``skipped``), a skipped
validation sample is a :class:`SkippedSample`; the main process collects them in a
:class:`SkipLog` and prints one summary per epoch and per validation.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

SHOWN = 5  # the files a summary names


@dataclass(frozen=True)
class SkippedSample:
    """What a validation sample that could not be read becomes: the evaluator passes over it."""

    message: str


class SkipLog:
    """Messages of skipped samples since the last summary."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, messages: Iterable[str]) -> None:
        self.messages.extend(messages)

    def watching(self, batches: Iterator[dict]) -> Iterator[dict]:
        """The training batches, with the skips they carry recorded here."""
        for batch in batches:
            self.add(batch.pop("skipped", ()))
            yield batch

    def summary(self, where: str) -> str | None:
        """The summary of the skips since the last one (None without any), and a fresh start."""
        if not self.messages:
            return None
        messages, self.messages = self.messages, []
        lines = [
            f"segkit: warning: skipped {len(messages)} bad sample(s) {where} "
            "(data.on_bad_sample: skip); the first:"
        ]
        lines += [f"  {message}" for message in messages[:SHOWN]]
        if len(messages) > SHOWN:
            lines.append(f"  ... and {len(messages) - SHOWN} more")
        lines.append("  (`segkit data check CONFIG` lists every problem)")
        return "\n".join(lines)

    def report(self, where: str) -> None:
        text = self.summary(where)
        if text is not None:
            print(text, file=sys.stderr, flush=True)
