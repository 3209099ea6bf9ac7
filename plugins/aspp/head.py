"""Atrous spatial pyramid pooling, the DeepLabv3 head (Chen et al., 2017).

:class:`ASPP` is the pyramid alone (branches, image pooling, projection); DeepLabv3+'s decoder
(:mod:`segkit_plugins.aspp.deeplabv3plus`) runs the same module on its last stage.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segkit.layers import ConvNormReLU, Norm, check_norm, norm_layer


def check_dilations(dilations: Sequence[int]) -> None:
    if any(not isinstance(d, int) or d < 1 for d in dilations):
        raise ValueError(f"dilations must be positive integers; got {dilations}")


def check_dropout(dropout: float) -> None:
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1); got {dropout}")


class ASPP(nn.Module):
    """A 1x1 branch, a dilated 3x3 branch per rate and image pooling, concatenated and projected
    to ``channels`` by a 1x1 conv-norm-ReLU.

    Its parameter names (``branches.<i>``, ``image_pool``, ``project``) are the ``aspp`` head's
    checkpoint format, so both heads load the same converted weights.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 256,
        dilations: Sequence[int] = (12, 24, 36),
        image_pool: bool = True,
        norm: str = "bn",
        gn_groups: int = 32,
        align_corners: bool = False,
    ):
        super().__init__()
        check_dilations(dilations)
        check_norm(norm, gn_groups)
        options = {"norm": norm, "gn_groups": gn_groups}
        self.branches = nn.ModuleList(
            [ConvNormReLU(in_channels, channels, 1, **options)]
            + [ConvNormReLU(in_channels, channels, 3, dilation=d, **options) for d in dilations]
        )
        if image_pool:
            self.image_pool = nn.Sequential(
                OrderedDict(
                    pool=nn.AdaptiveAvgPool2d(1),
                    conv=nn.Conv2d(in_channels, channels, 1, bias=False),
                    norm=norm_layer(norm, channels, gn_groups),
                    relu=nn.ReLU(inplace=True),
                )
            )
        else:
            self.image_pool = None
        count = len(self.branches) + int(image_pool)
        self.project = ConvNormReLU(count * channels, channels, 1, **options)
        self.align_corners = align_corners

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        outputs = [branch(features) for branch in self.branches]
        if self.image_pool is not None:
            pooled = self.image_pool(features)
            outputs.append(
                F.interpolate(
                    pooled,
                    size=features.shape[-2:],
                    mode="bilinear",
                    align_corners=self.align_corners,
                )
            )
        return self.project(torch.cat(outputs, dim=1))


class ASPPHead(ASPP):
    """DeepLabv3 head: 1x1 and dilated 3x3 branches plus image pooling, concatenated, projected
    by a 1x1 conv-norm-ReLU, dropout, 1x1 classifier.

    ``dilations``: rates of the 3x3 branches; (12, 24, 36) suits output stride 8, the paper's
    (6, 12, 18) output stride 16.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 256,
        dilations: tuple[int, ...] = (12, 24, 36),
        image_pool: bool = True,
        dropout: float = 0.1,
        norm: Norm = "bn",
        gn_groups: int = 32,
        align_corners: bool = False,
    ):
        if not isinstance(in_channels, int):
            raise ValueError("the aspp head reads one backbone stage; give in_index a single index")
        check_dropout(dropout)
        super().__init__(
            in_channels, channels, dilations, image_pool, norm, gn_groups, align_corners
        )
        self.sync_bn = norm == "syncbn"
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(super().forward(features)))
