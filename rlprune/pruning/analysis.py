"""Analyse a network once: its prunable units in forward order and its MACs model."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .attention import HEAD_COUNT_NAMES, HeadAttention, convert_attention, head_layouts
from .groups import PRUNABLE_TYPES, GroupInfo, first_line, is_depthwise
from .importance import Importance
from .macs import MacModel, leaf_macs
from .surgeon import EMBEDDING_STAYS, Surgeon, keep_count, unit_step

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
    layers feed one add), ``attention`` (an attention's heads, kept whole) or ``linear``
    (an MLP's hidden width, a classifier's hidden layer)."""
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    input_hw: tuple[int, int]
    """Input height x width of a conv; (tokens, 1) for a layer on a token sequence."""
    macs: int
    """MACs of the layers this unit scales (layers shared with another unit count half)."""
    params: int
    groups: int = 1
    """Channel groups (a grouped conv): kept channels are a multiple of this."""
    key: str = ""
    """The unit's name in its :class:`~rlprune.pruning.surgeon.Surgeon` (its first layer in
    module order); empty: same as :attr:`name`."""


@dataclass(frozen=True)
class ModelAnalysis:
    """What the environment needs to know about a network, computed once."""

    units: tuple[PrunableUnit, ...]
    macs: int
    params: int
    mac_model: MacModel
    input_shape: tuple[int, ...]
    frozen: tuple[tuple[str, str], ...] = ()
    """Layers torch-pruning cannot prune, with the reason: they keep every channel."""
    surgeon: Surgeon | None = field(default=None, compare=False, repr=False)
    """The traced model, to prune copies without tracing again."""

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
    """Per-leaf-module MACs (torch-pruning's counter rules) and the total."""
    leaves = leaf_macs(model, example_inputs)
    return leaves, float(sum(leaves.values()))


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


def _unit_kind(model: nn.Module, modules: Sequence[str]) -> str:
    if any(n in head_layouts(model) for n in modules):
        return "attention"
    layers = dict(model.named_modules())
    if any(is_depthwise(layers[n]) for n in modules):
        return "depthwise"
    if len(modules) > 1:
        return "residual"
    return "linear" if isinstance(layers[modules[0]], nn.Linear) else "conv"


def _prober(
    model: nn.Module, example_inputs: torch.Tensor, expected: dict[str, float], real_s: float
) -> tuple[nn.Module, torch.Tensor]:
    """What to run probes on: a weightless (``meta``) copy of ``model`` when its forward
    pass is faster than the real one's (large inputs) and counts the same, else the model."""
    try:
        meta = copy.deepcopy(model).to("meta")
        inputs = example_inputs.to("meta")
        t0 = time.perf_counter()
        leaves, _ = _leaf_counts(meta, inputs)
        if leaves == expected and time.perf_counter() - t0 < real_s:
            return meta, inputs
    except Exception:  # an op without a meta kernel: probe with real weights
        pass
    return model, example_inputs


def _probe(
    surgeon: Surgeon, base: nn.Module, inputs: torch.Tensor, name: str, n: int
) -> tuple[dict[str, float], dict[str, tuple[int, int]]]:
    """Per-leaf MACs and layer widths with unit ``name`` alone cut to ``n`` channels."""
    with surgeon.trial(base, {name: n}) as pruned:
        leaves, _ = _leaf_counts(pruned, inputs)
        return leaves, _io_channels(pruned)


@dataclass
class _MacTerms:
    """The MACs model's terms as :func:`_fit` collects them, leaf by leaf, in fit order."""

    const: float
    lin_unit: list[int] = field(default_factory=list)
    lin_coef: list[float] = field(default_factory=list)
    bil: list[tuple[int, int, float]] = field(default_factory=list)
    exact: bool = True

    def mac_model(self) -> MacModel:
        """The collected terms as a :class:`MacModel`."""
        return MacModel(
            const=float(self.const),
            lin_unit=np.array(self.lin_unit, dtype=np.int64),
            lin_coef=np.array(self.lin_coef),
            bil_u=np.array([b[0] for b in self.bil], dtype=np.int64),
            bil_v=np.array([b[1] for b in self.bil], dtype=np.int64),
            bil_coef=np.array([b[2] for b in self.bil]),
            exact=self.exact,
        )


