"""labelme annotation files (one JSON per image) as mask jobs.

A file names its image (``imagePath``, relative to the JSON file), its size (``imageHeight``,
``imageWidth``; read from the image when absent) and a list of ``shapes``, each a ``label``,
``points`` and ``shape_type``. Areas are ``polygon`` (the default type), ``rectangle`` (two
corners) and ``circle`` (the centre and a point on the circle), drawn with their outline, as
labelme draws them; ``line``, ``linestrip``, ``point`` and ``points`` enclose no area and are
skipped, as is any other type, each reported. ``group_id`` and ``flags`` do not matter here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from segkit.dataimport.images import mask_name
from segkit.dataimport.jsonfile import EMPTY, read_json
from segkit.dataimport.raster import MaskJob, Region
from segkit.dataimport.report import ImportReport
from segkit.errors import DataError
from segkit.imageread import DECODE_ERRORS

NOT_AREAS = ("line", "linestrip", "point", "points")


def labelme_files(inputs: Sequence[Path]) -> list[Path]:
    """The JSON files among ``inputs``: files as given, folders searched recursively."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.json") if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    if not files:
        raise DataError(f"no .json files in {', '.join(str(p) for p in inputs)}")
    return files


def read_labelme(
    files: Iterable[Path], images: Path, classes: Sequence[str] | None, report: ImportReport
) -> tuple[list[str], list[MaskJob]]:
    """The class names (``classes`` if given, else the labels used, sorted) and one job per
    usable file. ``images``: the folder that mask names are taken relative to. A label outside
    ``classes`` is reported and its shape left out."""
    jobs: dict[str, MaskJob] = {}
    labels: set[str] = set()
    for path in files:
        found = _job(path, images, report)
        if found is None:
            continue
        job, shapes = found
        if job.name in jobs:
            report.skip(
                f"a second file for mask '{job.name}' (image path without suffix), after "
                f"{jobs[job.name].place}",
                str(path),
            )
            continue
        for number, shape in enumerate(shapes):
            region = _region(shape, job, f"{path}: shapes[{number}]", report)
            if region is None:
                continue
            if classes is not None and region.label not in classes:
                report.skip(
                    "label not in the --classes file", f"{region.place} (label {region.label!r})"
                )
                continue
            labels.add(region.label)
            job.regions.append(region)
        jobs[job.name] = job
    names = list(classes) if classes is not None else sorted(labels)
    return names, list(jobs.values())


def _job(path: Path, images: Path, report: ImportReport) -> tuple[MaskJob, list] | None:
    data = read_json(path)
    if data is EMPTY:
        report.skip("empty file", str(path))
        return None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        report.skip("not a labelme file (no 'shapes' list)", str(path))
        return None
    image_path = data.get("imagePath")
    if not isinstance(image_path, str) or not image_path.strip():
        report.skip("no 'imagePath'", str(path))
        return None
    image = Path((path.parent / image_path.replace("\\", "/")).resolve())
    try:
        relative = image.relative_to(images.resolve()).as_posix()
    except ValueError:
        report.skip(
            f"the image lies outside the images folder {images} (set --images)", f"{path}: {image}"
        )
        return None
    name = mask_name(relative)
    if not image.is_file() or name is None:
        report.skip("image file not found (fix 'imagePath'; no mask written)", f"{path}: {image}")
        return None
    height, width = data.get("imageHeight"), data.get("imageWidth")
    if not (_positive_int(height) and _positive_int(width)):
        try:
            with Image.open(image) as opened:
                width, height = opened.size
        except DECODE_ERRORS:
            report.skip(
                "no imageHeight/imageWidth, and the image cannot be read", f"{path}: {image}"
            )
            return None
    return MaskJob(name, height, width, str(path)), data["shapes"]


def _region(shape: Any, job: MaskJob, place: str, report: ImportReport) -> Region | None:
    if not isinstance(shape, dict):
        report.skip("shape is not a JSON object", place)
        return None
    label, kind = shape.get("label"), shape.get("shape_type") or "polygon"
    if not isinstance(label, str) or not label.strip():
        report.skip("shape without a label", place)
        return None
    label = label.strip()
    place += f" ({kind} {label!r})"
    if kind in NOT_AREAS:
        report.skip(f"shape type {kind!r} encloses no area", place)
        return None
    if kind not in ("polygon", "rectangle", "circle"):
        report.skip(f"shape type {kind!r} is not supported (polygon, rectangle, circle are)", place)
        return None
    points = shape.get("points")
    if not (
        isinstance(points, list)
        and all(isinstance(p, list) and len(p) == 2 and all(_number(v) for v in p) for p in points)
    ):
        report.skip("points are not a list of [x, y] pairs", place)
        return None
    points = [(float(x), float(y)) for x, y in points]
    needed = 3 if kind == "polygon" else 2
    if len(points) < needed or (kind != "polygon" and len(points) != 2):
        report.skip(f"degenerate {kind} ({len(points)} points)", place)
        return None
    return Region(label, place, _drawer(kind, points, job.height, job.width))


def _drawer(
    kind: str, points: list[tuple[float, float]], height: int, width: int
) -> Callable[[], np.ndarray]:
    def draw() -> np.ndarray:
        canvas = Image.new("L", (width, height), 0)
        pen = ImageDraw.Draw(canvas)
        if kind == "polygon":
            pen.polygon(points, fill=1, outline=1)
        elif kind == "rectangle":
            (x0, y0), (x1, y1) = points
            pen.rectangle((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), fill=1, outline=1)
        else:
            (cx, cy), (px, py) = points
            radius = math.hypot(px - cx, py - cy)
            if radius == 0:
                return np.zeros((height, width), dtype=bool)
            pen.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=1, outline=1)
        return np.asarray(canvas, dtype=bool)

    return draw


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
