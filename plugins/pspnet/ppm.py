"""The pyramid pooling module of PSPNet (Zhao et al., CVPR 2017) and the head built on it."""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segkit.layers import ConvNormReLU, Norm, check_norm, norm_layer


class PyramidPooling(nn.Module):
    """Pool the features to bins x bins grids, reduce each with a 1x1 conv-norm-ReLU, upsample
    back, and concatenate them with the features (``out_channels`` says how many channels)."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        pool: str = "avg",
        norm: str = "bn",
        gn_groups: int = 32,
        align_corners: bool = False,
    ):
        super().__init__()
        check_bins(bins)
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max'; got {pool!r}")
        pooling = nn.AdaptiveAvgPool2d if pool == "avg" else nn.AdaptiveMaxPool2d
        self.branches = nn.ModuleList(
            nn.Sequential(
                OrderedDict(
                    pool=pooling(size),
                    conv=nn.Conv2d(in_channels, channels, 1, bias=False),
                    norm=norm_layer(norm, channels, gn_groups),
                    relu=nn.ReLU(inplace=True),
                )
            )
            for size in bins
        )
        self.align_corners = align_corners
        self.out_channels = in_channels + len(bins) * channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [
            F.interpolate(branch(x), size=size, mode="bilinear", align_corners=self.align_corners)
            for branch in self.branches
        ]
        return torch.cat([x, *pooled], dim=1)


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
        channels: Optional[int] = None,
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


def check_bins(bins: Sequence[int]) -> None:
    if not bins or any(not isinstance(b, int) or b < 1 for b in bins):
        raise ValueError(f"bins must be a non-empty list of positive grid sizes; got {bins}")


def require_one_stage(head: str, in_channels) -> None:
    if not isinstance(in_channels, int):
        raise ValueError(
            f"the {head} head reads one backbone stage, but in_index selects {len(in_channels)}; "
            "give in_index a single index"
        )
