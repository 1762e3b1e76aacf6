"""Train a classifier's weights, and deliver a chosen candidate: prune, recalibrate, score, fine-tune.

Fine-tuning is the same for every search method (and for training a base model from
scratch): SGD with Nesterov momentum and a cosine schedule over the training split.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..errors import ConfigError
from .candidates import Candidate
from .scoring import calibrate_batchnorm, split_accuracy
from .splits import DataSplits, make_loader
from .task import PruningTask

__all__ = ["Delivered", "FitResult", "deliver", "train_classifier"]


@dataclass(frozen=True)
class FitResult:
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
    max_images: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    device: torch.device | None = None,
    on_step: Callable[[int, int], None] | None = None,
    calibrate_batches: int = 0,
) -> FitResult:
    """Train (or fine-tune) ``model`` in place on ``data.train`` with SGD and a cosine schedule.

    ``max_images`` stops after that many training images (the schedule spans them): one
    short pass for ranking candidates. ``on_epoch(epoch, mean_loss)`` is called after
    every epoch and ``on_step(steps done, steps in all)`` after every batch (for progress
    display). ``calibrate_batches`` > 0 re-estimates the BatchNorm statistics on that many
    training batches before scoring (for networks whose BatchNorm momentum is too small
    for a short training to settle them, such as torchvision's MNASNet). ``device`` (default: where the model's parameters
    are) runs the training and the final scores there.
    """
    if epochs < 0:
        raise ConfigError(f"epochs must be >= 0, got {epochs}")
    if max_images is not None and max_images < 1:
        raise ConfigError(f"max_images must be at least 1, got {max_images}")
    torch.manual_seed(seed)
    start = time.perf_counter()
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.to(device)
    loader = make_loader(
        data.train, batch_size, shuffle=True, seed=seed, num_workers=data.num_workers
    )
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True
    )
    steps = epochs * len(loader)
    if max_images is not None:
        steps = min(steps, -(-max_images // batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    loss_fn = nn.CrossEntropyLoss()
    done = 0
    for epoch in range(epochs):
        if done >= steps:
            break
        done, mean_loss = _train_epoch(
            model,
            loader,
            optimizer,
            scheduler,
            loss_fn,
            device,
            done=done,
            steps=steps,
            on_step=on_step,
        )
        if on_epoch is not None:
            on_epoch(epoch + 1, mean_loss)
    if calibrate_batches > 0:
        batches = [
            x.to(device) for (x, _), _ in zip(loader, range(calibrate_batches), strict=False)
        ]
        calibrate_batchnorm(model, batches)
    model.eval()
    return FitResult(
        epochs=epochs,
        val_accuracy=split_accuracy(model, data.val, data.num_workers, device=device),
        test_accuracy=split_accuracy(model, data.test, data.num_workers, device=device),
        seconds=time.perf_counter() - start,
    )


def _train_epoch(
    model: nn.Module,
    loader: DataLoader[tuple[torch.Tensor, ...]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    device: torch.device,
    *,
    done: int,
    steps: int,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[int, float]:
    """One epoch, stopping at the step budget; returns the steps done so far and mean loss."""
    model.train()
    total, count = 0.0, 0
    for x, y in loader:
        if done >= steps:
            break
        done += 1
        optimizer.zero_grad(set_to_none=True)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.detach().item() * len(y)
        count += len(y)
        if on_step is not None:
            on_step(done, steps)
    return done, total / max(count, 1)


@dataclass(frozen=True)
class Delivered:
    """A chosen candidate, pruned for real and scored (and optionally fine-tuned)."""

    final: nn.Module
    """The model to ship, on the CPU: the fine-tuned one if fine-tuning ran and did not
    lower the validation accuracy, else the pruned and recalibrated one."""
    val_accuracy: float
    test_accuracy: float
    val_accuracy_finetuned: float | None
    test_accuracy_finetuned: float | None
    finetune_kept: bool | None = None
    """Whether :attr:`final` is the fine-tuned model (``None``: no fine-tuning ran)."""


def deliver(
    task: PruningTask,
    candidate: Candidate,
    *,
    finetune_epochs: int,
    lr: float,
    seed: int,
    finetune_images: int | None = None,
) -> Delivered:
    """Prune ``candidate`` for real, recalibrate BatchNorm, score on val and test, and
    fine-tune on the training split for ``finetune_epochs`` (at most ``finetune_images``
    images), the same way for every method.

    The fine-tuned model is delivered only when its validation accuracy is at least the
    pruned one's (:attr:`Delivered.finetune_kept`): fine-tuning that made the model worse
    is measured and reported, not shipped."""
    result = task.prune(candidate.channels, count=True)  # the real count, once
    if result.macs != candidate.macs:
        warnings.warn(
            f"the delivered model measures {result.macs} MACs, the search predicted "
            f"{candidate.macs}: the MACs model is off for this network; please report it",
            stacklevel=2,
        )
    pruned = result.model
    val_acc = task.evaluator(pruned)  # moves it to the task's device
    test_acc = task.split_accuracy(pruned, "test")
    if finetune_epochs <= 0:
        return Delivered(pruned.cpu(), val_acc, test_acc, None, None)
    tuned_model = copy.deepcopy(pruned)
    tuned = train_classifier(
        tuned_model,
        task.data,
        epochs=finetune_epochs,
        lr=lr,
        batch_size=task.config.batch_size,
        seed=seed,
        max_images=finetune_images,
        device=task.device,
    )
    kept = tuned.val_accuracy >= val_acc
    return Delivered(
        (tuned_model if kept else pruned).cpu(),
        val_acc,
        test_acc,
        tuned.val_accuracy,
        tuned.test_accuracy,
        finetune_kept=kept,
    )
