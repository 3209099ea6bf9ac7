"""The FCN head, PSPNet's auxiliary deep-supervision branch (on the stage-3 features)."""

from __future__ import annotations

import torch
from torch import nn

from segkit.layers import ConvNormReLU, Norm, check_norm
from segkit_plugins.pspnet.ppm import require_one_stage


class FCNHead(nn.Module):
    """FCN head: 3x3 conv-norm-ReLU (num_convs times), dropout, 1x1 classifier.

    As an auxiliary head (``model.aux_heads``) it reads the stage given by ``in_index`` (default
    2, the stage-3 features) and its loss is weighted by ``loss_weight`` (default 0.4), optionally
    decayed over training (``loss_decay``); those keys belong to the aux-head slot, not to this
    head.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 256,
        num_convs: int = 1,
        dropout: float = 0.1,
        norm: Norm = "bn",
        gn_groups: int = 32,
    ):
        super().__init__()
        require_one_stage("fcn", in_channels)
        check_norm(norm, gn_groups)
        if num_convs < 1:
            raise ValueError(f"num_convs must be at least 1; got {num_convs}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        self.sync_bn = norm == "syncbn"
        widths = [in_channels] + [channels] * num_convs
        self.convs = nn.Sequential(
            *(
                ConvNormReLU(a, b, 3, norm=norm, gn_groups=gn_groups)
                for a, b in zip(widths, widths[1:])
            )
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.convs(features)))
