"""Run a policy through the env: anything with ``predict(obs, deterministic)`` plays alike."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError
from ..evaluation.candidates import Candidate
from .pruning_env import PruningEnv

__all__ = [
    "TRUST_MODES",
    "Damped",
    "PriorPlayer",
    "Predictor",
    "at_strength",
    "check_trust",
    "propose",
    "rollout",
]


TRUST_MODES = ("family", "always")
"""When a policy's corrections are played zero-shot: ``family``, only on a network whose
observations lie inside the ranges the policy saw in training (elsewhere they are damped to
the policy's ``outside_scale``, and its residual prior alone is played when that is 0);
``always``, in full on every network."""


def check_trust(trust: str) -> None:
    """Raise :class:`ConfigError` unless ``trust`` is one of :data:`TRUST_MODES`."""
    if trust not in TRUST_MODES:
        raise ConfigError(f"unknown trust {trust!r}; choose one of: {', '.join(TRUST_MODES)}")


class Predictor(Protocol):
    """What an SB3 algorithm, a loaded policy and a baseline policy have in common."""

    def predict(
        self, observation: np.ndarray, *, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        """The action for ``observation``, and a recurrent state (``None`` here)."""
        ...


def rollout(
    policy: Predictor,
    env: PruningEnv,
    seed: int = 0,
    observations: list[np.ndarray] | None = None,
) -> Candidate:
    """Run ``policy`` deterministically for one episode; return the evaluated candidate.

    ``policy`` is anything with ``predict(obs, deterministic=True)`` (a
    :class:`~rlprune.rl.policy.LoadedPolicy`, an SB3 algorithm, a baseline policy).
    ``observations``, when given, receives the observation of every step.
    """
    obs, _ = env.reset(seed=seed)
    done = False
    while not done:
        if observations is not None:
            observations.append(obs)
        action, _ = policy.predict(obs, deterministic=True)
        obs, _, done, _, _ = env.step(np.asarray(action, dtype=np.float32).reshape(1))
    if env.last_candidate is None:  # an episode always ends with an evaluation
        raise RuntimeError("episode ended without a candidate")
    return env.last_candidate


class PriorPlayer:
    """A policy that always answers action 0: in the residual action mode it plays the
    env's prior allocation unchanged."""

    def predict(
        self, observation: np.ndarray, *, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """Action 0, whatever the observation."""
        return np.zeros(1, dtype=np.float32), None


class Damped:
    """Plays ``policy``'s action times ``scale``: in the residual action mode, its
    corrections to the prior at that strength (0 plays the prior, 1 the corrections in
    full)."""

    def __init__(self, policy: Predictor, scale: float) -> None:
        self.policy, self.scale = policy, float(scale)

    def predict(
        self, observation: np.ndarray, *, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """``policy``'s action for ``observation``, scaled."""
        action, _ = self.policy.predict(observation, deterministic=deterministic)
        return np.asarray(action, dtype=np.float32) * np.float32(self.scale), None


def at_strength(policy: Predictor, scale: float) -> Predictor:
    """``policy`` playing its corrections at strength ``scale``: itself at 1, the prior
    alone (:class:`PriorPlayer`, no forward pass) at 0, else :class:`Damped`."""
    if scale >= 1:
        return policy
    return Damped(policy, scale) if scale > 0 else PriorPlayer()


def propose(
    policy: Predictor,
    env: PruningEnv,
    seed: int = 0,
    observations: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Play ``policy`` like :func:`rollout` but stop before the last step: the channel
    configuration that episode would evaluate, unevaluated.

    ``task.evaluate(propose(policy, env, seed))`` charges and returns what
    ``rollout(policy, env, seed)`` would (the same actions, the same random draws), so a
    search can propose several candidates, score them in parallel with
    :meth:`~rlprune.evaluation.task.PruningTask.prefetch` and then ask for each in turn.
    ``observations``, when given, receives the observation of every step, as in
    :func:`rollout`.
    """
    obs, _ = env.reset(seed=seed)
    while True:
        if observations is not None:
            observations.append(obs)
        action, _ = policy.predict(obs, deterministic=True)
        action = np.asarray(action, dtype=np.float32).reshape(1)
        channels = env.pending_channels(action)
        if channels is not None:
            return channels
        obs, _, _, _, _ = env.step(action)
