"""A four-stage CNN small enough to train in seconds on a CPU."""

from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class TinyCNN(nn.Module):
    """Four stride-2 conv stages of growing width; returns the output of each."""

    def __init__(self, width: int = 16, in_channels: int = 3):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        widths = [width, width * 2, width * 4, width * 8]
        self.stages = nn.ModuleList()
        previous = in_channels
        for channels in widths:
            self.stages.append(conv_bn_relu(previous, channels, stride=2))
            previous = channels
        self.out_channels = widths
        self.strides = [2, 4, 8, 16]

    def forward(self, x):
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
