"""Episode rewards, in a registry by name.

A reward sees the pruned candidate's validation accuracy and cost. The budget
itself is enforced by action clipping in the environment (AMC's resource-constrained
setting), except for ``acc_budget_penalty``, which is meant for clipping turned off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = [
    "REWARDS",
    "Outcome",
    "RewardFn",
    "get_reward",
    "reward_acc",
    "reward_acc_budget_penalty",
    "reward_acc_log_flops",
]


@dataclass(frozen=True)
class Outcome:
    """What an episode produced, as a reward sees it."""

    accuracy: float
    macs: int
    macs_ratio: float
    target: float


RewardFn = Callable[[Outcome], float]


def reward_acc(o: Outcome) -> float:
    """AMC's resource-constrained reward: accuracy alone; clipping keeps the budget."""
    return o.accuracy


def reward_acc_log_flops(o: Outcome) -> float:
    """AMC's R_FLOPs = -error * log(MACs): trades accuracy against cost."""
    return -(1.0 - o.accuracy) * math.log(max(o.macs, 1))


def reward_acc_budget_penalty(o: Outcome, weight: float = 2.0) -> float:
    """Accuracy minus ``weight`` times the relative overshoot of the MACs target."""
    return o.accuracy - weight * max(0.0, o.macs_ratio - o.target) / o.target


REWARDS: dict[str, RewardFn] = {
    "acc": reward_acc,
    "acc_log_flops": reward_acc_log_flops,
    "acc_budget_penalty": reward_acc_budget_penalty,
}


def get_reward(name: str) -> RewardFn:
    """The reward function registered as ``name``."""
    try:
        return REWARDS[name]
    except KeyError:
        raise ConfigError(f"unknown reward {name!r}; choose one of: {', '.join(REWARDS)}") from None
