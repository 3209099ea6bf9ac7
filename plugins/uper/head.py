"""The UPerNet decode head (Xiao et al., ECCV 2018): PSPNet's pyramid pooling on the last stage,
a feature pyramid (FPN) over the others, all fused at the finest of them.

The pyramid pooling is the core's :class:`segkit.layers.PyramidPooling`, the one PSPNet's head
uses, so this plugin depends on no other plugin.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from segkit.layers import ConvNormReLU, Norm, PyramidPooling, check_norm


class UPerHead(nn.Module):
    """UPerNet head: PPM on the last stage, FPN lateral and 3x3 convs, fusion of all levels.

    Reads several stages: set ``in_index`` to a list, finest first, e.g. [0, 1, 2, 3].
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        channels: int = 512,
        bins: tuple[int, ...] = (1, 2, 3, 6),
        pool: Literal["avg", "max"] = "avg",
        dropout: float = 0.1,
        norm: Norm = "bn",
        gn_groups: int = 32,
        align_corners: bool = False,
    ):
        super().__init__()
        if isinstance(in_channels, int) or len(in_channels) < 2:
            raise ValueError(
                "the uper head reads several backbone stages, finest first; "
                "set in_index to a list such as [0, 1, 2, 3]"
            )
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        check_norm(norm, gn_groups)
        self.sync_bn = norm == "syncbn"
        options = {"norm": norm, "gn_groups": gn_groups}
        *finer, coarsest = in_channels
        self.pyramid = PyramidPooling(
            coarsest, channels, bins, pool, norm, gn_groups, align_corners
        )
        self.pyramid_fuse = ConvNormReLU(self.pyramid.out_channels, channels, 3, **options)
        self.lateral = nn.ModuleList(ConvNormReLU(c, channels, 1, **options) for c in finer)
        self.fpn = nn.ModuleList(ConvNormReLU(channels, channels, 3, **options) for _ in finer)
        self.fuse = ConvNormReLU(len(in_channels) * channels, channels, 3, **options)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.align_corners = align_corners

    def _resize(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        if x.shape[-2:] == size:
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        *finer, coarsest = features
        top = self.pyramid_fuse(self.pyramid(coarsest))
        laterals = [conv(x) for conv, x in zip(self.lateral, finer)] + [top]
        for i in range(len(laterals) - 1, 0, -1):  # top-down pathway
            finer_size = laterals[i - 1].shape[-2:]
            laterals[i - 1] = laterals[i - 1] + self._resize(laterals[i], finer_size)
        levels = [conv(x) for conv, x in zip(self.fpn, laterals)] + [top]
        size = levels[0].shape[-2:]
        fused = self.fuse(torch.cat([self._resize(x, size) for x in levels], dim=1))
        return self.classifier(self.dropout(fused))
