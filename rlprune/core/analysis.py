"""Analyse a network once: its prunable units in forward order and its MACs model."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from ..errors import ModelError
from .budget import MacModel
from .prune import PRUNABLE_TYPES, build_graph, iter_groups, prune

__all__ = ["ModelAnalysis", "PrunableUnit", "analyse"]


@dataclass(frozen=True)
class PrunableUnit:
    """One dependency group: channels that must be kept or removed together."""

    index: int
    name: str
    """Qualified name of the unit's first conv/linear layer in forward order."""
    modules: tuple[str, ...]
    """Every conv/linear layer whose output channels belong to this unit."""
    kind: str
    """``conv``, ``depthwise`` (holds a depthwise conv), ``residual`` (several
    layers feed one add) or ``linear``."""
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    input_hw: tuple[int, int]
    macs: int
    """MACs of the layers this unit scales (layers shared with another unit count half)."""
    params: int


@dataclass(frozen=True)
class ModelAnalysis:
    """What the environment needs to know about a network, computed once."""

    units: tuple[PrunableUnit, ...]
    macs: int
    params: int
    mac_model: MacModel
    input_shape: tuple[int, ...]

    @property
    def channels(self) -> np.ndarray:
        """Full channel count of every unit."""
        return np.array([u.out_channels for u in self.units], dtype=np.int64)

    def unit(self, name: str) -> PrunableUnit:
        """The unit whose name (or one of whose layers) is ``name``."""
        for u in self.units:
            if name == u.name or name in u.modules:
                return u
        raise KeyError(name)


def _leaf_counts(model: nn.Module, example_inputs: torch.Tensor) -> tuple[dict[str, float], float]:
    """Per-leaf-module MACs (torch-pruning's counter) and the total."""
    was_training = model.training
    total, _, layer_macs, _ = tp.utils.count_ops_and_params(model, example_inputs, layer_wise=True)
    model.train(was_training)
    leaves: dict[str, float] = {}
    for name, module in model.named_modules():
        if next(module.children(), None) is None and layer_macs.get(module) is not None:
            leaves[name] = float(layer_macs[module])
    return leaves, float(total)


