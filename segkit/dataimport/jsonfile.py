"""Reading an annotation file as JSON, with syntax errors reported at their line and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segkit.errors import DataError

EMPTY = object()  # what read_json returns for a file that holds nothing but whitespace


def read_json(path: Path) -> Any:
    """The parsed file, or :data:`EMPTY`; a file that is not JSON is an error naming the
    position, since no part of it can be trusted."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise DataError(f"{path}: cannot read it: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path}: not UTF-8 text (byte {error.start}); is it a JSON file?"
        ) from None
    if not text.strip():
        return EMPTY
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}"
        ) from None
