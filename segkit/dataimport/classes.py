"""The class list of an import: names in index order, and the value of unannotated pixels.

Unannotated pixels are either a class of their own (``background``: index 0, named
``background``, unless the list already has a class named ``background`` or ``_background_``,
labelme's name for it, which is then used) or ignored (``ignore``: value 255, so that the loss
and the metrics pass over them).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from segkit.dataimport.raster import IGNORE
from segkit.errors import DataError

BACKGROUND_CHOICES = ("class", "ignore")
BACKGROUND_NAMES = ("background", "_background_")


@dataclass(frozen=True)
class ClassList:
    names: list[str]
    background: int  # the value of unannotated pixels: a class index, or 255

    def index(self, name: str) -> int:
        return self.names.index(name)


def class_list(names: Sequence[str], background: str) -> ClassList:
    """``names`` (the annotated classes, in index order) with the background handled as
    ``background`` says (one of :data:`BACKGROUND_CHOICES`)."""
    if background not in BACKGROUND_CHOICES:
        raise ValueError(f"background must be one of {BACKGROUND_CHOICES}, got {background!r}")
    names = list(names)
    if background == "ignore":
        result = ClassList(names, IGNORE)
    else:
        existing = next((n for n in BACKGROUND_NAMES if n in names), None)
        if existing is None:
            names = ["background", *names]
            existing = "background"
        result = ClassList(names, names.index(existing))
    if not result.names:
        raise DataError("the annotations name no class at all, so there is nothing to import")
    if len(result.names) > IGNORE:
        raise DataError(
            f"{len(result.names)} classes, but a mask holds at most {IGNORE} (255 means ignore)"
        )
    return result


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a file: one per line, or a CSV with a ``name`` column (the
    ``classes.csv`` an import writes, or the one a ``folder`` dataset reads)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DataError(f"--classes {path}: cannot read it: {error.strerror or error}") from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "name" not in rows[0]:
            raise DataError(f"--classes {path}: a CSV class list needs a 'name' column")
        names = [row["name"].strip() for row in rows]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"--classes {path}: names given twice: {', '.join(duplicates)}")
    if not names:
        raise DataError(f"--classes {path}: the file names no class")
    return names
