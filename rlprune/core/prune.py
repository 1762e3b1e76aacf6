"""Physical channel pruning with torch-pruning's dependency graph.

A *unit* is one torch-pruning dependency group: every layer whose channels are
coupled (a residual add, a depthwise conv, BatchNorm after a conv) is pruned
together. This module finds the groups and removes channels for real; it never
touches the model it is given.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from ..errors import ConfigError

__all__ = [
    "IMPORTANCE",
    "PRUNABLE_TYPES",
    "GroupInfo",
    "Importance",
    "MagnitudeImportance",
    "PruneResult",
    "RandomImportance",
    "build_graph",
    "count_macs_params",
    "iter_groups",
    "keep_count",
    "make_importance",
    "prune",
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


def build_graph(model: nn.Module, example_inputs: torch.Tensor) -> tp.DependencyGraph:
    """Trace ``model`` into a torch-pruning dependency graph."""
    with torch.enable_grad(), warnings.catch_warnings():
        # torch-pruning's tracer converts traced tensors to scalars; harmless here
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
        return tp.DependencyGraph().build_dependency(model, example_inputs, verbose=False)


def iter_groups(
    graph: tp.DependencyGraph,
    model: nn.Module,
    ignored_layers: Sequence[str] = (),
) -> Iterator[tuple[tp.Group, GroupInfo]]:
    """Yield the prunable dependency groups of ``model`` with the names they touch.

    Groups that reach the network's output (the classifier) and groups that
    contain a user-ignored layer are skipped.
    """
    names = {module: name for name, module in model.named_modules()}
    ignored = [m for n, m in model.named_modules() if n in set(ignored_layers)]
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=PRUNABLE_TYPES):
        out_modules: list[str] = []
        in_modules: list[str] = []
        reaches_output = False
        for dep, _ in group:
            target = dep.target
            is_out = graph.is_out_channel_pruning_fn(dep.handler)
            # a node with no consumers produces the network's output (the classifier)
            if target.type == tp.ops.OPTYPE.OUTPUT or (is_out and not target.outputs):
                reaches_output = True
                break
            module = target.module
            if not isinstance(module, PRUNABLE_TYPES) or module not in names:
                continue
            if is_out:
                out_modules.append(names[module])
            elif graph.is_in_channel_pruning_fn(dep.handler):
                in_modules.append(names[module])
        if reaches_output or not out_modules:
            continue
        yield group, GroupInfo(tuple(out_modules), tuple(in_modules), len(group[0].idxs))


# --- pruning ------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult:
    """A pruned copy of a model and what it costs."""

    model: nn.Module
    channels: Mapping[str, int]
    """Channels kept per unit, keyed as in the ``keep_ratios`` given to :func:`prune`."""
    macs: int
    params: int


def count_macs_params(model: nn.Module, example_inputs: torch.Tensor) -> tuple[int, int]:
    """MACs and parameters as counted by torch-pruning's op counter."""
    was_training = model.training
    macs, params = tp.utils.count_ops_and_params(model, example_inputs)
    model.train(was_training)
    return int(macs), int(params)


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
    """
    scorer = make_importance(importance)
    pruned = copy.deepcopy(model)
    was_training = pruned.training
    pruned.eval()
    graph = build_graph(pruned, example_inputs)
    remaining = dict(keep_ratios)
    kept: dict[str, int] = {}
    for group, info in iter_groups(graph, pruned, ignored_layers):
        key = next((name for name in info.out_modules if name in remaining), None)
        if key is None:
            continue
        ratio = remaining.pop(key)
        if not 0.0 < ratio <= 1.0:
            raise ConfigError(f"keep ratio for {key!r} must be in (0, 1], got {ratio}")
        n_keep = keep_count(ratio, info.channels, round_to)
        kept[key] = n_keep
        n_prune = info.channels - n_keep
        if n_prune <= 0:
            continue
        with torch.no_grad():
            scores = scorer(group)
        prune_idxs = torch.argsort(scores, stable=True)[:n_prune].tolist()
        group.prune(idxs=sorted(prune_idxs))
    if remaining:
        raise ConfigError(
            f"no prunable unit named {sorted(remaining)[0]!r}; "
            "use the names listed by `rlprune info`"
        )
    pruned.train(was_training)
    macs, params = count_macs_params(pruned, example_inputs)
    return PruneResult(model=pruned, channels=kept, macs=macs, params=params)
