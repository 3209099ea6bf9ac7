"""Cityscapes with fine annotations: 19 training classes.

Labels are read from ``*_gtFine_labelTrainIds.png`` where the official preparation script made
them, and otherwise converted from ``*_gtFine_labelIds.png`` with the official labelId ->
trainId table (``labels.csv`` beside this module) in one table lookup.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from segkit.imagefiles import FileDataset, missing_data, pair_files
from segkit.label_map import IGNORE_INDEX

HERE = Path(__file__).parent
SPLITS = ("train", "val", "test")
IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"

LAYOUT = """\
  ROOT/leftImg8bit/{train,val,test}/CITY/CITY_SEQ_FRAME_leftImg8bit.png
  ROOT/gtFine/{train,val,test}/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png
  (or _gtFine_labelTrainIds.png, made by the official cityscapesscripts preparation)"""
SOURCE = (
    "register at https://www.cityscapes-dataset.com, download leftImg8bit_trainvaltest.zip and "
    "gtFine_trainvaltest.zip, and unzip both into ROOT"
)


def read_labels() -> list[dict]:
    with (HERE / "labels.csv").open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def label_id_table() -> np.ndarray:
    """labelId (0..33) -> trainId (0..18, or 255 for classes not trained on)."""
    table = np.full(256, -1, dtype=np.int16)
    for row in read_labels():
        if int(row["label_id"]) >= 0:
            table[int(row["label_id"])] = int(row["train_id"])
    return table


def train_id_table() -> np.ndarray:
    """trainId files already hold classes: 0..18 and 255."""
    table = np.full(256, -1, dtype=np.int16)
    table[:19] = np.arange(19)
    table[IGNORE_INDEX] = IGNORE_INDEX
    return table


def train_classes() -> tuple[list[str], list[tuple[int, int, int]]]:
    rows = sorted(
        (r for r in read_labels() if int(r["train_id"]) != IGNORE_INDEX),
        key=lambda r: int(r["train_id"]),
    )
    return [r["name"] for r in rows], [(int(r["r"]), int(r["g"]), int(r["b"])) for r in rows]


class Cityscapes(FileDataset):
    """Cityscapes, fine annotations, 19 classes (official layout; labelTrainIds or labelIds)."""

    classes, palette = train_classes()  # known without the data (segkit convert)

    def __init__(self, root: str | None = None, split: str = "train"):
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; Cityscapes has {', '.join(SPLITS)}")
        if root is None:
            raise missing_data("Cityscapes", None, "", LAYOUT, SOURCE)
        image_dir = Path(root) / "leftImg8bit" / split
        images = _by_name(image_dir, IMAGE_SUFFIX)
        if not images:
            raise missing_data(
                "Cityscapes", root, f"no leftImg8bit/{split}/*/*{IMAGE_SUFFIX}", LAYOUT, SOURCE
            )
        label_dir = Path(root) / "gtFine" / split
        masks = {**_by_name(label_dir, LABEL_IDS_SUFFIX), **_by_name(label_dir, TRAIN_IDS_SUFFIX)}
        pairs, problems = pair_files(
            images, masks, lambda name: label_dir / name.split("_")[0] / f"{name}{LABEL_IDS_SUFFIX}"
        )
        self.label_ids = label_id_table()
        self.train_ids = train_id_table()
        super().__init__(pairs, self.classes, self.palette, self.label_ids, problems)

    def table_for(self, path: Path) -> np.ndarray:
        return self.train_ids if path.name.endswith(TRAIN_IDS_SUFFIX) else self.label_ids


def _by_name(folder: Path, suffix: str) -> dict[str, Path]:
    """Files ``CITY/NAME<suffix>`` by NAME."""
    if not folder.is_dir():
        return {}
    return {p.name[: -len(suffix)]: p for p in folder.glob(f"*/*{suffix}")}
