"""The task configuration: the model, its data, how candidates are scored, the pruning engine.

What the agent observes and how it is rewarded is not here: that is the MDP's
:class:`~rlprune.mdp.settings.EnvSettings`. A preset holds both
(:class:`~rlprune.mdp.settings.EnvConfig`); loading one from YAML is
:mod:`rlprune.presets.loader`'s job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..checks import check_kinds, setting
from ..errors import ConfigError
from ..pruning.importance import IMPORTANCE
from .devices import DEVICE_PATTERN

__all__ = ["METRICS", "NORMALIZE_WORDS", "TASK_FIELDS", "TaskConfig"]

NORMALIZE_WORDS = ("standard", "none")
METRICS = ("macs", "latency")
"""What a target may budget."""


@dataclass(frozen=True)
class TaskConfig:
    """A pruning task: which model, which data, how candidates are scored and pruned.

    Validated when built (every construction, :func:`dataclasses.replace` included); each
    field's help is its metadata, which the CLI's override flags read.
    """

    name: str = setting("custom", "preset name, used in run names", "str")
    model: str = setting(
        "digits-cnn", "zoo name, 'package.module:factory' or 'path/file.py:factory'", "str"
    )
    model_kwargs: dict[str, Any] = setting(
        {}, "keyword arguments for the model factory", "mapping", "{width: 2}"
    )
    weights: str | None = setting(
        None,
        "trained weights (state dict); relative to the preset file, or cache:PATH under "
        "rlprune's cache folder ($RLPRUNE_CACHE_DIR, else ~/.cache/rlprune)",
        "str?",
    )
    dataset: str = setting(
        "digits",
        "dataset name (digits, fashion-mnist), folder, 'package.module:factory' "
        "or 'path/file.py:factory'",
        "str",
    )
    data_dir: str | None = setting(None, "folder holding dataset files", "str?")
    dataset_kwargs: dict[str, Any] = setting(
        {}, "keyword arguments for a dataset factory (an image folder: size, channels)", "mapping"
    )
    normalize: str | dict[str, Any] | None = setting(
        None,
        "input normalisation: standard (the train split's mean and std), none, or "
        "{mean: [...], std: [...]} per channel; default: standard for the bundled "
        "datasets, none for a dataset factory (its own transforms)",
    )
    num_workers: int = setting(
        0, "DataLoader worker processes for a dataset factory's splits", "non-negative int"
    )
    device: str = setting(
        "auto",
        "where calibration, scoring, fine-tuning and latency run: auto (CUDA "
        "when available), cpu, cuda, cuda:N or mps",
        "str",
    )
    amp: bool = setting(
        False, "mixed precision when scoring (float16 on GPUs, bfloat16 on CPU)", "bool"
    )
    metric: str = setting(
        "macs",
        "what the target budgets: macs (torch-pruning's count) or latency (measured on "
        "the device at latency_batch, predicted by a latency model fitted once)",
        "str",
        choices=METRICS,
    )
    latency_batch: int = setting(
        1, "batch size the latency budget is measured at (metric: latency)", "positive int"
    )
    threads: int | None = setting(
        None,
        "torch threads for latency timing (and the CLI's whole process); null: torch's "
        "default; 1 is steadiest on a busy machine",
        "positive int?",
    )
    min_keep: float = setting(0.2, "smallest keep-ratio an action maps to", "number", agent=True)
    max_keep: float = setting(1.0, "largest keep-ratio an action maps to", "number", agent=True)
    importance: str = setting(
        "l1", "channel importance: l1, l2, random", "str", choices=tuple(IMPORTANCE)
    )
    round_to: int | None = setting(None, "keep channel counts multiples of", "positive int?")
    ignored_layers: tuple[str, ...] = setting(
        (), "qualified names of layers never to prune", "list of str", "[features.0, classifier]"
    )
    calibration_batches: int = setting(
        10, "training batches for BatchNorm recalibration (0: none)", "int"
    )
    batch_size: int = setting(128, "batch size for calibration", "positive int")
    val_size: int | float = setting(
        0.2, "validation split: a count, or a fraction of training data", "positive number"
    )
    train_limit: int | None = setting(
        None, "use at most this many training samples", "positive int?"
    )
    seed: int = setting(0, "seed for data splits and calibration batches", "int")
    probe_images: int | None = setting(
        512,
        "validation images per sensitivity probe (feature set 2, sensitivity "
        "prior; null: all of them); a probe costs probe_images / val_size of a full "
        "evaluation",
        "positive int?",
        agent=True,
        policy=True,
    )
    pretrain: dict[str, Any] = setting(
        {},
        "base-model training settings: epochs, lr, batch_size, weight_decay, images (stop "
        "after this many training images), calibrate_batches (BatchNorm statistics "
        "re-estimated at the end)",
        "mapping",
    )

    def __post_init__(self) -> None:
        check_kinds(self)
        if not isinstance(self.ignored_layers, tuple):
            object.__setattr__(self, "ignored_layers", tuple(self.ignored_layers or ()))
        if not 0.0 < self.min_keep <= self.max_keep <= 1.0:
            raise ConfigError(
                f"need 0 < min_keep <= max_keep <= 1, got min_keep={self.min_keep}, "
                f"max_keep={self.max_keep}"
            )
        if self.probe_images is not None and self.probe_images < 1:
            raise ConfigError(f"probe_images must be at least 1, got {self.probe_images}")
        _check_normalize(self.normalize)
        if not DEVICE_PATTERN.match(self.device.strip().lower()):
            raise ConfigError(f"unknown device {self.device!r}; use auto, cpu, cuda, cuda:N or mps")
        if self.calibration_batches < 0 or self.batch_size < 1:
            raise ConfigError("calibration_batches must be >= 0 and batch_size >= 1")


TASK_FIELDS = tuple(f.name for f in dataclasses.fields(TaskConfig))


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
    if not all(-1e30 < n < 1e30 for n in [*lists[0], *lists[1]]):  # NaN fails too
        raise ConfigError(f"normalize mean and std must be finite numbers, got {dict(value)}")
    if any(n <= 0 for n in lists[1]):
        raise ConfigError(f"normalize std must be positive, got {lists[1]}")
