"""Networks in the parameter naming and structure of the official implementations, written from
the facts in the reference (layer tables, checkpoint layouts), for converter tests: a test saves
random weights of one of these in its original format, converts them with segkit, and compares
the outputs. They are deliberately independent of segkit's own model code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ---- CSAIL semantic-segmentation-pytorch: deep-stem dilated ResNet + PPM with deep supervision


class CsailBottleneck(nn.Module):
    """``dilation``: of the 3x3 conv (the second number applies to basic blocks only)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=(1, 1), downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride, padding=dilation[0], dilation=dilation[0], bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class CsailBasicBlock(nn.Module):
    """``dilation``: of the first 3x3 conv (the one that used to stride) and of the second."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dilation=(1, 1), downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(
            inplanes, planes, 3, stride, padding=dilation[0], dilation=dilation[0], bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, padding=dilation[1], dilation=dilation[1], bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class CsailDilatedResNet(nn.Module):
    """The CSAIL encoder at output stride 8: deep stem, layer3 dilation 2 and layer4 dilation 4.
    The CSAIL code dilates a strided ResNet in place: the 3x3 conv that carried the stride gets
    half the dilation, every other 3x3 conv the full one; in a basic block that is the first
    block's first conv only."""

    def __init__(self, block, layers):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.inplanes = 128
        self.layer1 = self._layer(block, 64, layers[0], stride=1, dilation=1)
        self.layer2 = self._layer(block, 128, layers[1], stride=2, dilation=1)
        self.layer3 = self._layer(block, 256, layers[2], stride=1, dilation=2)
        self.layer4 = self._layer(block, 512, layers[3], stride=1, dilation=4)

    def _layer(self, block, planes, blocks, stride, dilation):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        first_dilation = max(dilation // 2, 1)
        layers = [block(self.inplanes, planes, stride, (first_dilation, dilation), downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, (dilation, dilation)) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


def csail_encoder(depth: int) -> CsailDilatedResNet:
    table = {
        18: (CsailBasicBlock, [2, 2, 2, 2]),
        50: (CsailBottleneck, [3, 4, 6, 3]),
        101: (CsailBottleneck, [3, 4, 23, 3]),
    }
    return CsailDilatedResNet(*table[depth])


class CsailPPMDeepsup(nn.Module):
    """The ``ppm_deepsup`` decoder: 512-wide pyramid branches, 3x3 conv block, classifier, and
    the deep-supervision branch on the second-to-last stage."""

    def __init__(self, num_class=150, fc_dim=2048, pool_scales=(1, 2, 3, 6)):
        super().__init__()
        self.ppm = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(scale),
                nn.Conv2d(fc_dim, 512, 1, bias=False),
                nn.BatchNorm2d(512),
                nn.ReLU(inplace=True),
            )
            for scale in pool_scales
        )
        self.cbr_deepsup = nn.Sequential(
            nn.Conv2d(fc_dim // 2, fc_dim // 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(fc_dim // 4),
            nn.ReLU(inplace=True),
        )
        self.conv_last = nn.Sequential(
            nn.Conv2d(fc_dim + len(pool_scales) * 512, 512, 3, padding=1, bias=False),
            nn.BatchNorm2d(512),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
            nn.Conv2d(512, num_class, 1),
        )
        self.conv_last_deepsup = nn.Conv2d(fc_dim // 4, num_class, 1)
        self.dropout_deepsup = nn.Dropout2d(0.1)

    def forward(self, features, size):
        """Class logits of the main branch and of deep supervision, upsampled to ``size``."""
        conv5 = features[-1]
        pooled = [conv5] + [
            F.interpolate(branch(conv5), conv5.shape[-2:], mode="bilinear", align_corners=False)
            for branch in self.ppm
        ]
        main = self.conv_last(torch.cat(pooled, 1))
        aux = self.conv_last_deepsup(self.dropout_deepsup(self.cbr_deepsup(features[-2])))
        return (
            F.interpolate(main, size, mode="bilinear", align_corners=False),
            F.interpolate(aux, size, mode="bilinear", align_corners=False),
        )


# ---- Official DRN: drn_c_* and drn_d_* classification networks, DRNSeg -----------------------


class DrnBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=(1, 1), residual=True):
        super().__init__()
        self.conv1 = nn.Conv2d(
            inplanes, planes, 3, stride, padding=dilation[0], dilation=dilation[0], bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, padding=dilation[1], dilation=dilation[1], bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class DrnBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=(1, 1), residual=True):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride, padding=dilation[1], dilation=dilation[1], bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class OfficialDRN(nn.Module):
    """DRN-C (residual levels 1-8, no residual in 7-8) or DRN-D (plain conv levels 0-2, 7-8)."""

    def __init__(
        self, block, layers, arch, num_classes=1000, channels=(16, 32, 64, 128, 256, 512, 512, 512)
    ):
        super().__init__()
        self.inplanes = channels[0]
        self.out_dim = channels[-1]
        if arch == "C":
            self.conv1 = nn.Conv2d(3, channels[0], 7, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(channels[0])
            self.relu = nn.ReLU(inplace=True)
            self.layer1 = self._make_layer(DrnBasicBlock, channels[0], layers[0])
            self.layer2 = self._make_layer(DrnBasicBlock, channels[1], layers[1], stride=2)
        else:
            self.layer0 = nn.Sequential(
                nn.Conv2d(3, channels[0], 7, padding=3, bias=False),
                nn.BatchNorm2d(channels[0]),
                nn.ReLU(inplace=True),
            )
            self.layer1 = self._make_conv_layers(channels[0], layers[0])
            self.layer2 = self._make_conv_layers(channels[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, channels[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, channels[3], layers[3], stride=2)
        self.layer5 = self._make_layer(block, channels[4], layers[4], dilation=2, new_level=False)
        self.layer6 = self._make_layer(block, channels[5], layers[5], dilation=4, new_level=False)
        if arch == "C":
            self.layer7 = self._make_layer(
                DrnBasicBlock, channels[6], layers[6], dilation=2, new_level=False, residual=False
            )
            self.layer8 = self._make_layer(
                DrnBasicBlock, channels[7], layers[7], dilation=1, new_level=False, residual=False
            )
        else:
            self.layer7 = self._make_conv_layers(channels[6], layers[6], dilation=2)
            self.layer8 = self._make_conv_layers(channels[7], layers[7], dilation=1)
        self.avgpool = nn.AvgPool2d(28)
        self.fc = nn.Conv2d(self.out_dim, num_classes, 1, bias=True)

    def _make_layer(
        self, block, planes, blocks, stride=1, dilation=1, new_level=True, residual=True
    ):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        first = (1, 1) if dilation == 1 else (dilation // 2 if new_level else dilation, dilation)
        layers = [
            block(self.inplanes, planes, stride, downsample, dilation=first, residual=residual)
        ]
        self.inplanes = planes * block.expansion
        layers += [
            block(self.inplanes, planes, residual=residual, dilation=(dilation, dilation))
            for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def _make_conv_layers(self, channels, convs, stride=1, dilation=1):
        modules = []
        for i in range(convs):
            modules += [
                nn.Conv2d(
                    self.inplanes,
                    channels,
                    3,
                    stride if i == 0 else 1,
                    padding=dilation,
                    dilation=dilation,
                    bias=False,
                ),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            self.inplanes = channels
        return nn.Sequential(*modules)

    def features(self, x):
        for child in self.children():
            if child is self.avgpool:
                return x
            x = child(x)
        return x

    def forward(self, x):
        return self.fc(self.avgpool(self.features(x))).flatten(1)


class OfficialDRNA(nn.Module):
    """DRN-A: a ResNet whose layer3 and layer4 keep stride 1 and dilate by 2 and 4 (the first
    block of each at dilation 1), classifier a Linear layer."""

    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.out_dim = 512 * block.expansion
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], dilation=2)
        self.layer4 = self._make_layer(block, 512, layers[3], dilation=4)
        self.avgpool = nn.AvgPool2d(28)
        self.fc = nn.Linear(self.out_dim, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1, dilation=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [
            block(self.inplanes, planes, dilation=(dilation, dilation)) for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)


def official_drn(name: str, num_classes: int = 1000) -> nn.Module:
    if name == "drn_a_50":
        return OfficialDRNA(DrnBottleneck, [3, 4, 6, 3], num_classes)
    table = {
        "drn_c_26": (DrnBasicBlock, [1, 1, 2, 2, 2, 2, 1, 1], "C"),
        "drn_c_42": (DrnBasicBlock, [1, 1, 3, 4, 6, 3, 1, 1], "C"),
        "drn_c_58": (DrnBottleneck, [1, 1, 3, 4, 6, 3, 1, 1], "C"),
        "drn_d_22": (DrnBasicBlock, [1, 1, 2, 2, 2, 2, 1, 1], "D"),
        "drn_d_24": (DrnBasicBlock, [1, 1, 2, 2, 2, 2, 2, 2], "D"),
        "drn_d_38": (DrnBasicBlock, [1, 1, 3, 4, 6, 3, 1, 1], "D"),
        "drn_d_54": (DrnBottleneck, [1, 1, 3, 4, 6, 3, 1, 1], "D"),
        "drn_d_105": (DrnBottleneck, [1, 1, 3, 4, 23, 3, 1, 1], "D"),
    }
    return OfficialDRN(*table[name], num_classes=num_classes)


class OfficialDRNSeg(nn.Module):
    """The DRN segmentation model: ``base`` (the classifier's children minus pool and fc),
    ``seg`` (1x1 conv) and ``up`` (a fixed bilinear transposed conv, x8)."""

    def __init__(self, name: str, classes: int, use_torch_up: bool = False):
        super().__init__()
        drn = official_drn(name)
        self.base = nn.Sequential(*list(drn.children())[:-2])
        self.seg = nn.Conv2d(drn.out_dim, classes, 1, bias=True)
        if use_torch_up:
            self.up = nn.UpsamplingBilinear2d(scale_factor=8)
        else:
            self.up = nn.ConvTranspose2d(
                classes, classes, 16, stride=8, padding=4, groups=classes, bias=False
            )
            fill_bilinear(self.up.weight)
            self.up.weight.requires_grad_(False)

    def forward(self, x):
        return self.up(self.seg(self.base(x)))


def fill_bilinear(weight: torch.Tensor) -> None:
    """The bilinear-interpolation kernel of a transposed conv, in every (group) channel."""
    size = weight.shape[-1]
    factor = math.ceil(size / 2)
    centre = (2 * factor - 1 - factor % 2) / (2.0 * factor)
    coords = torch.arange(size, dtype=torch.float64)
    profile = 1 - (coords / factor - centre).abs()
    with torch.no_grad():
        weight.copy_((profile[:, None] * profile[None, :]).to(weight.dtype).expand_as(weight))
