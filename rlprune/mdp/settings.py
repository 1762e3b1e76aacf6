"""The env settings (the MDP: target, reward, observation, action mapping, prior, shaping)
and the preset that pairs them with a task configuration.

:class:`EnvConfig` is what a preset file holds: a :class:`~rlprune.evaluation.config.TaskConfig`
and :class:`EnvSettings`, each validated when built. :meth:`EnvConfig.derive` is the one way
to change a configuration; :meth:`EnvConfig.from_dict` and :meth:`EnvConfig.to_dict` read and
write the flat preset form (run folders, manifests and policies keep that form).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..checks import check_kinds, flagged, help_for, setting
from ..errors import ConfigError
from ..evaluation.config import TASK_FIELDS, TaskConfig
from ..files import CACHE_PREFIX, resolve_cached
from .features import FEATURE_SETS, features_for

__all__ = [
    "ACTION_MODES",
    "AGENT_KEYS",
    "POLICY_KEYS",
    "ANCHORS",
    "PRESET_KEYS",
    "PRIORS",
    "SHAPINGS",
    "EnvConfig",
    "EnvSettings",
    "TargetRange",
    "make_config",
    "resolve_spec",
    "setting_help",
]

PRIORS = ("uniform", "magnitude", "sensitivity")
"""Prior allocations (:mod:`rlprune.priors`) the residual action mode starts from."""
ACTION_MODES = ("absolute", "residual")
ANCHORS = ("prior", "best")
SHAPINGS = ("none", "probes")
"""Dense reward shaping: none, or potential-based from the probes' additive drop model."""


class TargetRange(NamedTuple):
    """The budget target: the fraction of the original MACs to keep, or a range sampled per
    episode (``low == high`` for a fixed target)."""

    low: float
    high: float

    @property
    def fixed(self) -> bool:
        """Whether every episode has the same target."""
        return self.low == self.high

    def to_value(self) -> float | tuple[float, float]:
        """The preset form: a number for a fixed target, ``(low, high)`` for a range."""
        return self.low if self.fixed else (self.low, self.high)


def _parse_target(target: Any) -> TargetRange:
    if isinstance(target, (list, tuple)):
        if len(target) != 2:
            raise ConfigError(f"target range must be [low, high], got {list(target)}")
        low, high = (_parse_target(t).low for t in target)
        if low > high:
            raise ConfigError(f"target range [{low}, {high}] has low > high; swap them")
        return TargetRange(low, high)
    try:
        if isinstance(target, (bool, str)):
            raise TypeError(target)
        value = float(target)
    except (TypeError, ValueError):
        raise ConfigError(f"target must be a number in (0, 1], got {target!r}") from None
    if not 0.0 < value <= 1.0:
        raise ConfigError(
            f"target {value} is outside (0, 1]; it is the fraction of MACs to keep, e.g. 0.5"
        )
    return TargetRange(value, value)


@dataclass(frozen=True)
class EnvSettings:
    """The MDP: what the agent is asked (target), sees (features), does (action mode, prior)
    and gets (reward, shaping). Validated when built."""

    target: TargetRange = setting(
        TargetRange(0.5, 0.5),
        "fraction of the original MACs to keep, or a [low, high] range to sample",
    )
    reward: str = setting(
        "acc",
        "reward name: acc, acc_log_flops, acc_budget_penalty (rlprune.mdp.rewards)",
        "str",
        agent=True,
    )
    budget_clipping: bool = setting(
        True, "bound actions so the MACs target is always met (AMC)", "bool"
    )
    fill_budget: bool = setting(
        True, "also bound actions from below so the budget is used", "bool", agent=True, policy=True
    )
    features: int = setting(
        1,
        "observation feature set: 1 (geometry and MACs) or 2 (+ sensitivity "
        "probes, channel-importance statistics, budget left, the prior's keep-ratio)",
        "int",
        choices=tuple(FEATURE_SETS),
        agent=True,
    )
    action_mode: str = setting(
        "absolute",
        "absolute: the action is the keep-ratio; residual: a bounded correction "
        "to the prior allocation (action 0 plays the prior)",
        "str",
        choices=ACTION_MODES,
        agent=True,
        policy=True,
    )
    prior: str = setting(
        "sensitivity",
        "prior allocation: uniform, magnitude or sensitivity",
        "str",
        choices=PRIORS,
        agent=True,
        policy=True,
    )
    residual_scale: float = setting(
        0.5, "largest keep-ratio correction in residual mode", "number", agent=True, policy=True
    )
    anchor: str = setting(
        "prior",
        "what residual corrections apply to: prior (the prior allocation, "
        "always) or best (the best configuration the env has evaluated at this target, "
        "the prior until one beats it)",
        "str",
        choices=ANCHORS,
        agent=True,
    )
    shaping: str = setting(
        "none",
        "dense reward shaping: none, or probes (potential-based, Ng et al. 1999: "
        "each step is charged the accuracy the sensitivity probes predict it costs, the "
        "last step gets it all back, so every episode's return is unchanged)",
        "str",
        choices=SHAPINGS,
        agent=True,
    )
    masked: tuple[str, ...] = setting(
        (),
        "observation features held at 0, so the policy cannot use them (e.g. the "
        "absolute sizes a policy would not meet again on other networks)",
        "list of str",
        "[log_in_channels, log_out_channels]",
        agent=True,
        policy=True,
    )

    def __post_init__(self) -> None:
        check_kinds(self)
        object.__setattr__(self, "target", _parse_target(self.target))
        object.__setattr__(self, "masked", tuple(self.masked or ()))
        names = features_for(self.features)
        unknown = [name for name in self.masked if name not in names]
        if unknown:
            raise ConfigError(
                f"masked feature {unknown[0]!r} is not in feature set v{self.features}; "
                f"choose among: {', '.join(names)}"
            )
        if not 0.0 < self.residual_scale <= 1.0:
            raise ConfigError(f"residual_scale must be in (0, 1], got {self.residual_scale}")


