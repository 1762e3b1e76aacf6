"""MACs as a function of per-unit channel counts, and AMC's budget-keeping action bound.

The :class:`MacModel` predicts what torch-pruning's op counter will measure on a
pruned model from the channels kept in each unit, without pruning anything. It is
a sum of constant, linear and bilinear terms: a conv's MACs are proportional to
its input channels (one unit) times its output channels (another unit), a
BatchNorm's to its channels. :func:`rlprune.pruning.analysis.analyse` fits it exactly
from one probe prune per unit, so clipping costs microseconds per step.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch_pruning.utils import op_counter as tp_op_counter

from .attention import AttentionCore, attention_counter_hook

__all__ = [
    "ChannelCounts",
    "MacModel",
    "channel_bounds",
    "channel_candidates",
    "count_macs_params",
    "leaf_macs",
    "term_shares",
]

ChannelCounts = Sequence[int] | np.ndarray
"""Kept channels of every unit, in unit order: a sequence of ints or an integer array."""


@dataclass(frozen=True)
class MacModel:
    """``macs(n) = const + sum(lin_coef * n[lin_unit]) + sum(bil_coef * n[bil_u] * n[bil_v])``."""

    const: float
    lin_unit: np.ndarray
    lin_coef: np.ndarray
    bil_u: np.ndarray
    bil_v: np.ndarray
    bil_coef: np.ndarray
    exact: bool = True
    """False when some layer did not fit the bilinear form; the env then verifies
    the measured MACs of every pruned model and repairs the rare overshoot."""
    pad: int = 1
    """Channel counts are rounded up to a multiple of this before the terms are summed
    (a latency model: kernels that work on blocks of channels); 1 for MACs."""

    def padded(self, channels: ChannelCounts) -> np.ndarray:
        """``channels`` as floats, rounded up to multiples of :attr:`pad`."""
        n = np.asarray(channels, dtype=np.float64)
        return np.ceil(n / self.pad) * self.pad if self.pad > 1 else n

    def macs(self, channels: ChannelCounts) -> float:
        """Predicted MACs (or cost) for the channel count of every unit."""
        n = self.padded(channels)
        return float(
            self.const
            + np.dot(self.lin_coef, n[self.lin_unit])
            + np.dot(self.bil_coef, n[self.bil_u] * n[self.bil_v])
        )


def term_shares(model: MacModel, channels: ChannelCounts) -> np.ndarray:
    """Each unit's share of ``model``'s total at ``channels``: its linear terms, and half
    of every bilinear term it is in (the constant belongs to no unit)."""
    n = model.padded(channels)
    shares = np.zeros(len(n))
    np.add.at(shares, model.lin_unit, model.lin_coef * n[model.lin_unit])
    pair = model.bil_coef * n[model.bil_u] * n[model.bil_v] / 2
    np.add.at(shares, model.bil_u, pair)
    np.add.at(shares, model.bil_v, pair)
    total = model.macs(n)
    return shares / total if total > 0 else shares


def channel_candidates(channels: int, n_min: int, n_max: int, round_to: int | None) -> np.ndarray:
    """The channel counts a unit may keep, ascending."""
    step = round_to if round_to and round_to > 1 and channels >= round_to else 1
    values = np.arange(step, channels + 1, step)
    values = values[(values >= n_min) & (values <= n_max)]
    if values.size == 0:
        values = np.array([max(min(n_min, channels), 1)])
    return values


def channel_bounds(
    model: MacModel,
    chosen: np.ndarray,
    step: int,
    n_min: np.ndarray,
    n_max: np.ndarray,
    candidates: np.ndarray,
    budget: float,
    fill_budget: bool,
) -> tuple[int, int]:
    """AMC's action bound for unit ``step``: the range of channel counts that keeps the budget reachable.

    ``hi`` is the largest count with which the model still fits ``budget`` when
    every later unit goes to its minimum. With ``fill_budget``, ``lo`` is the
    smallest count with which the model can still reach ``budget`` when every
    later unit goes to its maximum, so the final model uses the budget instead of
    over-pruning. Units before ``step`` keep the counts in ``chosen``.
    """
    trial = np.array(n_min, dtype=np.float64)
    trial[:step] = chosen[:step]

    def macs_with(count: float, rest: np.ndarray) -> float:
        trial[step] = count
        trial[step + 1 :] = rest[step + 1 :]
        return model.macs(trial)

    # largest candidate that fits with the rest at minimum (macs is non-decreasing in count)
    lo_i, hi_i = 0, len(candidates) - 1
    if macs_with(candidates[0], n_min) > budget:
        hi = int(candidates[0])
    else:
        while lo_i < hi_i:
            mid = (lo_i + hi_i + 1) // 2
            if macs_with(candidates[mid], n_min) <= budget:
                lo_i = mid
            else:
                hi_i = mid - 1
        hi = int(candidates[lo_i])
    if not fill_budget:
        return int(candidates[0]), hi
    # smallest candidate that can still reach the budget with the rest at maximum
    lo_i, hi_i = 0, int(np.searchsorted(candidates, hi))
    if macs_with(candidates[hi_i], n_max) < budget:
        return hi, hi
    while lo_i < hi_i:
        mid = (lo_i + hi_i) // 2
        if macs_with(candidates[mid], n_max) >= budget:
            hi_i = mid
        else:
            lo_i = mid + 1
    return int(candidates[lo_i]), hi


def leaf_macs(model: nn.Module, example_inputs: torch.Tensor) -> dict[str, float]:
    """MACs per leaf module, by torch-pruning's op counter's per-layer rules.

    Registers the counter's own hooks (``torch_pruning.utils.op_counter.MODULES_MAPPING``)
    on ``model`` for one forward pass. Unlike ``tp.utils.count_ops_and_params`` it does
    not deep-copy the model first, which on a deep network costs more than the forward
    pass. Modules the counter does not know count zero, as there; rlprune's
    :class:`~rlprune.pruning.attention.AttentionCore` counts its token-by-token products.
    """
    mapping = {**tp_op_counter.MODULES_MAPPING, AttentionCore: attention_counter_hook}
    counted: list[tuple[str, nn.Module]] = []
    handles = []
    for name, module in model.named_modules():
        hook = mapping.get(type(module))
        if hook is None:
            continue
        module.__flops__ = 0
        handles.append(module.register_forward_hook(hook))
        counted.append((name, module))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    batch = max(int(example_inputs.shape[0]), 1)
    leaves: dict[str, float] = {}
    for name, module in counted:
        leaves[name] = float(module.__dict__.pop("__flops__")) / batch
    return leaves


def count_macs_params(model: nn.Module, example_inputs: torch.Tensor) -> tuple[int, int]:
    """MACs (torch-pruning's op counter's rules, see :func:`leaf_macs`) and parameters."""
    macs = sum(leaf_macs(model, example_inputs).values())
    return int(round(macs)), sum(p.numel() for p in model.parameters())
