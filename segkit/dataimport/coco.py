"""COCO annotation files (instances or stuff) as mask jobs, decoded through pycocotools.

A file holds ``images`` (id, file_name, height, width), ``categories`` (id, name) and
``annotations`` (image_id, category_id, segmentation, iscrowd). A segmentation is a list of
polygons (flat ``[x0, y0, x1, y1, ...]`` lists in pixel coordinates), an uncompressed RLE
(``counts`` a list of run lengths) or a compressed RLE (``counts`` a string), the last two with
``size: [height, width]``. Categories become classes in the order of their ids, so that the
class indices do not depend on how the file happens to list them. Every listed image gets a
mask, also one without annotations (all background).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from segkit.dataimport.images import mask_name
from segkit.dataimport.jsonfile import EMPTY, read_json
from segkit.dataimport.raster import MaskJob, Region
from segkit.dataimport.report import ImportReport
from segkit.errors import DataError, SegkitError

CROWD_CHOICES = ("ignore", "class", "skip")


def require_coco_extra() -> None:
    """Refuse, before any work, when pycocotools (the ``coco`` extra) cannot be imported."""
    try:
        importlib.import_module("pycocotools.mask")
    except ImportError:
        raise SegkitError(
            "reading COCO annotations needs pycocotools, which cannot be imported here; "
            "install segkit's coco extra: pip install 'segkit[coco]'"
        ) from None


def read_coco(
    path: Path, images: Path | None, crowd: str, report: ImportReport
) -> tuple[list[str], list[MaskJob]]:
    """The class names (by category id) and one job per usable image of the file at ``path``.
    ``images``: the folder that ``file_name`` is relative to; when given, images whose file is
    not there are reported and get no mask. ``crowd``: ``ignore`` and ``class`` keep crowd
    regions (the caller paints them 255 or as their class), ``skip`` leaves them out."""
    require_coco_extra()
    data = read_json(path)
    if data is EMPTY:
        raise DataError(f"{path}: the file is empty")
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: a COCO file is a JSON object with 'images', 'annotations' and 'categories'"
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: '{key}' must be a list (is it a COCO annotation file?)")
    categories = _categories(path, data["categories"])
    jobs = _images(path, data["images"], images, report)
    listed = {entry.get("id") for entry in data["images"] if isinstance(entry, dict)}
    crowds = 0
    for number, annotation in enumerate(data["annotations"]):
        place = f"{path}: annotations[{number}]"
        if not isinstance(annotation, dict):
            report.skip("annotation is not a JSON object", place)
            continue
        image_id, category_id = annotation.get("image_id"), annotation.get("category_id")
        place += f" (image_id {image_id}, category_id {category_id})"
        if image_id not in jobs:
            if image_id not in listed:
                report.skip("annotation points at an image id not listed in 'images'", place)
            continue  # its image was skipped and reported already
        if category_id not in categories:
            report.skip("annotation's category_id is not in 'categories'", place)
            continue
        is_crowd = bool(annotation.get("iscrowd", 0))
        if is_crowd and crowd == "skip":
            crowds += 1
            continue
        job = jobs[image_id]
        draw = _segmentation(annotation.get("segmentation"), job.height, job.width, place, report)
        if draw is not None:
            job.regions.append(Region(categories[category_id], place, draw, is_crowd))
    if crowds:
        report.note(f"{crowds} crowd region(s) left out (--crowd skip)")
    bare = sum(1 for job in jobs.values() if not job.regions)
    if bare:
        report.note(f"{bare} image(s) have no usable annotation: their masks are all background")
    names = [categories[key] for key in sorted(categories)]
    return names, list(jobs.values())


def _categories(path: Path, entries: list) -> dict[int, str]:
    categories: dict[int, str] = {}
    for number, entry in enumerate(entries):
        where = f"{path}: categories[{number}]"
        if not (
            isinstance(entry, dict)
            and _is_int(entry.get("id"))
            and isinstance(entry.get("name"), str)
            and entry["name"].strip()
        ):
            raise DataError(f"{where}: a category needs an integer 'id' and a 'name'")
        if entry["id"] in categories:
            raise DataError(f"{where}: category id {entry['id']} is given twice")
        if entry["name"].strip() in categories.values():
            raise DataError(f"{where}: category name '{entry['name']}' is given twice")
        categories[entry["id"]] = entry["name"].strip()
    return categories


def _images(
    path: Path, entries: list, images: Path | None, report: ImportReport
) -> dict[Any, MaskJob]:
    jobs: dict[Any, MaskJob] = {}
    names: set[str] = set()
    for number, entry in enumerate(entries):
        place = f"{path}: images[{number}]"
        if not isinstance(entry, dict) or "id" not in entry:
            report.skip("image entry without an 'id'", place)
            continue
        place += f" (id {entry['id']}, {entry.get('file_name')!r})"
        height, width, file_name = entry.get("height"), entry.get("width"), entry.get("file_name")
        if not (_is_int(height) and _is_int(width) and height > 0 and width > 0):
            report.skip("image entry without a positive integer 'height' and 'width'", place)
            continue
        name = mask_name(file_name) if isinstance(file_name, str) else None
        if name is None:
            report.skip("image entry without a relative 'file_name'", place)
        elif entry["id"] in jobs:
            report.skip("image id listed twice (the first entry is used)", place)
        elif name in names:
            report.skip("a second image with the same name without suffix (one mask each)", place)
        elif images is not None and not (images / file_name).is_file():
            report.skip(f"image file not found under --images {images} (no mask written)", place)
        else:
            names.add(name)
            jobs[entry["id"]] = MaskJob(name, height, width, place)
    return jobs


def _segmentation(
    segmentation: Any, height: int, width: int, place: str, report: ImportReport
) -> Callable[[], np.ndarray] | None:
    """A function drawing the segmentation as a boolean mask, or ``None`` (reported) when it
    cannot be used."""
    from pycocotools import mask as coco_mask

    if isinstance(segmentation, list):
        polygons = []
        for number, polygon in enumerate(segmentation):
            if not (
                isinstance(polygon, list)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in polygon)
            ):
                report.skip(
                    "polygon is not a flat list of numbers [x0, y0, x1, y1, ...]",
                    f"{place} segmentation[{number}]",
                )
            elif len(polygon) < 6 or len(polygon) % 2:
                report.skip(
                    "degenerate polygon (fewer than 3 points, or an odd number of coordinates)",
                    f"{place} segmentation[{number}]",
                )
            else:
                polygons.append([float(v) for v in polygon])
        if not polygons:
            if not segmentation:
                report.skip("annotation with an empty segmentation", place)
            return None
        return lambda: coco_mask.decode(
            coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
        ).astype(bool)
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            report.skip(
                f"RLE size {segmentation['size']} is not the image's [height, width] [{height}, {width}]",
                place,
            )
            return None
        counts = segmentation["counts"]
        if isinstance(counts, str):
            rle = {"size": [height, width], "counts": counts.encode("ascii", "replace")}
        elif isinstance(counts, list) and all(_is_int(c) and c >= 0 for c in counts):
            if sum(counts) != height * width:
                report.skip(
                    f"RLE counts add up to {sum(counts)}, not height x width = {height * width}",
                    place,
                )
                return None
            rle = coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        else:
            report.skip(
                "RLE 'counts' is neither a string nor a list of non-negative integers", place
            )
            return None
        return lambda: coco_mask.decode(rle).astype(bool)
    report.skip("segmentation is neither polygons nor an RLE", place)
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
