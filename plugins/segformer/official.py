"""The official NVlabs SegFormer weight layout (``mit_b0.pth`` .. ``mit_b5.pth``) renamed into
segkit's MiT names, so that those files load with ``pretrained: PATH`` as they are.

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

The table is also in docs/weights.md; a file already in segkit's names passes through unchanged.
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


def to_segkit_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict in segkit's names, whichever of the two layouts it came in."""
    if not is_official(state):
        return state
    return {official_to_segkit(key): value for key, value in state.items()}
