"""A user-defined model that rlprune loads from its spec string alone.

Use it as ``--model examples/custom_model.py:build`` (or
``rlprune.models.specs.build_model("examples/custom_model.py:build", ...)``). The factory takes
any of ``in_channels``, ``num_classes`` and ``input_size``; rlprune passes the ones it
accepts. The network mixes the two structures pruning must keep consistent:

- a residual block, whose two convolutions feeding the add must keep the same channels;
- a depthwise-separable block, whose depthwise conv must keep its input's channels.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + x)


class DepthwiseSeparable(nn.Module):
    """A 3x3 depthwise conv-BN-ReLU followed by a 1x1 pointwise conv-BN-ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, 3, stride, padding=1, groups=in_channels, bias=False
        )
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.depthwise(x)))
        return self.relu2(self.bn2(self.pointwise(x)))


class CustomNet(nn.Module):
    """Stem conv, a residual block, a depthwise-separable block, pooling, linear."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.residual = ResidualBlock(width)
        self.separable = DepthwiseSeparable(width, 2 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.separable(self.residual(self.stem(x)))
        return self.fc(self.flatten(self.pool(x)))


def build(in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """Return a :class:`CustomNet` for ``in_channels``-channel images and ``num_classes``.

    ``input_size`` is accepted but unused: global pooling makes the net size-agnostic.
    """
    return CustomNet(in_channels, num_classes)
