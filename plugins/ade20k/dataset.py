"""ADE20K scene parsing (``ADEChallengeData2016``): the 150 classes, and the 25-class merge.

Annotation PNGs hold 0..150: 0 is "other" (ignored in training and evaluation) and k is class
k-1. The 25-class variant relabels the same files through the corrected 150 -> 25 mapping that
ships beside this module (``ade20k150_to_25.csv``); dropped classes become ignore.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from segkit.errors import DataError
from segkit.imagefiles import FileDataset, Pair, missing_data, pair_files
from segkit.label_map import IGNORE_INDEX, LabelMap

HERE = Path(__file__).parent
LABEL_MAP_150_TO_25 = HERE / "ade20k150_to_25.csv"

LAYOUT = """\
  ROOT/ADEChallengeData2016/images/training/ADE_train_00000001.jpg, ...
  ROOT/ADEChallengeData2016/images/validation/ADE_val_00000001.jpg, ...
  ROOT/ADEChallengeData2016/annotations/{training,validation}/<same name>.png
  ROOT/{training,validation}.odgt (the CSAIL index files, read where a config sets `index:`)
  (ROOT may also be the ADEChallengeData2016 folder itself)"""
SOURCE = (
    "download ADEChallengeData2016.zip from the MIT Scene Parsing Benchmark "
    "(http://sceneparsing.csail.mit.edu) and unzip it into ROOT"
)
SPLITS = {
    "training": "training",
    "train": "training",
    "validation": "validation",
    "val": "validation",
}


def read_classes(file_name: str) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and palette colours from a CSV beside this module."""
    with (HERE / file_name).open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    names = [row["name"] for row in rows]
    palette = [(int(row["r"]), int(row["g"]), int(row["b"])) for row in rows]
    return names, palette


def ade20k25_label_map() -> LabelMap:
    """The corrected 150 -> 25 merge on 0-based ADE20K class indices: relabels 150-class
    masks, and merges a 150-class model's probabilities into the 25 classes."""
    return LabelMap.from_file(LABEL_MAP_150_TO_25)


def annotation_table() -> np.ndarray:
    """Annotation value -> class: 0 -> ignore, k -> k-1 for k in 1..150, anything else invalid."""
    table = np.full(256, -1, dtype=np.int16)
    table[0] = IGNORE_INDEX
    table[1:151] = np.arange(150)
    return table


class ADE20K(FileDataset):
    """ADE20K scene parsing, 150 classes: the ADEChallengeData2016 folders or a .odgt index."""

    classes, palette = read_classes("ade20k150_classes.csv")  # known without the data

    def __init__(
        self,
        root: str | None = None,
        split: str = "training",
        index: str | None = None,
        allow_outside_root: bool = False,
    ):
        """``index``: a CSAIL ``.odgt`` file to read the samples from instead of the folders.
        ``allow_outside_root``: accept index entries whose files lie outside the data root
        (``..`` or absolute paths); off, so that an index from elsewhere cannot point the
        run at arbitrary files."""
        if split not in SPLITS:
            raise ValueError(
                f"unknown split '{split}'; ADE20K has training and validation (or train, val)"
            )
        split = SPLITS[split]
        if index is not None:
            pairs, problems = _pairs_from_index(Path(index), root, allow_outside_root)
        else:
            pairs, problems = _pairs_from_folders(root, split)
        super().__init__(pairs, self.classes, self.palette, annotation_table(), problems)


class ADE20K25(FileDataset):
    """ADE20K merged into 25 classes (the seed project's merge, corrected); dropped classes are
    ignored.

    ``label_map`` (the 150 -> 25 merge on class indices) is declared on the class, so that
    ``--merge ade20k25`` finds it to merge a 150-class model's predictions.
    """

    classes, palette = read_classes("ade20k25_classes.csv")
    label_map = ade20k25_label_map()

    def __init__(
        self,
        root: str | None = None,
        split: str = "training",
        index: str | None = None,
        allow_outside_root: bool = False,
    ):
        full = ADE20K(root, split, index, allow_outside_root)
        table = annotation_table()
        merged = self.label_map.lookup_table()
        table = np.where(table >= 0, merged[np.clip(table, 0, None)], -1).astype(np.int16)
        super().__init__(full.pairs, self.classes, self.palette, table, full.problems)


