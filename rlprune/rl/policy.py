"""The portable policy artifact: a policy network's weights plus JSON metadata.

A policy folder holds ``policy.pt`` (a state dict, loaded with
``torch.load(..., weights_only=True)``: nothing is unpickled) and
``policy.json`` (feature-set version, action bounds, reward, target, the env it
was trained on, training episodes, best result, and the agent preset needed to
rebuild the network). The observation is architecture-independent, so a policy
runs on any network whose env uses the same feature-set version.

An ensemble (:func:`save_ensemble`) is the same artifact with several networks' weights
in one ``policy.pt`` (``member0.*``, ``member1.*``, ...) and ``"members": N`` in its
metadata; it plays the mean of its members' actions.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy
from torch import nn

from ..errors import ConfigError, one_line
from ..files import atomic_write_bytes, atomic_write_json
from ..mdp.features import (
    FEATURE_SETS,
    FEATURE_VERSION,
    action_space,
    features_for,
    observation_space,
)
from ..mdp.settings import POLICY_KEYS, EnvConfig
from ..version import __version__
from .agents import AgentConfig, build_policy, make_agent_config

__all__ = [
    "METADATA_FILE",
    "POLICY_ENV_KEYS",
    "WEIGHTS_FILE",
    "LoadedPolicy",
    "env_config_for_policy",
    "install_policy",
    "load_policy",
    "policy_digest",
    "resolve_policy_dir",
    "save_ensemble",
    "save_policy",
]

WEIGHTS_FILE = "policy.pt"
METADATA_FILE = "policy.json"


POLICY_ENV_KEYS = POLICY_KEYS
"""Env settings a policy was trained under and must be applied under, with its feature set
(``feature_version``), action bounds and reward."""


def save_policy(
    network: nn.Module,
    out_dir: str | Path,
    metadata: Mapping[str, Any],
    feature_version: int = FEATURE_VERSION,
) -> Path:
    """Write ``network``'s weights and ``metadata`` (plus the feature-set version) to
    ``out_dir``; one network, so an ensemble's member count in ``metadata`` is dropped."""
    single = {k: v for k, v in metadata.items() if k != "members"}
    return _write(out_dir, network.state_dict(), single, feature_version)


def _write(
    out_dir: str | Path,
    state: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any],
    feature_version: int,
) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
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


_MEMBER_KEYS = ("feature_version", "action_mode", "prior", "residual_scale", "min_keep")


def save_ensemble(
    policies: Sequence[LoadedPolicy], out_dir: str | Path, metadata: Mapping[str, Any]
) -> Path:
    """Write ``policies`` as one ensemble policy: every member's weights in one
    ``policy.pt``, the first member's metadata updated with ``metadata``, its training
    ranges (``feature_ranges``) the union of the members', ``members`` their number and
    ``member_commands`` the commands that trained them.

    Raises:
        ConfigError: fewer than two members, or members that do not play alike (another
            feature set, action mode, prior, agent network or action bounds).
    """
    if len(policies) < 2:
        raise ConfigError("an ensemble needs at least two policies; give two or more")
    nested = [str(p.path) for p in policies if p.others]
    if nested:
        raise ConfigError(f"{nested[0]!r} is an ensemble already; give single policies")
    first = policies[0]
    for other in policies[1:]:
        differs = [k for k in _MEMBER_KEYS if other.metadata.get(k) != first.metadata.get(k)]
        if other.metadata.get("agent") != first.metadata.get("agent"):
            differs.append("agent")
        if differs:
            raise ConfigError(
                f"policy {str(other.path)!r} differs from {str(first.path)!r} in "
                f"{', '.join(differs)}; an ensemble's members must play alike"
            )
    ranges: dict[str, list[float]] = {}
    for policy in policies:
        for name, (low, high) in (policy.metadata.get("feature_ranges") or {}).items():
            seen = ranges.setdefault(name, [low, high])
            seen[0], seen[1] = min(seen[0], low), max(seen[1], high)
    skip = {"format", "feature_version", "features", "rlprune_version", "members"}
    meta = {k: v for k, v in first.metadata.items() if k not in skip}
    meta.update(
        feature_ranges=ranges,
        members=len(policies),
        member_commands=[p.metadata.get("command") for p in policies],
        training_episodes=sum(int(p.metadata.get("training_episodes") or 0) for p in policies),
    )
    meta.update(metadata)
    state = {
        f"member{i}.{key}": tensor
        for i, policy in enumerate(policies)
        for key, tensor in policy.network.state_dict().items()
    }
    return _write(out_dir, state, meta, int(first.metadata["feature_version"]))


