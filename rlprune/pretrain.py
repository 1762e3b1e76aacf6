"""Train the base model of a preset (the network that later gets pruned)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .core.config import EnvConfig
from .core.finetune import FitResult, train_classifier
from .errors import ConfigError
from .models.weights import save_weights
from .presets.tasks import build_config_model, load_data

__all__ = ["pretrain"]


def pretrain(
    config: EnvConfig,
    *,
    epochs: int | None = None,
    out: str | Path | None = None,
    command: str = "",
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[Path, FitResult]:
    """Train the preset's model from scratch and save it where the preset looks for it.

    Returns the weights path and the training result. Settings come from the
    preset's ``pretrain`` section; ``epochs`` overrides it.
    """
    settings = {"epochs": 10, "lr": 0.05, "batch_size": 128, "weight_decay": 5e-4}
    unknown = set(config.pretrain) - set(settings)
    if unknown:
        raise ConfigError(
            f"unknown pretrain key {sorted(unknown)[0]!r}; valid keys: {', '.join(settings)}"
        )
    settings.update(config.pretrain)
    if epochs is not None:
        settings["epochs"] = epochs
    target = Path(out) if out is not None else (Path(config.weights) if config.weights else None)
    if target is None:
        raise ConfigError(
            f"env {config.name!r} names no weights file; pass --out PATH to choose where to save"
        )
    data = load_data(config)
    torch.manual_seed(config.seed)
    model = build_config_model(config, data)
    result = train_classifier(
        model,
        data,
        epochs=int(settings["epochs"]),
        lr=float(settings["lr"]),
        batch_size=int(settings["batch_size"]),
        weight_decay=float(settings["weight_decay"]),
        seed=config.seed,
        on_epoch=on_epoch,
    )
    save_weights(
        model,
        target,
        metadata={
            "env": config.name,
            "model": config.model,
            "model_kwargs": dict(config.model_kwargs),
            "dataset": config.dataset,
            "epochs": result.epochs,
            "val_accuracy": result.val_accuracy,
            "test_accuracy": result.test_accuracy,
            "command": command,
        },
    )
    return target, result
