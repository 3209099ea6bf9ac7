"""The PSPNet head (Zhao et al., CVPR 2017), built on the core's pyramid pooling module
(:class:`segkit.layers.PyramidPooling`, which UPerNet shares)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from segkit.layers import ConvNormReLU, Norm, PyramidPooling, check_bins, check_norm


class PPMHead(nn.Module):
    """PSPNet head: pyramid pooling, 3x3 conv-norm-ReLU, dropout, 1x1 classifier.

    ``channels``: width of each pyramid level; None = in_channels / number of bins (the paper's
    reduction, 2048 -> 512). ``fuse_channels``: width of the 3x3 conv after concatenation.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        bins: tuple[int, ...] = (1, 2, 3, 6),
        channels: int | None = None,
        pool: Literal["avg", "max"] = "avg",
        fuse_channels: int = 512,
        dropout: float = 0.1,
        norm: Norm = "bn",
        gn_groups: int = 32,
        align_corners: bool = False,
    ):
        super().__init__()
        require_one_stage("ppm", in_channels)
        check_norm(norm, gn_groups)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        check_bins(bins)
        if channels is None:
            channels = in_channels // len(bins)
        if channels < 1:
            raise ValueError(f"channels must be positive; got {channels}")
        self.sync_bn = norm == "syncbn"
        self.pyramid = PyramidPooling(
            in_channels, channels, bins, pool, norm, gn_groups, align_corners
        )
        self.bottleneck = ConvNormReLU(
            self.pyramid.out_channels, fuse_channels, 3, norm=norm, gn_groups=gn_groups
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(fuse_channels, num_classes, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.bottleneck(self.pyramid(features))
        return self.classifier(self.dropout(x))


def require_one_stage(head: str, in_channels) -> None:
    if not isinstance(in_channels, int):
        raise ValueError(
            f"the {head} head reads one backbone stage, but in_index selects {len(in_channels)}; "
            "give in_index a single index"
        )
