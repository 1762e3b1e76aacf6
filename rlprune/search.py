"""What every search method returns, so one benchmark loop and one report serve them all.

A search method spends at most ``evals`` candidate evaluations (pruned networks
scored on the validation split) to find the best network meeting a MACs
target. Evaluations are counted per request, cached or not, so a method that
proposes the same network twice pays twice: the cost is the search budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .task import Candidate

BUDGET_SLACK = 1.01
"""Measured MACs may exceed the target by this factor (the budget contract's tolerance)."""


@dataclass(frozen=True)
class SearchResult:
    """The outcome of one search: its best candidate and everything it evaluated."""

    method: str
    best: Candidate
    history: tuple[Candidate, ...]
    """Every candidate evaluated, in order (the sample-efficiency curve reads it)."""
    evaluations: int
    """Evaluations charged, including those a heuristic spends on its own analysis."""
    seconds: float
    target: float | None = None
    """The MACs target; candidates above it (a heuristic's probes) never count as best."""

    def within_budget(self, candidate: Candidate) -> bool:
        """Whether ``candidate`` meets the target (always, when no target is recorded)."""
        return self.target is None or candidate.macs_ratio <= self.target * BUDGET_SLACK

    def best_so_far(self) -> list[float]:
        """Best validation accuracy among in-budget candidates after each evaluation (NaN
        until the first one)."""
        curve: list[float] = []
        best = float("nan")
        for candidate in self.history:
            if self.within_budget(candidate) and not candidate.accuracy <= best:
                best = candidate.accuracy
            curve.append(best)
        return curve


def best_of(candidates: Sequence[Candidate], target: float | None = None) -> Candidate:
    """The most accurate candidate within ``target`` (ties: the cheapest in MACs, then the earliest)."""
    if target is not None:
        candidates = [c for c in candidates if c.macs_ratio <= target * BUDGET_SLACK]
    if not candidates:
        raise ValueError("no candidate within the budget was evaluated")
    return max(enumerate(candidates), key=lambda ic: (ic[1].accuracy, -ic[1].macs, -ic[0]))[1]
