"""The candidate record, the budget test, and what every search returns.

A :class:`Candidate` is one evaluated pruned network. It has one plain-data form
(:meth:`Candidate.to_dict` / :meth:`Candidate.from_dict`), used by the env's final
``info``, a run's ``best.json``, the benchmark's per-seed files and the apply report.

A search method spends at most ``evals`` candidate evaluations (pruned networks
scored on the validation split) to find the best network meeting a MACs
target (or a latency target: :mod:`rlprune.evaluation.latency`). Evaluations are counted per request, cached or not, so a method that
proposes the same network twice pays twice: the cost is the search budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = [
    "BUDGET_SLACK",
    "Candidate",
    "SearchResult",
    "best_of",
    "within_budget",
]

BUDGET_SLACK = 1.01
"""Measured MACs may exceed the target by this factor (the budget contract's tolerance)."""


@dataclass(frozen=True)
class Candidate:
    """One evaluated pruned network."""

    channels: tuple[int, ...]
    keep_ratios: tuple[float, ...]
    accuracy: float
    """Validation top-1 after BatchNorm recalibration, no fine-tuning."""
    macs: int
    params: int
    macs_ratio: float
    params_ratio: float
    fidelity: float = 1.0
    """Share of the validation split its accuracy was measured on, and so its cost in full
    evaluations; below 1 it is a low-fidelity probe, never a search's best."""
    latency_ratio: float | None = None
    """Predicted latency over the original's, when the task budgets latency
    (``metric: latency``); ``None`` under the MACs budget."""

    @property
    def budget_ratio(self) -> float:
        """What the target bounds: :attr:`latency_ratio` under a latency budget, else
        :attr:`macs_ratio`."""
        return self.macs_ratio if self.latency_ratio is None else self.latency_ratio

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples become lists), as JSON stores it."""
        data = dataclasses.asdict(self)
        if self.latency_ratio is None:
            del data["latency_ratio"]
        data["channels"] = list(self.channels)
        data["keep_ratios"] = list(self.keep_ratios)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        """Inverse of :meth:`to_dict`; keys other than the record's are ignored.

        Raises:
            ConfigError: a field is missing or has the wrong type.
        """
        try:
            return cls(
                channels=tuple(int(n) for n in data["channels"]),
                keep_ratios=tuple(float(k) for k in data["keep_ratios"]),
                accuracy=float(data["accuracy"]),
                macs=int(data["macs"]),
                params=int(data["params"]),
                macs_ratio=float(data["macs_ratio"]),
                params_ratio=float(data["params_ratio"]),
                fidelity=float(data.get("fidelity", 1.0)),
                latency_ratio=(
                    None if data.get("latency_ratio") is None else float(data["latency_ratio"])
                ),
            )
        except KeyError as exc:
            raise ConfigError(f"not a candidate record: missing field {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"not a candidate record: {exc}") from None


def within_budget(candidate: Candidate, target: float | None) -> bool:
    """Whether ``candidate`` meets ``target`` (its :attr:`~Candidate.budget_ratio`, measured
    MACs or predicted latency, ≤ target × :data:`BUDGET_SLACK`).

    ``None`` means no target: every candidate fits.
    """
    return target is None or candidate.budget_ratio <= target * BUDGET_SLACK


def best_of(candidates: Sequence[Candidate], target: float | None = None) -> Candidate:
    """The most accurate full-fidelity candidate within ``target`` (ties: the cheapest in
    MACs, then the earliest)."""
    feasible = [c for c in candidates if c.fidelity >= 1.0 and within_budget(c, target)]
    if not feasible:
        raise ValueError("no candidate within the budget was evaluated")
    return max(enumerate(feasible), key=lambda ic: (ic[1].accuracy, -ic[1].macs, -ic[0]))[1]


@dataclass(frozen=True)
class SearchResult:
    """The outcome of one search: its best candidate and everything it evaluated."""

    method: str
    best: Candidate
    history: tuple[Candidate, ...]
    """Every candidate evaluated, in order (the sample-efficiency curve reads it)."""
    evaluations: float
    """Full-evaluation equivalents charged (a probe on k of n validation images costs k/n),
    including what a method spends on its own analysis."""
    seconds: float
    target: float | None = None
    """The MACs target; candidates above it (a heuristic's probes) never count as best."""

    def cumulative_cost(self) -> list[float]:
        """Full evaluations charged after each request (the sample-efficiency x axis)."""
        return [float(c) for c in np.cumsum([c.fidelity for c in self.history])]

    def best_so_far(self) -> list[float]:
        """Best validation accuracy among in-budget candidates after each evaluation (NaN
        until the first one)."""
        curve: list[float] = []
        best = float("nan")
        for candidate in self.history:
            if (
                candidate.fidelity >= 1.0
                and within_budget(candidate, self.target)
                and not candidate.accuracy <= best
            ):
                best = candidate.accuracy
            curve.append(best)
        return curve
