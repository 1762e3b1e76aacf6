"""The env configuration: one frozen dataclass, validated field by field.

Loading it from YAML presets is :mod:`rlprune.presets.loader`'s job; this module only
says what a configuration holds and which values are valid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..pruning.importance import IMPORTANCE
from .devices import DEVICE_PATTERN

__all__ = [
    "ACTION_MODES",
    "ANCHORS",
    "SHAPINGS",
    "FEATURE_SETS",
    "FIELDS",
    "TRUST_MODES",
    "check_trust",
    "PRIORS",
    "EnvConfig",
    "help_for",
    "make_config",
]

PRIORS = ("uniform", "magnitude", "sensitivity")
"""Prior allocations (:mod:`rlprune.priors`) the residual action mode starts from."""
ACTION_MODES = ("absolute", "residual")
ANCHORS = ("prior", "best")
SHAPINGS = ("none", "probes")
"""Dense reward shaping: none, or potential-based from the probes' additive drop model."""
FEATURE_SETS = (1, 2)
TRUST_MODES = ("family", "always")
"""When a policy's corrections are played zero-shot: ``family``, only on a network whose
observations lie inside the ranges the policy saw in training (elsewhere they are damped to
the policy's ``outside_scale``, and its residual prior alone is played when that is 0);
``always``, in full on every network."""


def check_trust(trust: str) -> None:
    """Raise :class:`ConfigError` unless ``trust`` is one of :data:`TRUST_MODES`."""
    if trust not in TRUST_MODES:
        raise ConfigError(f"unknown trust {trust!r}; choose one of: {', '.join(TRUST_MODES)}")


@dataclass(frozen=True)
class EnvConfig:
    """Everything that defines a pruning environment.

    Each field's help is its metadata; the CLI's override flags read it (:func:`help_for`).
    """

    name: str = field(default="custom", metadata={"help": "preset name, used in run names"})
    model: str = field(
        default="digits-cnn",
        metadata={"help": "zoo name, 'package.module:factory' or 'path/file.py:factory'"},
    )
    model_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "keyword arguments for the model factory"}
    )
    weights: str | None = field(
        default=None, metadata={"help": "trained weights (state dict); relative to the preset file"}
    )
    dataset: str = field(
        default="digits",
        metadata={
            "help": "dataset name (digits, fashion-mnist), folder, 'package.module:factory' "
            "or 'path/file.py:factory'"
        },
    )
    data_dir: str | None = field(default=None, metadata={"help": "folder holding dataset files"})
    dataset_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "keyword arguments for a dataset factory"}
    )
    normalize: str | dict[str, Any] | None = field(
        default=None,
        metadata={
            "help": "input normalisation: standard (the train split's mean and std), none, or "
            "{mean: [...], std: [...]} per channel; default: standard for the bundled "
            "datasets, none for a dataset factory (its own transforms)"
        },
    )
    num_workers: int = field(
        default=0,
        metadata={"help": "DataLoader worker processes for a dataset factory's splits"},
    )
    device: str = field(
        default="auto",
        metadata={
            "help": "where calibration, scoring, fine-tuning and latency run: auto (CUDA "
            "when available), cpu, cuda, cuda:N or mps"
        },
    )
    amp: bool = field(
        default=False,
        metadata={"help": "mixed precision when scoring (float16 on GPUs, bfloat16 on CPU)"},
    )
    target: float | tuple[float, float] = field(
        default=0.5,
        metadata={
            "help": "fraction of the original MACs to keep, or a [low, high] range to sample"
        },
    )
    reward: str = field(
        default="acc",
        metadata={
            "help": "reward name: acc, acc_log_flops, acc_budget_penalty (rlprune.env.rewards)"
        },
    )
    min_keep: float = field(default=0.2, metadata={"help": "smallest keep-ratio an action maps to"})
    max_keep: float = field(default=1.0, metadata={"help": "largest keep-ratio an action maps to"})
    budget_clipping: bool = field(
        default=True, metadata={"help": "bound actions so the MACs target is always met (AMC)"}
    )
    fill_budget: bool = field(
        default=True, metadata={"help": "also bound actions from below so the budget is used"}
    )
    importance: str = field(default="l1", metadata={"help": "channel importance: l1, l2, random"})
    round_to: int | None = field(
        default=None, metadata={"help": "keep channel counts multiples of"}
    )
    ignored_layers: tuple[str, ...] = field(
        default=(), metadata={"help": "qualified names of layers never to prune"}
    )
    calibration_batches: int = field(
        default=10, metadata={"help": "training batches for BatchNorm recalibration (0: none)"}
    )
    batch_size: int = field(default=128, metadata={"help": "batch size for calibration"})
    val_size: int | float = field(
        default=0.2, metadata={"help": "validation split: a count, or a fraction of training data"}
    )
    train_limit: int | None = field(
        default=None, metadata={"help": "use at most this many training samples"}
    )
    seed: int = field(default=0, metadata={"help": "seed for data splits and calibration batches"})
    features: int = field(
        default=1,
        metadata={
            "help": "observation feature set: 1 (geometry and MACs) or 2 (+ sensitivity "
            "probes, channel-importance statistics, budget left, the prior's keep-ratio)"
        },
    )
    action_mode: str = field(
        default="absolute",
        metadata={
            "help": "absolute: the action is the keep-ratio; residual: a bounded correction "
            "to the prior allocation (action 0 plays the prior)"
        },
    )
    prior: str = field(
        default="sensitivity",
        metadata={"help": "prior allocation: uniform, magnitude or sensitivity"},
    )
    residual_scale: float = field(
        default=0.5, metadata={"help": "largest keep-ratio correction in residual mode"}
    )
    anchor: str = field(
        default="prior",
        metadata={
            "help": "what residual corrections apply to: prior (the prior allocation, "
            "always) or best (the best configuration the env has evaluated at this target, "
            "the prior until one beats it)"
        },
    )
    probe_images: int | None = field(
        default=512,
        metadata={
            "help": "validation images per sensitivity probe (feature set 2, sensitivity "
            "prior; null: all of them); a probe costs probe_images / val_size of a full "
            "evaluation"
        },
    )
    shaping: str = field(
        default="none",
        metadata={
            "help": "dense reward shaping: none, or probes (potential-based, Ng et al. 1999: "
            "each step is charged the accuracy the sensitivity probes predict it costs, the "
            "last step gets it all back, so every episode's return is unchanged)"
        },
    )
    pretrain: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "base-model training settings: epochs, lr, batch_size, weight_decay"},
    )

    @property
    def target_range(self) -> tuple[float, float]:
        """``(low, high)`` of the target; equal for a fixed target."""
        if isinstance(self.target, tuple):
            return self.target
        return (self.target, self.target)