ENV_FIELDS = tuple(f.name for f in dataclasses.fields(EnvSettings))

AGENT_KEYS = frozenset(flagged((TaskConfig, EnvSettings), "agent"))
"""Settings an agent preset may choose under ``env:`` (what the agent observes and how its
actions map), applied over the env preset's."""
POLICY_KEYS = flagged((TaskConfig, EnvSettings), "policy")
"""Settings a policy artifact records and is played with."""

PRESET_KEYS = (
    "name",
    "model",
    "model_kwargs",
    "weights",
    "dataset",
    "data_dir",
    "dataset_kwargs",
    "normalize",
    "num_workers",
    "device",
    "amp",
    "threads",
    "metric",
    "latency_batch",
    "target",
    "reward",
    "min_keep",
    "max_keep",
    "budget_clipping",
    "fill_budget",
    "importance",
    "round_to",
    "ignored_layers",
    "calibration_batches",
    "batch_size",
    "val_size",
    "train_limit",
    "seed",
    "features",
    "action_mode",
    "prior",
    "residual_scale",
    "anchor",
    "probe_images",
    "shaping",
    "masked",
    "pretrain",
)
"""Every preset key, in the order a preset's flat form lists them."""
assert sorted(PRESET_KEYS) == sorted(TASK_FIELDS + ENV_FIELDS)


@dataclass(frozen=True)
class EnvConfig:
    """A preset: the task and the env settings, each validated in its own class."""

    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    env: EnvSettings = dataclasses.field(default_factory=EnvSettings)

    @property
    def name(self) -> str:
        """The preset's name, used in run names."""
        return self.task.name

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base_dir: Path | None = None) -> EnvConfig:
        """Validate flat preset ``values`` and build the configuration.

        Relative ``weights`` and ``data_dir`` paths, and the file of a ``path/file.py:factory``
        model or dataset spec, are resolved against ``base_dir``; ``cache:PATH`` weights lie
        under rlprune's cache folder (:func:`rlprune.files.cache_dir`).
        """
        unknown = sorted(set(values) - set(PRESET_KEYS))
        if unknown:
            raise ConfigError(
                f"unknown preset key {unknown[0]!r}; valid keys: {', '.join(sorted(PRESET_KEYS))}"
            )
        data = dict(values)
        if isinstance(data.get("weights"), str) and data["weights"].startswith(CACHE_PREFIX):
            data["weights"] = resolve_cached(data["weights"])
        for key in ("weights", "data_dir"):
            if isinstance(data.get(key), str) and base_dir is not None:
                data[key] = str((base_dir / data[key]).resolve())
        for key in ("model", "dataset"):
            spec = data.get(key)
            if base_dir is not None and isinstance(spec, str):
                data[key] = resolve_spec(spec, base_dir)
        task = TaskConfig(**{k: v for k, v in data.items() if k in TASK_FIELDS})
        env = EnvSettings(**{k: v for k, v in data.items() if k in ENV_FIELDS})
        return cls(task, env)

    def to_dict(self) -> dict[str, Any]:
        """The flat preset form (plain data), keys in :data:`PRESET_KEYS` order."""
        parts = {**dataclasses.asdict(self.task), **dataclasses.asdict(self.env)}
        parts["target"] = self.env.target.to_value()
        return {key: parts[key] for key in PRESET_KEYS}

    def derive(self, overrides: Mapping[str, Any], base_dir: Path | None = None) -> EnvConfig:
        """This configuration with flat preset ``overrides`` applied, validated again.

        Paths in ``overrides`` are resolved against ``base_dir`` when one is given.
        """
        if not overrides:
            return self
        return EnvConfig.from_dict({**self.to_dict(), **overrides}, base_dir=base_dir)


def resolve_spec(spec: str, base_dir: Path) -> str:
    """A model or dataset spec with the file of a ``path/file.py:factory`` spec made
    absolute against ``base_dir`` (other specs as they are)."""
    if ".py:" not in spec:
        return spec
    file, _, factory = spec.rpartition(":")
    return spec if Path(file).is_absolute() else f"{(base_dir / file).resolve()}:{factory}"


def make_config(values: Mapping[str, Any], base_dir: Path | None = None) -> EnvConfig:
    """Build an :class:`EnvConfig` from flat preset ``values`` (:meth:`EnvConfig.from_dict`)."""
    return EnvConfig.from_dict(values, base_dir)


def setting_help(name: str) -> str:
    """The help text of preset key ``name``, from whichever half holds it."""
    return help_for(TaskConfig if name in TASK_FIELDS else EnvSettings, name)
