"""A pruning task: a trained model, its data, its analysis, and a cached candidate evaluator.

The task is what every search method shares: the environment steps through its
units, baselines propose channel counts for it, and all of them pay for a
candidate through :meth:`PruningTask.evaluate`, which prunes, recalibrates
BatchNorm, scores on the validation split and caches by channel configuration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import BudgetError
from .analysis import ModelAnalysis, analyse
from .budget import ChannelCounts, channel_candidates
from .candidates import Candidate
from .config import EnvConfig
from .evaluate import Evaluator
from .prune import PruneResult, keep_count, prune
from .splits import DataSplits, check_model_fits

__all__ = ["PruningTask", "Timings"]


@dataclass
class Timings:
    """Seconds spent per phase, accumulated over evaluations."""

    prune: float = 0.0
    calibrate: float = 0.0
    evaluate: float = 0.0
    evaluations: int = 0
    cache_hits: int = 0


@dataclass
class PruningTask:
    """A trained model, its data and everything computed once about it.

    Build it with :func:`rlprune.load_task` (presets) or :meth:`from_model` (your own
    model and :class:`~rlprune.core.splits.DataSplits`).
    """

    config: EnvConfig
    model: nn.Module
    data: DataSplits
    analysis: ModelAnalysis
    evaluator: Evaluator
    example_inputs: torch.Tensor
    min_channels: np.ndarray
    max_channels: np.ndarray
    candidates: tuple[np.ndarray, ...]
    """Channel counts each unit may keep (respecting min/max keep and ``round_to``)."""
    cache: dict[tuple[int, ...], Candidate] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)

    @classmethod
    def from_model(cls, model: nn.Module, data: DataSplits, config: EnvConfig) -> PruningTask:
        """Wrap a model object (already trained) and its data splits."""
        check_model_fits(model, data.input_shape, data.num_classes)
        model = model.eval()
        example_inputs = torch.zeros((1, *data.input_shape))
        analysis = analyse(model, example_inputs, ignored_layers=config.ignored_layers)
        generator = torch.Generator().manual_seed(config.seed)
        train_x = data.train.tensors[0]
        batch = min(config.batch_size, len(train_x))
        calibration = [
            train_x[torch.randint(len(train_x), (batch,), generator=generator)]
            for _ in range(config.calibration_batches)
        ]
        val_x, val_y = data.val.tensors
        evaluator = Evaluator(calibration, val_x, val_y)
        full = analysis.channels
        mins = np.array(
            [keep_count(config.min_keep, int(c), config.round_to) for c in full], dtype=np.int64
        )
        maxs = np.array(
            [keep_count(config.max_keep, int(c), config.round_to) for c in full], dtype=np.int64
        )
        candidates = tuple(
            channel_candidates(int(c), int(lo), int(hi), config.round_to)
            for c, lo, hi in zip(full, mins, maxs, strict=True)
        )
        mins = np.array([c[0] for c in candidates], dtype=np.int64)
        maxs = np.array([c[-1] for c in candidates], dtype=np.int64)
        task = cls(
            config=config,
            model=model,
            data=data,
            analysis=analysis,
            evaluator=evaluator,
            example_inputs=example_inputs,
            min_channels=mins,
            max_channels=maxs,
            candidates=candidates,
        )
        task.check_target(config.target_range[0])
        return task

    # --- budget -------------------------------------------------------------------

    @property
    def min_macs_ratio(self) -> float:
        """MACs ratio with every unit at ``min_keep``: the smallest reachable target."""
        return self.analysis.mac_model.macs(self.min_channels) / self.analysis.macs

    def check_target(self, target: float) -> None:
        """Raise :class:`BudgetError` if ``target`` cannot be met with ``min_keep``."""
        if not 0.0 < target <= 1.0:
            raise BudgetError(f"target {target} is outside (0, 1]; e.g. 0.5 keeps half the MACs")
        floor = self.min_macs_ratio
        if floor > target:
            raise BudgetError(
                f"target {target} is unreachable: with every unit at min_keep="
                f"{self.config.min_keep} the model keeps {floor:.3f} of its MACs; "
                f"raise the target above {floor:.3f} or lower min_keep"
            )

    def fit_measured(self, channels: ChannelCounts, target: float) -> np.ndarray:
        """Shrink ``channels`` until the *measured* MACs meet ``target``.

        A no-op when the MACs model is exact. Otherwise it prunes (no evaluation, so
        nothing is charged) and lowers the unit holding the most MACs one step at a
        time: the repair behind the budget guarantee for networks whose MACs the
        fitted model only approximates.
        """
        fitted = np.array(channels, dtype=np.int64)
        if self.analysis.mac_model.exact:
            return fitted
        budget = target * self.analysis.macs
        full = self.analysis.channels
        units = self.analysis.units
        while self.prune(fitted).macs > budget:
            shrinkable = [i for i in range(len(units)) if fitted[i] > self.min_channels[i]]
            if not shrinkable:
                break
            i = max(shrinkable, key=lambda j: units[j].macs * fitted[j] / full[j])
            options = self.candidates[i]
            fitted[i] = options[max(int(np.searchsorted(options, fitted[i])) - 1, 0)]
        return fitted

    def keep_ratios(self, channels: ChannelCounts) -> dict[str, float]:
        """``{unit name: kept fraction}`` for a channel configuration."""
        return {
            u.name: int(n) / u.out_channels
            for u, n in zip(self.analysis.units, channels, strict=True)
        }

    # --- candidates ---------------------------------------------------------------

    def prune(self, channels: ChannelCounts) -> PruneResult:
        """Physically prune a copy of the model to ``channels`` (no calibration)."""
        return prune(
            self.model,
            self.keep_ratios(channels),
            self.example_inputs,
            importance=self.config.importance,
            round_to=self.config.round_to,
            ignored_layers=self.config.ignored_layers,
        )

    def evaluate(self, channels: ChannelCounts) -> Candidate:
        """Prune, recalibrate BatchNorm and score on the validation split; cached."""
        key = tuple(int(n) for n in channels)
        if len(key) != len(self.analysis.units):
            raise ValueError(f"need {len(self.analysis.units)} channel counts, got {len(key)}")
        hit = self.cache.get(key)
        if hit is not None:
            self.timings.cache_hits += 1
            return hit
        t0 = time.perf_counter()
        result = self.prune(key)
        t1 = time.perf_counter()
        self.evaluator.calibrate(result.model)
        t2 = time.perf_counter()
        acc = self.evaluator.score(result.model)
        t3 = time.perf_counter()
        self.timings.prune += t1 - t0
        self.timings.calibrate += t2 - t1
        self.timings.evaluate += t3 - t2
        self.timings.evaluations += 1
        candidate = Candidate(
            channels=key,
            keep_ratios=tuple(
                n / u.out_channels for n, u in zip(key, self.analysis.units, strict=True)
            ),
            accuracy=acc,
            macs=result.macs,
            params=result.params,
            macs_ratio=result.macs / self.analysis.macs,
            params_ratio=result.params / self.analysis.params,
        )
        self.cache[key] = candidate
        return candidate

    def base_accuracy(self) -> float:
        """Validation accuracy of the unpruned model."""
        return self.evaluator.score(self.model)