FIELDS = {f.name for f in dataclasses.fields(EnvConfig)}


def _check_target(target: Any) -> float | tuple[float, float]:
    if isinstance(target, (list, tuple)):
        if len(target) != 2:
            raise ConfigError(f"target range must be [low, high], got {list(target)}")
        low, high = (_check_target(t) for t in target)
        assert isinstance(low, float) and isinstance(high, float)
        if low > high:
            raise ConfigError(f"target range [{low}, {high}] has low > high; swap them")
        return (low, high)
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
    return value


_KINDS: dict[str, str] = {
    "name": "str",
    "model": "str",
    "model_kwargs": "mapping",
    "weights": "str?",
    "dataset": "str",
    "data_dir": "str?",
    "dataset_kwargs": "mapping",
    "num_workers": "non-negative int",
    "device": "str",
    "amp": "bool",
    "reward": "str",
    "min_keep": "number",
    "max_keep": "number",
    "budget_clipping": "bool",
    "fill_budget": "bool",
    "importance": "str",
    "round_to": "positive int?",
    "ignored_layers": "list of str",
    "calibration_batches": "int",
    "batch_size": "positive int",
    "val_size": "positive number",
    "train_limit": "positive int?",
    "seed": "int",
    "features": "int",
    "action_mode": "str",
    "prior": "str",
    "residual_scale": "number",
    "anchor": "str",
    "probe_images": "positive int?",
    "shaping": "str",
    "pretrain": "mapping",
}
"""The type each preset key must have (``?``: may also be null); ``target`` is checked apart."""

_WORDS = {
    "str": "a string",
    "mapping": "a mapping",
    "bool": "true or false",
    "int": "an integer",
    "positive int": "a positive integer",
    "non-negative int": "a non-negative integer",
    "number": "a number",
    "positive number": "a positive number",
    "list of str": "a list of names",
}

_EXAMPLES = {"ignored_layers": "[features.0, classifier]", "model_kwargs": "{width: 2}"}


def _kind_ok(kind: str, value: Any) -> bool:
    if kind.endswith("?"):
        if value is None:
            return True
        kind = kind[:-1]
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_number = is_int or isinstance(value, float)
    checks = {
        "str": isinstance(value, str),
        "mapping": isinstance(value, Mapping),
        "bool": isinstance(value, bool),
        "int": is_int,
        "positive int": is_int and value >= 1,
        "non-negative int": is_int and value >= 0,
        "number": is_number,
        "positive number": is_number and value > 0,
        "list of str": isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value),
    }
    return checks[kind]