def _fit(
    infos: Sequence[GroupInfo],
    probes: Sequence[dict[str, float]],
    probe_io: Sequence[dict[str, tuple[int, int]]],
    probe_n: np.ndarray,
    base_leaf: dict[str, float],
    base_io: dict[str, tuple[int, int]],
    total: float,
    layers: dict[str, nn.Module],
) -> tuple[MacModel, np.ndarray]:
    """The MACs model from one probe per unit, and each unit's share of the MACs."""
    full = np.array([info.channels for info in infos], dtype=np.float64)
    terms = _MacTerms(const=total - sum(base_leaf.values()))
    shares = np.zeros(len(infos))
    for leaf, f0 in base_leaf.items():
        deps = [u for u, p in enumerate(probes) if p.get(leaf, f0) != f0]
        for u in deps:
            shares[u] += f0 / len(deps)
        if not deps:
            terms.const += f0
        elif len(deps) == 1:
            (u,) = deps
            _fit_one_unit(
                terms, leaf, u, f0, probes[u][leaf], full, probe_n, probe_io, base_io, layers
            )
        elif (
            product := _product_terms(
                leaf, deps, probes, probe_io, probe_n, full, f0, base_io, layers
            )
        ) is not None:
            # a conv/linear whose input and/or output widths follow units (several
            # units concatenated in, one unit out): A in out + B out, exactly
            c0, lin, pairs = product
            terms.const += c0
            for u, coef in lin:
                terms.lin_unit.append(u)
                terms.lin_coef.append(coef)
            terms.bil += pairs
        elif len(deps) == 2:
            _fit_two_units(terms, leaf, deps[0], deps[1], f0, probes, full, probe_n)
        else:
            _fit_per_unit(terms, leaf, deps, f0, probes, full, probe_n)
            terms.exact = terms.exact and leaf not in base_io
    return terms.mac_model(), shares


def _fit_one_unit(
    terms: _MacTerms,
    leaf: str,
    u: int,
    f0: float,
    f1: float,
    full: np.ndarray,
    probe_n: np.ndarray,
    probe_io: Sequence[dict[str, tuple[int, int]]],
    base_io: dict[str, tuple[int, int]],
    layers: dict[str, nn.Module],
) -> None:
    """Add the terms of a leaf whose MACs follow unit ``u`` alone (``f1``: at its probe)."""
    big, small = full[u], probe_n[u]
    io0, io1 = base_io.get(leaf), probe_io[u].get(leaf)
    both_scaled = io0 is not None and io1 is not None and io1[0] != io0[0] and io1[1] != io0[1]
    if both_scaled and not is_depthwise(layers[leaf]):
        # f = d n^2 + c n: a conv whose input and output are the same unit
        d, c = np.linalg.solve(
            np.array([[big * big, big], [small * small, small]]), np.array([f0, f1])
        )
        terms.bil.append((u, u, float(d)))
        terms.lin_unit.append(u)
        terms.lin_coef.append(float(c))
    else:
        b = (f0 - f1) / (big - small)
        terms.const += f0 - b * big
        terms.lin_unit.append(u)
        terms.lin_coef.append(float(b))


def _fit_two_units(
    terms: _MacTerms,
    leaf: str,
    u: int,
    v: int,
    f0: float,
    probes: Sequence[dict[str, float]],
    full: np.ndarray,
    probe_n: np.ndarray,
) -> None:
    """Add the terms of a leaf that follows two units: ``f = b n_u + c n_v + d n_u n_v``."""
    # no constant: a layer with no channels costs nothing
    rows = [
        [full[u], full[v], full[u] * full[v]],
        [probe_n[u], full[v], probe_n[u] * full[v]],
        [full[u], probe_n[v], full[u] * probe_n[v]],
    ]
    b, c, d = np.linalg.solve(np.array(rows), np.array([f0, probes[u][leaf], probes[v][leaf]]))
    terms.lin_unit += [u, v]
    terms.lin_coef += [float(b), float(c)]
    terms.bil.append((u, v, float(d)))


def _fit_per_unit(
    terms: _MacTerms,
    leaf: str,
    deps: Sequence[int],
    f0: float,
    probes: Sequence[dict[str, float]],
    full: np.ndarray,
    probe_n: np.ndarray,
) -> None:
    """Add the terms of a leaf that follows several units, as linear in each of them."""
    # exact for per-channel layers (BatchNorm, activations, pooling after a concat),
    # approximate for the rest
    terms.const += f0
    for u in deps:
        slope = (f0 - probes[u][leaf]) / (full[u] - probe_n[u])
        terms.const -= slope * full[u]
        terms.lin_unit.append(u)
        terms.lin_coef.append(float(slope))


