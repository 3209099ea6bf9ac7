"""ResNet (He et al., 2015) as a segmentation backbone.

Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``...downsample.0``,
``fc``), so a torchvision checkpoint loads as is. The deep stem (three 3x3 convs, PSPNet and the
CSAIL code) names its layers ``conv1/bn1/conv2/bn2/conv3/bn3`` as the CSAIL encoder does.

Output stride 16 or 8 replaces the stride of the last one or two stages by dilation (16: layer4
dilation 2; 8: layer3 dilation 2 and layer4 dilation 4). In the first block of a dilated stage,
the 3x3 conv that would have carried the stride keeps the previous stage's dilation (d/2) and
every later 3x3 conv uses d; this is what the CSAIL code's dilated ResNet does and what
torchvision's ``replace_stride_with_dilation`` does for bottleneck blocks.
"""

from __future__ import annotations

import inspect
import math
import typing
from typing import Literal

import torch
from torch import nn

from segkit.errors import CheckpointError
from segkit.layers import Norm, check_in_channels, check_norm, norm_layer
from segkit.weights import load_into, read_checkpoint, state_dict_of
from segkit_plugins.resnet import variant_help

DEPTHS = (18, 34, 50, 101, 152)

# output stride -> (strides, dilations) of layer1..layer4
STAGE_PLANS = {
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
}


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
    )


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs; ``dilation`` is (first conv's, second conv's)."""

    expansion = 1

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
        self.conv1 = conv3x3(in_channels, channels, stride, dilation[0])
        self.bn1 = norm_layer(norm, channels, gn_groups)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels, 1, dilation[1])
        self.bn2 = norm_layer(norm, channels, gn_groups)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying stride and ``dilation[0]``), 1x1 expand by 4 (ResNet v1.5)."""

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
        self.conv1 = conv1x1(in_channels, channels)
        self.bn1 = norm_layer(norm, channels, gn_groups)
        self.conv2 = conv3x3(channels, channels, stride, dilation[0])
        self.bn2 = norm_layer(norm, channels, gn_groups)
        self.conv3 = conv1x1(channels, channels * self.expansion)
        self.bn3 = norm_layer(norm, channels * self.expansion, gn_groups)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


