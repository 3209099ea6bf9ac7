"""The U-Net decoder as segmentation_models_pytorch builds it over an encoder: one block per
width in ``decoder_channels``, each upsampling, concatenating the matching stage and applying two
3x3 conv-BN-ReLU; a 3x3 classifier at the end.

smp's encoders expose a stride-2 stage (a ResNet's conv1 output) as the last skip; segkit's
backbones start at stride 4 (ResNet's layer1). So over ResNet stages [0, 1, 2, 3] the first three
blocks take the stride-16, -8 and -4 stages and the last two upsample without a skip, to stride 2
and then full resolution. A block with a skip resizes to the skip's size, not blindly by 2, which
keeps the decoder right on dilated backbones (strides 4, 8, 8, 8) too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segkit.layers import ConvNormReLU, Norm, check_norm


class DecoderBlock(nn.Module):
    """Upsample (nearest) to the skip's size, or 2x without one; concatenate; two 3x3 convs."""

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, norm: str, gn_groups: int
    ):
        super().__init__()
        options = {"norm": norm, "gn_groups": gn_groups}
        self.conv1 = ConvNormReLU(in_channels + skip_channels, out_channels, 3, **options)
        self.conv2 = ConvNormReLU(out_channels, out_channels, 3, **options)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            if x.shape[-2:] != skip.shape[-2:]:
                x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNetHead(nn.Module):
    """U-Net decoder: blocks of 2x upsampling, the finer stage concatenated, two 3x3 convs.

    From the last stage, one block per ``decoder_channels`` entry, each taking the next finer
    stage as its skip while there is one, then a 3x3 classifier.

    Reads several stages, finest first (``in_index: [0, 1, 2, 3]``); ``decoder_channels`` needs
    at least one entry per skip (stages - 1), and each extra entry adds a 2x block without skip.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
        norm: Norm = "bn",
        gn_groups: int = 32,
    ):
        super().__init__()
        if isinstance(in_channels, int):
            raise ValueError(
                "the unet head reads several backbone stages, finest first; "
                "set in_index to a list such as [0, 1, 2, 3]"
            )
        decoder_channels = list(decoder_channels)
        skips = list(reversed(in_channels[:-1]))
        if len(decoder_channels) < len(skips):
            raise ValueError(
                f"decoder_channels {decoder_channels} has {len(decoder_channels)} block(s) for "
                f"{len(in_channels)} stages; give at least {len(skips)} widths, one per skip"
            )
        if any(not isinstance(c, int) or c < 1 for c in decoder_channels):
            raise ValueError(f"decoder_channels must be positive widths; got {decoder_channels}")
        check_norm(norm, gn_groups)
        self.sync_bn = norm == "syncbn"
        skips += [0] * (len(decoder_channels) - len(skips))
        inputs = [in_channels[-1]] + decoder_channels[:-1]
        self.blocks = nn.ModuleList(
            DecoderBlock(i, s, o, norm, gn_groups)
            for i, s, o in zip(inputs, skips, decoder_channels)
        )
        self.classifier = nn.Conv2d(decoder_channels[-1], num_classes, 3, padding=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        *finer, x = features
        skips = list(reversed(finer))
        for number, block in enumerate(self.blocks):
            x = block(x, skips[number] if number < len(skips) else None)
        return self.classifier(x)
