"""The portable policy artifact: a policy network's weights plus JSON metadata.

A policy folder holds ``policy.pt`` (a state dict, loaded with
``torch.load(..., weights_only=True)``: nothing is unpickled) and
``policy.json`` (feature-set version, action bounds, reward, target, the env it
was trained on, training episodes, best result, and the agent preset needed to
rebuild the network). The observation is architecture-independent, so a policy
runs on any network whose env uses the same feature-set version.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy
from torch import nn

from ..core.config import EnvConfig, make_config
from ..env.features import (
    FEATURE_SETS,
    FEATURE_VERSION,
    action_space,
    features_for,
    observation_space,
)
from ..errors import ConfigError, one_line
from ..files import atomic_write_bytes, atomic_write_json
from ..version import __version__
from .agents import AgentConfig, build_policy, make_agent_config

__all__ = [
    "METADATA_FILE",
    "POLICY_ENV_KEYS",
    "WEIGHTS_FILE",
    "LoadedPolicy",
    "env_config_for_policy",
    "load_policy",
    "resolve_policy_dir",
    "save_policy",
]

WEIGHTS_FILE = "policy.pt"
METADATA_FILE = "policy.json"


POLICY_ENV_KEYS = ("action_mode", "prior", "residual_scale", "probe_images", "fill_budget")
"""Env settings a policy was trained under and must be applied under, with its feature set
(``feature_version``), action bounds and reward."""


def save_policy(
    network: nn.Module,
    out_dir: str | Path,
    metadata: Mapping[str, Any],
    feature_version: int = FEATURE_VERSION,
) -> Path:
    """Write ``network``'s weights and ``metadata`` (plus the feature-set version) to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    atomic_write_bytes(out / WEIGHTS_FILE, buffer.getvalue())
    meta = {
        "format": "rlprune-policy",
        "feature_version": feature_version,
        "features": list(features_for(feature_version)),
        "rlprune_version": __version__,
        **metadata,
    }
    atomic_write_json(out / METADATA_FILE, meta)
    return out


@dataclass
class LoadedPolicy:
    """A policy network with its metadata; speaks ``predict(obs, deterministic)`` like SB3."""

    network: BasePolicy
    metadata: dict[str, Any]
    agent: AgentConfig
    path: Path

    def predict(
        self, observation: np.ndarray, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """The action for ``observation`` (the distribution's mode when ``deterministic``)."""
        action, _ = self.network.predict(observation, deterministic=deterministic)
        return action, None


def resolve_policy_dir(path: str | Path) -> Path:
    """The policy folder for a policy folder, its ``policy.json``, or a run folder."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(
            f"policy path {str(p)!r} does not exist; give a run folder or its policy/"
        )
    if p.is_file():
        p = p.parent
    if (p / "policy" / METADATA_FILE).is_file():
        p = p / "policy"
    if not (p / METADATA_FILE).is_file() or not (p / WEIGHTS_FILE).is_file():
        raise ConfigError(
            f"{str(path)!r} is not a policy: expected {METADATA_FILE} and {WEIGHTS_FILE} "
            "(made by `rlprune train`) in it or in its policy/ folder"
        )
    return p


def load_policy(path: str | Path) -> LoadedPolicy:
    """Load a policy artifact saved by :func:`save_policy` (weights_only; nothing unpickled).

    Raises:
        ConfigError: the path is missing or not a policy, or the policy was built
            for another observation feature-set version.
    """
    folder = resolve_policy_dir(path)
    try:
        metadata = json.loads((folder / METADATA_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {folder / METADATA_FILE}: {exc}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != "rlprune-policy":
        raise ConfigError(f"{str(folder)!r} is not an rlprune policy (bad {METADATA_FILE})")
    version = metadata.get("feature_version")
    if version not in FEATURE_SETS:
        raise ConfigError(
            f"policy {str(folder)!r} was trained with observation feature set v{version}, "
            f"this rlprune knows {', '.join(f'v{v}' for v in FEATURE_SETS)}; retrain it "
            "with this version"
        )
    agent_meta = metadata.get("agent", {})
    if not isinstance(agent_meta, dict) or not all(
        isinstance(agent_meta.get(k, {}), dict) for k in ("hyperparams", "env")
    ):
        raise ConfigError(
            f"{folder / METADATA_FILE} is damaged: 'agent' must map name, algo, hyperparams "
            "and env; re-save the policy with `rlprune train`"
        )
    agent = make_agent_config(
        str(agent_meta.get("name", "agent")),
        {
            "algo": agent_meta.get("algo", "ppo"),
            **agent_meta.get("hyperparams", {}),
            "env": agent_meta.get("env", {}),
        },
    )
    try:
        network = build_policy(agent, observation_space(version), action_space())
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"{folder / METADATA_FILE} describes a network that cannot be built "
            f"({one_line(exc)}); re-save the policy with `rlprune train`"
        ) from None
    try:
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    except Exception as exc:  # corrupt file or a network that does not match the metadata
        raise ConfigError(
            f"cannot load policy weights {str(folder / WEIGHTS_FILE)!r}: {str(exc).splitlines()[0]}"
        ) from None
    network.set_training_mode(False)
    return LoadedPolicy(network=network, metadata=metadata, agent=agent, path=folder)


def env_config_for_policy(
    env_config: EnvConfig, policy: LoadedPolicy, target: float | None
) -> EnvConfig:
    """The env config with the policy's action bounds, reward, feature set and action mode,
    and one fixed target."""
    if target is None:
        low, high = env_config.target_range
        if low != high:
            raise ConfigError(
                f"env {env_config.name!r} has a target range [{low}, {high}]; choose one with --target"
            )
        target = low
    meta = policy.metadata
    return make_config(
        {
            **dataclasses.asdict(env_config),
            "target": target,
            "min_keep": meta.get("min_keep", env_config.min_keep),
            "max_keep": meta.get("max_keep", env_config.max_keep),
            "reward": meta.get("reward", env_config.reward),
            "features": meta.get("feature_version", 1),
            **{k: meta[k] for k in POLICY_ENV_KEYS if k in meta},
            **policy.agent.env,  # the agent preset's own env settings, as in training
        }
    )