def _io_channels(model: nn.Module) -> dict[str, tuple[int, int]]:
    shapes: dict[str, tuple[int, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            shapes[name] = (m.in_features, m.out_features)
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
            shapes[name] = (m.in_channels, m.out_channels)
    return shapes


def _forward_order(
    model: nn.Module, example_inputs: torch.Tensor
) -> tuple[dict[str, int], dict[str, tuple[int, ...]]]:
    """Execution index and input shape of every prunable layer."""
    order: dict[str, int] = {}
    in_shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES):

            def hook(_m: nn.Module, inputs: tuple, _out: object, name: str = name) -> None:
                order.setdefault(name, len(order))
                in_shapes.setdefault(name, tuple(inputs[0].shape))

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(example_inputs)
    finally:
        for h in handles:
            h.remove()
    return order, in_shapes


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def _unit_kind(model: nn.Module, modules: Sequence[str]) -> str:
    layers = dict(model.named_modules())
    if any(_is_depthwise(layers[n]) for n in modules):
        return "depthwise"
    if len(modules) > 1:
        return "residual"
    return "linear" if isinstance(layers[modules[0]], nn.Linear) else "conv"


def analyse(
    model: nn.Module,
    example_inputs: torch.Tensor,
    *,
    ignored_layers: Sequence[str] = (),
) -> ModelAnalysis:
    """Find the prunable units of ``model`` and fit its MACs model.

    Runs one probe prune per unit (half its channels) and one joint probe to check
    the fitted MACs model against torch-pruning's counter.

    Raises:
        ModelError: the model has no prunable unit.
    """
    model = model.eval()
    known = {name for name, _ in model.named_modules()}
    unknown = [n for n in ignored_layers if n not in known]
    if unknown:
        raise ModelError(
            f"ignored layer {unknown[0]!r} is not a module of the model; "
            "use qualified names from model.named_modules()"
        )
    order, in_shapes = _forward_order(model, example_inputs)
    graph = build_graph(model, example_inputs)
    infos = [info for _, info in iter_groups(graph, model, ignored_layers) if info.channels > 1]
    if not infos:
        raise ModelError(
            "the model has no prunable unit (no conv/linear layer with more than one "
            "output channel outside the classifier and the ignored layers)"
        )
    infos.sort(key=lambda info: min(order.get(n, math.inf) for n in info.out_modules))
    infos = [
        type(info)(
            tuple(sorted(info.out_modules, key=lambda n: order.get(n, math.inf))),
            info.in_modules,
            info.channels,
        )
        for info in infos
    ]
    names = [info.out_modules[0] for info in infos]
    full = np.array([info.channels for info in infos], dtype=np.float64)
    probe_n = np.maximum(1, full // 2)

    base_leaf, total = _leaf_counts(model, example_inputs)
    base_io = _io_channels(model)
    _, base_params = tp.utils.count_ops_and_params(model, example_inputs)
    probes: list[dict[str, float]] = []
    probe_io: list[dict[str, tuple[int, int]]] = []
    for name, n, n_full in zip(names, probe_n, full, strict=True):
        result = prune(model, {name: n / n_full}, example_inputs, ignored_layers=ignored_layers)
        probe_leaf, _ = _leaf_counts(result.model, example_inputs)
        probes.append(probe_leaf)
        probe_io.append(_io_channels(result.model))

    layers = dict(model.named_modules())
    const = total - sum(base_leaf.values())
    lin_unit: list[int] = []
    lin_coef: list[float] = []
    bil: list[tuple[int, int, float]] = []
    exact = True
    shares = np.zeros(len(infos))
    for leaf, f0 in base_leaf.items():
        deps = [u for u, p in enumerate(probes) if p.get(leaf, f0) != f0]
        for u in deps:
            shares[u] += f0 / len(deps)
        if not deps:
            const += f0
        elif len(deps) == 1:
            (u,) = deps
            f1, big, small = probes[u][leaf], full[u], probe_n[u]
            io0, io1 = base_io.get(leaf), probe_io[u].get(leaf)
            both_scaled = (
                io0 is not None and io1 is not None and io1[0] != io0[0] and io1[1] != io0[1]
            )
            if both_scaled and not _is_depthwise(layers[leaf]):
                # f = d n^2 + c n: a conv whose input and output are the same unit
                d, c = np.linalg.solve(
                    np.array([[big * big, big], [small * small, small]]), np.array([f0, f1])
                )
                bil.append((u, u, float(d)))
                lin_unit.append(u)
                lin_coef.append(float(c))
            else:
                b = (f0 - f1) / (big - small)
                const += f0 - b * big
                lin_unit.append(u)
                lin_coef.append(float(b))
        elif len(deps) == 2:
            # f = b n_u + c n_v + d n_u n_v (no constant: a layer with no channels costs nothing)
            u, v = deps
            rows = [
                [full[u], full[v], full[u] * full[v]],
                [probe_n[u], full[v], probe_n[u] * full[v]],
                [full[u], probe_n[v], full[u] * probe_n[v]],
            ]
            b, c, d = np.linalg.solve(
                np.array(rows), np.array([f0, probes[u][leaf], probes[v][leaf]])
            )
            lin_unit += [u, v]
            lin_coef += [float(b), float(c)]
            bil.append((u, v, float(d)))
        else:
            exact = False
            const += f0
            for u in deps:
                slope = (f0 - probes[u][leaf]) / (full[u] - probe_n[u])
                const -= slope * full[u]
                lin_unit.append(u)
                lin_coef.append(float(slope))

    mac_model = MacModel(
        const=float(const),
        lin_unit=np.array(lin_unit, dtype=np.int64),
        lin_coef=np.array(lin_coef),
        bil_u=np.array([b[0] for b in bil], dtype=np.int64),
        bil_v=np.array([b[1] for b in bil], dtype=np.int64),
        bil_coef=np.array([b[2] for b in bil]),
        exact=exact,
    )
    # joint probe: every unit at its probe width at once
    joint = prune(
        model,
        {n: k / f for n, k, f in zip(names, probe_n, full, strict=True)},
        example_inputs,
        ignored_layers=ignored_layers,
    )
    predicted = mac_model.macs(probe_n)
    if abs(predicted - joint.macs) > 1e-6 * max(total, 1.0) + 0.5:
        warnings.warn(
            f"MACs model is approximate for this network (predicted {predicted:.0f}, measured "
            f"{joint.macs}); pruned models will be measured and repaired to meet the budget",
            stacklevel=2,
        )
        mac_model = dataclasses.replace(mac_model, exact=False)

    units = []
    for i, info in enumerate(infos):
        root = layers[info.out_modules[0]]
        in_ch, _ = base_io[info.out_modules[0]]
        shape = in_shapes.get(info.out_modules[0], ())
        hw = (int(shape[2]), int(shape[3])) if len(shape) == 4 else (1, 1)
        kernel = root.kernel_size[0] if isinstance(root, nn.Conv2d) else 1
        stride = root.stride[0] if isinstance(root, nn.Conv2d) else 1
        unit_params = sum(
            p.numel() for n in info.out_modules for p in layers[n].parameters(recurse=False)
        )
        units.append(
            PrunableUnit(
                index=i,
                name=info.out_modules[0],
                modules=info.out_modules,
                kind=_unit_kind(model, info.out_modules),
                in_channels=int(in_ch),
                out_channels=int(info.channels),
                kernel=int(kernel),
                stride=int(stride),
                input_hw=hw,
                macs=int(round(shares[i])),
                params=int(unit_params),
            )
        )
    return ModelAnalysis(
        units=tuple(units),
        macs=int(total),
        params=int(base_params),
        mac_model=mac_model,
        input_shape=tuple(example_inputs.shape[1:]),
    )
