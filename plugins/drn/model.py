"""Dilated Residual Networks (Yu, Koltun and Funkhouser, CVPR 2017).

Parameter names follow the official code, so its ImageNet checkpoints load without renaming:

- DRN-A is a ResNet (torchvision names, ``fc`` a Linear layer) whose layer3 and layer4 keep
  their resolution and use dilation 2 and 4; the first block of each keeps dilation 1.
- DRN-B/C: a 7x7 stem ``conv1``/``bn1`` (stride 1, no max pool), then eight levels
  ``layer1..layer8`` of residual blocks; ``fc`` is a 1x1 conv with bias. DRN-C's levels 7 and 8
  have no residual connection (degridding); DRN-B keeps them.
- DRN-D: the stem is ``layer0`` (conv, BN, ReLU) and levels 1, 2, 7 and 8 are plain
  conv-BN-ReLU layers (``layerN.0``, ``.1``, ``.3``, ``.4``, ...); levels 3-6 as DRN-C.

Levels have 16, 32, 64, 128, 256, 512, 512, 512 channels (x4 in bottleneck levels 3-6); levels
2, 3, 4 halve the resolution (output stride 8); levels 5, 6, 7, 8 use dilation 2, 4, 2, 1 in
every 3x3 conv, their first blocks included. (The official code can start a "new level" at
(d/2, d), but builds levels 5 and 6 as continuations, so their first blocks use (d, d); matching
that is what makes the official weights give the official outputs.)

DRN-C-58 keeps the official code's 1x1 projection in level 7 (2048 -> 512), which the
non-residual level never uses: it is there so that the official checkpoint loads strictly and the
parameter count is the published 41,591,608. It is frozen (no gradient), so distributed training
does not wait for a gradient it will never get.
"""

from __future__ import annotations

import inspect
import typing
from typing import Literal

import torch
from torch import nn

from segkit.errors import CheckpointError
from segkit.layers import Norm, check_in_channels, check_norm, norm_layer
from segkit.weights import load_into, read_checkpoint, state_dict_of
from segkit_plugins.drn import variant_help

LEVEL_CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with dilations ``dilation``; ``residual=False`` drops the shortcut."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        dilation: tuple[int, int] = (1, 1),
        downsample: nn.Module | None = None,
        residual: bool = True,
        norm: str = "bn",
        gn_groups: int = 32,
    ):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride, dilation[0])
        self.bn1 = norm_layer(norm, channels, gn_groups)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels, 1, dilation[1])
        self.bn2 = norm_layer(norm, channels, gn_groups)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride, dilation ``dilation[1]``), 1x1 expand by 4, plus the shortcut."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        dilation: tuple[int, int] = (1, 1),
        downsample: nn.Module | None = None,
        norm: str = "bn",
        gn_groups: int = 32,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = norm_layer(norm, channels, gn_groups)
        self.conv2 = conv3x3(channels, channels, stride, dilation[1])
        self.bn2 = norm_layer(norm, channels, gn_groups)
        self.conv3 = nn.Conv2d(channels, channels * 4, 1, bias=False)
        self.bn3 = norm_layer(norm, channels * 4, gn_groups)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# (arch, depth) -> (block of levels 3-6, blocks or conv layers per level 1..8)
LEVELS = {
    ("b", 26): (BasicBlock, (1, 1, 2, 2, 2, 2, 1, 1)),
    ("c", 26): (BasicBlock, (1, 1, 2, 2, 2, 2, 1, 1)),
    ("c", 42): (BasicBlock, (1, 1, 3, 4, 6, 3, 1, 1)),
    ("c", 58): (Bottleneck, (1, 1, 3, 4, 6, 3, 1, 1)),
    ("d", 22): (BasicBlock, (1, 1, 2, 2, 2, 2, 1, 1)),
    ("d", 24): (BasicBlock, (1, 1, 2, 2, 2, 2, 2, 2)),
    ("d", 38): (BasicBlock, (1, 1, 3, 4, 6, 3, 1, 1)),
    ("d", 40): (BasicBlock, (1, 1, 3, 4, 6, 3, 2, 2)),
    ("d", 54): (Bottleneck, (1, 1, 3, 4, 6, 3, 1, 1)),
    ("d", 56): (Bottleneck, (1, 1, 3, 4, 6, 3, 2, 2)),
    ("d", 105): (Bottleneck, (1, 1, 3, 4, 23, 3, 1, 1)),
    ("d", 107): (Bottleneck, (1, 1, 3, 4, 23, 3, 2, 2)),
}

