"""Plain-text tables for the terminal, and text made safe to print there."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import TextIO

# Python keeps the bytes of a file name that are not valid UTF-8 as lone surrogates
# (U+DC80..U+DCFF for byte 0x80..0xFF), which no stream can encode.
_SURROGATE = re.compile("[\ud800-\udfff]")


def printable(name: str, stream: TextIO | None = None) -> str:
    """``name`` as ``stream`` (default: stdout) can print it, so that a report listing a badly
    named file does not die halfway with UnicodeEncodeError: an undecodable byte becomes
    ``\\xff``, a character the stream's encoding lacks a backslash escape such as ``\\xe9``."""
    encoding = (stream or sys.stdout).encoding or "utf-8"
    name = _SURROGATE.sub(_byte_escape, name)
    return name.encode(encoding, "backslashreplace").decode(encoding)


def _byte_escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header], *[[("" if c is None else str(c)) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