def _product_terms(
    leaf: str,
    deps: Sequence[int],
    probes: Sequence[dict[str, float]],
    probe_io: Sequence[dict[str, tuple[int, int]]],
    probe_n: np.ndarray,
    full: np.ndarray,
    f0: float,
    base_io: dict[str, tuple[int, int]],
    layers: dict[str, nn.Module],
) -> tuple[float, list[tuple[int, float]], list[tuple[int, int, float]]] | None:
    """``f = A in out + B out`` for a conv/linear whose input and output widths are
    affine in the units' widths (a concat of several units in, one unit out): the
    constant, linear and bilinear terms, or ``None`` where that form does not fit
    every probe (then the caller falls back to a linear, approximate fit)."""
    io0 = base_io.get(leaf)
    if io0 is None or is_depthwise(layers[leaf]):
        return None
    in0, out0 = float(io0[0]), float(io0[1])
    a: dict[int, float] = {}
    b: dict[int, float] = {}
    for u in deps:
        io1 = probe_io[u].get(leaf)
        if io1 is None:
            return None
        step = full[u] - probe_n[u]
        if io1[0] != io0[0]:
            a[u] = (in0 - io1[0]) / step
        if io1[1] != io0[1]:
            b[u] = (out0 - io1[1]) / step
    in_only = [u for u in a if u not in b]
    if not in_only or out0 == 0 or in0 == 0:
        return None
    u = in_only[0]
    big_a = (f0 - probes[u][leaf]) / (a[u] * (full[u] - probe_n[u]) * out0)
    big_b = (f0 - big_a * in0 * out0) / out0

    def width(n: np.ndarray, coefs: dict[int, float], w0: float) -> float:
        return float(w0 - sum(c * (full[v] - n[v]) for v, c in coefs.items()))

    for v in deps:  # the form must reproduce every probe
        n = full.copy()
        n[v] = probe_n[v]
        w_in, w_out = width(n, a, in0), width(n, b, out0)
        predicted = big_a * w_in * w_out + big_b * w_out
        if abs(predicted - probes[v][leaf]) > 1e-6 * max(abs(f0), 1.0) + 0.5:
            return None
    alpha = in0 - sum(c * full[v] for v, c in a.items())
    beta = out0 - sum(c * full[v] for v, c in b.items())
    const = big_a * alpha * beta + big_b * beta
    lin = [(v, float(big_a * c * beta)) for v, c in a.items()]
    lin += [(v, float((big_a * alpha + big_b) * c)) for v, c in b.items()]
    pairs = [(v, w, float(big_a * ca * cb)) for v, ca in a.items() for w, cb in b.items()]
    return float(const), lin, pairs


