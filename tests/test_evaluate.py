"""Adaptive BatchNorm recalibration and accuracy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rlprune.evaluation.scoring import Evaluator, accuracy, calibrate_batchnorm


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    )


def test_calibration_sets_running_stats_to_batch_statistics() -> None:
    model = _net()
    batches = [torch.randn(16, 1, 8, 8) * 3 + 2 for _ in range(3)]
    weights = {
        k: v.clone()
        for k, v in model.state_dict().items()
        if "running" not in k and "num_batches" not in k
    }
    calibrate_batchnorm(model, batches)
    bn = model[1]
    with torch.no_grad():
        feats = torch.cat([model[0](b) for b in batches])
    assert torch.allclose(bn.running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-4)
    assert not model.training and not bn.training
    assert bn.momentum == 0.1  # restored
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in weights.items())


def test_no_batches_changes_nothing() -> None:
    model = _net()
    before = model[1].running_mean.clone()
    calibrate_batchnorm(model, [])
    assert torch.equal(before, model[1].running_mean)


def test_accuracy_and_evaluator_are_deterministic() -> None:
    model = _net()
    x, y = torch.randn(50, 1, 8, 8), torch.randint(3, (50,))
    logits = model.eval()(x)
    expected = float((logits.argmax(1) == y).float().mean())
    assert accuracy(model, x, y, batch_size=7) == pytest.approx(expected)
    evaluator = Evaluator([torch.randn(8, 1, 8, 8)], x, y)
    assert evaluator(model) == evaluator(model)
