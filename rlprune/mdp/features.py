"""The observation feature sets and the action↔keep-ratio mapping, in one place.

Policies are trained and applied on these definitions: the policy artifact records the
feature-set version, and the env, the baselines and policy loading all build their
spaces and map actions here. Importing this module imports neither the env nor data.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from ..errors import ConfigError

__all__ = [
    "FEATURES",
    "FEATURES_V1",
    "FEATURES_V2",
    "FEATURES_V3",
    "COLUMN",
    "FEATURE_SETS",
    "IMPORTANCE_COLUMNS",
    "PROBE_COLUMNS",
    "FEATURE_VERSION",
    "action_space",
    "action_to_keep",
    "features_for",
    "keep_to_action",
    "observation_space",
]

FEATURES_V1: tuple[str, ...] = (
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
"""Feature set 1: where the MACs are (AMC's structural state)."""

FEATURES_V2: tuple[str, ...] = (
    *FEATURES_V1,
    "probe_drop_25",
    "probe_drop_50",
    "probe_drop_75",
    "l1_gini",
    "l1_weak_half",
    "bn_gini",
    "bn_weak_half",
    "params_share",
    "log_coupling",
    "budget_left",
    "prior_keep",
)
"""Feature set 2: set 1 plus what the heuristics know (how much accuracy each unit loses
alone, how its channel importance is spread) and the budget bookkeeping a residual
policy needs. The env docstring's table is the spec."""

FEATURES_V3: tuple[str, ...] = (*FEATURES_V2, "attention", "log_channel_step")
"""Feature set 3: set 2 plus what a transformer's units need said: whether the unit is an
attention's heads (kept whole) and the granularity its channels go in (a head's width,
a grouped conv's groups; 1 channel elsewhere). Appended, so a set-2 policy reads the
same first 23 columns."""

FEATURE_SETS: dict[int, tuple[str, ...]] = {1: FEATURES_V1, 2: FEATURES_V2, 3: FEATURES_V3}
"""Every feature set by version; each later set extends the one before it."""

COLUMN: dict[str, int] = {name: i for i, name in enumerate(FEATURES_V3)}
"""A feature's column in the observation (the same in every set that has it)."""
PROBE_COLUMNS = ("probe_drop_25", "probe_drop_50", "probe_drop_75")
"""The probes' accuracy drops, the unit pruned alone by 25, 50 and 75 %."""
IMPORTANCE_COLUMNS = ("l1_gini", "l1_weak_half", "bn_gini", "bn_weak_half")
"""How a unit's channel importance is spread (L1 norms, BatchNorm scales)."""

FEATURE_VERSION = 1
"""The default feature-set version (what a policy without a recorded version used)."""

FEATURES = FEATURES_V1
"""The default feature set's names, in order."""


def features_for(version: int) -> tuple[str, ...]:
    """The feature names of set ``version``; :class:`ConfigError` for an unknown one."""
    if version not in FEATURE_SETS:
        raise ConfigError(
            f"unknown observation feature set v{version}; this rlprune knows "
            + ", ".join(f"v{v}" for v in FEATURE_SETS)
        )
    return FEATURE_SETS[version]


def observation_space(version: int = FEATURE_VERSION) -> spaces.Box:
    """``Box(0, 1, (len(features),), float32)``: the same for every network."""
    return spaces.Box(0.0, 1.0, shape=(len(features_for(version)),), dtype=np.float32)


def action_space() -> spaces.Box:
    """``Box(-1, 1, (1,), float32)``: one keep-ratio (or correction) per step."""
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
