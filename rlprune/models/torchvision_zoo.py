"""The torchvision zoo: classification networks nobody here designed, on Fashion-MNIST.

:data:`ZOO` lists torchvision networks from distinct families (none of them in the general
policy's training family, which is this project's own ResNets and RegNet), each tagged with
its family and the structures that make it hard to prune (grouped convolutions, channel
shuffle, squeeze-excite, dense concatenation, inception branches, ...). Each is built by
torchvision's own constructor (``torchvision.models.get_model``: random weights, 10
classes, no auxiliary heads; nothing of the network changed) behind :class:`InputAdapter`,
a thin module that turns a Fashion-MNIST batch (1 x 28 x 28) into what torchvision's stems
take: the grey channel repeated into three, zero-padded to 32 x 32 (zero is the mean grey
of the standardised images). The adapter has no weights and no MACs.

The env presets ``envs/zoo-*.yaml`` name them (``model: torchvision``, ``model_kwargs:
{name: resnet18}``) with their training settings and their weights in rlprune's cache
folder (``weights: cache:zoo/NAME.pt``), made by ``python experiments/zoo.py train``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .vision import torchvision_models

__all__ = [
    "STRUCTURES",
    "ZOO",
    "InputAdapter",
    "ZooNet",
    "preset_name",
    "torchvision_net",
    "weights_name",
    "zoo_net",
]

STRUCTURES: dict[str, str] = {
    "residual": "residual adds",
    "grouped": "grouped convolutions (more than one channel per group)",
    "depthwise": "depthwise convolutions",
    "shuffle": "channel shuffle (and channel split)",
    "se": "squeeze-excite",
    "dense": "dense concatenation",
    "inception": "inception branches (concatenated)",
    "fire": "fire modules (squeeze, then two concatenated expand branches)",
    "layernorm": "LayerNorm, no BatchNorm",
    "plain": "a plain stack, no branches",
}
"""The structure tags of :class:`ZooNet`, and what each means."""


@dataclass(frozen=True)
class ZooNet:
    """One network of the zoo."""

    name: str
    """torchvision's name for it (``torchvision.models.get_model``)."""
    family: str
    """Its architecture family (one per network in the zoo)."""
    structures: tuple[str, ...]
    """What it is built of (keys of :data:`STRUCTURES`)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Constructor arguments besides ``num_classes`` and ``weights`` (torchvision's own)."""

    @property
    def preset(self) -> str:
        """Its env preset's name."""
        return preset_name(self.name)


ZOO: dict[str, ZooNet] = {
    net.name: net
    for net in (
        ZooNet("resnet18", "resnet", ("residual",)),
        ZooNet("resnext50_32x4d", "resnext", ("residual", "grouped")),
        ZooNet("mobilenet_v2", "mobilenet-v2", ("residual", "depthwise")),
        ZooNet("mobilenet_v3_small", "mobilenet-v3", ("residual", "depthwise", "se")),
        ZooNet("efficientnet_b0", "efficientnet", ("residual", "depthwise", "se")),
        ZooNet("regnet_y_400mf", "regnet", ("residual", "grouped", "se")),
        ZooNet("shufflenet_v2_x0_5", "shufflenet-v2", ("depthwise", "shuffle")),
        ZooNet("mnasnet1_0", "mnasnet", ("residual", "depthwise")),
        ZooNet("squeezenet1_1", "squeezenet", ("fire",)),
        ZooNet("densenet121", "densenet", ("dense",)),
        ZooNet(
            "googlenet", "googlenet", ("inception",), {"aux_logits": False, "init_weights": True}
        ),
        ZooNet("convnext_tiny", "convnext", ("residual", "depthwise", "layernorm")),
        ZooNet("vgg11_bn", "vgg", ("plain",)),
    )
}
"""The zoo, by torchvision name."""


def preset_name(name: str) -> str:
    """The env preset of zoo network ``name`` (``mobilenet_v2`` -> ``zoo-mobilenet-v2``)."""
    return "zoo-" + name.replace("_", "-")