# DRN-A depth -> (block, blocks per layer1..layer4)
A_LAYERS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class _Backbone(nn.Module):
    """What every DRN shares: initialisation and pretrained loading.

    ``drn_arch`` (``"a"``, ``"b"``, ``"c"`` or ``"d"``) is public: it tells other code (the
    converters plugin) which official layout the weights follow, without importing this module.
    """

    fc: nn.Module | None
    drn_arch: str
    network: str  # the registered name, e.g. drn_c_26

    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _load(self, path: str, strict: bool) -> None:
        checkpoint = read_checkpoint(path)
        recorded = checkpoint.get("backbone") if isinstance(checkpoint, dict) else None
        converted_for = recorded.get("type") if isinstance(recorded, dict) else None
        # DRN-B and DRN-C weights have the same names and shapes: only the record tells them apart
        if str(converted_for).startswith("drn_") and converted_for != self.network:
            raise CheckpointError(
                f"{path}: these weights were converted for '{converted_for}', not for "
                f"'{self.network}'; use them with type: {converted_for}"
            )
        state = state_dict_of(checkpoint, path)
        if self.fc is None:  # a feature backbone ignores the file's ImageNet classifier
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        load_into(self, state, path, strict, in_channels=self.in_channels)


def residual_level(
    block: type[nn.Module],
    in_channels: int,
    channels: int,
    count: int,
    stride: int,
    first_dilation: tuple[int, int],
    dilation: int,
    norm: str,
    gn_groups: int,
    **options,
) -> tuple[nn.Sequential, int]:
    """``count`` blocks, the first with the stride, a projection shortcut where the shape
    changes, and ``first_dilation``; the others at ``dilation``. Returns the level and its
    output channels."""
    out_channels = channels * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
            norm_layer(norm, out_channels, gn_groups),
        )
    options = {"norm": norm, "gn_groups": gn_groups, **options}
    blocks = [block(in_channels, channels, stride, first_dilation, downsample, **options)]
    for _ in range(1, count):
        blocks.append(block(out_channels, channels, 1, (dilation, dilation), **options))
    return nn.Sequential(*blocks), out_channels


