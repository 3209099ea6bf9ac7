"""SegFormer's all-MLP decode head (Xie et al., NeurIPS 2021, Section 3.2).

The hierarchical transformer already sees far, so the decoder only unifies the stages: a linear
layer per stage to one width, bilinear upsampling to the finest stage (1/4 of the input on MiT),
concatenation, a linear fusion layer with BN and ReLU, dropout, and a linear classifier. The
linear layers are 1x1 convs (the same map on every pixel, without reshaping to tokens). Stages
are concatenated coarsest first, as in the official code, so its fusion weights keep their order.

Any multi-stage backbone fits (MiT, ResNet, DRN, timm): the head takes the stages' channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segkit.layers import ConvNormReLU, Norm, check_norm


class SegFormerHead(nn.Module):
    """All-MLP head: per-stage linear to ``channels``, upsample, concat, fuse, classify.

    Reads several stages: set ``in_index`` to a list, finest first, e.g. [0, 1, 2, 3].
    ``channels`` is the paper's embedding dimension C: 256 for MiT-B0/B1, 768 for B2-B5.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        channels: int = 256,
        dropout: float = 0.1,
        norm: Norm = "bn",
        gn_groups: int = 32,
        align_corners: bool = False,
    ):
        super().__init__()
        if isinstance(in_channels, int) or len(in_channels) < 2:
            raise ValueError(
                "the segformer head reads several backbone stages, finest first; "
                "set in_index to a list such as [0, 1, 2, 3]"
            )
        if channels < 1:
            raise ValueError(f"channels must be a positive width; got {channels}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        check_norm(norm, gn_groups)
        self.sync_bn = norm == "syncbn"
        self.embed = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.fuse = ConvNormReLU(
            len(in_channels) * channels, channels, 1, norm=norm, gn_groups=gn_groups
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.align_corners = align_corners

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        embedded = []
        for linear, x in zip(self.embed, features):
            x = linear(x)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)
            embedded.append(x)
        fused = self.fuse(torch.cat(embedded[::-1], dim=1))
        return self.classifier(self.dropout(fused))
