"""Heuristics: one configuration computed from the network, evaluated once.

- ``uniform``: one keep-ratio for every unit (1 evaluation);
- ``magnitude``: torch-pruning's global ranking of L1 group importance (1 evaluation);
- ``sensitivity``: per-unit sensitivity curves, then a greedy allocation
  (units x ratios + 1 evaluations).

Each configuration is repaired to the *measured* MACs (:meth:`PruningTask.fit_measured`)
and played through the env (:func:`~rlprune.search.base.play`). Any evaluations the
budget allows beyond these are not spent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import ConfigError
from ..evaluation.candidates import SearchResult
from ..evaluation.task import PruningTask
from ..priors import (
    SENSITIVITY_RATIOS,
    allocate_by_sensitivity,
    magnitude_channels,
    sensitivity_curves,
    uniform_channels,
    use_budget,
)
from ..pruning.macs import ChannelCounts
from .base import BaselineMethod, Budget, SearchOptions, play

__all__ = [
    "MAGNITUDE",
    "SENSITIVITY",
    "UNIFORM",
    "HeuristicSearch",
    "SensitivitySearch",
    "search_sensitivity",
]


@dataclass(frozen=True)
class HeuristicSearch(BaselineMethod):
    """One configuration, ``allocate(task, target)``, evaluated once; ``seed`` is unused.

    The configuration is played with ``fill_budget`` off (which would raise later
    units), so it costs exactly one evaluation whatever ``evals`` allows.
    """

    allocate: Callable[[PruningTask, float], ChannelCounts]

    def spend(
        self, task: PruningTask, target: float, budget: Budget, seed: int, options: SearchOptions
    ) -> None:
        """Evaluate the allocation."""
        play(task, task.fit_measured(self.allocate(task, target), target), target)


@dataclass(frozen=True)
class SensitivitySearch(BaselineMethod):
    """Per-unit sensitivity analysis, then a greedy allocation (AMC's hand-tuned baseline).

    Each unit is pruned alone (the others at full width) to each of ``ratios``,
    snapped to its allowed counts, and evaluated at full fidelity
    (:func:`~rlprune.priors.sensitivity_curves`): units x ratios evaluations,
    all charged and in the history, even when snapping repeats a count.
    :func:`~rlprune.priors.allocate_by_sensitivity` then meets the target
    favouring the least sensitive units, the budget its last step leaves unspent is given
    back (:func:`~rlprune.priors.use_budget`: the same configuration as the
    residual env's ``sensitivity`` prior, which a policy's action 0 plays), and the
    allocation is evaluated (+1). Any
    evaluations left over are not spent. ``seed`` is unused: the method is deterministic.

    The probes usually exceed the budget; they are in the history but never the
    best candidate.
    """

    ratios: tuple[float, ...] = SENSITIVITY_RATIOS

    def min_evals(self, task: PruningTask) -> int:
        """Units x ratios probes, plus the final allocation."""
        return len(task.analysis.units) * len(self.ratios) + 1

    def min_evals_reason(self, task: PruningTask) -> str:
        """The count of units and ratios."""
        return (
            f" for this network ({len(task.analysis.units)} units x {len(self.ratios)} ratios + 1)"
        )

    def check(self, task: PruningTask, target: float, evals: int, options: SearchOptions) -> None:
        """The ratios' checks, then the request's."""
        if not self.ratios or not all(0.0 < r <= 1.0 for r in self.ratios):
            raise ConfigError(
                f"sensitivity ratios {tuple(self.ratios)} must be in (0, 1]; e.g. (0.5,)"
            )
        super().check(task, target, evals, options)

    def spend(
        self, task: PruningTask, target: float, budget: Budget, seed: int, options: SearchOptions
    ) -> None:
        """Probe every unit at every ratio, allocate, evaluate the allocation."""
        task.memo.clear()  # the method pays for its own probes
        channels = allocate_by_sensitivity(task, target, sensitivity_curves(task, self.ratios))
        channels = use_budget(task, channels, target)
        play(task, task.fit_measured(channels, target), target)


UNIFORM = HeuristicSearch(
    "uniform",
    "one keep-ratio for every unit, the largest that meets the target (1 evaluation)",
    uniform_channels,
)
MAGNITUDE = HeuristicSearch(
    "magnitude",
    "global L1 magnitude ranking of all channels, torch-pruning style (1 evaluation)",
    magnitude_channels,
    seeded=False,
)
SENSITIVITY = SensitivitySearch(
    "sensitivity",
    "per-unit sensitivity curves, then a greedy allocation (units x 3 + 1 evaluations)",
    seeded=False,
)


def search_sensitivity(
    task: PruningTask,
    target: float,
    evals: int,
    seed: int,
    *,
    ratios: Sequence[float] = SENSITIVITY_RATIOS,
) -> SearchResult:
    """The ``sensitivity`` method's search (:class:`SensitivitySearch`) with these ``ratios``."""
    method = dataclasses.replace(SENSITIVITY, ratios=tuple(ratios))
    return method.search(task, target, evals, seed)
