"""Build a :class:`~rlprune.evaluation.task.PruningTask` from an env preset: data, model, weights.

This is where a preset's names meet the bundled datasets (:mod:`rlprune.data`) and
models (:mod:`rlprune.models`); the core never imports either.
"""

from __future__ import annotations

import functools
import os
import shlex
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..code import fingerprint, is_code_spec, is_trusted_code, trust_code, untrusted_reason
from ..data.datasets import load_dataset
from ..errors import ConfigError, DatasetError, ModelError
from ..evaluation.config import TaskConfig
from ..evaluation.splits import DataSplits, check_model_fits
from ..evaluation.task import PruningTask
from ..mdp.settings import EnvConfig
from ..models.specs import build_model, check_recorded_spec, spec_fingerprint
from ..models.weights import load_weights
from .loader import available_presets, load_env_config

__all__ = [
    "build_config_model",
    "check_recorded_dataset",
    "check_recorded_model",
    "check_weights",
    "dataset_fingerprint",
    "load_data",
    "load_task",
    "model_fingerprint",
    "pretrained_weights_hint",
    "trust_task_code",
]


def model_fingerprint(config: TaskConfig) -> str | None:
    """sha256 of the file holding ``config.model``'s code (``None`` for zoo models)."""
    return spec_fingerprint(config.model)


def dataset_fingerprint(config: TaskConfig) -> str | None:
    """sha256 of the file holding a dataset factory's code (``None`` for bundled datasets)."""
    if not is_code_spec(config.dataset) or Path(config.dataset).is_dir():
        return None
    return fingerprint(config.dataset)


def check_recorded_dataset(config: TaskConfig, recorded: str | None, where: str) -> None:
    """Refuse dataset code named in a run folder unless this user trusted it when training
    (see :func:`rlprune.models.specs.check_recorded_spec`)."""
    if not is_code_spec(config.dataset) or Path(config.dataset).is_dir():
        return
    if is_trusted_code(config.dataset):
        return
    raise DatasetError(
        f"{where} names dataset code {config.dataset!r} "
        f"{untrusted_reason(config.dataset, recorded)}; rlprune runs code a run folder names "
        f"only if you name it: pass --dataset {config.dataset} to trust it"
    )


def trust_task_code(config: TaskConfig, *, model: bool = True, dataset: bool = True) -> None:
    """Record a task's model and dataset code (those asked for) as trusted by this user,
    who named it: a resume of the run may import it while its files stay unchanged."""
    if model and spec_fingerprint(config.model) is not None:
        trust_code(config.model)
    if dataset and dataset_fingerprint(config) is not None:
        trust_code(config.dataset)


def check_recorded_model(config: TaskConfig, recorded: str | None, where: str) -> None:
    """Refuse model code named in a run folder unless it is the file recorded there
    (see :func:`rlprune.models.specs.check_recorded_spec`)."""
    check_recorded_spec(config.model, recorded, where)


_PRESET_AS_GIVEN: dict[str, str] = {}
"""Preset name -> how the command line named it (``--env mine.yaml``): what a hint prints."""


def remember_preset(name: str, given: str | os.PathLike[str]) -> None:
    """Record that the preset called ``name`` was given as ``given`` (the CLI does), so that
    hints printed later name a command that works."""
    _PRESET_AS_GIVEN[name] = str(given)


def forget_presets() -> None:
    """Forget what :func:`remember_preset` recorded (the CLI does when a command ends)."""
    _PRESET_AS_GIVEN.clear()


def pretrained_weights_hint(
    config: TaskConfig, preset: str | os.PathLike[str] | None = None
) -> str:
    """The command that makes a preset's base model. ``preset``: the bundled name or YAML
    path the preset was loaded from; without it, a bundled preset's name, else a
    placeholder for the YAML file (a YAML preset's name alone is not a preset)."""
    out = f" --out {shlex.quote(config.weights)}" if config.weights else ""
    preset = preset if preset is not None else _PRESET_AS_GIVEN.get(config.name)
    if preset is not None:
        return f"run `rlprune pretrain --env {shlex.quote(str(preset))}{out}` to train it"
    if config.name in available_presets():
        return f"run `rlprune pretrain --env {config.name}{out}` to train it"
    return f"run `rlprune pretrain --env PRESET.yaml{out}` with the YAML preset that names it"