def analyse(
    model: nn.Module,
    example_inputs: torch.Tensor,
    *,
    ignored_layers: Sequence[str] = (),
    importance: str | Importance = "l1",
) -> ModelAnalysis:
    """Find the prunable units of ``model`` and fit its MACs model.

    Traces the model once (a :class:`~rlprune.pruning.surgeon.Surgeon`, kept on the
    analysis to prune copies later without re-tracing), probes every unit at half
    its channels on a weightless ``meta`` copy (shapes only, so a probe costs no
    arithmetic), and checks the fitted MACs model once against torch-pruning's
    counter on a real joint prune. A unit torch-pruning cannot prune is *frozen*:
    it keeps all its channels, is listed in :attr:`ModelAnalysis.frozen` with the
    reason, and one warning names them all.

    An ``nn.MultiheadAttention`` is analysed in the form that can lose heads
    (:func:`~rlprune.pruning.attention.convert_attention`; the surgeon holds that copy):
    its heads form one unit, kept whole, and the embedding width stays.

    Raises:
        ModelError: the model has no prunable unit.
    """
    model = convert_attention(model).eval()
    _check_ignored(model, ignored_layers)
    order, in_shapes = _forward_order(model, example_inputs)
    surgeon = Surgeon(model, example_inputs, importance=importance, ignored_layers=ignored_layers)
    frozen = dict(surgeon.failed)
    infos, key_of = _candidate_groups(surgeon, order, frozen)

    t0 = time.perf_counter()
    base_leaf, total = _leaf_counts(model, example_inputs)
    real_s = time.perf_counter() - t0
    base_io = _io_channels(model)
    prober, probe_inputs = _prober(model, example_inputs, base_leaf, real_s)
    kept: list[_Probed] = []
    for info in infos:
        n = keep_count(0.5, info.channels, unit_step(info.groups, None))
        try:
            leaves, io = _probe(surgeon, prober, probe_inputs, key_of[info.out_modules[0]], n)
        except Exception as exc:  # torch-pruning's surgery breaks the network here
            frozen[info.out_modules[0]] = first_line(exc)
            continue
        kept.append(_Probed(info, leaves, io))

    layers = dict(model.named_modules())
    mac_model, shares, probe_n, joint_macs = _fit_and_prune_jointly(
        surgeon, kept, key_of, frozen, base_leaf, base_io, total, layers
    )
    predicted = mac_model.macs(probe_n)
    if abs(predicted - joint_macs) > 1e-6 * max(total, 1.0) + 0.5:
        warnings.warn(
            f"MACs model is approximate for this network (predicted {predicted:.0f}, measured "
            f"{joint_macs}); pruned models will be measured and repaired to meet the budget",
            stacklevel=2,
        )
        mac_model = dataclasses.replace(mac_model, exact=False)
    _name_unknown_attention(model, frozen)
    unexpected = {name: why for name, why in frozen.items() if why != EMBEDDING_STAYS}
    if unexpected:  # the embedding width stays by design, as the classifier does
        listed = "; ".join(f"{name} ({why})" for name, why in sorted(unexpected.items()))
        warnings.warn(
            f"{len(unexpected)} layer(s) cannot be pruned and keep all their channels: {listed}",
            stacklevel=2,
        )
    units = tuple(
        _unit(model, i, p.info, layers, base_io, in_shapes, shares[i], key_of)
        for i, p in enumerate(kept)
    )
    return ModelAnalysis(
        units=units,
        macs=int(total),
        params=int(sum(p.numel() for p in model.parameters())),
        mac_model=mac_model,
        input_shape=tuple(example_inputs.shape[1:]),
        frozen=tuple(sorted(frozen.items())),
        surgeon=surgeon,
    )


@dataclass
class _Probed:
    """A unit that survived its probe: its group and the probe's per-leaf MACs and widths."""

    info: GroupInfo
    leaves: dict[str, float]
    io: dict[str, tuple[int, int]]


def _check_ignored(model: nn.Module, ignored_layers: Sequence[str]) -> None:
    known = {name for name, _ in model.named_modules()}
    unknown = [n for n in ignored_layers if n not in known]
    if unknown:
        raise ModelError(
            f"ignored layer {unknown[0]!r} is not a module of the model; "
            "use qualified names from model.named_modules()"
        )


def _candidate_groups(
    surgeon: Surgeon, order: Mapping[str, int], frozen: dict[str, str]
) -> tuple[list[GroupInfo], dict[str, str]]:
    """The surgeon's groups with more than one channel per group, in forward order, and
    each one's plan key (its first layer in module order); one-channel groups are frozen."""
    infos: list[GroupInfo] = []
    for key, plan in surgeon.plans.items():
        info = plan.info
        if info.channels <= 1:
            continue
        if info.block > 1 and info.channels <= info.groups:
            frozen[key] = "a single attention head (every attention keeps one at least)"
            continue
        if info.block == 1 and info.channels // info.groups <= 1:
            frozen[key] = f"grouped into {info.groups} groups of one channel each"
            continue
        infos.append(
            GroupInfo(
                tuple(sorted(info.out_modules, key=lambda n: order.get(n, math.inf))),
                info.in_modules,
                info.channels,
                info.groups,
                info.block,
            )
        )
    infos.sort(key=lambda info: order.get(info.out_modules[0], math.inf))
    key_of = {
        info.out_modules[0]: next(k for k in surgeon.plans if k in info.out_modules)
        for info in infos
    }
    return infos, key_of


