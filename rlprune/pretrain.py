"""Train the base model of a preset (the network that later gets pruned)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
) -> tuple[Path, FitResult]:
    """Train the preset's model from scratch and save it to ``out``.

    ``out`` defaults to ``pretrained/{preset name}.pt`` under the current folder; an
    existing file (the bundled base weights included) is replaced only with
    ``overwrite``, and nothing is ever written inside the installed package. Returns the
    weights path and the training result. Settings come from the preset's ``pretrain``
    section; ``epochs`` overrides it.

    Raises:
        RunError: ``out`` exists and ``overwrite`` is not set, or it lies inside the package.
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
        on_epoch=on_epoch,
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
            "val_accuracy": result.val_accuracy,
            "test_accuracy": result.test_accuracy,
            "command": command,
        },
    )
    return target, result