def check_weights(config: TaskConfig, preset: str | os.PathLike[str] | None = None) -> None:
    """Refuse a preset whose weights file is missing, saying how to make it.

    Raises:
        ModelError: ``config.weights`` names no file.
    """
    if config.weights is not None and not Path(config.weights).is_file():
        raise ModelError(
            f"base model weights {config.weights!r} not found; "
            + pretrained_weights_hint(config, preset)
        )


def load_data(config: TaskConfig) -> DataSplits:
    """The data splits a preset names."""
    return load_dataset(
        config.dataset,
        seed=config.seed,
        val_size=config.val_size,
        data_dir=config.data_dir,
        train_limit=config.train_limit,
        kwargs=config.dataset_kwargs,
        normalize=config.normalize,
        num_workers=config.num_workers,
    )


def build_config_model(config: TaskConfig, data: DataSplits) -> nn.Module:
    """The (untrained) model a preset names, shaped for ``data``."""
    return build_model(
        config.model,
        in_channels=data.input_shape[0],
        num_classes=data.num_classes,
        input_size=data.input_shape[1],
        kwargs=config.model_kwargs,
    )


def load_task(
    config: EnvConfig | TaskConfig | Mapping[str, Any] | str | os.PathLike[str],
) -> PruningTask:
    """Load the data and trained model a preset names (an :class:`EnvConfig`, a dict of
    preset keys as :func:`rlprune.make_config` takes, a bundled preset name or a YAML path)
    or a task configuration names, then analyse the model.

    Given a preset, its target is checked against what the model can reach.

    Raises:
        ConfigError: ``config`` is none of those, or holds an unknown or bad preset key.
    """
    if isinstance(config, (str, os.PathLike)):
        config = load_env_config(config)
    elif isinstance(config, Mapping):
        config = EnvConfig.from_dict(config)
    elif not isinstance(config, (EnvConfig, TaskConfig)):
        raise ConfigError(
            f"load_task takes a preset name or YAML path, a dict of preset keys, an EnvConfig "
            f"or a TaskConfig, not a {type(config).__name__}; e.g. load_task('digits-cnn') or "
            "load_task({'target': 0.5})"
        )
    target = None
    if isinstance(config, EnvConfig):
        target = config.env.target.low
        config = config.task
    data = load_data(config)
    model = build_config_model(config, data)
    if config.weights is None:
        warnings.warn(
            f"env {config.name!r} gives no weights: pruning an untrained model; "
            + pretrained_weights_hint(config),
            stacklevel=2,
        )
    else:
        check_weights(config)
        check_model_fits(model, data.input_shape, data.num_classes)
        load_weights(model, config.weights)
    task = PruningTask.from_model(model, data, config)
    if target is not None:
        task.check_target(target)
    task.source = functools.partial(load_task, config)  # how a worker rebuilds it
    if config.weights is not None:
        warn_if_near_chance(task)
    return task


CHANCE_PROBE_IMAGES = 500
"""Validation images scored to check that a trained model fits its data (not charged)."""


def warn_if_near_chance(task: PruningTask) -> float:
    """Warn in one line when the unpruned model scores near chance on validation (within a
    quarter of the way from chance to perfect: 32.5 % with 10 classes, 62.5 % with 2): the
    model and the data disagree. Returns that accuracy."""
    accuracy = task.base_accuracy(CHANCE_PROBE_IMAGES)
    chance = 1.0 / task.data.num_classes
    if accuracy <= chance + 0.25 * (1.0 - chance):
        warnings.warn(
            f"the unpruned model scores {accuracy:.3f} on validation, near chance "
            f"({chance:.3f}): model and data disagree; check the preprocessing, the labels "
            f"and the weights ({task.config.weights})",
            stacklevel=3,
        )
    return accuracy
