"""The official NVlabs SegFormer weight layout (``mit_b0.pth`` .. ``mit_b5.pth``), and
MMSegmentation's conversion of it, renamed into segkit's MiT names, so that those files load
with ``pretrained: PATH`` as they are.

| official (stage n = 1..4) | segkit (i = n - 1) |
|---|---|
| ``patch_embed{n}.proj/.norm`` | ``stages.{i}.patch_embed.proj/.norm`` |
| ``block{n}.{j}.norm1/.norm2`` | ``stages.{i}.blocks.{j}.norm1/.norm2`` |
| ``block{n}.{j}.attn.q/.kv/.proj/.sr`` | ``stages.{i}.blocks.{j}.attn.q/.kv/.proj/.sr`` |
| ``block{n}.{j}.attn.norm`` | ``stages.{i}.blocks.{j}.attn.sr_norm`` |
| ``block{n}.{j}.mlp.fc1/.fc2`` | ``stages.{i}.blocks.{j}.ffn.fc1/.fc2`` |
| ``block{n}.{j}.mlp.dwconv.dwconv`` | ``stages.{i}.blocks.{j}.ffn.dwconv`` |
| ``norm{n}`` | ``stages.{i}.norm`` |
| ``head`` (ImageNet classifier) | ``classifier`` |

MMSegmentation's layout (``layers.{i}.0`` patch embedding with ``projection``, ``layers.{i}.1.{j}``
blocks, ``layers.{i}.2`` stage norm) joins q and kv into ``attn.attn.in_proj_weight`` (q's rows
first), calls proj ``attn.attn.out_proj`` and keeps the FFN linears as 1x1 convs
(``ffn.layers.0``, ``.1`` the depthwise conv, ``.4``); it has no classifier. Both tables are in
docs/weights.md; a file already in segkit's names passes through unchanged.
"""

from __future__ import annotations

import re

import torch

_RULES = [
    (re.compile(r"^patch_embed(\d)\.(.*)$"), "stages.{stage}.patch_embed.{rest}"),
    (re.compile(r"^block(\d)\.(\d+)\.(.*)$"), "stages.{stage}.blocks.{block}.{rest}"),
    (re.compile(r"^norm(\d)\.(.*)$"), "stages.{stage}.norm.{rest}"),
    (re.compile(r"^head\.(.*)$"), "classifier.{rest}"),
]
# inside a block, after the prefix is renamed
_BLOCK_PARTS = [
    ("attn.norm.", "attn.sr_norm."),
    ("mlp.dwconv.dwconv.", "ffn.dwconv."),
    ("mlp.", "ffn."),
]


_MMSEG_RULES = [
    (re.compile(r"^layers\.(\d)\.0\.projection\.(.*)$"), "stages.{0}.patch_embed.proj.{1}"),
    (re.compile(r"^layers\.(\d)\.0\.norm\.(.*)$"), "stages.{0}.patch_embed.norm.{1}"),
    (re.compile(r"^layers\.(\d)\.1\.(\d+)\.(.*)$"), "stages.{0}.blocks.{1}.{2}"),
    (re.compile(r"^layers\.(\d)\.2\.(.*)$"), "stages.{0}.norm.{1}"),
]
_MMSEG_BLOCK_PARTS = [
    ("attn.attn.out_proj.", "attn.proj."),
    ("attn.norm.", "attn.sr_norm."),
    ("ffn.layers.0.", "ffn.fc1."),
    ("ffn.layers.1.", "ffn.dwconv."),
    ("ffn.layers.4.", "ffn.fc2."),
]


def is_official(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict is in the NVlabs layout (its first patch embedding's names)."""
    return "patch_embed1.proj.weight" in state


def official_to_segkit(key: str) -> str:
    """One official parameter name in segkit's names; names of no MiT part stay as they are
    (a strict load then reports them as unexpected)."""
    for pattern, template in _RULES:
        match = pattern.match(key)
        if not match:
            continue
        groups = match.groups()
        if template.startswith("classifier"):
            return template.format(rest=groups[0])
        stage = int(groups[0]) - 1
        if len(groups) == 3:
            rest = groups[2]
            for old, new in _BLOCK_PARTS:
                if rest.startswith(old):
                    rest = new + rest[len(old) :]
                    break
            return template.format(stage=stage, block=groups[1], rest=rest)
        return template.format(stage=stage, rest=groups[1])
    return key


def is_mmseg(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict is in MMSegmentation's MiT layout."""
    return "layers.0.0.projection.weight" in state


def mmseg_to_segkit(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MMSegmentation's MiT weights in segkit's names: in_proj split into q and kv, the 1x1-conv
    FFN linears flattened to linear weights. Names of no MiT part stay as they are."""
    renamed = {}
    for key, value in state.items():
        for pattern, template in _MMSEG_RULES:
            match = pattern.match(key)
            if match:
                stage, *rest = match.groups()
                key = template.format(int(stage), *rest)
                break
        if ".blocks." in key:
            prefix, _, part = key.partition(".blocks.")
            block, _, part = part.partition(".")
            if part.startswith("attn.attn.in_proj_"):
                width = value.shape[0] // 3
                name = part.removeprefix("attn.attn.in_proj_")
                renamed[f"{prefix}.blocks.{block}.attn.q.{name}"] = value[:width]
                renamed[f"{prefix}.blocks.{block}.attn.kv.{name}"] = value[width:]
                continue
            for old, new in _MMSEG_BLOCK_PARTS:
                if part.startswith(old):
                    part = new + part[len(old) :]
                    break
            if part in ("ffn.fc1.weight", "ffn.fc2.weight") and value.ndim == 4:
                value = value.flatten(1)
            key = f"{prefix}.blocks.{block}.{part}"
        renamed[key] = value
    return renamed


def to_segkit_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict in segkit's names, whichever of the three layouts it came in."""
    if is_official(state):
        return {official_to_segkit(key): value for key, value in state.items()}
    if is_mmseg(state):
        return mmseg_to_segkit(state)
    return state
