"""Physical channel pruning: the surgeon removes channels for real, on a copy.

It never touches the model it is given.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from ..errors import ConfigError
from .attention import HeadLayout, convert_attention, head_layouts, unconvertible_attention
from .groups import GroupInfo, build_graph, first_line, iter_groups
from .importance import Importance, make_importance
from .macs import count_macs_params

__all__ = [
    "EMBEDDING_STAYS",
    "Edit",
    "PruneResult",
    "Surgeon",
    "UnitPlan",
    "grouped_conv_mismatch",
    "keep_count",
    "prune",
    "unit_step",
]


EMBEDDING_STAYS = "a transformer's embedding width (its residual stream) stays"
"""Why the group an attention's output projection writes into is not a unit."""


def keep_count(keep_ratio: float, channels: int, round_to: int | None = None) -> int:
    """Number of channels kept out of ``channels`` for ``keep_ratio``.

    Rounds to the nearest integer (or the nearest multiple of ``round_to``) and
    never goes below one channel (or one multiple of ``round_to``).
    """
    n = keep_ratio * channels
    if round_to and round_to > 1 and channels >= round_to:
        return int(min(channels, max(round_to, round_to * math.floor(n / round_to + 0.5))))
    return int(min(channels, max(1, math.floor(n + 0.5))))


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
    """Channel positions within one channel group, least important first (for attention
    heads, :attr:`GroupInfo.block` > 1: head indices)."""
    edits: tuple[Edit, ...]

    def pruned(self, n_keep: int) -> np.ndarray:
        """Channels removed to keep ``n_keep`` (a multiple of the channel groups)."""
        block = self.info.block
        if block > 1:  # whole attention heads, least important first, in every part
            parts = self.info.groups // block
            size = self.info.channels // parts
            heads = (self.info.channels - n_keep) // self.info.groups
            if heads <= 0:
                return np.zeros(0, dtype=np.int64)
            chosen = np.sort(self.order[:heads])
            offsets = (np.arange(parts) * size)[:, None, None]
            positions = (chosen * block)[None, :, None] + np.arange(block)[None, None, :]
            return (offsets + positions).reshape(-1)
        groups = self.info.groups
        size = self.info.channels // groups
        per_group = size - n_keep // groups
        if per_group <= 0:
            return np.zeros(0, dtype=np.int64)
        chosen = np.sort(self.order[:per_group])
        return (chosen[None, :] + size * np.arange(groups)[:, None]).reshape(-1)


class Surgeon:
    """Trace a model once, then prune any number of copies of it without re-tracing.

    The model must already be in prunable form (:func:`rlprune.pruning.attention.convert_attention`
    applied, as :func:`~rlprune.pruning.analysis.analyse` and :func:`prune` do).

    Builds torch-pruning's dependency graph once, records for every unit which
    handler removes which indices of which layer for each of its channels (in the
    original model's coordinates, so units combine by taking unions), and ranks
    the channels by ``importance`` once. :meth:`prune` then deep-copies the model
    and calls those handlers: no trace, no op counting.

    Grouped convolutions (and GroupNorm) are pruned as torch-pruning's own
    pruner does: the same positions in every channel group, ranked by the
    importance averaged over groups, so the layer keeps its ``groups``. Attention
    heads (:func:`~rlprune.pruning.attention.head_layouts`: the q/k/v or qkv outputs and
    the output projection's input) go whole, ranked by the importance averaged over each
    head's channels, as torch-pruning's pruner does with ``prune_num_heads``, and an
    attention that stores its head count gets the heads left; the embedding width the
    attention writes into (a transformer's residual stream) stays.
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
        modules = dict(model.named_modules())
        layouts = head_layouts(model)
        self.layouts: dict[str, HeadLayout] = {}
        """Each head unit's layout (by plan key): where its heads are, what to update."""
        found = list(iter_groups(graph, model, ignored_layers, self.failed))
        # the layers the heads feed (output projections) write the embedding: it stays
        embedding = {
            n
            for _, info in found
            if layouts.keys() & set(info.out_modules)
            for n in info.in_modules
        }
        for group, info in found:
            key = info.out_modules[0]
            if embedding.intersection(info.out_modules):
                self.failed[key] = EMBEDDING_STAYS
                continue
            why = _unconverted_attention(group)
            if why:
                self.failed[key] = why
                continue
            layout = next((layouts[n] for n in info.out_modules if n in layouts), None)
            if layout is not None:
                step = layout.parts * layout.head_dim  # one head's channels, all parts
                info = dataclasses.replace(info, groups=step, block=layout.head_dim)
            try:
                plan = self._plan(group, info, scorer, names, param_names)
            except Exception as exc:
                self.failed[key] = first_line(exc)
                continue
            why = grouped_conv_mismatch(plan, modules)
            if why:
                self.failed[key] = why
                continue
            self.plans[key] = plan
            self.groups[key] = group
            if layout is not None:
                self.layouts[key] = layout

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
        if info.block > 1:  # heads: the mean over each head's channels in every part
            parts = info.groups // info.block
            per_group = scores.view(parts, -1, info.block).mean(dim=(0, 2))
        else:
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
        for key in keep:  # an attention that stores its head count: the heads left
            layout = self.layouts.get(key)
            if layout is not None and layout.attribute:
                layer = modules[self.plans[key].info.out_modules[0]]
                assert isinstance(layer, nn.Linear)
                heads = layer.out_features // (layout.parts * layout.head_dim)
                setattr(modules[layout.module], layout.attribute, heads)

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
            if key in self.layouts and self.layouts[key].attribute:
                touched.add(self.layouts[key].module)  # its head count
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


