"""Semantic FPN (Kirillov et al., "Panoptic Feature Pyramid Networks", CVPR 2019): a feature
pyramid over the backbone's stages, each level brought to the finest by 3x3 conv-GN-ReLU and 2x
upsampling steps, summed and classified.

The number of steps of a level is fixed when the head is built (level i has max(1, i), the paper's
count for strides 4, 8, 16, 32), but each upsampling goes to the size of the next finer level as
it comes: on a dilated backbone (strides 4, 8, 8, 8) the steps between equal sizes keep their conv
and skip the resize, so one head works on every backbone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segkit.layers import ConvNormReLU, Norm, check_norm


class SemanticFPNHead(nn.Module):
    """Semantic FPN: an FPN neck, every level convolved and upsampled to the finest, summed.

    The neck: 1x1 laterals, nearest top-down sums, 3x3 outputs. Per level: 3x3 conv-norm-ReLU
    and 2x bilinear upsampling steps down to the finest level; the sum, dropout, 1x1 classifier.

    Reads several stages: set ``in_index`` to a list, finest first, e.g. [0, 1, 2, 3].
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        fpn_channels: int = 256,
        channels: int = 128,
        dropout: float = 0.1,
        norm: Norm = "gn",
        gn_groups: int = 32,
        align_corners: bool = False,
    ):
        super().__init__()
        if isinstance(in_channels, int) or len(in_channels) < 2:
            raise ValueError(
                "the fpn head reads several backbone stages, finest first; "
                "set in_index to a list such as [0, 1, 2, 3]"
            )
        if fpn_channels < 1 or channels < 1:
            raise ValueError(
                f"fpn_channels and channels must be positive; got {fpn_channels}, {channels}"
            )
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        check_norm(norm, gn_groups)
        self.sync_bn = norm == "syncbn"
        # the neck has no norm, its convs a bias: the paper's FPN (and Detectron2's default)
        self.lateral = nn.ModuleList(nn.Conv2d(c, fpn_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(fpn_channels, fpn_channels, 3, padding=1) for _ in in_channels
        )
        self.scale_heads = nn.ModuleList(
            nn.ModuleList(
                ConvNormReLU(
                    fpn_channels if step == 0 else channels,
                    channels,
                    3,
                    norm=norm,
                    gn_groups=gn_groups,
                )
                for step in range(max(1, level))
            )
            for level in range(len(in_channels))
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.align_corners = align_corners

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(x) for conv, x in zip(self.lateral, features)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down pathway
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1], "nearest")
        pyramid = [conv(x) for conv, x in zip(self.output, laterals)]
        total = None
        for level, (steps, x) in enumerate(zip(self.scale_heads, pyramid)):
            for number, step in enumerate(steps):
                x = step(x)
                if level > 0:  # up to the next finer level, the last step to the finest
                    x = _resize(x, pyramid[level - 1 - number], "bilinear", self.align_corners)
            total = x if total is None else total + x
        return self.classifier(self.dropout(total))


def _resize(
    x: torch.Tensor, like: torch.Tensor, mode: str, align_corners: bool | None = None
) -> torch.Tensor:
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode=mode, align_corners=align_corners)