def _fit_and_prune_jointly(
    surgeon: Surgeon,
    kept: list[_Probed],
    key_of: Mapping[str, str],
    frozen: dict[str, str],
    base_leaf: dict[str, float],
    base_io: dict[str, tuple[int, int]],
    total: float,
    layers: Mapping[str, nn.Module],
) -> tuple[MacModel, np.ndarray, np.ndarray, int]:
    """Fit the MACs model, then prune every unit at its probe width at once on real weights;
    a unit that breaks that joint prune (tried once alone) is frozen and the fit redone.

    Returns the model, each unit's MACs share, the probe widths and the joint prune's MACs.
    """
    while True:
        if not kept:
            detail = f" ({len(frozen)} frozen: see the warning)" if frozen else ""
            raise ModelError(
                "the model has no prunable unit (no conv/linear layer with more than one "
                f"output channel outside the classifier and the ignored layers){detail}"
            )
        infos = [p.info for p in kept]
        probe_n = np.array(
            [keep_count(0.5, i.channels, unit_step(i.groups, None)) for i in infos],
            dtype=np.float64,
        )
        mac_model, shares = _fit(
            infos,
            [p.leaves for p in kept],
            [p.io for p in kept],
            probe_n,
            base_leaf,
            base_io,
            total,
            dict(layers),
        )
        keys = [key_of[i.out_modules[0]] for i in infos]
        try:
            joint = surgeon.prune(dict(zip(keys, probe_n.astype(int).tolist(), strict=True)))
            return mac_model, shares, probe_n, joint.macs
        except Exception:
            reasons = {i: _breaks(surgeon, k, int(probe_n[i])) for i, k in enumerate(keys)}
            broken = [i for i, why in reasons.items() if why]
            if not broken:
                raise
            for i in reversed(broken):  # each unit tried once, alone, on real weights
                frozen[infos[i].out_modules[0]] = reasons[i]
                del kept[i]


def _unit(
    model: nn.Module,
    index: int,
    info: GroupInfo,
    layers: Mapping[str, nn.Module],
    base_io: dict[str, tuple[int, int]],
    in_shapes: Mapping[str, tuple[int, ...]],
    macs: float,
    key_of: Mapping[str, str],
) -> PrunableUnit:
    """The :class:`PrunableUnit` of one kept group, described by its first layer."""
    name = info.out_modules[0]
    root = layers[name]
    shape = in_shapes.get(name, ())
    kernel, stride = (
        (root.kernel_size[0], root.stride[0]) if isinstance(root, nn.Conv2d) else (1, 1)
    )
    return PrunableUnit(
        index=index,
        name=name,
        modules=info.out_modules,
        kind=_unit_kind(model, info.out_modules),
        in_channels=int(base_io[name][0]),
        out_channels=int(info.channels),
        kernel=int(kernel),
        stride=int(stride),
        input_hw=_input_hw(root, shape),
        macs=int(round(macs)),
        params=sum(
            p.numel() for n in info.out_modules for p in layers[n].parameters(recurse=False)
        ),
        groups=int(info.groups),
        key=key_of[name],
    )


def _name_unknown_attention(model: nn.Module, frozen: dict[str, str]) -> None:
    """Say so where a frozen layer belongs to an attention rlprune does not know (a module
    with a head count that is not ``nn.MultiheadAttention``): its heads cannot be read."""
    known = (HeadAttention, nn.MultiheadAttention)
    for name, module in model.named_modules():
        if not any(isinstance(getattr(module, a, None), int) for a in HEAD_COUNT_NAMES) or any(
            isinstance(m, known) for m in module.modules()
        ):
            continue  # not an attention, or one rlprune knows (or a block holding one)
        prefix = f"{name}." if name else ""
        for layer in [n for n in frozen if n.startswith(prefix) and frozen[n] != EMBEDDING_STAYS]:
            frozen[layer] = (
                f"{type(module).__name__} ({name or 'the model'}) is an attention whose "
                f"heads rlprune cannot read, so they stay ({frozen[layer]})"
            )


def _input_hw(layer: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """Where a layer's weights apply: height x width of an image, tokens x 1 of a sequence
    (a linear layer on ``(batch, tokens, features)``), else 1 x 1."""
    if len(shape) == 4:
        return int(shape[2]), int(shape[3])
    if len(shape) == 3 and isinstance(layer, nn.Linear):
        return int(shape[1]), 1
    return 1, 1


def _breaks(surgeon: Surgeon, key: str, n: int) -> str:
    """Why pruning unit ``key`` alone to ``n`` channels breaks the real network ("" if not)."""
    try:
        result = surgeon.prune({key: n}, count=False)
        with torch.no_grad():
            result.model(surgeon.example_inputs)
    except Exception as exc:
        return first_line(exc)
    return ""
