"""DeepLabv3+ (Chen et al., ECCV 2018): DeepLabv3's ASPP on the last stage, and a light decoder
that brings back the boundaries the output stride lost from a stride-4 stage.

Plain (not depthwise-separable) convolutions throughout, as the paper's ResNet-101 variant; the
separable ones belong to its Xception backbone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segkit.layers import ConvNormReLU, Norm, check_norm
from segkit_plugins.aspp.head import ASPP, check_dropout


class DeepLabV3PlusHead(nn.Module):
    """DeepLabv3+ decoder: ASPP on the last stage, a 48-channel stride-4 skip, two 3x3 convs.

    The ASPP output is upsampled to the low-level stage, whose 1x1 conv-norm-ReLU reduction it is
    concatenated with; then two 3x3 conv-norm-ReLU, dropout, 1x1 classifier.

    Reads two stages, low-level first: ``in_index: [0, 3]`` on a ResNet (stride 4 and the last).
    ``dilations``: (12, 24, 36) for output stride 8, the paper's (6, 12, 18) for 16.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        channels: int = 256,
        low_level_channels: int = 48,
        dilations: tuple[int, ...] = (12, 24, 36),
        image_pool: bool = True,
        dropout: float = 0.1,
        norm: Norm = "bn",
        gn_groups: int = 32,
        align_corners: bool = False,
    ):
        super().__init__()
        if isinstance(in_channels, int) or len(in_channels) != 2:
            raise ValueError(
                "the deeplabv3plus head reads two backbone stages, the low-level (stride 4) one "
                "first; set in_index to a pair such as [0, 3]"
            )
        if low_level_channels < 1:
            raise ValueError(f"low_level_channels must be positive; got {low_level_channels}")
        check_dropout(dropout)
        check_norm(norm, gn_groups)
        self.sync_bn = norm == "syncbn"
        options = {"norm": norm, "gn_groups": gn_groups}
        low, high = in_channels
        self.aspp = ASPP(high, channels, dilations, image_pool, norm, gn_groups, align_corners)
        self.low_level = ConvNormReLU(low, low_level_channels, 1, **options)
        self.decoder = nn.Sequential(
            ConvNormReLU(channels + low_level_channels, channels, 3, **options),
            ConvNormReLU(channels, channels, 3, **options),
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.align_corners = align_corners

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low, high = features
        skip = self.low_level(low)
        context = F.interpolate(
            self.aspp(high), size=skip.shape[-2:], mode="bilinear", align_corners=self.align_corners
        )
        return self.classifier(self.dropout(self.decoder(torch.cat([context, skip], dim=1))))
