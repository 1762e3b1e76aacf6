"""rlprune: learn neural-network channel-pruning policies with reinforcement learning.

The public API is imported lazily, so ``import rlprune`` (and importing one room, such as
``rlprune.rl.policy``) does not load datasets, model zoos or plotting code it does not need.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

# oneDNN caches a compiled primitive per layer shape (default: 1024 of them); a search
# meets a new shape with every candidate, and the cache alone grew RSS by ~160 MB over
# 2,000 digits-cnn episodes. 128 holds every layer of the zoo's models in both modes.
# Read when oneDNN creates its first primitive; a value the user set is kept.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "128")

import gymnasium  # noqa: E402


def _one_thread_after_fork() -> None:
    # A forked child inherits torch's OpenMP pool in a state it cannot use: the first
    # parallel op deadlocks (gymnasium's async vector envs and SB3's SubprocVecEnv hung
    # with Linux's default fork). One thread, as DataLoader workers do, avoids the pool.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_one_thread_after_fork)

from .version import __version__  # noqa: E402

if TYPE_CHECKING:
    from .env.pruning_env import PruningEnv
    from .evaluation.candidates import Candidate
    from .evaluation.config import TaskConfig
    from .evaluation.splits import DataSplits, from_tensors
    from .evaluation.task import PruningTask
    from .mdp.features import FEATURE_VERSION, FEATURES
    from .mdp.settings import EnvConfig, EnvSettings, make_config
    from .presets.loader import load_env_config
    from .presets.tasks import load_task
    from .pruning.analysis import ModelAnalysis, PrunableUnit, analyse
    from .pruning.surgeon import PruneResult, prune

ENV_ID = "rlprune/LayerPrune-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="rlprune.env.pruning_env:PruningEnv")

_LAZY: dict[str, str] = {
    "FEATURES": "rlprune.mdp.features",
    "FEATURE_VERSION": "rlprune.mdp.features",
    "Candidate": "rlprune.evaluation.candidates",
    "DataSplits": "rlprune.evaluation.splits",
    "EnvConfig": "rlprune.mdp.settings",
    "EnvSettings": "rlprune.mdp.settings",
    "TaskConfig": "rlprune.evaluation.config",
    "make_config": "rlprune.mdp.settings",
    "ModelAnalysis": "rlprune.pruning.analysis",
    "PrunableUnit": "rlprune.pruning.analysis",
    "PruneResult": "rlprune.pruning.surgeon",
    "PruningEnv": "rlprune.env.pruning_env",
    "PruningTask": "rlprune.evaluation.task",
    "analyse": "rlprune.pruning.analysis",
    "from_tensors": "rlprune.evaluation.splits",
    "load_env_config": "rlprune.presets.loader",
    "load_task": "rlprune.presets.tasks",
    "prune": "rlprune.pruning.surgeon",
}

__all__ = [
    "ENV_ID",
    "FEATURES",
    "FEATURE_VERSION",
    "Candidate",
    "DataSplits",
    "EnvConfig",
    "EnvSettings",
    "TaskConfig",
    "make_config",
    "ModelAnalysis",
    "PrunableUnit",
    "PruneResult",
    "PruningEnv",
    "PruningTask",
    "__version__",
    "analyse",
    "from_tensors",
    "load_env_config",
    "load_task",
    "prune",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its room on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rlprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
