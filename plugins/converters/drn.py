"""The official DRN segmentation layout (``DRNSeg``) in segkit names.

DRNSeg keeps the classification network's children, in order and without the pool and the
classifier, as ``base.{i}``; its 1x1 classifier is ``seg`` and its fixed bilinear transposed
conv ``up``. The children are, in the official code's order (the ReLU and the pool count,
although they have no weights): DRN-A ``conv1, bn1, relu, maxpool, layer1..layer4``; DRN-C
``conv1, bn1, relu, layer1..layer8``; DRN-D ``layer0, layer1..layer8``. segkit's DRN backbones
use those very names, so ``base.{i}.rest`` becomes ``backbone.<child i>.rest``; ``seg`` and
``up`` are the ``drn_seg`` head's. The official code has no DRN-B: a DRN-B has DRN-C's weight
names and shapes but other connections, so no official file is taken for one.
"""

from __future__ import annotations

import re

import torch
from torch import nn

LEVELS = [f"layer{level}" for level in range(1, 9)]
OFFICIAL_CHILDREN = {
    "a": ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"],
    "c": ["conv1", "bn1", "relu", *LEVELS],
    "d": ["layer0", *LEVELS],
}


def is_drnseg(state: dict[str, torch.Tensor]) -> bool:
    return any(key.startswith("base.") for key in state)


def architecture(state: dict[str, torch.Tensor]) -> str:
    """``a``, ``c`` or ``d`` for a DRNSeg state dict: DRN-D's first child is a Sequential
    (``layer0``); DRN-A has 8 children, DRN-C 11."""
    if "base.0.0.weight" in state:
        return "d"
    children = {int(key.split(".")[1]) for key in state if key.startswith("base.")}
    return "a" if max(children) < len(OFFICIAL_CHILDREN["a"]) else "c"


def backbone_architecture(backbone: nn.Module) -> str | None:
    """``a``, ``b``, ``c`` or ``d`` for the drn plugin's backbones (their public ``drn_arch``),
    None for any other backbone."""
    arch = getattr(backbone, "drn_arch", None)
    return arch if arch in ("a", "b", "c", "d") else None


def segmentor_state(
    state: dict[str, torch.Tensor], children: list[str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The segkit state dict of a DRNSeg state dict, and the keys that have no segkit name."""
    converted, unknown = {}, []
    for key, value in state.items():
        base = re.match(r"base\.(\d+)\.(.+)\Z", key)
        if base and int(base[1]) < len(children):
            converted[f"backbone.{children[int(base[1])]}.{base[2]}"] = value
        elif key.startswith(("seg.", "up.")):
            converted[f"head.{key}"] = value
        else:
            unknown.append(key)
    return converted, unknown
