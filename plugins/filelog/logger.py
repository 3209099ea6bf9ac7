"""Write a run's scalars to a file any tool reads (pandas, a spreadsheet, ``jq``), in long format:
one row per value, ``step, split, name, value``. Long rows never need a new column, so a metric
that first appears late (a validation, a new loss term) needs no header rewrite, and
``pandas.pivot_table(index="step", columns="name")`` gives the wide table back.

Each event's rows are appended in one write (``segkit.files.append_line``), so a killed run keeps
every row it logged and never a torn one. A resumed run first drops the rows logged after its
checkpoint, as the trainer does for ``metrics.jsonl``, so every step appears once; a fresh run
starts the file anew. The resolved config goes beside the rows (``NAME.params.csv`` or
``NAME.params.json``), rewritten whole at each start.

A write that fails (a full disk, a folder that is not writable) raises; the trainer reports it in
one warning and trains on without this logger (docs/training.md, "What survives what")."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import segkit
from segkit.config import flatten_config
from segkit.engine.run import validation_scalars
from segkit.files import append_line, atomic_write_text

COLUMNS = ("step", "split", "name", "value")


class _FileLogger:
    suffix = ""
    params_suffix = ""

    def __init__(self, path: str | None = None):
        self.path = path
        self.rows_path: Path | None = None
        self.outputs: list[tuple[Path, str]] = []  # read by the run's summary

    @segkit.hookimpl
    def segkit_on_train_start(self, run):
        rows = Path(self.path) if self.path else Path(run.work_dir) / f"log{self.suffix}"
        rows.parent.mkdir(parents=True, exist_ok=True)
        params = rows.with_name(rows.stem + ".params" + self.params_suffix)
        self._keep_rows_until(rows, run.start_step)
        atomic_write_text(params, self.encode_params(run.config), "the config of the logger")
        self.rows_path = rows
        self.outputs = [
            (rows, f"every logged value, one row each ({self.suffix[1:]})"),
            (params, "the resolved config, for the rows beside it"),
        ]

    @segkit.hookimpl
    def segkit_on_train_iter_end(self, run, step, logs):
        if logs and self.rows_path is not None:
            self._append((step, "train", name, value) for name, value in logs.items())

    @segkit.hookimpl
    def segkit_on_eval_end(self, run, step, metrics):
        if self.rows_path is not None:
            scalars = validation_scalars(metrics)
            self._append((step, "val", name, value) for name, value in scalars.items())

    def _append(self, rows: Iterator[tuple[int, str, str, float]]) -> None:
        lines = [self.encode_row(*row) for row in rows]
        if lines:
            append_line(self.rows_path, "\n".join(lines), "the log")

    def _keep_rows_until(self, rows: Path, step: int) -> None:
        """A fresh run (``step`` 0) starts with just the header; a resumed one keeps the rows up
        to its checkpoint's step and drops later ones and any that are not whole (a crash
        mid-write)."""
        kept = []
        if step and rows.exists():
            for line in rows.read_text(encoding="utf-8", errors="replace").splitlines():
                row_step = self.step_of(line)
                if row_step is not None and row_step <= step:
                    kept.append(line + "\n")
        atomic_write_text(rows, self.header() + "".join(kept), "the log")

    def header(self) -> str:
        return ""

    def encode_row(self, step: int, split: str, name: str, value: float) -> str:
        raise NotImplementedError

    def step_of(self, line: str) -> int | None:
        raise NotImplementedError

    def encode_params(self, config: dict[str, Any]) -> str:
        raise NotImplementedError


class CsvLogger(_FileLogger):
    """Every logged value as a CSV row (step, split, name, value); the config in NAME.params.csv."""

    suffix = ".csv"
    params_suffix = ".csv"

    def header(self) -> str:
        return ",".join(COLUMNS) + "\n"

    def encode_row(self, step: int, split: str, name: str, value: float) -> str:
        return _csv_line([step, split, name, repr(float(value))])

    def step_of(self, line: str) -> int | None:
        fields = next(csv.reader([line]), [])
        if len(fields) != len(COLUMNS) or not fields[0].isdigit():
            return None  # the header, or a line cut short
        try:
            float(fields[3])
        except ValueError:
            return None
        return int(fields[0])

    def encode_params(self, config: dict[str, Any]) -> str:
        lines = [_csv_line(["name", "value"])]
        for key, value in flatten_config(config).items():
            lines.append(_csv_line([key, value if isinstance(value, str) else json.dumps(value)]))
        return "\n".join(lines) + "\n"


class JsonlLogger(_FileLogger):
    """Every logged value as a JSON line {step, split, name, value}; the config in NAME.params.json."""

    suffix = ".jsonl"
    params_suffix = ".json"

    def encode_row(self, step: int, split: str, name: str, value: float) -> str:
        return json.dumps({"step": step, "split": split, "name": name, "value": float(value)})

    def step_of(self, line: str) -> int | None:
        try:
            record = json.loads(line)
        except ValueError:
            return None
        if not isinstance(record, dict) or set(record) != set(COLUMNS):
            return None
        return record["step"] if isinstance(record["step"], int) else None

    def encode_params(self, config: dict[str, Any]) -> str:
        return json.dumps(config, indent=2) + "\n"


def _csv_line(fields: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()
