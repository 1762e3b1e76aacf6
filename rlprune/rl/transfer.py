"""Zero-shot transfer: play a saved policy on a network it has never seen.

:func:`zero_shot` runs any policy once on a network and evaluates one configuration.
Every policy, a family's (:mod:`rlprune.rl.family`) or a single run's
(:mod:`rlprune.rl.training`), records the range every observation feature took in training; :func:`family_distance` compares a new network's observations with those
ranges, so that ``rlprune apply`` can say when a network lies outside what the policy has
seen, and a residual policy can play its corrections damped there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..env.pruning_env import PruningEnv
from ..env.rollout import at_strength, check_trust, propose, rollout
from ..evaluation.candidates import Candidate
from ..evaluation.task import PruningTask
from ..mdp.features import features_for
from ..mdp.settings import EnvConfig
from ..priors import prior_channels, uniform_channels
from .policy import LoadedPolicy, env_config_for_policy

__all__ = [
    "ZeroShot",
    "best_of_obvious",
    "family_distance",
    "network_distance",
    "policy_env",
    "uses_prior",
    "zero_shot",
]


def family_distance(
    metadata: dict[str, Any], observations: np.ndarray, tolerance: float = 0.02
) -> list[tuple[str, int, float]]:
    """How a network's observations fall outside the ranges a policy saw in training.

    ``observations`` holds one row per step (feature set of the policy). Returns, for every
    feature with a value more than ``tolerance`` outside its training range, ``(feature,
    steps outside, largest distance outside)``, largest first; empty for a policy without
    recorded ranges or a network inside them.
    """
    ranges = metadata.get("feature_ranges") or {}
    names = features_for(int(metadata.get("feature_version", 1)))
    rows = np.asarray(observations, dtype=np.float64).reshape(-1, len(names))
    out: list[tuple[str, int, float]] = []
    for j, name in enumerate(names):
        if name not in ranges:
            continue
        lo, hi = ranges[name]
        below = lo - rows[:, j]
        above = rows[:, j] - hi
        distance = np.maximum(below, above)
        outside = distance > tolerance
        if outside.any():
            out.append((name, int(outside.sum()), float(distance.max())))
    out.sort(key=lambda item: -item[2])
    return out


@dataclass(frozen=True)
class ZeroShot:
    """One zero-shot episode of a policy on a network."""

    candidate: Candidate
    """The evaluated configuration."""
    outside: list[tuple[str, int, float]]
    """:func:`family_distance` of the network's observations under the policy."""
    deferred: bool
    """Whether the policy's corrections were damped (to :attr:`scale`; 0, the prior alone)
    because the network lies outside its training ranges."""
    scale: float = 1.0
    """The strength at which the corrections were played (1: in full)."""


def policy_env(policy: LoadedPolicy, task: PruningTask, target: float) -> PruningEnv:
    """The env on which ``policy`` plays ``task``'s network at ``target``: the task's settings
    with the policy's own env keys (action mode, prior, features, ...)."""
    return PruningEnv(
        task=task, config=env_config_for_policy(EnvConfig(task.config), policy, target)
    )


def network_distance(
    policy: LoadedPolicy, task: PruningTask, target: float
) -> list[tuple[str, int, float]]:
    """:func:`family_distance` of ``task``'s network under ``policy`` at ``target``: what
    ``rlprune apply`` prints about it (a dry pass; the probes of the policy's prior, if it
    observes one, are charged to ``task``)."""
    env = policy_env(policy, task, target)
    observations: list[np.ndarray] = []
    propose(policy, env, seed=0, observations=observations)
    return family_distance(policy.metadata, np.array(observations))


def zero_shot(
    policy: LoadedPolicy, env: PruningEnv, seed: int = 0, trust: str = "family"
) -> ZeroShot:
    """Run ``policy`` once on ``env``'s network; evaluate one configuration.

    A dry pass (nothing evaluated) collects the observations the policy would see and
    compares them with its training ranges (:func:`family_distance`). With ``trust="family"``
    a residual policy whose network lies outside them plays its corrections damped to its
    :attr:`~rlprune.rl.policy.LoadedPolicy.outside_scale` (0 by default: its prior, action
    0 at every unit): the corrections it learned are not trusted in full where it has seen
    nothing like the network. Policies without recorded ranges, and absolute-action
    policies (whose action 0 is no prior), always play as trained.
    """
    check_trust(trust)
    observations: list[np.ndarray] = []
    propose(policy, env, seed=seed, observations=observations)
    outside = family_distance(policy.metadata, np.array(observations))
    deferred = trust == "family" and bool(outside) and env.config.env.action_mode == "residual"
    scale = policy.outside_scale if deferred else 1.0
    candidate = rollout(at_strength(policy, scale), env, seed=seed)
    return ZeroShot(candidate, outside, deferred, scale)


def uses_prior(config: EnvConfig) -> bool:
    """Whether the policy's env plays corrections to (or observes) a prior allocation."""
    return config.env.action_mode == "residual" or config.env.features >= 2


def best_of_obvious(
    task: PruningTask, config: EnvConfig, played: Candidate
) -> tuple[Candidate, str, dict[str, float]]:
    """The policy's candidate against the obvious allocations at the same target: one
    keep-ratio for every unit, and the prior the policy corrects (when it uses one other
    than uniform; its probes are already paid for). Each costs one evaluation.

    Returns the most accurate on validation (the policy's on ties), its name (``policy``,
    ``uniform`` or ``PRIOR prior``) and every validation accuracy scored, by name.
    """
    target = config.env.target.low
    options = {"policy": played}
    uniform = uniform_channels(task, target)
    options["uniform"] = task.evaluate(task.fit_measured(uniform, target))
    prior = config.env.prior
    if uses_prior(config) and prior != "uniform":
        channels = prior_channels(task, target, prior, config.task.probe_images)
        options[f"{prior} prior"] = task.evaluate(task.fit_measured(channels, target))
    choice = max(options, key=lambda name: options[name].accuracy)  # the first on ties
    return options[choice], choice, {name: c.accuracy for name, c in options.items()}