def check_types(values: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for the first preset value of the wrong type (e.g.
    ``min_keep: "abc"``, ``budget_clipping: "no"``, ``ignored_layers: features.0``)."""
    for key, value in values.items():
        kind = _KINDS.get(key)
        if kind is None or _kind_ok(kind, value):
            continue
        default = {f.name: f for f in dataclasses.fields(EnvConfig)}[key].default
        example = _EXAMPLES.get(key, "true" if isinstance(default, bool) else default)
        if example is None or example is dataclasses.MISSING:
            example = "1" if "int" in kind else "..."
        nullable = " (or null)" if kind.endswith("?") else ""
        raise ConfigError(
            f"preset key {key!r} must be {_WORDS[kind.rstrip('?')]}{nullable}, got {value!r} "
            f"({type(value).__name__}); e.g. {key}: {example}"
        )


def make_config(values: Mapping[str, Any], base_dir: Path | None = None) -> EnvConfig:
    """Validate ``values`` and build an :class:`EnvConfig`.

    Relative ``weights`` and ``data_dir`` paths, and the file of a ``path/file.py:factory``
    model or dataset spec, are resolved against ``base_dir``.
    """
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise ConfigError(
            f"unknown preset key {unknown[0]!r}; valid keys: {', '.join(sorted(FIELDS))}"
        )
    check_types(values)
    data = dict(values)
    for key in ("weights", "data_dir"):
        if data.get(key) is not None and base_dir is not None:
            data[key] = str((base_dir / str(data[key])).resolve())
    for key in ("model", "dataset"):
        spec = data.get(key)
        if base_dir is not None and isinstance(spec, str) and ".py:" in spec:
            file, _, factory = spec.rpartition(":")
            if not Path(file).is_absolute():
                data[key] = f"{(base_dir / file).resolve()}:{factory}"
    if "target" in data:
        data["target"] = _check_target(data["target"])
    if "ignored_layers" in data:
        data["ignored_layers"] = tuple(data["ignored_layers"] or ())
    config = EnvConfig(**data)
    if not 0.0 < config.min_keep <= config.max_keep <= 1.0:
        raise ConfigError(
            f"need 0 < min_keep <= max_keep <= 1, got min_keep={config.min_keep}, "
            f"max_keep={config.max_keep}"
        )
    if config.importance not in IMPORTANCE:
        raise ConfigError(
            f"unknown importance {config.importance!r}; choose one of: {', '.join(IMPORTANCE)}"
        )
    choices: dict[str, tuple[Any, ...]] = {
        "features": FEATURE_SETS,
        "action_mode": ACTION_MODES,
        "prior": PRIORS,
        "anchor": ANCHORS,
        "shaping": SHAPINGS,
    }
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise ConfigError(
                f"unknown {name} {getattr(config, name)!r}; choose one of: "
                f"{', '.join(str(a) for a in allowed)}"
            )
    if not 0.0 < config.residual_scale <= 1.0:
        raise ConfigError(f"residual_scale must be in (0, 1], got {config.residual_scale}")
    if config.probe_images is not None and config.probe_images < 1:
        raise ConfigError(f"probe_images must be at least 1, got {config.probe_images}")
    _check_normalize(config.normalize)
    if not DEVICE_PATTERN.match(config.device.strip().lower()):
        raise ConfigError(f"unknown device {config.device!r}; use auto, cpu, cuda, cuda:N or mps")
    if config.calibration_batches < 0 or config.batch_size < 1:
        raise ConfigError("calibration_batches must be >= 0 and batch_size >= 1")
    return config


NORMALIZE_WORDS = ("standard", "none")


def _check_normalize(value: Any) -> None:
    """``normalize`` is null, standard, none, or {mean: [...], std: [...]} (std > 0)."""
    fix = "use standard, none, or {mean: [0.5], std: [0.25]} (one number per channel)"
    if value is None or value in NORMALIZE_WORDS:
        return
    if not isinstance(value, Mapping):
        raise ConfigError(f"normalize {value!r} is invalid; {fix}")
    if set(value) != {"mean", "std"}:
        raise ConfigError(f"normalize needs exactly the keys mean and std, got {sorted(value)}")
    lists = []
    for key in ("mean", "std"):
        numbers = value[key]
        if isinstance(numbers, (int, float)) and not isinstance(numbers, bool):
            numbers = [numbers]
        if (
            not isinstance(numbers, (list, tuple))
            or not numbers
            or not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers)
        ):
            raise ConfigError(f"normalize {key} must be a list of numbers, got {numbers!r}; {fix}")
        lists.append(numbers)
    if len(lists[0]) != len(lists[1]):
        raise ConfigError(
            f"normalize mean has {len(lists[0])} values and std {len(lists[1])}; give one "
            "per channel in both"
        )
    if any(n <= 0 for n in lists[1]):
        raise ConfigError(f"normalize std must be positive, got {lists[1]}")


def help_for(name: str) -> str:
    """The help text of the :class:`EnvConfig` field ``name``."""
    for f in dataclasses.fields(EnvConfig):
        if f.name == name:
            return str(f.metadata["help"])
    raise KeyError(name)
