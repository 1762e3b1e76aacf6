"""A pruning task: a trained model, its data, its analysis, and a cached candidate evaluator.

The task is what every search method shares: the environment steps through its
units, baselines propose channel counts for it, and all of them pay for a
candidate through :meth:`PruningTask.evaluate`, which prunes, recalibrates
BatchNorm, scores on the validation split and caches by channel configuration.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .analysis import ModelAnalysis, analyse
from .budget import channel_candidates
from .config import EnvConfig
from .data import DataSplits, load_dataset
from .errors import BudgetError, ModelError
from .evaluate import Evaluator, accuracy, calibrate_batchnorm
from .prune import PruneResult, keep_count, prune
from .zoo import build_model, check_model_fits, load_weights


@dataclass(frozen=True)
class Candidate:
    """One evaluated pruned network."""

    channels: tuple[int, ...]
    keep_ratios: tuple[float, ...]
    accuracy: float
    """Validation top-1 after BatchNorm recalibration, no fine-tuning."""
    macs: int
    params: int
    macs_ratio: float
    params_ratio: float


@dataclass
class Timings:
    """Seconds spent per phase, accumulated over evaluations."""

    prune: float = 0.0
    calibrate: float = 0.0
    evaluate: float = 0.0
    evaluations: int = 0
    cache_hits: int = 0


def pretrained_weights_hint(config: EnvConfig) -> str:
    """The command that makes a preset's base model."""
    return f"run `rlprune pretrain --env {config.name}` to train it"


def load_data(config: EnvConfig) -> DataSplits:
    """The data splits a preset names."""
    return load_dataset(
        config.dataset,
        seed=config.seed,
        val_size=config.val_size,
        data_dir=config.data_dir,
        train_limit=config.train_limit,
    )


def build_config_model(config: EnvConfig, data: DataSplits) -> nn.Module:
    """The (untrained) model a preset names, shaped for ``data``."""
    return build_model(
        config.model,
        in_channels=data.input_shape[0],
        num_classes=data.num_classes,
        input_size=data.input_shape[1],
        kwargs=config.model_kwargs,
    )


@dataclass
class PruningTask:
    """A trained model, its data and everything computed once about it.

    Build it with :meth:`from_config` (presets) or :meth:`from_model` (your own
    model and :class:`~rlprune.data.DataSplits`).
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
    def from_config(cls, config: EnvConfig) -> PruningTask:
        """Load the data and model a preset names, then analyse the model."""
        data = load_data(config)
        model = build_config_model(config, data)
        if config.weights is None:
            warnings.warn(
                f"env {config.name!r} gives no weights: pruning an untrained model; "
                + pretrained_weights_hint(config),
                stacklevel=2,
            )
        elif not Path(config.weights).is_file():
            raise ModelError(
                f"base model weights {config.weights!r} not found; "
                + pretrained_weights_hint(config)
            )
        else:
            check_model_fits(model, data.input_shape, data.num_classes)
            load_weights(model, config.weights)
        return cls.from_model(model, data, config)

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

    def fit_measured(self, channels: Sequence[int], target: float) -> np.ndarray:
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

    def keep_ratios(self, channels: Sequence[int]) -> dict[str, float]:
        """``{unit name: kept fraction}`` for a channel configuration."""
        return {
            u.name: int(n) / u.out_channels
            for u, n in zip(self.analysis.units, channels, strict=True)
        }

    # --- candidates ---------------------------------------------------------------

    def prune(self, channels: Sequence[int]) -> PruneResult:
        """Physically prune a copy of the model to ``channels`` (no calibration)."""
        return prune(
            self.model,
            self.keep_ratios(channels),
            self.example_inputs,
            importance=self.config.importance,
            round_to=self.config.round_to,
            ignored_layers=self.config.ignored_layers,
        )

    def evaluate(self, channels: Sequence[int]) -> Candidate:
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
        calibrate_batchnorm(result.model, self.evaluator.calibration_batches)
        t2 = time.perf_counter()
        acc = accuracy(result.model, self.evaluator.val_x, self.evaluator.val_y)
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
        return accuracy(self.model, self.evaluator.val_x, self.evaluator.val_y)