def _layout_folder(root: Path) -> Path:
    """``ROOT/ADEChallengeData2016``, or ROOT itself when it is that folder."""
    nested = root / "ADEChallengeData2016"
    return nested if nested.is_dir() or not (root / "images").is_dir() else root


def _pairs_from_folders(root: str | None, split: str) -> tuple[list[Pair], list[str]]:
    if root is None:
        raise missing_data("ADE20K", None, "", LAYOUT, SOURCE)
    folder = _layout_folder(Path(root))
    image_dir = folder / "images" / split
    images = {p.stem: p for p in image_dir.glob("*.jpg")} if image_dir.is_dir() else {}
    if not images:
        raise missing_data(
            "ADE20K", root, f"no {image_dir.relative_to(root)}/*.jpg", LAYOUT, SOURCE
        )
    mask_dir = folder / "annotations" / split
    masks = {p.stem: p for p in mask_dir.glob("*.png")} if mask_dir.is_dir() else {}
    return pair_files(images, masks, lambda name: mask_dir / f"{name}.png")


def _data_root(root: Path) -> Path:
    """The folder holding ADEChallengeData2016 (and the CSAIL index files), whichever of the
    two the user gave as the root."""
    if root.name == "ADEChallengeData2016" and not (root / "ADEChallengeData2016").is_dir():
        return root.parent
    return root


def _pairs_from_index(
    index: Path, root: str | None, allow_outside_root: bool
) -> tuple[list[Pair], list[str]]:
    """The pairs of a CSAIL ``.odgt`` index: one JSON object per line with ``fpath_img`` and
    ``fpath_segm``, relative to the data root (the folder holding ADEChallengeData2016), or to
    the index's own folder when no root is set. Entries that leave that folder are refused
    unless ``allow_outside_root``."""
    base = _data_root(Path(root)) if root is not None else None
    if not index.is_file() and base is not None and not index.is_absolute():
        index = next((p for p in (Path(root) / index, base / index) if p.is_file()), index)
    if not index.is_file():
        raise missing_data("ADE20K", root, f"no index file {index}", LAYOUT, SOURCE)
    base = base or index.parent
    pairs, problems = [], []
    for number, line in enumerate(index.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            image, mask = base / entry["fpath_img"], base / entry["fpath_segm"]
        except (ValueError, KeyError, TypeError):
            raise DataError(
                f"{index}:{number}: expected a JSON object with 'fpath_img' and 'fpath_segm'"
            ) from None
        if not allow_outside_root:
            for key in ("fpath_img", "fpath_segm"):
                _refuse_outside(base, entry[key], f"{index}:{number}: {key}")
        missing = [str(p) for p in (image, mask) if not p.is_file()]
        if missing:
            problems.append(f"{index}:{number}: file not found: {', '.join(missing)}")
        else:
            pairs.append(Pair(image, mask, image.stem))
    if not pairs and not problems:
        raise DataError(f"ADE20K index file '{index}' lists no samples")
    return pairs, problems


def _refuse_outside(base: Path, path: str, where: str) -> None:
    """An index entry must name a file below ``base``. The check is on the path as written
    (``..`` collapsed, symlinks not followed), so a root whose folders are links elsewhere
    still works."""
    folder = Path(os.path.abspath(base))
    if not Path(os.path.abspath(base / path)).is_relative_to(folder):
        raise DataError(
            f"{where} '{path}' is outside the data root {folder}; correct the index, or set "
            "allow_outside_root: true on this dataset if its files are meant to live elsewhere"
        )
