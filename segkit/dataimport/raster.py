"""Regions of one image painted into one index mask, under a rule for where they overlap.

Annotation tools let regions overlap (a cup on a table, a person in a crowd) while a mask holds
one class per pixel, so the painting order decides who keeps a pixel. Three rules:

- ``later``: regions in file order, each over the ones before it (what labelme shows);
- ``larger``: larger regions first, so that smaller ones are painted over them and survive
  (a COCO file lists instances in no meaningful order); equal areas keep file order;
- ``order``: by a z-order of class names (later names on top); classes not named lie beneath
  all named ones; within a class, file order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from segkit.dataimport.report import ImportReport

RULES = ("later", "larger", "order")
IGNORE = 255


@dataclass
class Region:
    """One annotated area: its class name, where it came from (for the report), whether it is
    a crowd region, and how to draw it as a boolean HxW array (drawn only when painted)."""

    label: str
    place: str
    draw: Callable[[], np.ndarray]
    crowd: bool = False


@dataclass
class MaskJob:
    """The mask of one image: its name (the image's path below the images folder, without the
    suffix), its size and its regions in file order."""

    name: str
    height: int
    width: int
    place: str
    regions: list[Region] = field(default_factory=list)


def paint(
    job: MaskJob,
    value_of: Callable[[Region], int],
    background: int,
    rule: str,
    order: Sequence[str] = (),
    report: ImportReport | None = None,
) -> np.ndarray:
    """The uint8 mask of ``job``: ``background`` where no region lies, else the value
    (``value_of(region)``) of the region painted last under ``rule``. Regions that cover no
    pixel are reported and left out."""
    if rule not in RULES:
        raise ValueError(f"unknown overlap rule {rule!r}; choose one of {', '.join(RULES)}")
    drawn = []
    for number, region in enumerate(job.regions):
        area_mask = np.asarray(region.draw(), dtype=bool)
        if area_mask.shape != (job.height, job.width):
            raise ValueError(f"{region.place}: drew {area_mask.shape}, not the image size")
        area = int(area_mask.sum())
        if area == 0:
            if report is not None:
                report.skip(
                    "region covers no pixel (degenerate or outside the image)", region.place
                )
            continue
        drawn.append((number, area, region, area_mask))
    rank = {name: position for position, name in enumerate(order)}
    if rule == "larger":
        drawn.sort(key=lambda item: (-item[1], item[0]))
    elif rule == "order":
        drawn.sort(key=lambda item: (rank.get(item[2].label, -1), item[0]))
    mask = np.full((job.height, job.width), background, dtype=np.uint8)
    for _, _, region, area_mask in drawn:
        mask[area_mask] = value_of(region)
    return mask