def _member_state(state: Mapping[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
    """An ensemble member's weights out of the ensemble's state dict (``member{index}.*``)."""
    prefix = f"member{index}."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def install_policy(folder: str | Path, destination: str | Path) -> Path:
    """Replace ``destination`` with a copy of the policy in ``folder`` (its weights and
    metadata only); the scripts' ``--install`` uses it to replace ``policies/general``."""
    source, dest = Path(folder), Path(destination)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in (WEIGHTS_FILE, METADATA_FILE):
        shutil.copy2(source / name, dest / name)
    return dest


@dataclass
class LoadedPolicy:
    """A policy network with its metadata; speaks ``predict(obs, deterministic)`` like SB3.

    An ensemble's further members are in ``others``; it plays the mean of the members'
    actions.
    """

    network: BasePolicy
    metadata: dict[str, Any]
    agent: AgentConfig
    path: Path
    others: tuple[BasePolicy, ...] = ()

    @property
    def networks(self) -> tuple[BasePolicy, ...]:
        """Every member's network (one, unless the policy is an ensemble)."""
        return (self.network, *self.others)

    @property
    def outside_scale(self) -> float:
        """The strength, 0 to 1, at which ``rlprune apply --trust family`` plays this
        policy's corrections on a network outside its training ranges: 0 (the prior alone)
        unless the policy records one (``outside_scale``, chosen on networks outside its
        family by ``experiments/bundle_policy.py``)."""
        return float(self.metadata.get("outside_scale", 0.0))

    def predict(
        self, observation: np.ndarray, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """The action for ``observation`` (the distribution's mode when ``deterministic``;
        an ensemble's mean over its members)."""
        action, _ = self.network.predict(observation, deterministic=deterministic)
        if self.others:
            actions = [action] + [
                net.predict(observation, deterministic=deterministic)[0] for net in self.others
            ]
            action = np.mean(actions, axis=0).astype(np.asarray(action).dtype)
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


def policy_digest(path: str | Path) -> str:
    """A short content hash of a policy (its metadata and weights): what a benchmark records
    so that ``--resume`` knows the same policy when its folder has moved."""
    folder = resolve_policy_dir(path)
    digest = hashlib.sha256()
    for name in (METADATA_FILE, WEIGHTS_FILE):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]


def load_policy(path: str | Path) -> LoadedPolicy:
    """Load a policy artifact saved by :func:`save_policy` (weights_only; nothing unpickled).

    Raises:
        ConfigError: the path is missing or not a policy, or the policy was built
            for another observation feature-set version.
    """
    folder = resolve_policy_dir(path)
    metadata = _read_metadata(folder)
    agent = _agent_from_metadata(folder, metadata)
    members = metadata.get("members", 1)
    if not isinstance(members, int) or members < 1:
        raise ConfigError(
            f"{folder / METADATA_FILE} is damaged: 'members' must be a positive integer; "
            "re-save the policy"
        )
    networks = _load_networks(folder, agent, metadata["feature_version"], members)
    for network in networks:
        network.set_training_mode(False)
    return LoadedPolicy(
        network=networks[0],
        metadata=metadata,
        agent=agent,
        path=folder,
        others=tuple(networks[1:]),
    )


def _read_metadata(folder: Path) -> dict[str, Any]:
    """A policy folder's metadata, refused unless it is a policy of a known feature set."""
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
    _check_feature_metadata(folder / METADATA_FILE, metadata, version)
    _check_outside_scale(folder / METADATA_FILE, metadata)
    return metadata


def _check_feature_metadata(path: Path, metadata: Mapping[str, Any], version: int) -> None:
    """Refuse ``features`` other than feature set ``version``'s columns in order, and
    ``feature_ranges`` that are not finite ``[low, high]`` pairs of those columns.

    Raises:
        ConfigError: naming the file and the field.
    """
    columns = list(features_for(version))
    if "features" in metadata and metadata["features"] != columns:
        raise ConfigError(
            f"{path} is damaged: 'features' must list feature set v{version}'s columns in "
            f"order ({', '.join(columns)}); re-save the policy with `rlprune train`"
        )
    ranges = metadata.get("feature_ranges")
    if ranges is None:
        return
    if not isinstance(ranges, dict):
        raise ConfigError(f"{path} is damaged: 'feature_ranges' must map features to [low, high]")
    for name, pair in ranges.items():
        ok = (
            name in columns
            and isinstance(pair, list)
            and len(pair) == 2
            and all(_is_finite_number(v) for v in pair)
            and pair[0] <= pair[1]
        )
        if not ok:
            raise ConfigError(
                f"{path} is damaged: 'feature_ranges' {name!r} must be a known feature's "
                f"finite [low, high] with low <= high, got {pair!r}; re-save the policy"
            )


def _check_outside_scale(path: Path, metadata: Mapping[str, Any]) -> None:
    """Refuse an ``outside_scale`` that is not a number in [0, 1].

    Raises:
        ConfigError: naming the file and the field.
    """
    value = metadata.get("outside_scale", 0.0)
    if not (_is_finite_number(value) and 0.0 <= value <= 1.0):
        raise ConfigError(
            f"{path} is damaged: 'outside_scale' must be a number in [0, 1] (the strength "
            f"off-family), got {value!r}; rerun experiments/bundle_policy.py or set it to 0"
        )


def _is_finite_number(value: Any) -> bool:
    """A JSON number (not a boolean) that is neither NaN nor infinite."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _agent_from_metadata(folder: Path, metadata: Mapping[str, Any]) -> AgentConfig:
    """The agent preset the metadata records, which rebuilds the policy's network."""
    agent_meta = metadata.get("agent", {})
    if not isinstance(agent_meta, dict) or not all(
        isinstance(agent_meta.get(k, {}), dict) for k in ("hyperparams", "env")
    ):
        raise ConfigError(
            f"{folder / METADATA_FILE} is damaged: 'agent' must map name, algo, hyperparams "
            "and env; re-save the policy with `rlprune train`"
        )
    try:
        return make_agent_config(
            str(agent_meta.get("name", "agent")),
            {
                "algo": agent_meta.get("algo", "ppo"),
                **agent_meta.get("hyperparams", {}),
                "env": agent_meta.get("env", {}),
            },
        )
    except ConfigError as exc:
        raise ConfigError(f"{folder / METADATA_FILE} is damaged: {exc}") from None


def _load_networks(
    folder: Path, agent: AgentConfig, version: int, members: int
) -> list[BasePolicy]:
    """Build the policy's ``members`` networks, then load their weights from ``policy.pt``."""
    try:
        networks = [
            build_policy(agent, observation_space(version), action_space()) for _ in range(members)
        ]
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"{folder / METADATA_FILE} describes a network that cannot be built "
            f"({one_line(exc)}); re-save the policy with `rlprune train`"
        ) from None
    try:
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        parts = [state] if members == 1 else [_member_state(state, i) for i in range(members)]
        for network, part in zip(networks, parts, strict=True):
            network.load_state_dict(part)
    except Exception as exc:  # corrupt file or a network that does not match the metadata
        # one_line: an empty file's error has no text to take a first line of
        raise ConfigError(
            f"cannot load policy weights {str(folder / WEIGHTS_FILE)!r}: {one_line(exc)}"
        ) from None
    bad = next((k for k, v in state.items() if not torch.isfinite(v).all()), None)
    if bad is not None:
        raise ConfigError(
            f"policy weights {str(folder / WEIGHTS_FILE)!r} hold NaN or inf in {bad!r}; "
            "the policy is damaged: retrain it or use another"
        )
    return networks


def env_config_for_policy(
    env_config: EnvConfig, policy: LoadedPolicy, target: float | None
) -> EnvConfig:
    """The env config with the policy's action bounds, reward, feature set and action mode,
    and one fixed target."""
    if target is None:
        low, high = env_config.env.target
        if low != high:
            raise ConfigError(
                f"env {env_config.name!r} has a target range [{low}, {high}]; choose one with --target"
            )
        target = low
    meta = policy.metadata
    return env_config.derive(
        {
            "target": target,
            "min_keep": meta.get("min_keep", env_config.task.min_keep),
            "max_keep": meta.get("max_keep", env_config.task.max_keep),
            "reward": meta.get("reward", env_config.env.reward),
            "features": meta.get("feature_version", 1),
            **{k: meta[k] for k in POLICY_ENV_KEYS if k in meta},
            **policy.agent.env,  # the agent preset's own env settings, as in training
        }
    )
