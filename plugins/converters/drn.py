"""The official DRN segmentation layout (``DRNSeg``) in segkit names.

DRNSeg keeps the classification network's children, in order and without the pool and the
classifier, as ``base.{i}``; its 1x1 classifier is ``seg`` and its fixed bilinear transposed
conv ``up``. The children are, in the official code's order (the ReLU counts, although it has no
weights): DRN-C (and DRN-B) ``conv1, bn1, relu, layer1..layer8``; DRN-D ``layer0,
layer1..layer8``. segkit's DRN backbones use those very names, so ``base.{i}.rest`` becomes
``backbone.<child i>.rest``; ``seg`` and ``up`` are the ``drn_seg`` head's.
"""

from __future__ import annotations

import re

import torch
from torch import nn

LEVELS = [f"layer{level}" for level in range(1, 9)]
OFFICIAL_CHILDREN = {
    "b": ["conv1", "bn1", "relu", *LEVELS],
    "c": ["conv1", "bn1", "relu", *LEVELS],
    "d": ["layer0", *LEVELS],
}


def is_drnseg(state: dict[str, torch.Tensor]) -> bool:
    return any(key.startswith("base.") for key in state)


def architecture(state: dict[str, torch.Tensor]) -> str:
    """``d`` or ``c`` for a DRNSeg state dict: DRN-D's first child is a Sequential (``layer0``),
    DRN-C's a conv."""
    return "d" if "base.0.0.weight" in state else "c"


def official_children(backbone: nn.Module) -> list[str] | None:
    """The names of DRNSeg's ``base.{i}`` children in segkit's backbone, or None when the
    backbone is not a DRN-B/C/D."""
    from segkit_plugins.drn.model import DRN

    if not isinstance(backbone, DRN):
        return None
    return OFFICIAL_CHILDREN[backbone.arch]


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
