"""The one model shape: backbone features -> decode head (+ auxiliary heads) -> logits.

Heads may work at any resolution; the segmentor upsamples every output to the input size, so the
loss and the metrics always compare logits and labels pixel for pixel. Auxiliary outputs exist
only in training mode: deep supervision is a training device, not part of the prediction.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

StageIndex = Union[int, Sequence[int]]


class Segmentor(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        head_index: StageIndex = -1,
        aux_heads: Sequence[nn.Module] = (),
        aux_indices: Sequence[StageIndex] = (),
    ):
        super().__init__()
        if len(aux_heads) != len(aux_indices):
            raise ValueError("every auxiliary head needs its stage index")
        self.backbone = backbone
        self.head = head
        self.aux_heads = nn.ModuleList(aux_heads)
        self.head_index = head_index
        self.aux_indices = list(aux_indices)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        size = images.shape[-2:]
        features = self.backbone(images)
        outputs = {"main": _resize(self.head(_select(features, self.head_index)), size)}
        if self.training:
            for number, (head, index) in enumerate(zip(self.aux_heads, self.aux_indices)):
                outputs[f"aux{number}"] = _resize(head(_select(features, index)), size)
        return outputs


def _select(features: Sequence[torch.Tensor], index: StageIndex):
    if isinstance(index, int):
        return features[index]
    return [features[i] for i in index]


def _resize(logits: torch.Tensor, size: torch.Size) -> torch.Tensor:
    if logits.shape[-2:] == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def stage_channels(backbone: nn.Module, index: StageIndex) -> Union[int, list[int]]:
    """The ``in_channels`` a head reading stage(s) ``index`` of ``backbone`` is given."""
    channels = list(backbone.out_channels)
    if isinstance(index, int):
        return channels[index]
    return [channels[i] for i in index]
