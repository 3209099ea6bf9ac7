"""Image paths of annotation files turned into mask names, and image files no file annotates.

A mask is named after its image's path below the images folder, without the suffix
(``city/a.jpg`` -> ``masks/city/a.png``), which is how the ``folder`` dataset pairs them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from segkit.dataimport.report import ImportReport
from segkit.imageread import IMAGE_SUFFIXES


def mask_name(relative: str) -> str | None:
    """``a/b.jpg`` -> ``a/b``; backslashes (files written on Windows) count as separators;
    ``None`` for a path that leaves its folder (absolute, or with ``..``)."""
    path = PurePosixPath(relative.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.name:
        return None
    return path.with_suffix("").as_posix()


def report_unannotated(images: Path, names: Iterable[str], report: ImportReport) -> None:
    """Report the image files below ``images`` that got no mask: the ``folder`` dataset would
    list each as an image without a mask."""
    known = set(names)
    for path in sorted(images.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            relative = path.relative_to(images).as_posix()
            if mask_name(relative) not in known:
                report.skip(
                    "image file with no annotations in the input (no mask written)", str(path)
                )
