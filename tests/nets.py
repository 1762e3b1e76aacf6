"""Small networks with the structures of torchvision's CNNs, for the architecture tests.

Each factory takes ``(in_channels, num_classes, input_size)`` keywords, as a model spec
``tests/nets.py:NAME`` does, and returns an untrained network.
"""

from __future__ import annotations

import torch
from torch import nn


def _cbr(cin: int, cout: int, k: int = 3, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class _Head(nn.Module):
    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


class GroupedAfterConcat(nn.Module):
    """Two branches concatenated, then a grouped conv (ResNeXt/RegNet's grouped 3x3)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, **_: object) -> None:
        super().__init__()
        self.a = _cbr(in_channels, 16)
        self.b = _cbr(in_channels, 16)
        self.grouped = _cbr(32, 32, groups=4)
        self.mix = _cbr(32, 24, k=1)
        self.head = _Head(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        return self.head(self.mix(self.grouped(y)))


class GroupedAfterStridedConcat(nn.Module):
    """A strided conv concatenated with two branches computed from it, then a grouped conv
    (``groups=2``): the strided conv's channels are one of the grouped conv's two groups,
    so no unit of the concat can be pruned alone (issue 38)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, **_: object) -> None:
        super().__init__()
        self.stem = _cbr(in_channels, 8)
        self.down = nn.Sequential(
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.left = _cbr(16, 8)
        self.right = _cbr(16, 8, k=1)
        self.grouped = _cbr(32, 32, groups=2)
        self.head = _Head(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(self.stem(x))
        return self.head(self.grouped(torch.cat([x, self.left(x), self.right(x)], dim=1)))


class ResNeXtBlock(nn.Module):
    """A bottleneck whose 3x3 is grouped, with an identity shortcut."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, **_: object) -> None:
        super().__init__()
        self.stem = _cbr(in_channels, 32)
        self.reduce = _cbr(32, 32, k=1)
        self.grouped = _cbr(32, 32, groups=8)
        self.expand = nn.Sequential(nn.Conv2d(32, 32, 1, bias=False), nn.BatchNorm2d(32))
        self.head = _Head(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(torch.relu(x + self.expand(self.grouped(self.reduce(x)))))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: a 5-D view, a transpose, a flatten."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


class ShuffleBlock(nn.Module):
    """ShuffleNetV2's stride-1 unit: split, one branch convolved, concat, shuffle."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, **_: object) -> None:
        super().__init__()
        self.stem = _cbr(in_channels, 16)
        self.branch = nn.Sequential(
            _cbr(8, 12, k=1),
            nn.Conv2d(12, 12, 3, padding=1, groups=12, bias=False),
            nn.BatchNorm2d(12),
            _cbr(12, 8, k=1),
        )
        self.tail = _cbr(16, 16, k=1)
        self.head = _Head(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x1, x2 = x.chunk(2, dim=1)
        x = channel_shuffle(torch.cat([x1, self.branch(x2)], dim=1), 2)
        return self.head(self.tail(x))


class SqueezeExcite(nn.Module):
    """A conv with a squeeze-and-excitation gate (MobileNetV3/EfficientNet/RegNetY)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, **_: object) -> None:
        super().__init__()
        self.conv = _cbr(in_channels, 16)
        self.squeeze = nn.Conv2d(16, 4, 1)
        self.excite = nn.Conv2d(4, 16, 1)
        self.out = _cbr(16, 16)
        self.head = _Head(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        gate = torch.sigmoid(self.excite(torch.relu(self.squeeze(x.mean((2, 3), keepdim=True)))))
        return self.head(self.out(x * gate))


class DenseBlock(nn.Module):
    """DenseNet: every layer reads the concat of all earlier outputs."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, **_: object) -> None:
        super().__init__()
        self.stem = _cbr(in_channels, 8)
        self.layers = nn.ModuleList([_cbr(8 + 6 * i, 6) for i in range(3)])
        self.transition = nn.Sequential(
            nn.BatchNorm2d(26), nn.ReLU(), nn.Conv2d(26, 12, 1, bias=False)
        )
        self.head = _Head(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return self.head(self.transition(torch.cat(features, dim=1)))


class Inception(nn.Module):
    """GoogLeNet's inception module: four branches concatenated."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, **_: object) -> None:
        super().__init__()
        self.stem = _cbr(in_channels, 16)
        self.b1 = _cbr(16, 8, k=1)
        self.b2 = nn.Sequential(_cbr(16, 8, k=1), _cbr(8, 12))
        self.b3 = nn.Sequential(_cbr(16, 4, k=1), _cbr(4, 6, k=5))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), _cbr(16, 6, k=1))
        self.out = _cbr(32, 16)
        self.head = _Head(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)
        return self.head(self.out(x))


class LayerScale(nn.Module):
    """ConvNeXt's block: depthwise 7x7, pointwise MLP, a learned per-channel scale."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, **_: object) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 7, padding=3, groups=16)
        self.up = nn.Conv2d(16, 48, 1)
        self.down = nn.Conv2d(48, 16, 1)
        self.gamma = nn.Parameter(torch.full((16, 1, 1), 0.5))
        self.head = _Head(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.gamma * self.down(torch.nn.functional.gelu(self.up(self.dw(x))))
        return self.head(x)


STRUCTURES = {
    "grouped_after_concat": GroupedAfterConcat,
    "grouped_after_strided_concat": GroupedAfterStridedConcat,
    "resnext_block": ResNeXtBlock,
    "channel_shuffle": ShuffleBlock,
    "squeeze_excite": SqueezeExcite,
    "dense_concat": DenseBlock,
    "inception": Inception,
    "layer_scale": LayerScale,
}


def shuffle_net(in_channels: int = 1, num_classes: int = 10, **kwargs: object) -> nn.Module:
    """Model spec factory: a network with a channel shuffle (some layers stay frozen)."""
    return ShuffleBlock(in_channels, num_classes)


def dense_net(in_channels: int = 1, num_classes: int = 10, **kwargs: object) -> nn.Module:
    """Model spec factory: a dense block (every layer reads all earlier outputs)."""
    return DenseBlock(in_channels, num_classes)


def grouped_after_strided_concat(
    in_channels: int = 1, num_classes: int = 10, **kwargs: object
) -> nn.Module:
    """Model spec factory: a grouped conv after a concat of a strided conv and two branches."""
    return GroupedAfterStridedConcat(in_channels, num_classes)
