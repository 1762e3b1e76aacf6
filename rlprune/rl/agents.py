"""Agent presets (rlprune's YAML) and the Stable-Baselines3 algorithms they build.

The format is rlprune's own, modelled on rl-baselines3-zoo's but counted in episodes;
rl-zoo3 itself does not read it (it reads ``agents/rl-zoo3/ppo.yml``, the same PPO
settings in steps for the digits preset).

A preset file holds a ``default:`` entry and optional per-env entries that
override it. Keys are Stable-Baselines3 constructor arguments plus a few that
are counted in *episodes* rather than steps, because an episode here is one
pruned network (one evaluation) and its length is the number of units, which
differs between networks. Steps are derived from episodes in :func:`build_algorithm`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DDPG, PPO, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from ..errors import ConfigError, one_line
from ..mdp.settings import AGENT_KEYS, EnvConfig
from ..presets.loader import load_agent_values

__all__ = [
    "ACTIVATIONS",
    "ALGORITHMS",
    "AgentConfig",
    "build_algorithm",
    "build_policy",
    "zero_action_layer",
    "load_agent_config",
    "make_agent_config",
]

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "ddpg": DDPG, "td3": TD3}
ON_POLICY = {"ppo"}

EPISODE_KEYS: dict[str, set[str]] = {
    # PPO: a rollout of `episodes_per_update` episodes per env, split into `minibatches`
    "ppo": {"episodes_per_update", "minibatches"},
    # off-policy: random warm-up episodes, then Gaussian exploration noise on the action
    "ddpg": {"warmup_episodes", "noise_sigma"},
    "td3": {"warmup_episodes", "noise_sigma"},
}
DERIVED = {"n_steps", "batch_size", "learning_starts", "train_freq", "action_noise"}
"""SB3 arguments computed from the episode keys; a preset may set ``batch_size`` for off-policy."""

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}

COMMON_KEYS = {"zero_init_action"}
"""rlprune keys every algorithm takes: ``zero_init_action`` zeroes the policy's action
layer, so the deterministic action starts at 0 (in the residual action mode: the prior)."""

ENV_KEYS = AGENT_KEYS
"""Env settings an agent preset may choose under ``env:`` (flagged on their fields)."""


@dataclass(frozen=True)
class AgentConfig:
    """A resolved agent preset for one env."""

    name: str
    algo: str
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    """Stable-Baselines3 constructor arguments (plus the episode keys of the algorithm)."""
    env: Mapping[str, Any] = field(default_factory=dict)
    """Env settings of this agent (keys of :data:`ENV_KEYS`), over the env preset's."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for run folders and policy metadata."""
        return {
            "name": self.name,
            "algo": self.algo,
            "hyperparams": dict(self.hyperparams),
            "env": dict(self.env),
        }

    def env_config(self, base: EnvConfig) -> EnvConfig:
        """``base`` with this agent's env settings applied."""
        return base.derive(self.env)


def _allowed_keys(algo: str) -> set[str]:
    params = set(inspect.signature(ALGORITHMS[algo].__init__).parameters)
    params -= {"self", "env", "seed", "verbose", "device", "tensorboard_log", "_init_setup_model"}
    allowed = params | EPISODE_KEYS[algo] | COMMON_KEYS
    if algo in ON_POLICY:
        allowed -= DERIVED
    else:
        allowed -= DERIVED - {"batch_size"}
    return allowed


