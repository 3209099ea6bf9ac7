"""Writing an import: one PNG of class indices per image, the class list, the config snippet.

Every file is written atomically (:mod:`segkit.files`), so an import stopped half-way leaves
whole masks and no torn PNG that a later training run would fail on.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

from segkit.dataimport.classes import ClassList
from segkit.engine.visualize import default_palette
from segkit.files import atomic_write_bytes, atomic_write_text

MASKS = "masks"
CLASSES = "classes.csv"


def write_mask(out: Path, name: str, mask: np.ndarray) -> Path:
    """``mask`` as the single-channel PNG ``out/masks/NAME.png``."""
    path = out / MASKS / f"{name}.png"
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="L").save(buffer, "PNG")
    atomic_write_bytes(path, buffer.getbuffer(), "mask")
    return path


def write_classes(out: Path, classes: ClassList) -> Path:
    """``out/classes.csv`` with columns name, r, g, b; the background class is black."""
    palette = default_palette(len(classes.names))
    if classes.background < len(classes.names):
        palette[classes.background] = (0, 0, 0)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "r", "g", "b"])
    for name, colour in zip(classes.names, palette):
        writer.writerow([name, *colour])
    path = out / CLASSES
    atomic_write_text(path, buffer.getvalue(), "class list")
    return path


def folder_snippet(images: Path | None, out: Path, classes: ClassList) -> str:
    """The config lines that train on the import with the ``folder`` dataset."""
    images_line = (
        f"    images: {images.resolve()}"
        if images is not None
        else "    images: IMAGES   # the folder the images' paths are relative to"
    )
    return "\n".join(
        [
            "model:",
            f"  num_classes: {len(classes.names)}",
            "data:",
            "  train:",
            "    type: folder",
            images_line,
            f"    masks: {(out / MASKS).resolve()}",
            f"    classes: {(out / CLASSES).resolve()}",
        ]
    )
