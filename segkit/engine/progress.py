"""A progress line with rate and ETA: redrawn in place on a terminal, and written as plain
periodic lines when the output is a file or a pipe (job logs), so logs stay readable."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 24


class ProgressBar:
    def __init__(
        self,
        total: int,
        label: str,
        initial: int = 0,
        stream: TextIO | None = None,
        line_interval_s: float = 30.0,
        redraw_interval_s: float = 0.2,
    ):
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = redraw_interval_s if self.interactive else line_interval_s
        self.done = initial
        self.info = ""
        self._start_count = initial
        self._start_time = time.perf_counter()
        self._last_shown = float("-inf")
        self._shown: tuple[int, str] | None = None
        self._line_open = False

    def update(self, done: int, info: str | None = None, force: bool = False) -> None:
        self.done = done
        if info is not None:
            self.info = info
        now = time.perf_counter()
        finished = done >= self.total
        if force or finished or now - self._last_shown >= self.interval:
            self._last_shown = now
            self._show(now)

    def rate(self, now: float | None = None) -> float:
        """Items per second since the bar started (or was resumed)."""
        elapsed = (now or time.perf_counter()) - self._start_time
        return (self.done - self._start_count) / elapsed if elapsed > 0 else 0.0

    def end_line(self) -> None:
        """Finish the redrawn line so that other output starts on a fresh one."""
        if self._line_open:
            self.stream.write("\n")
            self.stream.flush()
            self._line_open = False

    def close(self) -> None:
        if self._shown != (self.done, self.info):
            self._show(time.perf_counter())
        self.end_line()

    def _show(self, now: float) -> None:
        self._shown = (self.done, self.info)
        text = self.render(now)
        if self.interactive:
            self.stream.write("\r\x1b[K" + text)
            self._line_open = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def render(self, now: float) -> str:
        rate = self.rate(now)
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        remaining = (self.total - self.done) / rate if rate > 0 else None
        elapsed = now - self._start_time
        if self.interactive:
            filled = int(round(fraction * BAR_WIDTH))
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            text = (
                f"{self.label} {fraction:4.0%} |{bar}| {self.done}/{self.total} "
                f"[{format_duration(elapsed)}<{format_duration(remaining)}, {format_rate(rate)}]"
            )
        else:
            text = (
                f"{self.label} {self.done}/{self.total} ({fraction:.0%}) {format_rate(rate)} "
                f"elapsed {format_duration(elapsed)} ETA {format_duration(remaining)}"
            )
        return f"{text} {self.info}".rstrip()


def format_rate(rate: float) -> str:
    if rate <= 0:
        return "-- it/s"
    if rate < 1:
        return f"{1 / rate:.2f} s/it"
    return f"{rate:.2f} it/s"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"
