"""Merging a model's classes into coarser ones at inference time (e.g. ADE20K 150 -> 25).

A label map is a CSV file with one row per model class: the class is named by ``index`` (0-based
model class) or ``label`` (1-based, as in ADE20K's files, where 0 is "other"), and its group by
``merged_id`` (0..K-1; 255 or empty drops the class) and ``merged_name``. The probabilities of a
group's classes are summed before the argmax; dropped classes' probability is discarded. A
group's colour is that of its first class whose name starts with the group's name (the class the
group was named after), else of its first class.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from segkit.errors import DataError

DROPPED = 255


@dataclass
class LabelMap:
    names: list[str]
    palette: list[tuple[int, int, int]]
    groups: list[int]  # per model class: its group, or -1 when dropped

    @classmethod
    def read(
        cls, path: str | Path, classes: Sequence[str], palette: Sequence[Sequence[int]]
    ) -> "LabelMap":
        path = Path(path)
        try:
            with open(path, newline="", encoding="utf-8") as file:
                rows = list(csv.DictReader(file))
        except OSError as error:
            raise DataError(f"{path}: cannot read the label map: {error}") from None
        if not rows or "merged_id" not in rows[0] or not ({"index", "label"} & set(rows[0])):
            raise DataError(f"{path}: a label map needs the columns merged_id and index (or label)")
        groups = [-1] * len(classes)
        names: dict[int, str] = {}
        members: dict[int, list[int]] = {}
        for line, row in enumerate(rows, start=2):
            try:
                source = int(row["index"]) if row.get("index", "") != "" else int(row["label"]) - 1
                target = int(row["merged_id"]) if row["merged_id"].strip() else DROPPED
            except (KeyError, TypeError, ValueError):
                raise DataError(
                    f"{path}:{line}: expected integer class ids, got {dict(row)}"
                ) from None
            if not 0 <= source < len(classes):
                raise DataError(
                    f"{path}:{line}: class {source} does not exist; the model has {len(classes)}"
                )
            if target == DROPPED:
                continue
            groups[source] = target
            members.setdefault(target, []).append(source)
            if row.get("merged_name"):
                names.setdefault(target, row["merged_name"].strip())
        count = max(members, default=-1) + 1
        if sorted(members) != list(range(count)):
            raise DataError(f"{path}: merged ids must run from 0 without gaps, got {sorted(members)}")
        group_names = [names.get(g, f"group_{g}") for g in range(count)]
        group_palette = []
        for group, name in enumerate(group_names):
            sources = members[group]
            named = [s for s in sources if classes[s].lower().startswith(name.lower())]
            group_palette.append(tuple(palette[(named or sources)[0]]))
        return cls(group_names, group_palette, groups)

    def merge(self, probabilities: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] class probabilities -> [N, K, H, W] group probabilities."""
        kept = [c for c, g in enumerate(self.groups) if g >= 0]
        index = torch.tensor(kept, device=probabilities.device)
        target = torch.tensor([self.groups[c] for c in kept], device=probabilities.device)
        shape = (probabilities.shape[0], len(self.names), *probabilities.shape[2:])
        merged = probabilities.new_zeros(shape)
        return merged.index_add_(1, target, probabilities.index_select(1, index))
