"""Physical pruning through torch-pruning dependency groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rlprune.errors import ConfigError
from rlprune.models.specs import build_model
from rlprune.pruning.surgeon import keep_count, prune


def _model(spec: str, **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return build_model(spec, in_channels=1, num_classes=10, input_size=28, kwargs=kwargs).eval()


X = torch.zeros(1, 1, 28, 28)


def test_prune_returns_new_model_and_leaves_original_untouched() -> None:
    model = _model("vgg", cfg=(8, 16, "M"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = prune(model, {"features.0": 0.5}, X)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert result.model is not model
    conv = dict(result.model.named_modules())["features.0"]
    assert conv.out_channels == 4
    assert dict(model.named_modules())["features.0"].out_channels == 8
    assert result.channels == {"features.0": 4}
    out = result.model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10)


def test_pruned_macs_and_params_are_measured_and_smaller() -> None:
    model = _model("resnet", depth=8, width=8)
    full = prune(model, {}, X)
    half = prune(model, {name: 0.5 for name in ("stem.0", "layer1.0.conv1")}, X)
    assert half.macs < full.macs and half.params < full.params


@pytest.mark.parametrize("importance", ["l1", "l2", "random"])
def test_importance_criteria_keep_requested_channel_count(importance: str) -> None:
    model = _model("vgg", cfg=(8, 16, "M"))
    result = prune(model, {"features.3": 0.25}, X, importance=importance)
    assert dict(result.model.named_modules())["features.3"].out_channels == 4


def test_l1_keeps_the_largest_filters() -> None:
    model = _model("vgg", cfg=(8, 16, "M"))
    conv = dict(model.named_modules())["features.3"]
    with torch.no_grad():
        conv.weight.mul_(0.01)
        conv.weight[[2, 5, 11]] *= 1000.0  # make three filters dominant
    pruned = dict(prune(model, {"features.3": 3 / 16}, X).model.named_modules())["features.3"]
    expected = conv.weight[[2, 5, 11]]
    assert torch.allclose(pruned.weight, expected)


def test_random_importance_differs_from_l1() -> None:
    model = _model("vgg", cfg=(8, 16, "M"))
    a = dict(prune(model, {"features.3": 0.25}, X, importance="l1").model.named_modules())
    b = dict(prune(model, {"features.3": 0.25}, X, importance="random").model.named_modules())
    assert not torch.equal(a["features.3"].weight, b["features.3"].weight)


def test_round_to_keeps_multiples() -> None:
    model = _model("vgg", cfg=(16, 16, "M"))
    result = prune(model, {"features.0": 0.4}, X, round_to=4)
    assert dict(result.model.named_modules())["features.0"].out_channels % 4 == 0
    assert keep_count(0.4, 16, 4) == 8 and keep_count(0.01, 16, 4) == 4


def test_keep_count_bounds() -> None:
    assert keep_count(0.0001, 64) == 1
    assert keep_count(1.0, 64) == 64
    assert keep_count(0.5, 7) == 4


def test_residual_convs_share_one_ratio() -> None:
    model = _model("resnet", depth=8, width=8)
    result = prune(model, {"stem.0": 0.5}, X)
    layers = dict(result.model.named_modules())
    # the stem and the last conv of each stage-1 block feed the same residual add
    assert layers["stem.0"].out_channels == 4
    assert layers["layer1.0.conv2"].out_channels == 4
    assert layers["layer1.0.conv1"].in_channels == 4


def test_classifier_output_is_never_pruned() -> None:
    model = _model("vgg", cfg=(8, 16, "M"))
    with pytest.raises(ConfigError, match="no prunable unit named 'classifier'"):
        prune(model, {"classifier": 0.5}, X)


def test_ignored_layer_is_not_pruned() -> None:
    model = _model("vgg", cfg=(8, 16, "M"))
    with pytest.raises(ConfigError, match="no prunable unit"):
        prune(model, {"features.0": 0.5}, X, ignored_layers=["features.0"])


def test_bad_keep_ratio_and_importance() -> None:
    model = _model("vgg", cfg=(8, 16, "M"))
    with pytest.raises(ConfigError, match=r"must be in \(0, 1\]"):
        prune(model, {"features.0": 1.5}, X)
    with pytest.raises(ConfigError, match="unknown importance 'l3'"):
        prune(model, {"features.0": 0.5}, X, importance="l3")
