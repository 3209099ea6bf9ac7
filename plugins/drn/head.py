"""The DRN paper's segmentation head: a 1x1 classifier on the output-stride-8 features, then x8
upsampling, by interpolation or by the official code's fixed bilinear transposed conv."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


class DRNSegHead(nn.Module):
    """DRN segmentation head: 1x1 classifier (``seg``) and x8 upsampling (``up``, optional).

    ``upsample: bilinear`` returns the stride-8 logits and lets the segmentor interpolate them
    to the input size, as every other head does. The official DRNSeg upsamples by exactly 8 in
    one of two ways, reproduced for its checkpoints: ``transposed_conv`` adds its ``up``, a
    per-class ConvTranspose2d (kernel 16, stride 8, padding 4) fixed to bilinear weights and
    never trained; ``bilinear_aligned`` is its ``use_torch_up`` variant, nn.UpsamplingBilinear2d
    (align_corners=True), which aligns the corner pixels rather than the pixel areas.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        upsample: Literal["bilinear", "bilinear_aligned", "transposed_conv"] = "bilinear",
    ):
        super().__init__()
        if upsample not in ("bilinear", "bilinear_aligned", "transposed_conv"):
            raise ValueError(
                f"upsample must be 'bilinear', 'bilinear_aligned' or 'transposed_conv'; got {upsample!r}"
            )
        self.upsample = upsample
        self.seg = nn.Conv2d(in_channels, num_classes, 1)
        nn.init.normal_(self.seg.weight, std=math.sqrt(2.0 / num_classes))
        nn.init.zeros_(self.seg.bias)
        if upsample == "transposed_conv":
            self.up = nn.ConvTranspose2d(
                num_classes, num_classes, 16, stride=8, padding=4, groups=num_classes, bias=False
            )
            with torch.no_grad():
                self.up.weight.copy_(bilinear_kernel(16).expand_as(self.up.weight))
            self.up.weight.requires_grad_(False)
        else:
            self.up = None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.seg(features)
        if self.upsample == "bilinear_aligned":
            return F.interpolate(logits, scale_factor=8, mode="bilinear", align_corners=True)
        return logits if self.up is None else self.up(logits)


def bilinear_kernel(size: int) -> torch.Tensor:
    """The size x size kernel with which a transposed conv of stride ceil(size/2) upsamples
    bilinearly: the outer product of a triangle peaking at the kernel's centre."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 else factor - 0.5
    triangle = 1 - (torch.arange(size, dtype=torch.float64) - centre).abs() / factor
    return torch.outer(triangle, triangle).float()
