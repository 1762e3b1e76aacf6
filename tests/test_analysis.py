"""Unit discovery and the MACs model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from rlprune.errors import ModelError
from rlprune.evaluation.task import PruningTask
from rlprune.pruning.analysis import analyse
from tests.conftest import SMALL_MODELS


@pytest.mark.parametrize("family", list(SMALL_MODELS))
def test_mac_model_matches_measured_macs(
    family: str, make_small_task: Callable[..., PruningTask]
) -> None:
    task = make_small_task(family)
    analysis = task.analysis
    assert analysis.mac_model.exact
    rng = np.random.default_rng(1)
    for _ in range(5):
        channels = [int(rng.integers(1, u.out_channels + 1)) for u in analysis.units]
        measured = task.prune(channels, count=True).macs
        assert analysis.mac_model.macs(np.array(channels)) == pytest.approx(measured, abs=0.5)
    assert analysis.mac_model.macs(analysis.channels) == pytest.approx(analysis.macs, abs=0.5)


def test_units_follow_forward_order_and_describe_layers(
    make_small_task: Callable[..., PruningTask],
) -> None:
    analysis = make_small_task("plain").analysis
    assert [u.name for u in analysis.units] == [
        "features.0",
        "features.3",
        "features.7",
        "features.10",
    ]
    first = analysis.units[0]
    assert (first.in_channels, first.out_channels, first.kernel, first.stride) == (1, 8, 3, 1)
    assert first.input_hw == (28, 28)
    assert analysis.units[2].input_hw == (14, 14)
    assert all(u.kind == "conv" for u in analysis.units)
    assert sum(u.macs for u in analysis.units) <= analysis.macs


def test_residual_and_depthwise_units_are_tied(
    make_small_task: Callable[..., PruningTask],
) -> None:
    residual = make_small_task("residual").analysis
    stem = residual.unit("stem.0")
    assert stem.kind == "residual" and "layer1.0.conv2" in stem.modules
    depthwise = make_small_task("depthwise").analysis
    assert any(u.kind == "depthwise" for u in depthwise.units)
    custom = make_small_task("custom").analysis
    tied = custom.unit(
        "stem.0"
    ).modules  # residual add and depthwise conv share the stem's channels
    assert {"stem.0", "residual.conv2", "separable.depthwise"} <= set(tied)


def test_classifier_is_not_a_unit(make_small_task: Callable[..., PruningTask]) -> None:
    for family in SMALL_MODELS:
        names = {m for u in make_small_task(family).analysis.units for m in u.modules}
        assert not any(n.endswith("classifier") or n.endswith("fc") for n in names)


def test_model_without_prunable_unit_is_an_error() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(ModelError, match="no prunable unit"):
        analyse(model, torch.zeros(1, 1, 8, 8))


def test_ignored_layers_are_checked_and_skipped() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
    )
    x = torch.zeros(1, 1, 8, 8)
    assert [u.name for u in analyse(model, x).units] == ["0", "2"]
    assert [u.name for u in analyse(model, x, ignored_layers=["2"]).units] == ["0"]
    with pytest.raises(ModelError, match="ignored layer 'nope'"):
        analyse(model, x, ignored_layers=["nope"])
