"""rlprune: learn neural-network channel-pruning policies with reinforcement learning."""

from __future__ import annotations

import gymnasium

from .analysis import ModelAnalysis, PrunableUnit, analyse
from .config import EnvConfig, load_env_config
from .env import FEATURE_VERSION, FEATURES, PruningEnv
from .prune import PruneResult, prune
from .task import Candidate, PruningTask

__version__ = "0.1.0"

ENV_ID = "rlprune/LayerPrune-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="rlprune.env:PruningEnv")

__all__ = [
    "ENV_ID",
    "FEATURES",
    "FEATURE_VERSION",
    "Candidate",
    "EnvConfig",
    "ModelAnalysis",
    "PrunableUnit",
    "PruneResult",
    "PruningEnv",
    "PruningTask",
    "analyse",
    "load_env_config",
    "prune",
]