class DRN(_Backbone):
    """DRN-B/C/D: features of levels 1..8 (strides 1, 2, 4, 8, 8, 8, 8, 8), or ImageNet logits.

    ``pretrained``: a local weight file in the official layout; built without ``num_classes``,
    the file's classifier (``fc.*``) is dropped before the strict load.
    """

    def __init__(
        self,
        arch: Literal["b", "c", "d"] = "c",
        depth: int = 26,
        num_classes: int | None = None,
        norm: Norm = "bn",
        gn_groups: int = 32,
        pretrained: str | None = None,
        pretrained_strict: bool = True,
        in_channels: int = 3,
    ):
        super().__init__()
        if (arch, depth) not in LEVELS:
            known = ", ".join(f"drn_{a}_{d}" for a, d in LEVELS)
            raise ValueError(f"no DRN-{arch.upper()}-{depth}; the DRNs are: {known}")
        check_norm(norm, gn_groups)
        check_in_channels(in_channels)
        self.in_channels = in_channels
        block, counts = LEVELS[(arch, depth)]
        self.drn_arch, self.network = arch, f"drn_{arch}_{depth}"
        self.norm, self.gn_groups = norm, gn_groups
        self.sync_bn = norm == "syncbn"
        c = LEVEL_CHANNELS

        if arch == "d":
            self.layer0 = nn.Sequential(
                nn.Conv2d(in_channels, c[0], 7, padding=3, bias=False),
                norm_layer(norm, c[0], gn_groups),
                nn.ReLU(inplace=True),
            )
        else:
            self.conv1 = nn.Conv2d(in_channels, c[0], 7, padding=3, bias=False)
            self.bn1 = norm_layer(norm, c[0], gn_groups)
            self.relu = nn.ReLU(inplace=True)
        self.inplanes = c[0]
        if arch == "d":
            self.layer1 = self._make_conv_layers(c[0], counts[0])
            self.layer2 = self._make_conv_layers(c[1], counts[1], stride=2)
        else:
            self.layer1 = self._make_layer(BasicBlock, c[0], counts[0])
            self.layer2 = self._make_layer(BasicBlock, c[1], counts[1], stride=2)
        self.layer3 = self._make_layer(block, c[2], counts[2], stride=2)
        self.layer4 = self._make_layer(block, c[3], counts[3], stride=2)
        self.layer5 = self._make_layer(block, c[4], counts[4], dilation=2)
        self.layer6 = self._make_layer(block, c[5], counts[5], dilation=4)
        if arch == "d":
            self.layer7 = self._make_conv_layers(c[6], counts[6], dilation=2)
            self.layer8 = self._make_conv_layers(c[7], counts[7], dilation=1)
        else:
            keep = arch == "b"  # DRN-B keeps the shortcuts that DRN-C removes
            self.layer7 = self._make_layer(BasicBlock, c[6], counts[6], dilation=2, residual=keep)
            self.layer8 = self._make_layer(BasicBlock, c[7], counts[7], dilation=1, residual=keep)

        e = block.expansion
        self.out_channels = [c[0], c[1], c[2] * e, c[3] * e, c[4] * e, c[5] * e, c[6], c[7]]
        self.strides = [1, 2, 4, 8, 8, 8, 8, 8]
        if num_classes is None:
            self.avgpool = self.fc = None
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Conv2d(c[7], num_classes, 1)

        self._initialise()
        if pretrained:
            self._load(pretrained, pretrained_strict)
        for module in self.modules():  # the official C-58's projection that nothing uses
            if isinstance(module, BasicBlock) and not module.residual and module.downsample:
                module.downsample.requires_grad_(False)

    def _make_layer(
        self,
        block: type[nn.Module],
        channels: int,
        count: int,
        stride: int = 1,
        dilation: int = 1,
        residual: bool = True,
    ) -> nn.Sequential:
        options = {"residual": residual} if block is BasicBlock else {}
        level, self.inplanes = residual_level(
            block,
            self.inplanes,
            channels,
            count,
            stride,
            (dilation, dilation),
            dilation,
            self.norm,
            self.gn_groups,
            **options,
        )
        return level

    def _make_conv_layers(
        self, channels: int, count: int, stride: int = 1, dilation: int = 1
    ) -> nn.Sequential:
        layers: list[nn.Module] = []
        for index in range(count):
            layers += [
                conv3x3(self.inplanes, channels, stride if index == 0 else 1, dilation),
                norm_layer(self.norm, channels, self.gn_groups),
                nn.ReLU(inplace=True),
            ]
            self.inplanes = channels
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        if self.drn_arch == "d":
            x = self.layer0(x)
        else:
            x = self.relu(self.bn1(self.conv1(x)))
        features = []
        for level in (
            self.layer1,
            self.layer2,
            self.layer3,
            self.layer4,
            self.layer5,
            self.layer6,
            self.layer7,
            self.layer8,
        ):
            x = level(x)
            features.append(x)
        if self.fc is None:
            return features
        return torch.flatten(self.fc(self.avgpool(x)), 1)