def weights_name(name: str) -> str:
    """Where the zoo network's weights lie, as a preset names them (``cache:zoo/NAME.pt``)."""
    return f"cache:zoo/{name}.pt"


def zoo_net(name: str) -> ZooNet:
    """The zoo's entry for ``name`` (a torchvision name or its preset name).

    Raises:
        ModelError: ``name`` is not in the zoo (one line, listing the zoo).
    """
    for net in ZOO.values():
        if name in (net.name, net.preset):
            return net
    raise ModelError(f"{name!r} is not in the torchvision zoo; choose one of: {', '.join(ZOO)}")


class InputAdapter(nn.Module):
    """Grey or small images to what torchvision's stems take: ``in_channels`` = 1 repeated
    into ``channels``, ``input_size`` zero-padded (centred) to ``size``. No weights, no MACs;
    fixed at construction, so tracing (TorchScript export) sees no data-dependent branch."""

    def __init__(
        self, in_channels: int = 1, input_size: int = 28, channels: int = 3, size: int = 32
    ) -> None:
        super().__init__()
        self.repeat = channels if in_channels == 1 and channels != 1 else 0
        before = max(0, size - input_size) // 2
        after = max(0, size - input_size) - before
        self.padding = (before, after, before, after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.repeat:
            x = x.expand(-1, self.repeat, -1, -1)
        if any(self.padding):
            x = F.pad(x, self.padding)
        return x

    def extra_repr(self) -> str:
        return f"repeat={self.repeat}, padding={self.padding}"


class Adapted(nn.Module):
    """A torchvision network (``net``, unchanged) behind an :class:`InputAdapter`."""

    def __init__(self, net: nn.Module, adapter: InputAdapter) -> None:
        super().__init__()
        self.adapt = adapter
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(self.adapt(x))
        return out


def torchvision_net(
    name: str = "resnet18",
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    size: int = 32,
    **kwargs: Any,
) -> nn.Module:
    """torchvision's network ``name`` (random weights, ``num_classes`` outputs, its own
    constructor arguments ``kwargs``, e.g. ``width_mult``) for ``in_channels`` x
    ``input_size`` images: behind an :class:`InputAdapter` to 3 channels and ``size``
    pixels when they are grey (1 channel) or smaller than ``size``. A zoo network gets the
    zoo's constructor arguments (:attr:`ZooNet.kwargs`) unless ``kwargs`` names them.

    Raises:
        ModelError: torchvision is not installed, has no model ``name`` (one line naming
            the version and the fix), or ``in_channels`` is neither 1 nor 3.
    """
    if in_channels not in (1, 3):
        raise ModelError(
            f"torchvision networks take 3-channel images (or grey ones, repeated), not "
            f"{in_channels} channels; use a dataset of 1- or 3-channel images"
        )
    models = torchvision_models()
    available = models.list_models(module=models)
    if name not in available:
        version = _torchvision_version()
        raise ModelError(
            f"torchvision {version} has no classification model {name!r}; use one of "
            f"torchvision.models.list_models() (such as {', '.join(ZOO)}), or a torchvision "
            "that has it (pip install -U torchvision)"
        )
    arguments = {**(ZOO[name].kwargs if name in ZOO else {}), **kwargs}
    try:
        net: nn.Module = models.get_model(name, weights=None, num_classes=num_classes, **arguments)
    except TypeError as exc:
        raise ModelError(
            f"torchvision's {name} does not take {sorted(arguments)}: {exc}; pass only its "
            "constructor's arguments in model_kwargs"
        ) from None
    if in_channels == 3 and input_size >= size:
        return net
    return Adapted(net, InputAdapter(in_channels, input_size, 3, size))


def _torchvision_version() -> str:
    try:
        from importlib.metadata import version

        return version("torchvision")
    except Exception:  # not installed as a distribution
        return "(unknown version)"
