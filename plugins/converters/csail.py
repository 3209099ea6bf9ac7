"""The CSAIL semantic-segmentation-pytorch layout (the seed project's models) in segkit names.

An encoder file holds the deep-stem dilated ResNet under torchvision's names (``conv1``,
``bn1``, ``conv2``, ``bn2``, ``conv3``, ``bn3``, ``layer1``..``layer4``), which are segkit's
ResNet names: they gain the ``backbone.`` prefix. A ``ppm_deepsup`` decoder file holds the
pyramid branches (``ppm.{i}``: pool, conv, BN, ReLU), the fusion block and classifier
(``conv_last``: conv, BN, ReLU, dropout, conv) and the deep-supervision block
(``cbr_deepsup``: conv, BN, ReLU) with its classifier (``conv_last_deepsup``): they become
segkit's ``ppm`` head and an ``fcn`` auxiliary head. A ``ppm`` decoder (no deep supervision)
converts too, for a config without the auxiliary head.
"""

from __future__ import annotations

import re

import torch

DECODER_NAMES = (
    (r"ppm\.(\d+)\.1\.", r"head.pyramid.branches.\1.conv."),
    (r"ppm\.(\d+)\.2\.", r"head.pyramid.branches.\1.norm."),
    (r"conv_last\.0\.", "head.bottleneck.conv."),
    (r"conv_last\.1\.", "head.bottleneck.norm."),
    (r"conv_last\.4\.", "head.classifier."),
    (r"cbr_deepsup\.0\.", "aux_heads.0.convs.0.conv."),
    (r"cbr_deepsup\.1\.", "aux_heads.0.convs.0.norm."),
    (r"conv_last_deepsup\.", "aux_heads.0.classifier."),
)


def is_decoder(state: dict[str, torch.Tensor]) -> bool:
    return any(key.startswith(("ppm.", "conv_last")) for key in state)


def segmentor_state(
    encoder: dict[str, torch.Tensor], decoder: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The segkit state dict of an encoder and a decoder, and the decoder keys that have no
    segkit name."""
    state = {f"backbone.{key}": value for key, value in encoder.items()}
    unknown = []
    for key, value in decoder.items():
        for pattern, replacement in DECODER_NAMES:
            renamed, count = re.subn(rf"\A{pattern}", replacement, key)
            if count:
                state[renamed] = value
                break
        else:
            unknown.append(key)
    return state, unknown
