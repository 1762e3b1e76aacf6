"""Physical channel pruning with torch-pruning's dependency graph.

A *unit* is one torch-pruning dependency group: every layer whose channels are
coupled (a residual add, a depthwise conv, BatchNorm after a conv) is pruned
together. This module finds the groups and removes channels for real; it never
touches the model it is given.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.dependency import index_mapping as tp_index_mapping
from torch_pruning.utils import op_counter as tp_op_counter

from ..errors import ConfigError

__all__ = [
    "IMPORTANCE",
    "PRUNABLE_TYPES",
    "GroupInfo",
    "Importance",
    "MagnitudeImportance",
    "PruneResult",
    "RandomImportance",
    "Edit",
    "Surgeon",
    "UnitPlan",
    "build_graph",
    "first_line",
    "is_depthwise",
    "count_macs_params",
    "iter_groups",
    "keep_count",
    "leaf_macs",
    "make_importance",
    "prune",
    "unit_step",
]

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Conv1d, nn.Linear)


def keep_count(keep_ratio: float, channels: int, round_to: int | None = None) -> int:
    """Number of channels kept out of ``channels`` for ``keep_ratio``.

    Rounds to the nearest integer (or the nearest multiple of ``round_to``) and
    never goes below one channel (or one multiple of ``round_to``).
    """
    n = keep_ratio * channels
    if round_to and round_to > 1 and channels >= round_to:
        return int(min(channels, max(round_to, round_to * math.floor(n / round_to + 0.5))))
    return int(min(channels, max(1, math.floor(n + 0.5))))


# --- importance criteria: small strategies behind one call signature -------------


class Importance:
    """Scores every channel of a dependency group; low scores are pruned first."""

    def __call__(self, group: tp.Group) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class MagnitudeImportance(Importance):
    """Group Lp-norm of the coupled weights (torch-pruning's GroupMagnitudeImportance)."""

    def __init__(self, p: int) -> None:
        self._scorer = tp.importance.GroupMagnitudeImportance(
            p=p, group_reduction="mean", normalizer=None
        )

    def __call__(self, group: tp.Group) -> torch.Tensor:
        scores: torch.Tensor = self._scorer(group)
        return scores


class RandomImportance(Importance):
    """Random scores from a seeded generator, so a seed fixes the pruned channels."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __call__(self, group: tp.Group) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + len(group[0].idxs))
        return torch.rand(len(group[0].idxs), generator=generator)


IMPORTANCE: dict[str, Callable[[], Importance]] = {
    "l1": lambda: MagnitudeImportance(p=1),
    "l2": lambda: MagnitudeImportance(p=2),
    "random": lambda: RandomImportance(seed=0),
}


def make_importance(name: str | Importance) -> Importance:
    """Return the importance criterion called ``name`` (``l1``, ``l2``, ``random``)."""
    if isinstance(name, Importance):
        return name
    if name not in IMPORTANCE:
        raise ConfigError(
            f"unknown importance {name!r}; choose one of: {', '.join(sorted(IMPORTANCE))}"
        )
    return IMPORTANCE[name]()


# --- dependency groups --------------------------------------------------------------


@dataclass(frozen=True)
class GroupInfo:
    """Names of the modules one dependency group touches."""

    out_modules: tuple[str, ...]
    """Conv/linear layers whose output channels the group removes, in module order."""
    in_modules: tuple[str, ...]
    """Conv/linear layers whose input channels the group removes."""
    channels: int
    groups: int = 1
    """Channel groups (a grouped conv or GroupNorm in the group): channels are kept in
    equal numbers per group, so a kept count is a multiple of this."""


UNMAPPED = "_rlprune_unmapped"
"""Attribute of a graph holding the reshape nodes torch-pruning could not map."""


@contextlib.contextmanager
def _tolerant_reshapes(graph: tp.DependencyGraph, *, mapped: bool = False) -> Iterator[None]:
    """Let torch-pruning skip a reshape whose channel mapping it cannot infer.

    torch-pruning 1.6 divides by zero on a 5-D reshape such as ShuffleNet's
    channel shuffle (``x.view(b, g, c // g, h, w)``), which takes the whole trace
    down, or, depending on the widths, maps the shuffle as the identity (pruning
    the wrong channels downstream). Inside this context such a node (a reshape
    that fails, or any reshape of a 5-D tensor) keeps torch-pruning's default
    mapping and is recorded in ``graph._rlprune_unmapped``; :func:`iter_groups` then
    reports every group through it as unprunable instead of pruning it wrongly.

    With ``mapped`` (the graph is traced and not pruned since), torch-pruning's
    refresh of every index mapping on each group query is skipped: it would
    recompute the same mappings, and it dominates the cost on deep networks.
    """
    original = tp_index_mapping.update_reshape_index_mapping
    refresh = tp_index_mapping.update_index_mapping
    unmapped: set[object] = getattr(graph, UNMAPPED, set())
    setattr(graph, UNMAPPED, unmapped)

    def tolerant(g: tp.DependencyGraph, node: object) -> None:
        grad_fn = getattr(node, "grad_fn", None)
        sizes = getattr(grad_fn, "_saved_self_sizes", None)  # torch < 2.1
        if sizes is None:
            sizes = getattr(grad_fn, "_saved_self_sym_sizes", None)
        if sizes is not None and len(sizes) >= 5:
            # a view of a 5-D tensor regroups channels (a shuffle); torch-pruning
            # would silently map it as the identity
            unmapped.add(node)
            return
        try:
            original(g, node)
        except ZeroDivisionError:
            unmapped.add(node)

    tp_index_mapping.update_reshape_index_mapping = tolerant
    if mapped:
        tp_index_mapping.update_index_mapping = lambda g: None
    try:
        yield
    finally:
        tp_index_mapping.update_reshape_index_mapping = original
        tp_index_mapping.update_index_mapping = refresh


def build_graph(model: nn.Module, example_inputs: torch.Tensor) -> tp.DependencyGraph:
    """Trace ``model`` into a torch-pruning dependency graph."""
    graph = tp.DependencyGraph()
    with torch.enable_grad(), warnings.catch_warnings(), _tolerant_reshapes(graph):
        # torch-pruning's tracer converts traced tensors to scalars; harmless here
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
        graph.build_dependency(model, example_inputs, verbose=False)
    return graph


def _channel_groups(graph: tp.DependencyGraph, group: tp.Group) -> int:
    """Channel groups of a dependency group, as torch-pruning's BasePruner finds them."""
    found = [1]
    for dep, _ in group:
        module = dep.target.module
        pruner = graph.get_pruner_of_module(module) if isinstance(module, nn.Module) else None
        if pruner is None or is_depthwise(module):
            continue
        if graph.is_out_channel_pruning_fn(dep.handler):
            found.append(int(pruner.get_out_channel_groups(module) or 1))
        else:
            found.append(int(pruner.get_in_channel_groups(module) or 1))
    return max(found)


def is_depthwise(module: object) -> bool:
    """Whether ``module`` is a depthwise conv (one channel per group)."""
    return isinstance(module, nn.Conv2d) and 1 < module.groups == module.out_channels


def first_line(exc: BaseException) -> str:
    """``"ErrorType: first line of the message"``: a reason that fits one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _reaches(
    graph: tp.DependencyGraph, module: nn.Module, fn: Callable[..., Any], nodes: set[object]
) -> bool:
    """Whether pruning ``module`` with ``fn`` propagates to any of ``nodes``.

    Follows the dependencies torch-pruning would follow, without mapping indices
    (cheap, and safe where a mapping is broken).
    """
    if not nodes:
        return False
    start = graph.module2node[module]
    seen = {(start, fn)}
    stack = [(start, fn)]
    while stack:
        node, handler = stack.pop()
        if node in nodes:
            return True
        for dep in node.dependencies:
            if dep.is_triggered_by(handler) and (dep.target, dep.handler) not in seen:
                seen.add((dep.target, dep.handler))
                stack.append((dep.target, dep.handler))
    return False


def iter_groups(
    graph: tp.DependencyGraph,
    model: nn.Module,
    ignored_layers: Sequence[str] = (),
    failed: dict[str, str] | None = None,
) -> Iterator[tuple[tp.Group, GroupInfo]]:
    """Yield the prunable dependency groups of ``model`` with the names they touch.

    Groups that reach the network's output (the classifier) and groups that
    contain a user-ignored layer are skipped. A group torch-pruning cannot build
    is recorded in ``failed`` (layer name: one-line reason) instead of raising.
    """
    names = {module: name for name, module in model.named_modules()}
    ignored_set = set(ignored_layers)
    ignored = {m for n, m in model.named_modules() if n in ignored_set}
    visited: set[nn.Module] = set()
    for module in list(graph.module2node):
        if module in ignored or module in visited or not isinstance(module, PRUNABLE_TYPES):
            continue
        pruner = graph.get_pruner_of_module(module)
        if pruner is None or pruner.get_out_channels(module) is None:
            continue
        channels = int(pruner.get_out_channels(module))
        if _reaches(graph, module, pruner.prune_out_channels, getattr(graph, UNMAPPED, set())):
            visited.add(module)
            if failed is not None and module in names:
                failed[names[module]] = (
                    "its channels pass a reshape torch-pruning cannot map (a channel shuffle?)"
                )
            continue
        try:
            with _tolerant_reshapes(graph, mapped=True):
                group = graph.get_pruning_group(
                    module, pruner.prune_out_channels, list(range(channels))
                )
        except Exception as exc:  # torch-pruning cannot map this group's indices
            visited.add(module)
            if failed is not None and module in names:
                failed[names[module]] = first_line(exc)
            continue
        out_modules: list[str] = []
        in_modules: list[str] = []
        reaches_output, prunable = False, True
        for dep, _ in group:
            target = dep.target
            is_out = graph.is_out_channel_pruning_fn(dep.handler)
            if is_out:
                visited.add(target.module)
                if target.module in ignored:
                    prunable = False
            # a node with no consumers produces the network's output (the classifier)
            if target.type == tp.ops.OPTYPE.OUTPUT or (is_out and not target.outputs):
                reaches_output = True
            target_module = target.module
            if not isinstance(target_module, PRUNABLE_TYPES) or target_module not in names:
                continue
            if is_out:
                out_modules.append(names[target_module])
            elif graph.is_in_channel_pruning_fn(dep.handler):
                in_modules.append(names[target_module])
        if reaches_output or not prunable or not out_modules:
            continue
        info = GroupInfo(
            tuple(out_modules), tuple(in_modules), channels, _channel_groups(graph, group)
        )
        yield group, info


# --- one trace, many prunes ----------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """One torch-pruning handler call of a unit, in the original model's coordinates."""

    target: str
    """Qualified name of the module (or unwrapped parameter) the handler prunes."""
    is_param: bool
    handler: Callable[..., Any]
    pruning_dim: int
    idx: np.ndarray
    """Indices the handler removes when every channel of the unit goes."""
    root: np.ndarray
    """The unit channel each of :attr:`idx` comes from."""


@dataclass(frozen=True)
class UnitPlan:
    """How to remove any subset of one unit's channels, computed once per model."""

    info: GroupInfo
    order: np.ndarray
    """Channel positions within one channel group, least important first."""
    edits: tuple[Edit, ...]

    def pruned(self, n_keep: int) -> np.ndarray:
        """Channels removed to keep ``n_keep`` (a multiple of the channel groups)."""
        groups = self.info.groups
        size = self.info.channels // groups
        per_group = size - n_keep // groups
        if per_group <= 0:
            return np.zeros(0, dtype=np.int64)
        chosen = np.sort(self.order[:per_group])
        return (chosen[None, :] + size * np.arange(groups)[:, None]).reshape(-1)


class Surgeon:
    """Trace a model once, then prune any number of copies of it without re-tracing.

    Builds torch-pruning's dependency graph once, records for every unit which
    handler removes which indices of which layer for each of its channels (in the
    original model's coordinates, so units combine by taking unions), and ranks
    the channels by ``importance`` once. :meth:`prune` then deep-copies the model
    and calls those handlers: no trace, no op counting.

    Grouped convolutions (and GroupNorm) are pruned as torch-pruning's own
    pruner does: the same positions in every channel group, ranked by the
    importance averaged over groups, so the layer keeps its ``groups``.
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: torch.Tensor,
        *,
        importance: str | Importance = "l1",
        ignored_layers: Sequence[str] = (),
    ) -> None:
        self.model = model
        self.example_inputs = example_inputs
        self.failed: dict[str, str] = {}
        """Units torch-pruning could not handle, by layer name: a one-line reason."""
        scorer = make_importance(importance)
        graph = build_graph(model, example_inputs)
        names = {module: name for name, module in model.named_modules()}
        param_names: Mapping[Any, str] = getattr(graph, "_param_to_name", {})
        self.plans: dict[str, UnitPlan] = {}
        self.groups: dict[str, tp.Group] = {}
        """Each unit's torch-pruning group (all channels), for other importance scorers."""
        for group, info in iter_groups(graph, model, ignored_layers, self.failed):
            key = info.out_modules[0]
            try:
                self.plans[key] = self._plan(group, info, scorer, names, param_names)
                self.groups[key] = group
            except Exception as exc:
                self.failed[key] = first_line(exc)

    @staticmethod
    def _plan(
        group: tp.Group,
        info: GroupInfo,
        scorer: Importance,
        names: Mapping[nn.Module, str],
        param_names: Mapping[Any, str],
    ) -> UnitPlan:
        edits = []
        for item in group:
            dep, idxs = item.dep, item.idxs
            roots = getattr(item, "root_idxs", idxs)
            target = dep.target
            if target.type == tp.ops.OPTYPE.PARAMETER:
                name, is_param = param_names[target.module], True
            elif isinstance(target.module, nn.Module) and target.module in names:
                name, is_param = names[target.module], False
            else:
                continue  # functional ops (concat, split, ...) hold no weights
            if not idxs:
                continue
            edits.append(
                Edit(
                    target=name,
                    is_param=is_param,
                    handler=dep.handler,
                    pruning_dim=int(target.pruning_dim),
                    idx=np.array([int(i) for i in idxs], dtype=np.int64),
                    root=np.array([int(i) for i in roots], dtype=np.int64),
                )
            )
        with torch.no_grad():
            scores = scorer(group).detach().float().cpu()
        if info.channels % info.groups:
            raise ValueError(f"{info.channels} channels do not split into {info.groups} groups")
        per_group = scores.view(info.groups, -1).mean(dim=0)
        order = torch.argsort(per_group, stable=True).numpy().astype(np.int64)
        return UnitPlan(info=info, order=order, edits=tuple(edits))

    def apply(self, model: nn.Module, keep: Mapping[str, int]) -> None:
        """Remove channels in place from ``model``, a copy of the traced one.

        ``keep`` maps unit names to kept channel counts (multiples of each unit's
        channel groups); units not named keep everything.
        """
        merged: dict[tuple[str, bool, Callable[..., Any], int], set[int]] = {}
        for key, n_keep in keep.items():
            plan = self.plans[key]
            removed = plan.pruned(int(n_keep))
            if removed.size == 0:
                continue
            for edit in plan.edits:
                idx = edit.idx[np.isin(edit.root, removed)]
                call = (edit.target, edit.is_param, edit.handler, edit.pruning_dim)
                merged.setdefault(call, set()).update(idx.tolist())
        modules = dict(model.named_modules())
        for (target, is_param, handler, dim), idxs in merged.items():
            # as torch-pruning's Dependency.__call__ does before calling a handler
            handler.__self__.pruning_dim = dim  # type: ignore[attr-defined]
            ordered = sorted(idxs)
            if is_param:
                parent_name, _, attr = target.rpartition(".")
                parent = modules[parent_name]
                setattr(parent, attr, handler(getattr(parent, attr), ordered))
            else:
                handler(modules[target], ordered)

    @contextlib.contextmanager
    def trial(self, model: nn.Module, keep: Mapping[str, int]) -> Iterator[nn.Module]:
        """Prune ``model`` in place for the duration of the block, then restore it.

        Cheaper than a deep copy when only the pruned shapes matter (say, to count
        MACs): only the modules the handlers touch are saved, and torch-pruning's
        handlers replace tensors rather than write into them.
        """
        modules = dict(model.named_modules())
        touched = set()
        for key in keep:
            for edit in self.plans[key].edits:
                touched.add(edit.target.rpartition(".")[0] if edit.is_param else edit.target)
        saved = {
            name: (
                dict(modules[name].__dict__),
                dict(modules[name]._parameters),
                dict(modules[name]._buffers),
            )
            for name in touched
        }
        try:
            self.apply(model, keep)
            yield model
        finally:
            for name, (state, params, buffers) in saved.items():
                module = modules[name]
                module.__dict__.clear()
                module.__dict__.update(state)
                module.__dict__["_parameters"] = params
                module.__dict__["_buffers"] = buffers

    def counts(
        self, keep_ratios: Mapping[str, float], round_to: int | None = None
    ) -> dict[str, int]:
        """Channel counts for ``keep_ratios`` (keyed by any layer name of a unit)."""
        remaining = dict(keep_ratios)
        kept: dict[str, int] = {}
        for key, plan in self.plans.items():
            name = next((n for n in plan.info.out_modules if n in remaining), None)
            if name is None:
                continue
            ratio = remaining.pop(name)
            if not 0.0 < ratio <= 1.0:
                raise ConfigError(f"keep ratio for {name!r} must be in (0, 1], got {ratio}")
            kept[key] = keep_count(ratio, plan.info.channels, unit_step(plan.info.groups, round_to))
        if remaining:
            name = sorted(remaining)[0]
            if name in self.failed:
                raise ConfigError(
                    f"unit {name!r} cannot be pruned ({self.failed[name]}); leave it out"
                )
            raise ConfigError(
                f"no prunable unit named {name!r}; use the names listed by `rlprune info`"
            )
        return kept

    def prune(self, keep: Mapping[str, int], *, count: bool = True) -> PruneResult:
        """A NEW model with ``keep`` channels per unit; the traced model is untouched.

        With ``count`` the MACs are measured with torch-pruning's op counter (one
        forward pass); without, they are left at -1 for the caller to predict.
        """
        pruned = copy.deepcopy(self.model)
        was_training = pruned.training
        pruned.eval()
        self.apply(pruned, keep)
        pruned.train(was_training)
        if count:
            macs, params = count_macs_params(pruned, self.example_inputs)
        else:
            macs, params = -1, sum(p.numel() for p in pruned.parameters())
        return PruneResult(model=pruned, channels=dict(keep), macs=macs, params=params)


def unit_step(groups: int, round_to: int | None) -> int | None:
    """Granularity of a unit's kept channel count: its channel ``groups`` and ``round_to``."""
    step = math.lcm(groups, round_to or 1)
    return step if step > 1 else None


# --- pruning ------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult:
    """A pruned copy of a model and what it costs."""

    model: nn.Module
    channels: Mapping[str, int]
    """Channels kept per unit, keyed as in the ``keep_ratios`` given to :func:`prune`."""
    macs: int
    params: int


def leaf_macs(model: nn.Module, example_inputs: torch.Tensor) -> dict[str, float]:
    """MACs per leaf module, by torch-pruning's op counter's per-layer rules.

    Registers the counter's own hooks (``torch_pruning.utils.op_counter.MODULES_MAPPING``)
    on ``model`` for one forward pass. Unlike ``tp.utils.count_ops_and_params`` it does
    not deep-copy the model first, which on a deep network costs more than the forward
    pass. Modules the counter does not know count zero, as there.
    """
    mapping = tp_op_counter.MODULES_MAPPING
    counted: list[tuple[str, nn.Module]] = []
    handles = []
    for name, module in model.named_modules():
        hook = mapping.get(type(module))
        if hook is None:
            continue
        module.__flops__ = 0
        handles.append(module.register_forward_hook(hook))
        counted.append((name, module))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    batch = max(int(example_inputs.shape[0]), 1)
    leaves: dict[str, float] = {}
    for name, module in counted:
        leaves[name] = float(module.__dict__.pop("__flops__")) / batch
    return leaves


def count_macs_params(model: nn.Module, example_inputs: torch.Tensor) -> tuple[int, int]:
    """MACs (torch-pruning's op counter's rules, see :func:`leaf_macs`) and parameters."""
    macs = sum(leaf_macs(model, example_inputs).values())
    return int(round(macs)), sum(p.numel() for p in model.parameters())


def prune(
    model: nn.Module,
    keep_ratios: Mapping[str, float],
    example_inputs: torch.Tensor,
    *,
    importance: str | Importance = "l1",
    round_to: int | None = None,
    ignored_layers: Sequence[str] = (),
) -> PruneResult:
    """Return a NEW model with channels physically removed; ``model`` is untouched.

    Args:
        model: the trained network.
        keep_ratios: fraction of channels to keep per unit, keyed by any layer name
            of the unit (conventionally its first conv/linear). Units not named keep
            all their channels.
        example_inputs: a batch (of one) with the model's input shape, for tracing.
        importance: ``"l1"``, ``"l2"``, ``"random"`` or an :class:`Importance`.
        round_to: keep channel counts a multiple of this (hardware-friendly widths).
        ignored_layers: qualified names of layers that must not be pruned.

    To prune one model many times, build a :class:`Surgeon` once and call its
    :meth:`Surgeon.prune`: this function traces the model on every call.
    """
    was_training = model.training
    model.eval()
    try:
        surgeon = Surgeon(
            model, example_inputs, importance=importance, ignored_layers=ignored_layers
        )
    finally:
        model.train(was_training)
    keep = surgeon.counts(keep_ratios, round_to)
    result = surgeon.prune(keep)
    # report channels under the names the caller used
    by_key = {
        key: next(n for n in keep_ratios if n in surgeon.plans[key].info.out_modules)
        for key in keep
    }
    return PruneResult(
        model=result.model,
        channels={by_key[k]: n for k, n in keep.items()},
        macs=result.macs,
        params=result.params,
    )
