"""The observation feature set and the action↔keep-ratio mapping, in one place.

Policies are trained and applied on these definitions: the policy artifact records
:data:`FEATURE_VERSION`, and the env, the baselines and policy loading all build their
spaces and map actions here. Importing this module imports neither the env nor data.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

__all__ = [
    "FEATURES",
    "FEATURE_VERSION",
    "action_space",
    "action_to_keep",
    "keep_to_action",
    "observation_space",
]

FEATURE_VERSION = 1
"""Version of the observation feature set; a policy artifact records the one it was trained on."""

FEATURES: tuple[str, ...] = (
    "position",
    "log_in_channels",
    "log_out_channels",
    "kernel",
    "stride",
    "log_input_size",
    "depthwise",
    "macs_share",
    "macs_removed",
    "macs_remaining",
    "previous_keep",
    "target",
)
"""Observation features, in order (the env's docstring table says what each means)."""


def observation_space() -> spaces.Box:
    """``Box(0, 1, (len(FEATURES),), float32)``: the same for every network."""
    return spaces.Box(0.0, 1.0, shape=(len(FEATURES),), dtype=np.float32)


def action_space() -> spaces.Box:
    """``Box(-1, 1, (1,), float32)``: one keep-ratio per step."""
    return spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)


def action_to_keep(action: float, min_keep: float, max_keep: float) -> float:
    """The keep-ratio in ``[min_keep, max_keep]`` that an action in [-1, 1] maps to (linear)."""
    a = min(max(float(action), -1.0), 1.0)
    return min_keep + (a + 1.0) / 2.0 * (max_keep - min_keep)


def keep_to_action(keep_ratio: float, min_keep: float, max_keep: float) -> float:
    """The action in [-1, 1] that :func:`action_to_keep` maps to ``keep_ratio`` (clipped)."""
    if max_keep <= min_keep:
        return 0.0
    return float(np.clip(2.0 * (keep_ratio - min_keep) / (max_keep - min_keep) - 1.0, -1.0, 1.0))
