"""Merging a model's classes into coarser groups at inference (``--merge``), e.g. ADE20K's 150
classes into 25: the softmax probabilities of a group's classes are summed, dropped classes'
probability is discarded, and the argmax picks a group.

``--merge`` takes a label-map file (:mod:`segkit.label_map`: a CSV with ``source``, ``target``
and optionally ``target_name`` columns, or YAML, on the model's 0-based class indices) or the
name of a dataset that declares the merge that made its classes: its factory has the attributes
``label_map`` (a :class:`~segkit.label_map.LabelMap` from the model's classes to its own),
``classes`` and ``palette``. The core finds it through the registry, so any dataset plugin can
provide a named merge; ``ade20k25`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from segkit.engine.inference import Predictor
from segkit.errors import DataError, SegkitError
from segkit.label_map import IGNORE_INDEX, LabelMap

MAP_SUFFIXES = (".csv", ".yaml", ".yml")


@dataclass
class ClassMerge:
    """A label map from the model's classes to groups, with the groups' names and colours."""

    label_map: LabelMap
    names: list[str]
    palette: list[tuple[int, int, int]]

    def __call__(self, probabilities: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] class probabilities -> [N, K, H, W] group probabilities."""
        return self.label_map.merge_probabilities(probabilities)


def resolve_merge(
    spec: str, classes: Sequence[str], palette: Sequence[Sequence[int]]
) -> ClassMerge:
    """The merge ``--merge spec`` asks for, checked against the model's ``classes``."""
    path = Path(spec)
    if path.is_file():
        try:
            label_map = LabelMap.from_file(path)
        except ValueError as error:
            raise DataError(f"--merge {spec}: {error}") from None
        names = [label_map.target_names.get(t, f"group_{t}") for t in range(label_map.num_targets)]
        colours = [
            _group_colour(label_map, t, names[t], classes, palette) for t in range(len(names))
        ]
    elif path.suffix.lower() in MAP_SUFFIXES or len(path.parts) > 1:
        raise DataError(f"--merge {spec}: label-map file not found")
    else:
        label_map, names, colours = _declared_by_dataset(spec)
    _check_sources(spec, label_map, len(classes))
    return ClassMerge(label_map, names, colours)


def _declared_by_dataset(name: str) -> tuple[LabelMap, list[str], list[tuple[int, int, int]]]:
    from segkit.builder import registry

    try:
        factory = registry().get("dataset", name).load()
    except SegkitError as error:
        raise DataError(f"--merge {name}: no such label-map file, and {error}") from None
    label_map = getattr(factory, "label_map", None)
    if not isinstance(label_map, LabelMap):
        raise DataError(
            f"--merge {name}: the dataset '{name}' declares no label_map to merge classes with; "
            "give a label-map file instead (docs/training.md)"
        )
    names = list(getattr(factory, "classes", None) or [])
    if len(names) != label_map.num_targets:
        names = [f"group_{t}" for t in range(label_map.num_targets)]
    colours = [tuple(c) for c in getattr(factory, "palette", None) or []]
    if len(colours) != len(names):
        from segkit.engine.visualize import default_palette

        colours = default_palette(len(names))
    return label_map, names, colours


def _check_sources(spec: str, label_map: LabelMap, count: int) -> None:
    beyond = sorted(s for s in label_map.mapping if s >= count and s != IGNORE_INDEX)
    missing = [c for c in range(count) if c not in label_map.mapping]
    if beyond or missing:
        listed = len([s for s in label_map.mapping if s != IGNORE_INDEX])
        raise DataError(
            f"--merge {spec}: the label map merges {listed} classes, but the model predicts "
            f"{count}; it must list every class 0..{count - 1} of the model"
        )


def _group_colour(
    label_map: LabelMap,
    target: int,
    name: str,
    classes: Sequence[str],
    palette: Sequence[Sequence[int]],
) -> tuple[int, int, int]:
    """The colour of the group's class named like the group, else of its first class."""
    members = [s for s, t in sorted(label_map.mapping.items()) if t == target and s < len(classes)]
    named = [s for s in members if classes[s].lower().startswith(name.lower())]
    return tuple(palette[(named or members)[0]])


class MergedModel(nn.Module):
    """A model of the groups, for the evaluator: the original model predicted with its own
    inference settings (windows, scales, flips), its probabilities merged. ``main`` is their
    logarithm, so that the softmax and argmax the evaluator applies choose the same group as
    the argmax of the merged probabilities. Run the evaluator in ``whole`` mode on it."""

    def __init__(self, predictor: Predictor, merge: ClassMerge):
        super().__init__()
        self.model = predictor.model
        self.predictor = predictor
        self.merge = merge

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        merged = self.merge(self.predictor.probabilities(images))
        return {"main": merged.clamp_min(torch.finfo(merged.dtype).tiny).log()}
