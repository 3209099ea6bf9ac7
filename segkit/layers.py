"""Layers shared by model plugins: normalisation chosen by name, conv-norm-ReLU, and PSPNet's
pyramid pooling (used by the ``ppm`` and ``uper`` heads, which are separate plugins).

Every backbone and head with normalisation layers takes the same options, ``norm`` and
``gn_groups``, so that one config line switches a whole model. ``"syncbn"`` builds ordinary
``BatchNorm2d`` and marks the component with ``sync_bn = True``: the same config then runs on one
CPU, where synchronising is meaningless, and on several processes, where the engine
(:mod:`segkit.engine.sync_bn`) synchronises the marked components once the process group exists.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Norm = Literal["bn", "syncbn", "gn"]
NORMS = ("bn", "syncbn", "gn")


def check_norm(norm: str, gn_groups: int) -> None:
    """Fail early, before any layer is built, on a norm option the factory cannot honour."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")
    if norm == "gn" and gn_groups < 1:
        raise ValueError(f"gn_groups must be a positive number of groups; got {gn_groups}")


def check_in_channels(in_channels: int) -> None:
    """A backbone's ``in_channels`` (the input image's channels) must be a positive count."""
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive number of channels; got {in_channels!r}")


def norm_layer(norm: str, channels: int, gn_groups: int = 32) -> nn.Module:
    """A normalisation layer over ``channels`` feature maps."""
    check_norm(norm, gn_groups)
    if norm == "gn":
        if channels % gn_groups:
            raise ValueError(
                f"group norm cannot split {channels} channels into {gn_groups} groups; "
                f"set gn_groups to a divisor of every layer's width (e.g. 16 or 8)"
            )
        return nn.GroupNorm(gn_groups, channels)
    return nn.BatchNorm2d(channels)


class ConvNormReLU(nn.Sequential):
    """Conv (no bias: the norm has one), norm, ReLU; keys ``conv.*`` and ``norm.*``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        dilation: int = 1,
        norm: str = "bn",
        gn_groups: int = 32,
    ):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(
                    in_channels,
                    out_channels,
                    kernel_size,
                    padding=padding,
                    dilation=dilation,
                    bias=False,
                ),
                norm=norm_layer(norm, out_channels, gn_groups),
                relu=nn.ReLU(inplace=True),
            )
        )


def check_bins(bins: Sequence[int]) -> None:
    """Refuse pyramid grid sizes before a head divides its width by their number."""
    if not bins or any(not isinstance(b, int) or b < 1 for b in bins):
        raise ValueError(f"bins must be a non-empty list of positive grid sizes; got {bins}")


class PyramidPooling(nn.Module):
    """Pool the features to bins x bins grids, reduce each with a 1x1 conv-norm-ReLU, upsample
    back, and concatenate them with the features (``out_channels`` says how many channels).

    Its parameter names (``branches.<i>.conv.weight``, ``branches.<i>.norm.*``) are part of the
    checkpoint format of every head that holds one as ``pyramid``.
    """

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
