"""The bundled architectures, registered by name in :data:`MODELS` (``torchvision`` builds
any of torchvision's classification networks by name, see :mod:`.torchvision_zoo`).

Every factory takes ``in_channels``, ``num_classes`` and ``input_size`` (height =
width) among its keyword arguments (see :func:`rlprune.models.specs.build_model`).

The zoo's CNNs put a BatchNorm after every convolution, use activation *modules*
(``nn.ReLU`` / ``nn.ReLU6``, never the functional form, so pruning and tracing see them)
and end with an ``nn.Linear`` named ``classifier``, the last module executed. The
transformers (:data:`TRANSFORMERS`) are torchvision's class as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from ..errors import ModelError

__all__ = [
    "MOBILENETV2_SMALL_CFG",
    "MODELS",
    "TRANSFORMERS",
    "GHOSTNET_SMALL_CFG",
    "BasicBlock",
    "ConvClassifier",
    "ConvMixerBlock",
    "GhostBottleneck",
    "GhostModule",
    "SqueezeExcite",
    "InvertedResidual",
    "XBlock",
    "ResNet",
    "convmixer",
    "digits_cnn",
    "ghostnet",
    "mobilenetv2",
    "regnet",
    "resnet",
    "resnet20",
    "torchvision",
    "vgg",
    "vit",
]

# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper,
# shortened for 28x28 inputs: three stride-2 stages take 28 -> 14 -> 7 -> 4. The first
# block already downsamples because a 6x expansion at full 28x28 resolution costs ~8x the
# CPU time of the whole rest of the net (the tests and the RL loop run on 2 CPU cores).
MOBILENETV2_SMALL_CFG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 2),
    (6, 24, 2, 2),
    (6, 32, 2, 2),
    (6, 64, 2, 1),
    (6, 96, 1, 1),
)


# ------------------------------------------------------------------------- models


def _conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1
) -> list[nn.Module]:
    return [
        nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class ConvClassifier(nn.Module):
    """A convolutional body, global average pooling, then the ``classifier`` Linear."""

    def __init__(
        self, features: nn.Module, feature_channels: int, num_classes: int, hidden: int = 0
    ) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head: nn.Module = (
            nn.Sequential(nn.Linear(feature_channels, hidden), nn.ReLU(inplace=True))
            if hidden > 0
            else nn.Identity()
        )
        self.classifier = nn.Linear(hidden if hidden > 0 else feature_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.head(self.flatten(self.pool(self.features(x)))))
        return logits


def digits_cnn(
    in_channels: int = 1, num_classes: int = 10, input_size: int = 8, width: int = 32
) -> nn.Module:
    """A small plain CNN for 8x8 digits: three conv-BN-ReLU layers, one 2x2 max-pool.

    ``conv(c->w) conv(w->2w) maxpool conv(2w->2w) avgpool linear``. Works for any
    ``input_size`` >= 2 (``input_size`` is accepted for a uniform factory signature).
    """
    _check_positive(in_channels=in_channels, num_classes=num_classes, width=width)
    features = nn.Sequential(
        *_conv_bn_relu(in_channels, width),
        *_conv_bn_relu(width, 2 * width),
        nn.MaxPool2d(2),
        *_conv_bn_relu(2 * width, 2 * width),
    )
    return ConvClassifier(features, 2 * width, num_classes)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """A residual block's shortcut: identity, or a 1x1 conv + BN projection when the shape
    changes."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, a 1x1 conv-BN shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        result: torch.Tensor = self.relu2(out + self.shortcut(x))
        return result


class ResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016): stem, three stages of BasicBlocks, linear."""

    def __init__(self, in_channels: int, num_classes: int, depth: int, width: int) -> None:
        super().__init__()
        blocks_per_stage = (depth - 2) // 6
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, width))
        stages: list[nn.Module] = []
        channels = width
        for stage, stage_width in enumerate((width, 2 * width, 4 * width)):
            blocks: list[nn.Module] = []
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(BasicBlock(channels, stage_width, stride))
                channels = stage_width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        logits: torch.Tensor = self.classifier(self.flatten(self.pool(x)))
        return logits


def resnet(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    depth: int = 20,
    width: int = 16,
) -> nn.Module:
    """CIFAR-style ResNet of ``depth = 6n + 2`` layers and stage widths ``w, 2w, 4w``.

    Downsampling blocks (stride 2) use a 1x1 conv + BN shortcut (option B).

    Raises:
        ModelError: ``depth`` is not of the form 6n + 2.
    """
    _check_positive(in_channels=in_channels, num_classes=num_classes, width=width)
    if depth < 8 or (depth - 2) % 6 != 0:
        raise ModelError(
            f"resnet depth={depth} is invalid; use 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56)"
        )
    return ResNet(in_channels, num_classes, depth, width)


resnet20 = partial(resnet, depth=20)


def vgg(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    cfg: Sequence[int | str] = (32, 32, "M", 64, 64, "M", 128, 128, "M"),
    hidden: int = 0,
) -> nn.Module:
    """VGG-style plain net: conv-BN-ReLU layers (ints in ``cfg``) and 2x2 max-pools (``"M"``).

    Max-pools that would shrink the feature map below 1x1 are skipped, so one ``cfg``
    serves 8x8 and 28x28 inputs. ``hidden > 0`` adds a Linear-ReLU before the classifier.

    Raises:
        ModelError: ``cfg`` holds something other than positive ints and ``"M"``.
    """
    _check_positive(in_channels=in_channels, num_classes=num_classes)
    layers: list[nn.Module] = []
    channels, size = in_channels, int(input_size)
    for item in cfg:
        if item == "M":
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        elif isinstance(item, int) and not isinstance(item, bool) and item > 0:
            layers += _conv_bn_relu(channels, item)
            channels = item
        else:
            raise ModelError(
                f"vgg cfg entry {item!r} is invalid; use positive ints (conv widths) and 'M'"
            )
    if not any(isinstance(m, nn.Conv2d) for m in layers):
        raise ModelError(f"vgg cfg {tuple(cfg)!r} has no conv layer; add at least one width")
    return ConvClassifier(nn.Sequential(*layers), channels, num_classes, hidden=hidden)


def _make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection (+ residual)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [
                nn.Conv2d(in_channels, hidden, 1, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=True),
            ]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.block(x)
        return x + out if self.use_residual else out


def mobilenetv2(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 28,
    width_mult: float = 1.0,
    cfg: Sequence[tuple[int, int, int, int]] = MOBILENETV2_SMALL_CFG,
    stem_channels: int = 16,
    last_channels: int = 256,
) -> nn.Module:
    """A small MobileNetV2 (Sandler et al. 2018) for 28x28-class inputs.

    ``cfg`` rows are ``(expansion, out_channels, repeats, first_stride)``; channel counts
    are scaled by ``width_mult`` and rounded to multiples of 8. Stem conv (stride 1),
    inverted-residual blocks, a final 1x1 conv-BN-ReLU6, average pool, linear.
    """
    _check_positive(in_channels=in_channels, num_classes=num_classes)
    if width_mult <= 0:
        raise ModelError(f"mobilenetv2 width_mult={width_mult} is invalid; use a value > 0")
    channels = _make_divisible(stem_channels * width_mult)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, channels, 3, 1, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU6(inplace=True),
    ]
    for expansion, out, repeats, stride in cfg:
        out_channels = _make_divisible(out * width_mult)
        for i in range(repeats):
            layers.append(
                InvertedResidual(channels, out_channels, stride if i == 0 else 1, expansion)
            )
            channels = out_channels
    last = _make_divisible(last_channels * max(1.0, width_mult))
    layers += [
        nn.Conv2d(channels, last, 1, bias=False),
        nn.BatchNorm2d(last),
        nn.ReLU6(inplace=True),
    ]
    return ConvClassifier(nn.Sequential(*layers), last, num_classes)


def mobilenetv1(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 28,
    cfg: Sequence[tuple[int, int]] = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1)),
    stem_channels: int = 16,
    pad_to: int = 0,
) -> nn.Module:
    """A small MobileNetV1 (Howard et al. 2017): a 3x3 stem, then depthwise-separable
    blocks (3x3 depthwise conv-BN-ReLU, 1x1 pointwise conv-BN-ReLU), no residual adds.

    ``cfg`` rows are ``(out_channels, stride)`` of each block's pointwise conv and
    depthwise conv. Works for any ``input_size`` >= 4. ``pad_to`` zero-pads the images
    first (28 -> 32 px).
    """
    _check_positive(in_channels=in_channels, num_classes=num_classes, stem_channels=stem_channels)
    if not cfg:
        raise ModelError("mobilenetv1 cfg is empty; give at least one (out_channels, stride)")
    layers: list[nn.Module] = _conv_bn_relu(in_channels, stem_channels)
    channels = stem_channels
    for out, stride in cfg:
        _check_positive(out_channels=out, stride=stride)
        layers += [
            nn.Conv2d(channels, channels, 3, stride, padding=1, groups=channels, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            *_conv_bn_relu(channels, out, 1),
        ]
        channels = out
    return ConvClassifier(
        nn.Sequential(*_padded(layers, input_size, pad_to)), channels, num_classes
    )


class XBlock(nn.Module):
    """RegNetX block (Radosavovic et al. 2020): 1x1 conv, 3x3 grouped conv (``group_width``
    channels per group, carrying the stride), 1x1 conv, each with BN; a residual add, with a
    1x1 conv + BN projection when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, group_width: int) -> None:
        super().__init__()
        groups = max(1, out_channels // group_width)
        self.block = nn.Sequential(
            *_conv_bn_relu(in_channels, out_channels, 1),
            nn.Conv2d(out_channels, out_channels, 3, stride, padding=1, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.relu(self.block(x) + self.shortcut(x))
        return out


def regnet(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 28,
    widths: Sequence[int] = (24, 48, 96),
    depths: Sequence[int] = (1, 2, 2),
    group_width: int = 8,
    stem_channels: int = 16,
) -> nn.Module:
    """A small RegNetX: a 3x3 stem (stride 1) and one stage of :class:`XBlock` per width, the
    first block of each stage with stride 2 (28 -> 14 -> 7 -> 4); grouped 3x3 convs of
    ``group_width`` channels per group.

    Raises:
        ModelError: ``widths`` and ``depths`` differ in length, or a width is not a multiple
            of ``group_width``.
    """
    _check_positive(
        in_channels=in_channels,
        num_classes=num_classes,
        group_width=group_width,
        stem_channels=stem_channels,
    )
    if len(widths) != len(depths) or not widths:
        raise ModelError(
            f"regnet widths {tuple(widths)} and depths {tuple(depths)} must be non-empty and "
            "the same length (one entry per stage)"
        )
    for width, depth in zip(widths, depths, strict=True):
        _check_positive(width=width, depth=depth)
        if width % group_width:
            raise ModelError(
                f"regnet width {width} is not a multiple of group_width={group_width}; "
                "use widths divisible by it"
            )
    layers: list[nn.Module] = _conv_bn_relu(in_channels, stem_channels)
    channels = stem_channels
    for width, depth in zip(widths, depths, strict=True):
        for i in range(depth):
            layers.append(XBlock(channels, width, 2 if i == 0 else 1, group_width))
            channels = width
    return ConvClassifier(nn.Sequential(*layers), channels, num_classes)


def _padded(layers: list[nn.Module], input_size: int, pad_to: int) -> list[nn.Module]:
    """``layers`` behind a zero padding of ``input_size`` images to ``pad_to`` (centred;
    nothing when ``pad_to`` <= ``input_size``): how 28 px images reach 32 px stems."""
    extra = pad_to - input_size
    if extra <= 0:
        return layers
    return [nn.ZeroPad2d((extra // 2, extra - extra // 2, extra // 2, extra - extra // 2)), *layers]


class ConvMixerBlock(nn.Module):
    """ConvMixer layer (Trockman & Kolter 2022): a residual depthwise ``kernel`` x ``kernel``
    conv-BN-ReLU (spatial mixing), then a pointwise conv-BN-ReLU (channel mixing)."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.spatial = nn.Sequential(
            nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
        )
        self.channel = nn.Sequential(*_conv_bn_relu(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.channel(x + self.spatial(x))
        return out


def convmixer(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 28,
    dim: int = 128,
    depth: int = 6,
    kernel: int = 7,
    patch: int = 2,
    pad_to: int = 0,
) -> nn.Module:
    """A small ConvMixer: a ``patch`` x ``patch`` patch embedding (stride ``patch``), then
    ``depth`` isotropic :class:`ConvMixerBlock` layers of width ``dim``, average pool, linear.
    ``pad_to`` zero-pads the images first (28 -> 32 px); the family has no downsampling
    after the stem, so every layer runs at one resolution.

    Raises:
        ModelError: a size is not a positive int, or ``kernel`` is even.
    """
    _check_positive(
        in_channels=in_channels, num_classes=num_classes, dim=dim, depth=depth, patch=patch
    )
    _check_positive(kernel=kernel)
    if kernel % 2 == 0:
        raise ModelError(f"convmixer kernel={kernel} is even; use an odd kernel size")
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, dim, patch, patch, bias=False),
        nn.BatchNorm2d(dim),
        nn.ReLU(inplace=True),
    ]
    layers += [ConvMixerBlock(dim, kernel) for _ in range(depth)]
    return ConvClassifier(nn.Sequential(*_padded(layers, input_size, pad_to)), dim, num_classes)


class SqueezeExcite(nn.Module):
    """Squeeze-excite gate (Hu et al. 2018): average pool, 1x1 conv down to ``channels //
    reduction``, ReLU, 1x1 conv back, hard sigmoid; scales the input channel-wise. Its convs
    act on pooled 1x1 maps and have no BatchNorm."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Hardsigmoid(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x * self.gate(x)
        return out


class GhostModule(nn.Module):
    """Ghost module (Han et al. 2020): a 1x1 primary conv makes half the output channels, a
    cheap depthwise 3x3 conv of those makes the other half; the two are concatenated."""

    def __init__(self, in_channels: int, out_channels: int, relu: bool = True) -> None:
        super().__init__()
        if out_channels % 2:
            raise ModelError(f"ghost module out_channels={out_channels} is odd; use even")
        half = out_channels // 2
        act: list[nn.Module] = [nn.ReLU(inplace=True)] if relu else []
        self.primary = nn.Sequential(
            nn.Conv2d(in_channels, half, 1, bias=False), nn.BatchNorm2d(half), *act
        )
        self.cheap = nn.Sequential(
            nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False),
            nn.BatchNorm2d(half),
            *[nn.ReLU(inplace=True)] * relu,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        primary = self.primary(x)
        return torch.cat([primary, self.cheap(primary)], dim=1)


class GhostBottleneck(nn.Module):
    """Ghost bottleneck: ghost module (expand to ``hidden``), a depthwise ``kernel`` conv
    carrying the stride (when 2), squeeze-excite (when ``se``), a linear ghost module to
    ``out_channels``; a residual add, through a depthwise + 1x1 projection when the shape
    changes."""

    def __init__(
        self, in_channels: int, hidden: int, out_channels: int, kernel: int, stride: int, se: bool
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [GhostModule(in_channels, hidden)]
        if stride > 1:
            layers += [
                nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
                nn.BatchNorm2d(hidden),
            ]
        if se:
            layers.append(SqueezeExcite(hidden))
        layers.append(GhostModule(hidden, out_channels, relu=False))
        self.block = nn.Sequential(*layers)
        self.shortcut: nn.Module = nn.Identity()
        if stride > 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(
                    in_channels,
                    in_channels,
                    kernel,
                    stride,
                    kernel // 2,
                    groups=in_channels,
                    bias=False,
                ),
                nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.block(x) + self.shortcut(x)
        return out


GHOSTNET_SMALL_CFG: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 16, 16, 0, 1),
    (3, 48, 24, 0, 2),
    (3, 72, 24, 0, 1),
    (5, 72, 40, 1, 2),
    (5, 120, 40, 1, 1),
    (3, 240, 80, 0, 2),
    (3, 200, 80, 0, 1),
    (3, 480, 112, 1, 1),
)
"""GhostNet's first eight bottlenecks as ``(kernel, hidden, out, se, stride)`` (Han et al.
2020, Table 1), three stride-2 stages for 28-32 px inputs (32 -> 16 -> 8 -> 4)."""


def ghostnet(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 28,
    cfg: Sequence[tuple[int, int, int, int, int]] = GHOSTNET_SMALL_CFG,
    width_mult: float = 1.0,
    stem_channels: int = 16,
    last_channels: int = 320,
    pad_to: int = 0,
) -> nn.Module:
    """A small GhostNet: a 3x3 stem (stride 1), :class:`GhostBottleneck` rows of ``cfg``
    (``(kernel, hidden, out, se, stride)``, widths scaled by ``width_mult`` to multiples of
    4), a final 1x1 conv-BN-ReLU, average pool, linear. ``pad_to`` zero-pads the images
    first (28 -> 32 px).

    Raises:
        ModelError: ``cfg`` is empty or ``width_mult`` is not positive.
    """
    _check_positive(in_channels=in_channels, num_classes=num_classes)
    if width_mult <= 0 or not cfg:
        raise ModelError(
            f"ghostnet needs width_mult > 0 and a non-empty cfg, got {width_mult}, {cfg!r}"
        )
    channels = _make_divisible(stem_channels * width_mult, 4)
    layers: list[nn.Module] = _conv_bn_relu(in_channels, channels)
    for kernel, hidden, out, se, stride in cfg:
        out_channels = _make_divisible(out * width_mult, 4)
        hidden_channels = _make_divisible(hidden * width_mult, 4)
        layers.append(
            GhostBottleneck(channels, hidden_channels, out_channels, kernel, stride, bool(se))
        )
        channels = out_channels
    last = _make_divisible(last_channels * width_mult, 8)
    layers += _conv_bn_relu(channels, last, 1)
    return ConvClassifier(nn.Sequential(*_padded(layers, input_size, pad_to)), last, num_classes)


def torchvision(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    name: str = "resnet18",
    **kwargs: Any,
) -> nn.Module:
    """torchvision's classification network ``name`` with random weights, behind a thin
    adapter for grey or small images (:func:`rlprune.models.torchvision_zoo.torchvision_net`;
    ``kwargs`` are torchvision's own constructor arguments)."""
    from .torchvision_zoo import torchvision_net  # torchvision is optional: imported when used

    return torchvision_net(
        name, in_channels=in_channels, num_classes=num_classes, input_size=input_size, **kwargs
    )


def vit(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 28,
    patch_size: int = 4,
    depth: int = 4,
    heads: int = 4,
    dim: int = 64,
    mlp_dim: int = 128,
) -> nn.Module:
    """A small vision transformer: torchvision's ``VisionTransformer`` class (``depth``
    encoder blocks of ``nn.MultiheadAttention`` with ``heads`` heads and an MLP of
    ``mlp_dim``, embedding ``dim``, a class token) on ``patch_size`` patches of
    ``in_channels``-channel images.

    Raises:
        ModelError: torchvision is not installed, or the sizes do not fit (``input_size`` a
            multiple of ``patch_size``, ``dim`` of ``heads``).
    """
    _check_positive(
        in_channels=in_channels,
        num_classes=num_classes,
        patch_size=patch_size,
        depth=depth,
        heads=heads,
        dim=dim,
        mlp_dim=mlp_dim,
    )
    if input_size % patch_size or dim % heads:
        raise ModelError(
            f"vit: input_size {input_size} must be a multiple of patch_size {patch_size} and "
            f"dim {dim} of heads {heads}"
        )
    from .vision import torchvision_models  # torchvision only when a ViT is built

    model: nn.Module = torchvision_models().VisionTransformer(
        image_size=input_size,
        patch_size=patch_size,
        num_layers=depth,
        num_heads=heads,
        hidden_dim=dim,
        mlp_dim=mlp_dim,
        num_classes=num_classes,
    )
    # torchvision's patch embedding takes RGB; same init, other input channels
    conv = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
    fan_in = in_channels * patch_size * patch_size
    nn.init.trunc_normal_(conv.weight, std=(1.0 / fan_in) ** 0.5)
    assert conv.bias is not None
    nn.init.zeros_(conv.bias)
    model.conv_proj = conv
    return model


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"{name}={value!r} is invalid; use a positive int")


#: Built-in model factories by spec name.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "digits-cnn": digits_cnn,
    "resnet20": resnet20,
    "resnet": resnet,
    "vgg": vgg,
    "mobilenetv1": mobilenetv1,
    "mobilenetv2": mobilenetv2,
    "regnet": regnet,
    "convmixer": convmixer,
    "ghostnet": ghostnet,
    "torchvision": torchvision,
    "vit": vit,
}

TRANSFORMERS: tuple[str, ...] = ("vit",)
"""The zoo's transformers (the other models are CNNs)."""