ARCHITECTURES = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ResNet(nn.Module):
    """ResNet backbone: features of layer1..layer4, or ImageNet logits when num_classes is set.

    ``frozen_stages``: -1 trains everything, 0 freezes the stem, k > 0 the stem and layer1..k
    (frozen parameters get no gradient and frozen norms stay in eval mode). ``pretrained``: a
    local weight file (torchvision or segkit layout); built without ``num_classes``, the file's
    classifier (``fc.*``) is dropped before the strict load. ``in_channels``: the input's
    channels (3: RGB); RGB weights are adapted to another count (docs/weights.md).
    """

    def __init__(
        self,
        depth: Literal[18, 34, 50, 101, 152] = 50,
        stem: Literal["standard", "deep"] = "standard",
        output_stride: Literal[8, 16, 32] = 32,
        frozen_stages: int = -1,
        norm: Norm = "bn",
        gn_groups: int = 32,
        num_classes: int | None = None,
        pretrained: str | None = None,
        pretrained_strict: bool = True,
        in_channels: int = 3,
    ):
        super().__init__()
        if depth not in ARCHITECTURES:
            raise ValueError(f"depth must be one of {', '.join(map(str, DEPTHS))}; got {depth}")
        if stem not in ("standard", "deep"):
            raise ValueError(f"stem must be 'standard' (7x7) or 'deep' (three 3x3); got {stem!r}")
        if output_stride not in STAGE_PLANS:
            raise ValueError(f"output_stride must be 8, 16 or 32; got {output_stride}")
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be -1 (none) to 4 (all); got {frozen_stages}")
        check_norm(norm, gn_groups)
        check_in_channels(in_channels)
        block, blocks = ARCHITECTURES[depth]
        self.in_channels = in_channels
        self.norm, self.gn_groups = norm, gn_groups
        self.sync_bn = norm == "syncbn"
        self.frozen_stages = frozen_stages

        self.relu = nn.ReLU(inplace=True)
        if stem == "standard":
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = norm_layer(norm, 64, gn_groups)
            self.stem_layers = ("conv1", "bn1")
            self.inplanes = 64
        else:
            self.conv1 = conv3x3(in_channels, 64, stride=2)
            self.bn1 = norm_layer(norm, 64, gn_groups)
            self.conv2 = conv3x3(64, 64)
            self.bn2 = norm_layer(norm, 64, gn_groups)
            self.conv3 = conv3x3(64, 128)
            self.bn3 = norm_layer(norm, 128, gn_groups)
            self.stem_layers = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")
            self.inplanes = 128
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        strides, dilations = STAGE_PLANS[output_stride]
        # each stage's first block starts at the dilation of the stage before (see module doc)
        d1, d2, d3, d4 = dilations
        self.layer1 = self._make_layer(block, 64, blocks[0], strides[0], d1, 1)
        self.layer2 = self._make_layer(block, 128, blocks[1], strides[1], d2, d1)
        self.layer3 = self._make_layer(block, 256, blocks[2], strides[2], d3, d2)
        self.layer4 = self._make_layer(block, 512, blocks[3], strides[3], d4, d3)

        self.out_channels = [w * block.expansion for w in (64, 128, 256, 512)]
        self.strides = [4 * math.prod(strides[: i + 1]) for i in range(4)]

        if num_classes is None:
            self.avgpool = self.fc = None
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512 * block.expansion, num_classes)

        self._initialise()
        if pretrained:
            load_pretrained(self, pretrained, pretrained_strict)
        self._freeze()

    def _make_layer(
        self,
        block: type[nn.Module],
        channels: int,
        count: int,
        stride: int,
        dilation: int,
        previous_dilation: int,
    ) -> nn.Sequential:
        out_channels = channels * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_channels:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, out_channels, stride),
                norm_layer(self.norm, out_channels, self.gn_groups),
            )
        options = {"norm": self.norm, "gn_groups": self.gn_groups}
        layers = [
            block(
                self.inplanes,
                channels,
                stride,
                (previous_dilation, dilation),
                downsample,
                **options,
            )
        ]
        self.inplanes = out_channels
        for _ in range(1, count):
            layers.append(block(out_channels, channels, 1, (dilation, dilation), **options))
        return nn.Sequential(*layers)

    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        stem = [getattr(self, name) for name in self.stem_layers]
        return stem + [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet:
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if len(self.stem_layers) > 2:
            x = self.relu(self.bn2(self.conv2(x)))
            x = self.relu(self.bn3(self.conv3(x)))
        x = self.maxpool(x)
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        if self.fc is None:
            return features
        return self.fc(torch.flatten(self.avgpool(x), 1))


def load_pretrained(model: nn.Module, path: str, strict: bool = True) -> None:
    """Load a local weight file; a feature backbone ignores the file's ImageNet classifier."""
    state = state_dict_of(read_checkpoint(path), path)
    if model.fc is None:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    _check_stem(model, state, path)
    load_into(model, state, path, strict, in_channels=model.in_channels)


def _check_stem(model: ResNet, state: dict[str, torch.Tensor], path: str) -> None:
    """The commonest mix-up, torchvision's 7x7-stem weights for a PSPNet/CSAIL deep stem or the
    other way round, gets its own message instead of a list of forty keys."""
    kernel = state.get("conv1.weight", torch.empty(0, 0, 0, 0)).shape[-1]
    if kernel in (3, 7) and kernel != model.conv1.kernel_size[0]:
        has, wants = (
            ("a 7x7 stem", "the deep stem (three 3x3 convs)")
            if kernel == 7
            else ("a deep stem (three 3x3 convs)", "the standard 7x7 stem")
        )
        raise CheckpointError(
            f"{path}: these are weights of a ResNet with {has}, but the backbone has {wants}. "
            "Deep-stem ImageNet weights are the CSAIL code's resnet50-imagenet.pth / "
            "resnet101-imagenet.pth; torchvision's fit `stem: standard` (see docs/weights.md)"
        )


def _with_depth(depth: int):
    """A factory identical to ``ResNet`` but for the default depth, so that ``type: resnet50``
    alone is ResNet-50 and ``segkit show`` and config validation see the same options."""

    def factory(**options) -> ResNet:
        return ResNet(**{"depth": depth, **options})

    signature = inspect.signature(ResNet)
    factory.__signature__ = signature.replace(
        parameters=[
            p.replace(default=depth) if p.name == "depth" else p
            for p in signature.parameters.values()
        ]
    )
    factory.__annotations__ = typing.get_type_hints(ResNet.__init__)
    factory.__name__ = factory.__qualname__ = f"resnet{depth}"
    factory.__doc__ = variant_help(depth)
    return factory


resnet18 = _with_depth(18)
resnet34 = _with_depth(34)
resnet50 = _with_depth(50)
resnet101 = _with_depth(101)
resnet152 = _with_depth(152)
