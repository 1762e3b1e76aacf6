"""Train the base model of a preset (the network that later gets pruned)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .config import EnvConfig
from .data import DataSplits, make_loader
from .errors import ConfigError
from .evaluate import accuracy
from .task import build_config_model, load_data
from .zoo import save_weights


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_classifier` produced."""

    epochs: int
    val_accuracy: float
    test_accuracy: float
    seconds: float


def train_classifier(
    model: nn.Module,
    data: DataSplits,
    *,
    epochs: int,
    lr: float = 0.05,
    batch_size: int = 128,
    weight_decay: float = 5e-4,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train (or fine-tune) ``model`` in place on ``data.train`` with SGD and a cosine schedule.

    ``on_epoch(epoch, mean_loss)`` is called after every epoch (for progress display).
    """
    if epochs < 0:
        raise ConfigError(f"epochs must be >= 0, got {epochs}")
    torch.manual_seed(seed)
    start = time.perf_counter()
    loader = make_loader(data.train, batch_size, shuffle=True, seed=seed)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(epochs * len(loader), 1)
    )
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.detach().item() * len(y)
            count += len(y)
        if on_epoch is not None:
            on_epoch(epoch + 1, total / max(count, 1))
    model.eval()
    return TrainResult(
        epochs=epochs,
        val_accuracy=accuracy(model, *data.val.tensors),
        test_accuracy=accuracy(model, *data.test.tensors),
        seconds=time.perf_counter() - start,
    )


def pretrain(
    config: EnvConfig,
    *,
    epochs: int | None = None,
    out: str | Path | None = None,
    command: str = "",
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[Path, TrainResult]:
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
