"""Score a pruned network: adaptive BatchNorm recalibration, then top-1 accuracy.

Pruning shifts every activation distribution, so the running statistics a
BatchNorm layer learned before pruning no longer fit. Re-estimating them on a
few training batches (EagleEye, Li et al. 2020) makes the accuracy of an
un-fine-tuned candidate a good predictor of its accuracy after fine-tuning.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import TensorDataset

__all__ = ["Evaluator", "accuracy", "calibrate_batchnorm", "fast_layout", "split_accuracy"]

EVAL_BATCH = 256
"""Images per forward pass when scoring: on CPU, batches of 128-256 run 1.5-2.5x faster
than 1024 (cache-resident activations; measured on the Fashion-MNIST zoo models)."""


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory layout if it is an image batch (NCHW), else unchanged.

    oneDNN's convolutions run 1.3-1.5x faster on channels-last inputs and weights; the
    values (and so every accuracy) are the same.
    """
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def to_fast_layout(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """Convert ``model``'s parameters to channels-last in place when it takes image batches
    like ``example``; returns ``model``. Use on models rlprune owns (pruned copies)."""
    if example.dim() == 4:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
    """Re-estimate BatchNorm running statistics on ``batches`` (no gradients, no weight change).

    Statistics are reset and accumulated as a plain average over the batches;
    every other layer (dropout included) stays in eval mode. Leaves ``model`` in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    model.eval()
    if not norms or not batches:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
        m.train()
    try:
        for x in batches:
            model(fast_layout(x))
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()


@torch.no_grad()
def accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVAL_BATCH
) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``, in eval mode."""
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(fast_layout(x[start : start + batch_size]))
        correct += int((logits.argmax(dim=1) == y[start : start + batch_size]).sum())
    return correct / max(len(x), 1)


def split_accuracy(model: nn.Module, split: TensorDataset) -> float:
    """Top-1 accuracy of ``model`` on a ``(images, labels)`` split."""
    x, y = split.tensors
    return accuracy(model, x, y)


class Evaluator:
    """Calibrate BatchNorm on fixed training batches, then measure validation accuracy.

    The calibration batches are drawn once, so the same candidate always gets the
    same score.
    """

    def __init__(
        self,
        calibration_batches: Sequence[torch.Tensor],
        val_x: torch.Tensor,
        val_y: torch.Tensor,
        batch_size: int = EVAL_BATCH,
    ) -> None:
        self.calibration_batches = list(calibration_batches)
        self.val_x = val_x
        self.val_y = val_y
        self.batch_size = batch_size

    def calibrate(self, model: nn.Module) -> None:
        """Recalibrate ``model``'s BatchNorm statistics on the fixed training batches."""
        calibrate_batchnorm(model, self.calibration_batches)

    def score(self, model: nn.Module, images: int | None = None) -> float:
        """Validation accuracy of ``model`` as it is (no recalibration), on the first
        ``images`` validation images (all by default)."""
        if images is None:
            return accuracy(model, self.val_x, self.val_y, self.batch_size)
        return accuracy(model, self.val_x[:images], self.val_y[:images], self.batch_size)

    def __call__(self, model: nn.Module) -> float:
        """Validation accuracy of ``model`` after BatchNorm recalibration (modifies its BN stats)."""
        self.calibrate(model)
        return self.score(model)