def _unconverted_attention(group: tp.Group) -> str:
    """Why ``group`` holds an ``nn.MultiheadAttention`` rlprune could not convert ("" if it
    holds none): torch-pruning would shrink its embedding, the residual stream, instead of
    its heads."""
    for dep, _ in group:
        module = dep.target.module
        if isinstance(module, nn.MultiheadAttention):
            why = unconvertible_attention(module) or "not converted by convert_attention"
            return (
                f"an nn.MultiheadAttention whose heads rlprune cannot prune ({why}): "
                "the embedding width stays"
            )
    return ""


def _is_grouped_conv(module: nn.Module | None) -> bool:
    """A convolution with channel groups that is not depthwise (torch-pruning's test)."""
    return (
        isinstance(module, nn.modules.conv._ConvNd)
        and module.groups > 1
        and module.groups != module.out_channels
    )


def grouped_conv_mismatch(plan: UnitPlan, modules: Mapping[str, nn.Module]) -> str:
    """Why some channel count of ``plan``'s unit would break a grouped conv it touches
    ("" if none does), checked for every count the unit can keep.

    torch-pruning removes a grouped conv's input channels at the same positions in every
    group (it slices the weight by the first group's positions), and its output channels
    must stay equal in number per group. A unit that covers only some of the conv's
    groups (a concat of several units before it) cannot do either on its own: pruning it
    crashes ("INDICES element is out of DATA bounds") or silently mixes up the groups'
    weights, so it is frozen, whatever the probe width or the device the probe ran on.
    """
    edits = [
        e
        for e in plan.edits
        if not e.is_param
        and _is_grouped_conv(modules.get(e.target))
        and getattr(e.handler, "__name__", "") in ("prune_in_channels", "prune_out_channels")
    ]
    if not edits:
        return ""
    groups = plan.info.groups
    for n_keep in range(groups, plan.info.channels, groups):
        removed = plan.pruned(n_keep)
        for edit in edits:
            conv = modules[edit.target]
            assert isinstance(conv, nn.modules.conv._ConvNd)
            inputs = edit.handler.__name__ == "prune_in_channels"
            width = conv.in_channels if inputs else conv.out_channels
            size = width // conv.groups
            idx = edit.idx[np.isin(edit.root, removed)]
            per_group = [np.sort(idx[idx // size == g] % size) for g in range(conv.groups)]
            same = (
                all(np.array_equal(p, per_group[0]) for p in per_group)
                if inputs
                else len({len(p) for p in per_group}) == 1
            )
            if not same:
                side = "input" if inputs else "output"
                return (
                    f"keeping {n_keep} of its {plan.info.channels} channels would remove "
                    f"{edit.target}'s {side} channels unevenly across its {conv.groups} "
                    "groups (a concat before a grouped conv)"
                )
    return ""


def unit_step(groups: int, round_to: int | None) -> int | None:
    """Granularity of a unit's kept channel count: its channel ``groups`` and ``round_to``."""
    step = math.lcm(groups, round_to or 1)
    return step if step > 1 else None


@dataclass(frozen=True)
class PruneResult:
    """A pruned copy of a model and what it costs."""

    model: nn.Module
    channels: Mapping[str, int]
    """Channels kept per unit, keyed as in the ``keep_ratios`` given to :func:`prune`."""
    macs: int
    params: int


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
    model = convert_attention(model)
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