_NUMBER_KEYS = {
    "learning_rate", "gamma", "gae_lambda", "clip_range", "ent_coef", "vf_coef",
    "max_grad_norm", "noise_sigma", "tau", "target_policy_noise", "target_noise_clip",
}  # fmt: skip
_COUNT_KEYS = {
    "n_epochs", "episodes_per_update", "minibatches", "warmup_episodes", "buffer_size",
    "batch_size", "policy_delay",
}  # fmt: skip
_BOOL_KEYS = {"zero_init_action", "normalize_advantage", "use_sde", "ortho_init"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


MAX_LAYER_WIDTH = 4096
"""The widest hidden layer an agent's network may have (observations hold ~15 features;
a width beyond this is a typo that would allocate gigabytes)."""
MAX_LAYERS = 16
"""The most hidden layers an agent's network may have."""


def _net_arch_ok(arch: Any) -> bool:
    def layers(v: Any) -> bool:
        return (
            isinstance(v, list)
            and len(v) <= MAX_LAYERS
            and all(
                isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_LAYER_WIDTH
                for n in v
            )
        )

    if isinstance(arch, Mapping):
        return all(layers(v) for v in arch.values())
    return layers(arch)


def check_agent_types(name: str, values: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for the first agent-preset value of the wrong type
    (``learning_rate: fast``, ``net_arch: "big"``, ``episodes_per_update: 0``)."""
    where = f"in agent preset {name!r}"
    for key, value in values.items():
        if key in _NUMBER_KEYS and not (_is_number(value) and value >= 0):
            raise ConfigError(
                f"{key} {where} must be a non-negative number, got {value!r}; e.g. {key}: 0.0003"
            )
        if key in _COUNT_KEYS and not (
            isinstance(value, int) and not isinstance(value, bool) and value >= 1
        ):
            raise ConfigError(
                f"{key} {where} must be a positive integer, got {value!r}; e.g. {key}: 4"
            )
        if key in _BOOL_KEYS and not isinstance(value, bool):
            raise ConfigError(f"{key} {where} must be true or false, got {value!r}")
    kwargs = values.get("policy_kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"policy_kwargs {where} must be a mapping, e.g. {{net_arch: [64, 64]}}")
    if "net_arch" in kwargs and not _net_arch_ok(kwargs["net_arch"]):
        raise ConfigError(
            f"net_arch {where} must be a list of at most {MAX_LAYERS} layer widths of 1 to "
            f"{MAX_LAYER_WIDTH} (e.g. [64, 64]) or a mapping of such lists (e.g. "
            f"{{pi: [64], vf: [64]}}), got {kwargs['net_arch']!r}"
        )
    if "log_std_init" in kwargs and not _is_number(kwargs["log_std_init"]):
        raise ConfigError(f"log_std_init {where} must be a number, got {kwargs['log_std_init']!r}")
    for key in _BOOL_KEYS & set(kwargs):
        if not isinstance(kwargs[key], bool):
            raise ConfigError(f"{key} {where} must be true or false, got {kwargs[key]!r}")
    policy = values.get("policy", "MlpPolicy")
    if policy != "MlpPolicy":
        raise ConfigError(
            f"policy {where} must be MlpPolicy (observations are vectors), got {policy!r}"
        )


def make_agent_config(name: str, values: Mapping[str, Any]) -> AgentConfig:
    """Validate one resolved preset entry."""
    data = dict(values)
    algo = str(data.pop("algo", "ppo")).lower()
    data.pop("description", None)  # for people and the method list; not an SB3 argument
    env = data.pop("env", None) or {}
    if not isinstance(env, Mapping):
        raise ConfigError(f"'env' in agent preset {name!r} must map env settings to values")
    unknown_env = sorted(set(env) - ENV_KEYS)
    if unknown_env:
        raise ConfigError(
            f"unknown env setting {unknown_env[0]!r} in agent preset {name!r}; an agent may "
            f"set: {', '.join(sorted(ENV_KEYS))}"
        )
    if algo not in ALGORITHMS:
        raise ConfigError(
            f"unknown algorithm {algo!r} in agent preset {name!r}; choose one of: "
            f"{', '.join(ALGORITHMS)}"
        )
    unknown = sorted(set(data) - _allowed_keys(algo))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} for {algo} in agent preset {name!r}; valid keys: "
            f"{', '.join(sorted(_allowed_keys(algo)))}"
        )
    check_agent_types(name, data)
    activation = data.get("policy_kwargs", {}).get("activation_fn")
    if activation is not None and activation not in ACTIVATIONS:
        raise ConfigError(
            f"unknown activation_fn {activation!r}; choose one of: {', '.join(ACTIVATIONS)}"
        )
    return AgentConfig(name=name, algo=algo, hyperparams=data, env=dict(env))


def load_agent_config(agent: str | os.PathLike[str], env_name: str) -> AgentConfig:
    """Load an agent preset (bundled name such as ``ppo`` or a YAML path) for ``env_name``.

    The ``default:`` entry is updated with the ``env_name`` entry if there is one
    (``policy_kwargs`` merged key by key); see :func:`rlprune.presets.loader.load_agent_values`.
    """
    name, values = load_agent_values(agent, env_name)
    return make_agent_config(name, values)


def _policy_kwargs(raw: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = dict(raw)
    if "activation_fn" in kwargs:
        kwargs["activation_fn"] = ACTIVATIONS[kwargs["activation_fn"]]
    return kwargs


def build_algorithm(
    agent: AgentConfig,
    env: VecEnv,
    n_units: int,
    *,
    seed: int,
) -> BaseAlgorithm:
    """Build the Stable-Baselines3 algorithm of ``agent`` for ``env``.

    Derived step counts (all in one place): PPO's ``n_steps`` is
    ``episodes_per_update * n_units`` and its ``batch_size`` the rollout split into
    ``minibatches``; off-policy agents start learning after ``warmup_episodes``
    random episodes, train once per episode, and explore with Gaussian action
    noise of ``noise_sigma``.
    """
    params = dict(agent.hyperparams)
    policy = params.pop("policy", "MlpPolicy")
    zero_init = bool(params.pop("zero_init_action", False))
    if "policy_kwargs" in params:
        params["policy_kwargs"] = _policy_kwargs(params["policy_kwargs"])
    if agent.algo in ON_POLICY:
        episodes = int(params.pop("episodes_per_update", 8))
        minibatches = int(params.pop("minibatches", 1))
        n_steps = max(episodes * n_units, 2)
        params["n_steps"] = n_steps
        params["batch_size"] = max(n_steps * env.num_envs // max(minibatches, 1), 2)
    else:
        warmup = int(params.pop("warmup_episodes", 10))
        sigma = float(params.pop("noise_sigma", 0.5))
        params["learning_starts"] = warmup * n_units * env.num_envs
        params["train_freq"] = (1, "episode")
        params.setdefault("gradient_steps", -1)
        action_dim = int(np.prod(env.action_space.shape or (1,)))
        params["action_noise"] = NormalActionNoise(
            mean=np.zeros(action_dim), sigma=sigma * np.ones(action_dim)
        )
    try:
        algorithm = ALGORITHMS[agent.algo](
            policy, env, seed=seed, verbose=0, device="cpu", **params
        )
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(
            f"agent preset {agent.name!r}: Stable-Baselines3 rejected its settings "
            f"({one_line(exc)}); check the preset's keys and values"
        ) from None
    if zero_init:
        zero_action_layer(algorithm.policy)
    return algorithm


def zero_action_layer(policy: BasePolicy) -> None:
    """Zero the weights and bias of the layer that outputs the action (the mean for PPO,
    the actor's last linear layer, and its target, for DDPG/TD3), so the deterministic
    action is 0 for every observation until learning moves it."""
    heads: list[nn.Module] = []
    action_net = getattr(policy, "action_net", None)
    if isinstance(action_net, nn.Module):
        heads.append(action_net)
    for name in ("actor", "actor_target"):
        actor = getattr(policy, name, None)
        if actor is not None:
            heads += [m for m in actor.modules() if isinstance(m, nn.Linear)][-1:]
    if not heads:
        raise ConfigError(f"zero_init_action: no action layer found in {type(policy).__name__}")
    with torch.no_grad():
        for head in heads:
            for parameter in head.parameters():
                parameter.zero_()


def build_policy(
    agent: AgentConfig, observation_space: gym.Space, action_space: gym.Space
) -> BasePolicy:
    """A bare policy network of ``agent``'s algorithm, for loading saved weights and predicting."""
    algo_cls = ALGORITHMS[agent.algo]
    policy_cls = algo_cls.policy_aliases[agent.hyperparams.get("policy", "MlpPolicy")]
    kwargs = _policy_kwargs(agent.hyperparams.get("policy_kwargs", {}))
    policy: BasePolicy = policy_cls(observation_space, action_space, lambda _: 0.0, **kwargs)
    return policy
