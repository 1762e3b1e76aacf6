"""Dependency groups: torch-pruning's graph of coupled layers, walked as prunable units.

A *unit* is one torch-pruning dependency group: every layer whose channels are
coupled (a residual add, a depthwise conv, BatchNorm after a conv) is pruned
together. This module builds the graph and finds the groups.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.dependency import index_mapping as tp_index_mapping

__all__ = [
    "GroupInfo",
    "PRUNABLE_TYPES",
    "UNMAPPED",
    "build_graph",
    "first_line",
    "is_depthwise",
    "iter_groups",
]

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Conv1d, nn.Linear)


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
    block: int = 1
    """Channels that go only together, in contiguous blocks of this many (an attention
    head's dimensions); 1: channel by channel."""


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
                module, channels = _free_root(graph, module, channels)
                pruner = graph.get_pruner_of_module(module)
                group = graph.get_pruning_group(
                    module, pruner.prune_out_channels, list(range(channels))
                )
        except Exception as exc:  # torch-pruning cannot map this group's indices
            visited.add(module)
            if failed is not None and module in names:
                failed[names[module]] = first_line(exc)
            continue
        out_modules, in_modules, reaches_output, prunable = _group_layers(
            graph, group, names, ignored, visited
        )
        if reaches_output or not prunable or not out_modules:
            continue
        info = GroupInfo(
            tuple(out_modules), tuple(in_modules), channels, _channel_groups(graph, group)
        )
        yield group, info


def _tied(graph: tp.DependencyGraph, module: nn.Module) -> bool:
    """Whether removing one output channel of ``module`` forces out others of it: its
    channels come in tied sets, as a residual stream that adds a concat of a layer and
    its depthwise copy (a ghost module) has two channels per source channel."""
    pruner = graph.get_pruner_of_module(module)
    group = graph.get_pruning_group(module, pruner.prune_out_channels, [0])
    return any(
        dep.target.module is module and len(set(idxs)) > 1
        for dep, idxs in group
        if graph.is_out_channel_pruning_fn(dep.handler)
    )


def _free_root(
    graph: tp.DependencyGraph, module: nn.Module, channels: int
) -> tuple[nn.Module, int]:
    """The layer to root ``module``'s group at: ``module`` itself when its channels prune
    one at a time, else the narrowest layer of its group whose channels do (the source
    of the tied channels); torch-pruning then maps each source channel to all its copies.
    With no such layer (an attention's qkv, tied into heads), ``module`` as before.
    """
    if not _tied(graph, module):
        return module, channels
    pruner = graph.get_pruner_of_module(module)
    group = graph.get_pruning_group(module, pruner.prune_out_channels, list(range(channels)))
    sources = sorted(
        (
            (_out_channels(graph, dep.target.module), is_depthwise(dep.target.module), i)
            for i, (dep, _) in enumerate(group)
            if graph.is_out_channel_pruning_fn(dep.handler)
            and isinstance(dep.target.module, (nn.Conv2d, nn.Linear))
            and dep.target.module is not module
        ),
    )
    for width, _, i in sources:  # the narrowest, a depthwise copy after its source
        candidate = group[i].dep.target.module
        if width < channels and not _tied(graph, candidate):
            return candidate, width
    return module, channels  # tied by design (attention heads): handled where heads are


def _out_channels(graph: tp.DependencyGraph, module: nn.Module) -> int:
    return int(graph.get_pruner_of_module(module).get_out_channels(module))


def _group_layers(
    graph: tp.DependencyGraph,
    group: tp.Group,
    names: dict[nn.Module, str],
    ignored: set[nn.Module],
    visited: set[nn.Module],
) -> tuple[list[str], list[str], bool, bool]:
    """A group's out and in layers, whether it reaches the output, whether it is prunable."""
    # its out-channel layers are marked visited: no other group starts from them
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
    return out_modules, in_modules, reaches_output, prunable
