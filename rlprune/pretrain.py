"""Train the base model of a preset (the network that later gets pruned)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError, RunError
from .evaluation.config import TaskConfig
from .evaluation.devices import resolve_device
from .evaluation.finetune import FitResult, train_classifier
from .files import safe_name
from .models.weights import save_weights
from .presets.tasks import build_config_model, load_data

__all__ = ["check_weights_target", "pretrain"]

PACKAGE_DIR = Path(__file__).resolve().parent


def check_weights_target(target: Path, *, overwrite: bool) -> None:
    """Refuse to write base weights inside the installed package, or over an existing
    file without ``overwrite``; also refuse a folder.

    Raises:
        RunError: one line naming the path and the fix.
    """
    resolved = target.resolve()
    if resolved.is_relative_to(PACKAGE_DIR):
        raise RunError(
            f"{target} lies inside the installed rlprune package, whose files are read-only; "
            "pass --out with a path of your own (e.g. pretrained/model.pt)"
        )
    if target.is_dir():
        raise RunError(f"{target} is a folder; pass --out with a file name such as model.pt")
    blocking = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise RunError(
            f"{blocking} is a file, so {target} cannot be made in it; pass --out with a path "
            "in a folder"
        )
    if target.exists() and not overwrite:
        raise RunError(
            f"{target} exists (the preset's base weights?); pass --overwrite to replace it "
            "or --out with another path"
        )
    if target.exists() and not _is_weights_file(target):
        raise RunError(
            f"{target} is not a weights file (a preset, code or data?); --overwrite replaces "
            "only weights saved by torch.save: pass --out with another path"
        )


def _is_weights_file(path: Path) -> bool:
    """Whether ``path`` holds what ``torch.save`` writes (a zip archive, or the legacy pickle)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    return head == b"PK\x03\x04" or head[:1] == b"\x80"


def pretrain(
    config: TaskConfig,
    *,
    epochs: int | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    command: str = "",
    on_epoch: Callable[[int, float], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[Path, FitResult]:
    """Train the preset's model from scratch and save it to ``out``.

    ``out`` defaults to ``pretrained/{preset name}.pt`` under the current folder; an
    existing file (the bundled base weights included) is replaced only with
    ``overwrite``, and nothing is ever written inside the installed package. Returns the
    weights path and the training result. Settings come from the preset's ``pretrain``
    section (``images``: stop after that many training images, the schedule spanning
    them; ``calibrate_batches``: re-estimate BatchNorm statistics on that many training
    batches at the end); ``epochs`` overrides it. ``on_epoch`` and ``on_step`` report progress
    (:func:`~rlprune.evaluation.finetune.train_classifier`); ``metadata`` (JSON) joins
    what the weights file records.

    Raises:
        RunError: ``out`` exists and ``overwrite`` is not set, or it lies inside the package.
    """
    settings: dict[str, Any] = {
        "epochs": 10,
        "lr": 0.05,
        "batch_size": 128,
        "weight_decay": 5e-4,
        "images": None,
        "calibrate_batches": 0,
    }
    unknown = set(config.pretrain) - set(settings)
    if unknown:
        raise ConfigError(
            f"unknown pretrain key {sorted(unknown)[0]!r}; valid keys: {', '.join(settings)}"
        )
    settings.update(config.pretrain)
    if epochs is not None:
        settings["epochs"] = epochs
    target = Path(out) if out is not None else Path("pretrained") / f"{safe_name(config.name)}.pt"
    check_weights_target(target, overwrite=overwrite)
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
        max_images=None if settings["images"] is None else int(settings["images"]),
        on_epoch=on_epoch,
        on_step=on_step,
        calibrate_batches=int(settings["calibrate_batches"]),
        device=resolve_device(config.device),
    )
    save_weights(
        model.cpu(),
        target,
        metadata={
            "env": config.name,
            "model": config.model,
            "model_kwargs": dict(config.model_kwargs),
            "dataset": config.dataset,
            "epochs": result.epochs,
            "images": settings["images"],
            "val_accuracy": result.val_accuracy,
            "test_accuracy": result.test_accuracy,
            "seconds": round(result.seconds, 1),
            "command": command,
            **dict(metadata or {}),
        },
    )
    return target, result
