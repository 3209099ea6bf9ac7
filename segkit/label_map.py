"""Many-to-one label mappings: relabelling masks, and merging a model's class probabilities.

One mapping serves both uses of a class merge (for example ADE20K's 150 classes into 25): masks
are relabelled through a lookup table for training on the merged classes, and a model trained on
the original classes has its softmax probabilities summed into the merged groups at inference.

A mapping lists every source value it knows: ``source -> target``, where target 255 means
"dropped" (ignore in masks, probability discarded at inference). Source values it does not list
are not silently dropped: :meth:`LabelMap.relabel` rejects them, so that a typo in a mapping
or an unexpected value in a mask is noticed. The value 255 maps to itself (ignore) unless the
mapping lists it, as a mapping of masks that store a class as 255 (``{0: 0, 255: 1}``) does.

Mappings come from a CSV file (columns ``source`` and ``target``, optionally ``target_name``,
other columns ignored; an empty target means dropped), a YAML file, or a mapping written inline
in a config, e.g.::

    label_map: {0: 0, 1: 0, 2: 1, 3: 255}
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

IGNORE_INDEX = 255  # the one label value that means "not annotated", everywhere in segkit
_UNMAPPED = -1

LabelMapSpec = str | os.PathLike | Mapping[Any, Any]


class LabelMap:
    """A mapping of label values (0..65535) to targets (0..254, or 255 = dropped)."""

    def __init__(
        self,
        mapping: Mapping[int, int],
        source: str = "inline label_map",
        target_names: Mapping[int, str] | None = None,
    ):
        self.source = source
        self.mapping = _checked(mapping, source)
        self.target_names = dict(target_names or {})  # target -> name, where the file names it
        size = max(256, max(self.mapping, default=0) + 1)
        self.table = np.full(size, _UNMAPPED, dtype=np.int16)
        self.table[IGNORE_INDEX] = IGNORE_INDEX
        for value, target in self.mapping.items():
            self.table[value] = target

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: LabelMapSpec, base: str | os.PathLike | None = None) -> LabelMap:
        """A label map from a file path (relative paths are tried against ``base`` too) or an
        inline mapping."""
        if isinstance(spec, Mapping):
            return cls(spec)
        path = Path(spec)
        if not path.is_absolute() and not path.exists() and base is not None:
            path = Path(base) / path
        return cls.from_file(path)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> LabelMap:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"label_map file '{path}' not found")
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as error:
                raise ValueError(f"label_map file '{path}' is not valid YAML: {error}") from None
            if not isinstance(data, dict):
                raise ValueError(f"label_map file '{path}' must hold a mapping source: target")
            return cls(data, source=str(path))
        mapping, names = _read_csv(path)
        return cls(mapping, source=str(path), target_names=names)

    # ---- what it maps to -------------------------------------------------------------------

    @property
    def num_targets(self) -> int:
        """Number of target classes: one more than the largest target that is not dropped."""
        kept = [t for t in self.mapping.values() if t != IGNORE_INDEX]
        return max(kept) + 1 if kept else 0

    def lookup_table(self, size: int | None = None) -> np.ndarray:
        """The table as int16 (-1 = not in the mapping), padded with -1 to ``size`` entries."""
        if size is None or size <= len(self.table):
            return self.table.copy()
        padded = np.full(size, _UNMAPPED, dtype=np.int16)
        padded[: len(self.table)] = self.table
        return padded

    # ---- the two uses ----------------------------------------------------------------------

    def relabel(self, mask: Any) -> Any:
        """Map every value of an integer mask (numpy array or torch tensor) through the table.
        Values the mapping does not list raise ValueError naming them."""
        import torch

        is_tensor = isinstance(mask, torch.Tensor)
        values = mask.numpy() if is_tensor else np.asarray(mask)
        if values.size and (values.min() < 0 or values.max() >= len(self.table)):
            bad = np.unique(values[(values < 0) | (values >= len(self.table))])
            raise ValueError(f"{self.source}: mask values {_listing(bad)} are not in the mapping")
        mapped = self.table[values]
        if mapped.size and mapped.min() < 0:
            raise ValueError(
                f"{self.source}: mask values {_listing(np.unique(values[mapped < 0]))} "
                "are not in the mapping"
            )
        out = mapped.astype(np.uint8 if values.dtype == np.uint8 else values.dtype)
        return torch.from_numpy(out) if is_tensor else out

    def merge_probabilities(self, probabilities, dim: int = 1):
        """Sum class probabilities (e.g. a softmax over 150 classes) into the target groups;
        dropped classes' probability is discarded. The source classes are 0..C-1 along ``dim``."""
        import torch

        count = probabilities.shape[dim]
        missing = [c for c in range(count) if c not in self.mapping]
        if missing:
            raise ValueError(
                f"{self.source}: the model has {count} classes but the mapping does not list "
                f"{_listing(np.array(missing))}"
            )
        kept = [c for c in range(count) if self.mapping[c] != IGNORE_INDEX]
        targets = torch.tensor([self.mapping[c] for c in kept], device=probabilities.device)
        shape = list(probabilities.shape)
        shape[dim] = self.num_targets
        merged = probabilities.new_zeros(shape)
        sources = probabilities.index_select(dim, torch.tensor(kept, device=probabilities.device))
        return merged.index_add_(dim, targets, sources)


def _checked(mapping: Mapping[Any, Any], source: str) -> dict[int, int]:
    checked: dict[int, int] = {}
    for key, target in mapping.items():
        value = _as_int(key, f"{source}: source value {key!r}")
        if target is None:
            target = IGNORE_INDEX
        target = _as_int(target, f"{source}: target of {key!r}")
        if not 0 <= value <= 65535:
            raise ValueError(f"{source}: source value {value} is outside 0..65535")
        if not 0 <= target <= IGNORE_INDEX:
            raise ValueError(f"{source}: target {target} of {value} is outside 0..255")
        checked[value] = target
    return checked


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError(f"{what} must be an integer")


def _read_csv(path: Path) -> tuple[dict[str, str | None], dict[int, str]]:
    """The mapping, and the target names of a ``target_name`` column (first name per target)."""
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    if not rows or not {"source", "target"} <= set(rows[0]):
        raise ValueError(f"label_map file '{path}' needs the CSV columns 'source' and 'target'")
    mapping: dict[str, str | None] = {}
    names: dict[int, str] = {}
    for number, row in enumerate(rows, start=2):
        source = (row["source"] or "").strip()
        if source in mapping:
            raise ValueError(f"{path}:{number}: source value {source} is listed twice")
        target = (row["target"] or "").strip() or None
        mapping[source] = target
        name = (row.get("target_name") or "").strip()
        if name and target is not None and target.isdigit() and int(target) != IGNORE_INDEX:
            names.setdefault(int(target), name)
    return mapping, names


def _listing(values: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")
