"""Heuristic and random baselines, speaking the same ``predict(obs, deterministic)`` as agents.

A baseline decides keep-ratios per unit; the environment then applies the same
rounding and budget clipping as for a learned policy, so one evaluation loop
(:func:`rlprune.apply.rollout`) serves every method.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .env import FEATURES
from .prune import keep_count
from .task import PruningTask

_POSITION = FEATURES.index("position")


def keep_to_action(keep_ratio: float, min_keep: float, max_keep: float) -> float:
    """The action in [-1, 1] that the env maps to ``keep_ratio``."""
    if max_keep <= min_keep:
        return 0.0
    return float(np.clip(2.0 * (keep_ratio - min_keep) / (max_keep - min_keep) - 1.0, -1.0, 1.0))


class FixedRatioPolicy:
    """Plays a fixed keep-ratio per unit, reading the unit index from the observation."""

    def __init__(self, keep_ratios: Sequence[float], min_keep: float, max_keep: float) -> None:
        self.keep_ratios = tuple(float(k) for k in keep_ratios)
        self.min_keep = min_keep
        self.max_keep = max_keep

    def predict(
        self, observation: np.ndarray, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """The action for the unit ``observation`` describes."""
        n = len(self.keep_ratios)
        index = min(int(round(float(observation[_POSITION]) * n)), n - 1)
        action = keep_to_action(self.keep_ratios[index], self.min_keep, self.max_keep)
        return np.array([action], dtype=np.float32), None


def uniform_keep_ratio(task: PruningTask, target: float, iterations: int = 40) -> float:
    """The largest single keep-ratio for every unit whose pruned model meets ``target``.

    Bisection on the ratio with the exact MACs model (no candidate is evaluated).
    """
    budget = target * task.analysis.macs
    full = task.analysis.channels

    def macs(ratio: float) -> float:
        counts = np.array([keep_count(ratio, int(c), task.config.round_to) for c in full])
        return task.analysis.mac_model.macs(counts)

    low, high = task.config.min_keep, task.config.max_keep
    if macs(high) <= budget:
        return high
    for _ in range(iterations):
        mid = (low + high) / 2
        if macs(mid) <= budget:
            low = mid
        else:
            high = mid
    return low