class DRNA(_Backbone):
    """DRN-A: a ResNet at output stride 8; features of layer1..layer4 (strides 4, 8, 8, 8).

    ``pretrained``: a local weight file (official DRN-A or torchvision ResNet layout); built
    without ``num_classes``, the file's classifier (``fc.*``) is dropped before the strict load.
    """

    def __init__(
        self,
        depth: Literal[18, 34, 50] = 50,
        num_classes: int | None = None,
        norm: Norm = "bn",
        gn_groups: int = 32,
        pretrained: str | None = None,
        pretrained_strict: bool = True,
        in_channels: int = 3,
    ):
        super().__init__()
        if depth not in A_LAYERS:
            raise ValueError(f"DRN-A depth must be one of 18, 34, 50; got {depth}")
        check_norm(norm, gn_groups)
        check_in_channels(in_channels)
        self.in_channels = in_channels
        block, counts = A_LAYERS[depth]
        self.drn_arch, self.network = "a", f"drn_a_{depth}"
        self.norm, self.gn_groups = norm, gn_groups
        self.sync_bn = norm == "syncbn"

        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(norm, 64, gn_groups)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inplanes = 64
        self.layer1 = self._make_layer(block, 64, counts[0])
        self.layer2 = self._make_layer(block, 128, counts[1], stride=2)
        self.layer3 = self._make_layer(block, 256, counts[2], dilation=2)
        self.layer4 = self._make_layer(block, 512, counts[3], dilation=4)

        self.out_channels = [w * block.expansion for w in (64, 128, 256, 512)]
        self.strides = [4, 8, 8, 8]
        if num_classes is None:
            self.avgpool = self.fc = None
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512 * block.expansion, num_classes)

        self._initialise()
        if pretrained:
            self._load(pretrained, pretrained_strict)

    def _make_layer(
        self, block: type[nn.Module], channels: int, count: int, stride: int = 1, dilation: int = 1
    ) -> nn.Sequential:
        # the official DRN-A keeps dilation 1 in the first block of a dilated stage
        level, self.inplanes = residual_level(
            block,
            self.inplanes,
            channels,
            count,
            stride,
            (1, 1),
            dilation,
            self.norm,
            self.gn_groups,
        )
        return level

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        if self.fc is None:
            return features
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _variant(cls: type[nn.Module], title: str, **fixed):
    """A named network: ``cls`` with ``fixed`` arguments, whose config options are the rest of
    ``cls``'s signature (so validation and ``segkit show`` see exactly what may be set)."""

    def factory(**options) -> nn.Module:
        return cls(**fixed, **options)

    signature = inspect.signature(cls)
    factory.__signature__ = signature.replace(
        parameters=[p for p in signature.parameters.values() if p.name not in fixed]
    )
    hints = typing.get_type_hints(cls.__init__)
    factory.__annotations__ = {k: v for k, v in hints.items() if k not in fixed}
    factory.__name__ = factory.__qualname__ = title.lower().replace("-", "_")
    factory.__doc__ = variant_help(factory.__name__)
    return factory


drn_a_18 = _variant(DRNA, "DRN-A-18", depth=18)
drn_a_34 = _variant(DRNA, "DRN-A-34", depth=34)
drn_a_50 = _variant(DRNA, "DRN-A-50", depth=50)
drn_b_26 = _variant(DRN, "DRN-B-26", arch="b", depth=26)
drn_c_26 = _variant(DRN, "DRN-C-26", arch="c", depth=26)
drn_c_42 = _variant(DRN, "DRN-C-42", arch="c", depth=42)
drn_c_58 = _variant(DRN, "DRN-C-58", arch="c", depth=58)
drn_d_22 = _variant(DRN, "DRN-D-22", arch="d", depth=22)
drn_d_24 = _variant(DRN, "DRN-D-24", arch="d", depth=24)
drn_d_38 = _variant(DRN, "DRN-D-38", arch="d", depth=38)
drn_d_40 = _variant(DRN, "DRN-D-40", arch="d", depth=40)
drn_d_54 = _variant(DRN, "DRN-D-54", arch="d", depth=54)
drn_d_56 = _variant(DRN, "DRN-D-56", arch="d", depth=56)
drn_d_105 = _variant(DRN, "DRN-D-105", arch="d", depth=105)
drn_d_107 = _variant(DRN, "DRN-D-107", arch="d", depth=107)
