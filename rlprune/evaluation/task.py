"""A pruning task: a trained model, its data, its analysis, and a cached candidate evaluator.

The task is what every search method shares: the environment steps through its
units, baselines propose channel counts for it, and all of them pay for a
candidate through :meth:`PruningTask.evaluate`, which prunes, recalibrates
BatchNorm, scores on the validation split and caches by channel configuration.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ..errors import BudgetError, ConfigError, ModelError, RLPruneError, one_line
from ..pruning.analysis import ModelAnalysis, analyse
from ..pruning.attention import convert_attention
from ..pruning.macs import ChannelCounts, MacModel, channel_candidates, term_shares
from ..pruning.surgeon import PruneResult, Surgeon, keep_count, prune, unit_step
from .backends import Backend, InProcess, Request, Scored, TaskRecipe, default_backend, make_backend
from .candidates import Candidate, SearchResult, best_of
from .config import TaskConfig
from .devices import resolve_device
from .latency import BLOCKS, LatencyCheck, LatencyModel, check_model, latency_model
from .scoring import Evaluator, split_accuracy
from .splits import DataSplits, check_finite, check_model_fits

__all__ = ["PruningTask", "Timings"]


class HasTask(Protocol):
    """Anything that carries a task configuration (a preset)."""

    @property
    def task(self) -> TaskConfig:
        """The task part."""
        ...


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
    model and :class:`~rlprune.evaluation.splits.DataSplits`).
    """

    config: TaskConfig
    model: nn.Module
    data: DataSplits
    analysis: ModelAnalysis
    evaluator: Evaluator
    example_inputs: torch.Tensor
    min_channels: np.ndarray
    max_channels: np.ndarray
    candidates: tuple[np.ndarray, ...]
    """Channel counts each unit may keep (respecting min/max keep and ``round_to``)."""
    cache: dict[tuple[tuple[int, ...], int], Candidate] = field(default_factory=dict)
    """Evaluated candidates by (channels, validation images used); the oldest are dropped
    beyond :attr:`cache_limit` entries."""
    cache_limit: int = 100_000
    """Most candidates :attr:`cache` holds (a Candidate is well under 1 KB)."""
    keep_cache: bool = False
    """Keep :attr:`cache` across :meth:`reset_search`: a configuration one search scored is
    not scored again for the next, which is still charged for it (the ledger charges every
    request). Searches then cost less wall time than alone, so their times no longer
    compare; their results are the same (scoring is deterministic)."""
    ledger: list[Candidate] = field(default_factory=list)
    """Every evaluation request in order, cached or not: what searches are charged for."""
    memo: dict[object, object] = field(default_factory=dict)
    """Per-search results computed from evaluations (e.g. sensitivity probes); cleared with
    the cache so that a new search pays for them again."""
    timings: Timings = field(default_factory=Timings)
    source: TaskRecipe | None = None
    """How a worker rebuilds this task (set by :func:`rlprune.load_task`); ``None``: from
    the model, data and config themselves."""
    backend: Backend | None = None
    """Where evaluations run (:mod:`rlprune.evaluation.backends`); ``None``: in this process."""
    latency: LatencyModel | None = None
    """The latency model (``metric: latency``), built by :meth:`prepare_budget` or on first
    use; ``None`` until then and under the MACs budget."""
    latency_target: float = 0.5
    """The target a latency model is built for (its grid choice and focus probes): the
    first :meth:`check_target`'s, else this default."""
    _prefetched: set[tuple[tuple[int, ...], int]] = field(default_factory=set, repr=False)
    _grid_chosen: bool = field(default=False, repr=False)
    """``round_to`` was set by the latency model's grid choice, not given."""

    @classmethod
    def from_model(
        cls, model: nn.Module, data: DataSplits, config: TaskConfig | HasTask
    ) -> PruningTask:
        """Wrap a model object (already trained) and its data splits.

        ``config`` is the task configuration, or a preset
        (:class:`~rlprune.mdp.settings.EnvConfig`) whose task part is taken.
        """
        if not isinstance(config, TaskConfig):
            config = config.task
        check_model_fits(model, data.input_shape, data.num_classes)
        # the analysis's surgeon must hold this very model: attention in prunable form first
        model = convert_attention(model).eval()
        evaluator = make_evaluator(data, config)
        check_finite(model, data, list(evaluator.calibration_batches))  # before any search
        example_inputs = torch.zeros((1, *data.input_shape))
        try:
            analysis = analyse(
                model,
                example_inputs,
                ignored_layers=config.ignored_layers,
                importance=config.importance,
            )
        except (RLPruneError, MemoryError):
            raise
        except Exception as exc:  # the user's model code, traced on one image
            raise ModelError(
                f"tracing the model {config.model!r} on a batch of one input "
                f"{tuple(data.input_shape)} failed ({one_line(exc)}); rlprune traces the "
                "model on one image: make its forward work for a batch of one"
            ) from exc
        evaluator = make_evaluator(data, config)
        mins, maxs, candidates = channel_options(analysis, config)
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
        return task

    # --- budget -------------------------------------------------------------------

    def prepare_budget(self) -> None:
        """Build (or load from the cache) the latency model when the task budgets latency;
        a no-op under the MACs budget (progress: :func:`rlprune.evaluation.latency.reporting`).
        With no ``round_to`` set, the model's channel grid becomes it."""
        if self.config.metric != "latency" or self.latency is not None:
            return
        self.latency = latency_model(
            self.model,
            self.analysis,
            lambda channels: self.prune(channels).model,
            self.latency_grids(),
            batch=self.config.latency_batch,
            device=self.device,
            threads=self.config.threads,
            target=self.latency_target,
        )
        if self.config.round_to is None and self.latency.block > 1:
            self._grid_chosen = True
            self.config = dataclasses.replace(self.config, round_to=self.latency.block)
            self.min_channels, self.max_channels, self.candidates = channel_options(
                self.analysis, self.config
            )

    def latency_grids(self) -> dict[int, tuple[np.ndarray, ...]]:
        """The channel grids the latency model may choose from, each unit's candidates on
        each: the ``round_to`` given; else 8 on CUDA; else every grid of
        :data:`~rlprune.evaluation.latency.BLOCKS`, timed on this device."""
        if self.config.round_to is not None and not self._grid_chosen:
            return {int(self.config.round_to): self.candidates}
        blocks = (8,) if self.device.type == "cuda" else BLOCKS
        return {
            b: channel_options(
                self.analysis, dataclasses.replace(self.config, round_to=b if b > 1 else None)
            )[2]
            for b in blocks
        }

    def check_latency(self, count: int = 30, repeats: int = 7) -> LatencyCheck:
        """The latency model (built if needed) against ``count`` freshly timed random
        candidates (:func:`rlprune.evaluation.latency.check_model`)."""
        if self.config.metric != "latency":
            raise ConfigError("check_latency needs metric: latency (--metric latency)")
        self.prepare_budget()
        assert self.latency is not None
        return check_model(
            self.latency,
            self.model,
            self.analysis,
            lambda channels: self.prune(channels).model,
            self.candidates,
            count=count,
            repeats=repeats,
            device=self.device,
        )

    @property
    def cost_model(self) -> MacModel:
        """What the target budgets, as a function of channel counts: the MACs model, or the
        latency model's prediction (ms) under ``metric: latency``."""
        if self.config.metric == "latency":
            self.prepare_budget()
            assert self.latency is not None
            return self.latency.cost
        return self.analysis.mac_model

    @property
    def cost_total(self) -> float:
        """The unpruned network's cost under :attr:`cost_model` (the target's denominator)."""
        if self.config.metric == "latency":
            return self.cost_model.macs(self.analysis.channels)
        return float(self.analysis.macs)

    @property
    def unit_shares(self) -> np.ndarray:
        """Each unit's share of the unpruned network's cost: its MACs share (layers shared
        between units split evenly), or under ``metric: latency`` its terms of the latency
        model (:func:`~rlprune.pruning.macs.term_shares`)."""
        if self.config.metric == "latency":
            return term_shares(self.cost_model, self.analysis.channels)
        return np.array([u.macs for u in self.analysis.units], dtype=np.float64) / float(
            self.analysis.macs
        )

    def budget_ratio(self, channels: ChannelCounts) -> float:
        """``channels``' cost over the original's under the task's metric (predicted)."""
        return self.cost_model.macs(np.asarray(channels)) / self.cost_total

    @property
    def min_macs_ratio(self) -> float:
        """MACs ratio with every unit at ``min_keep``."""
        return self.analysis.mac_model.macs(self.min_channels) / self.analysis.macs

    @property
    def min_budget_ratio(self) -> float:
        """Budget ratio (MACs or latency) with every unit at ``min_keep``: the smallest
        reachable target."""
        return self.budget_ratio(self.min_channels)

    def check_target(self, target: float) -> None:
        """Raise :class:`BudgetError` if ``target`` cannot be met with ``min_keep``."""
        what = "MACs" if self.config.metric == "macs" else "latency (predicted)"
        if self.latency is None and 0.0 < target <= 1.0:
            self.latency_target = float(target)
        if not 0.0 < target <= 1.0:
            raise BudgetError(
                f"target {target} is outside (0, 1]; e.g. 0.5 keeps half the {what.split()[0]}"
            )
        floor = self.min_budget_ratio
        if floor > target:
            raise BudgetError(
                f"target {target} is unreachable: with every unit at min_keep="
                f"{self.config.min_keep} the model keeps {floor:.3f} of its {what}; "
                f"raise the target above {floor:.3f} or lower min_keep"
            )

    def fit_measured(self, channels: ChannelCounts, target: float) -> np.ndarray:
        """Shrink ``channels`` until the *measured* MACs meet ``target``.

        A no-op when the MACs model is exact, and under a latency budget (which bounds
        the latency model's prediction, exact by construction). Otherwise it prunes (no evaluation, so
        nothing is charged) and lowers the unit holding the most MACs one step at a
        time: the repair behind the budget guarantee for networks whose MACs the
        fitted model only approximates.
        """
        fitted = np.array(channels, dtype=np.int64)
        if self.analysis.mac_model.exact or self.config.metric != "macs":
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

    def unit_count(self, ratio: float, index: int) -> int:
        """Channels unit ``index`` keeps for ``ratio``: rounded to its step (its channel
        groups and ``round_to``), at least one step."""
        unit = self.analysis.units[index]
        return keep_count(ratio, unit.out_channels, unit_step(unit.groups, self.config.round_to))

    def keep_ratios(self, channels: ChannelCounts) -> dict[str, float]:
        """``{unit name: kept fraction}`` for a channel configuration."""
        return {
            u.name: int(n) / u.out_channels
            for u, n in zip(self.analysis.units, channels, strict=True)
        }

    # --- candidates ---------------------------------------------------------------

    @property
    def surgeon(self) -> Surgeon | None:
        """The analysis's traced model, if it is :attr:`model` (``None`` after the model
        was swapped, say by ``dataclasses.replace``)."""
        surgeon = self.analysis.surgeon
        return surgeon if surgeon is not None and surgeon.model is self.model else None

    def prune(self, channels: ChannelCounts, *, count: bool = False) -> PruneResult:
        """Physically prune a copy of the model to ``channels`` (no calibration).

        The model is not traced again (the analysis's surgeon is reused). Its MACs
        come from the fitted MACs model when that is exact; with ``count``, or when
        the model is approximate, they are measured with torch-pruning's counter.
        """
        units = self.analysis.units
        if len(channels) != len(units):
            raise ValueError(f"need {len(units)} channel counts, got {len(channels)}")
        keep = {u.key or u.name: int(n) for u, n in zip(units, channels, strict=True)}
        surgeon = self.surgeon
        if surgeon is None:  # an analysis of another model object: trace this one
            return prune(
                self.model,
                self.keep_ratios(channels),
                self.example_inputs,
                importance=self.config.importance,
                round_to=self.config.round_to,
                ignored_layers=self.config.ignored_layers,
            )
        exact = self.analysis.mac_model.exact
        result = surgeon.prune(keep, count=count or not exact)
        names = {u.key or u.name: u.name for u in units}
        predicted = self.analysis.mac_model.macs(np.asarray(channels))
        macs = result.macs if result.macs >= 0 else round(predicted)
        return PruneResult(
            model=result.model,
            channels={names[k]: n for k, n in keep.items()},
            macs=int(macs),
            params=result.params,
        )

    @property
    def val_size(self) -> int:
        """Validation images in one full evaluation (the unit of search cost)."""
        return self.evaluator.val_size

    def evaluate(self, channels: ChannelCounts, val_images: int | None = None) -> Candidate:
        """Prune, recalibrate BatchNorm and score on the validation split; cached.

        ``val_images`` scores on the first that many validation images only (a
        low-fidelity probe; the split is shuffled, so they are a fixed random subset).
        Every request, cached or not, is appended to :attr:`ledger` and charged
        ``val_images / val_size`` full evaluations (:attr:`Candidate.fidelity`).
        """
        key = tuple(int(n) for n in channels)
        if len(key) != len(self.analysis.units):
            raise ValueError(f"need {len(self.analysis.units)} channel counts, got {len(key)}")
        images = self.val_size if val_images is None else min(int(val_images), self.val_size)
        if images < 1:
            raise ValueError(f"val_images must be at least 1, got {val_images}")
        hit = self.cache.get((key, images))
        if hit is not None:
            if (key, images) in self._prefetched:  # scored ahead for this request: not a hit
                self._prefetched.discard((key, images))
            else:
                self.timings.cache_hits += 1
            self.ledger.append(hit)
            return hit
        candidate = self._store(key, images, self.service.score([(key, images)])[0])
        self.ledger.append(candidate)
        return candidate

    def prefetch(
        self, configurations: Iterable[ChannelCounts], val_images: int | None = None
    ) -> None:
        """Score ``configurations`` ahead, in parallel on the :attr:`backend`'s workers, so
        that the :meth:`evaluate` requests that follow find them cached. Charges nothing
        and appends nothing to the ledger: the searches are charged when they ask. A no-op
        in-process (the requests are then scored as they come, as before)."""
        service = self.service
        if isinstance(service, InProcess):
            return
        images = self.val_size if val_images is None else min(int(val_images), self.val_size)
        wanted: dict[Request, None] = {}  # new configurations, in order, once each
        for channels in configurations:
            key = tuple(int(n) for n in channels)
            if len(key) != len(self.analysis.units):
                raise ValueError(f"need {len(self.analysis.units)} channel counts, got {len(key)}")
            if (key, images) not in self.cache:
                wanted[(key, images)] = None
        requests = list(wanted)
        if not requests:
            return
        for request, scored in zip(requests, service.score(requests), strict=True):
            self._store(*request, scored)
            self._prefetched.add(request)

    def _store(self, key: tuple[int, ...], images: int, scored: Scored) -> Candidate:
        self.timings.prune += scored.prune_s
        self.timings.calibrate += scored.calibrate_s
        self.timings.evaluate += scored.evaluate_s
        self.timings.evaluations += 1
        candidate = Candidate(
            channels=key,
            keep_ratios=tuple(
                n / u.out_channels for n, u in zip(key, self.analysis.units, strict=True)
            ),
            accuracy=scored.accuracy,
            macs=scored.macs,
            params=scored.params,
            macs_ratio=scored.macs / self.analysis.macs,
            params_ratio=scored.params / self.analysis.params,
            fidelity=images / self.val_size,
            latency_ratio=self.budget_ratio(key) if self.config.metric == "latency" else None,
        )
        self.cache[(key, images)] = candidate
        while len(self.cache) > self.cache_limit:
            oldest = next(iter(self.cache))  # dicts keep insertion order: oldest first
            del self.cache[oldest]
            self._prefetched.discard(oldest)
        return candidate

    # --- where evaluations run ------------------------------------------------------

    @property
    def service(self) -> Backend:
        """The :attr:`backend`: the one set with :meth:`use_backend`, else the process's
        default (:func:`rlprune.evaluation.backends.set_default_backend`; in-process unless set)."""
        if self.backend is None:
            self.backend = default_backend(self)
        return self.backend

    def use_backend(
        self,
        name: str = "local",
        workers: int = 1,
        *,
        threads: int = 1,
        ray_address: str | None = None,
    ) -> Backend:
        """Run evaluations on backend ``name`` (``local``, ``process`` or ``ray``) with
        ``workers`` workers of ``threads`` torch threads each; closes the previous one."""
        backend = make_backend(name, self, workers, threads=threads, ray_address=ray_address)
        self.close_backend()
        self.backend = backend
        return backend

    def close_backend(self) -> None:
        """Stop the backend's workers; evaluations run in-process again."""
        if self.backend is not None:
            self.backend.close()
        self.backend = None

    def recipe(self) -> TaskRecipe:
        """What a worker calls to build this task: :attr:`source`, or the model, data and
        config themselves (sent once per worker)."""
        if self.source is not None:
            return self.source
        return functools.partial(PruningTask.from_model, self.model, self.data, self.config)

    def reset_search(self) -> None:
        """Forget the ledger, memoised probes and (unless :attr:`keep_cache`) cached
        candidates: the next search is charged for all of its evaluations."""
        if not self.keep_cache:
            self.cache.clear()
        self.ledger.clear()
        self.memo.clear()
        self._prefetched.clear()

    def search_result(self, method: str, since: int, target: float, started: float) -> SearchResult:
        """A search's result from the ledger: what it requested since index ``since``, its
        best full-fidelity candidate within ``target``, its charge, and the seconds since
        ``started`` (a :func:`time.perf_counter` value).

        Raises:
            BudgetError: no full-fidelity candidate within the target was evaluated.
        """
        history = tuple(self.ledger[since:])
        try:
            best = best_of(history, target)
        except ValueError:
            raise BudgetError(
                f"method {method!r} evaluated no candidate within target {target}; "
                f"report this network's {self.config.metric} model as a bug"
            ) from None
        seconds = time.perf_counter() - started
        return SearchResult(method, best, history, self.charged(since), seconds, target)

    def charged(self, since: int = 0) -> float:
        """Full-evaluation equivalents charged by :attr:`ledger` requests from index ``since``."""
        return float(sum(c.fidelity for c in self.ledger[since:]))

    @property
    def device(self) -> torch.device:
        """Where calibration, scoring and fine-tuning run (the model itself, analysis and
        pruning stay on the CPU)."""
        return self.evaluator.device

    def on_device(self, model: nn.Module) -> nn.Module:
        """``model`` on :attr:`device`: a copy for the task's own model (which stays on
        the CPU for pruning), else the model itself, moved."""
        if model is self.model and self.device.type != "cpu":
            return copy.deepcopy(model).to(self.device)
        return model.to(self.device)

    def base_accuracy(self, val_images: int | None = None) -> float:
        """Validation accuracy of the unpruned model (on the first ``val_images`` images)."""
        return self.evaluator.score(self.on_device(self.model), val_images)

    def split_accuracy(self, model: nn.Module, split: str) -> float:
        """Accuracy of ``model`` (pruned or not) on the ``train``/``val``/``test`` split,
        on :attr:`device` (no recalibration)."""
        return split_accuracy(
            self.on_device(model),
            getattr(self.data, split),
            self.data.num_workers,
            device=self.device,
            amp=self.evaluator.amp,
        )


def channel_options(
    analysis: ModelAnalysis, config: TaskConfig
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Each unit's fewest and most channels and the counts it may keep (``min_keep``,
    ``max_keep``, its channel groups and ``round_to``)."""
    steps = [unit_step(u.groups, config.round_to) for u in analysis.units]
    full = analysis.channels
    mins = [keep_count(config.min_keep, int(c), s) for c, s in zip(full, steps, strict=True)]
    maxs = [keep_count(config.max_keep, int(c), s) for c, s in zip(full, steps, strict=True)]
    candidates = tuple(
        channel_candidates(int(c), int(lo), int(hi), s)
        for c, lo, hi, s in zip(full, mins, maxs, steps, strict=True)
    )
    return (
        np.array([c[0] for c in candidates], dtype=np.int64),
        np.array([c[-1] for c in candidates], dtype=np.int64),
        candidates,
    )


def make_evaluator(data: DataSplits, config: TaskConfig) -> Evaluator:
    """The task's evaluator: ``calibration_batches`` seeded random batches of the train split
    (drawn once and kept), and the validation split, in memory when it is a
    ``TensorDataset`` and streamed through a ``DataLoader`` otherwise."""
    generator = torch.Generator().manual_seed(config.seed)
    n_train = len(data.train)  # type: ignore[arg-type]
    batch = min(config.batch_size, n_train)
    draws = [
        torch.randint(n_train, (batch,), generator=generator)
        for _ in range(config.calibration_batches)
    ]
    if isinstance(data.train, TensorDataset):
        train_x = data.train.tensors[0]
        calibration = [train_x[idx] for idx in draws]
    else:  # the same draws, read sample by sample from the dataset
        calibration = [torch.stack([data.train[int(i)][0] for i in idx]) for idx in draws]
    device = resolve_device(config.device)
    if isinstance(data.val, TensorDataset):
        val_x, val_y = data.val.tensors
        return Evaluator(calibration, val_x, val_y, device=device, amp=config.amp)
    return Evaluator(
        calibration,
        val_dataset=data.val,
        num_workers=data.num_workers,
        device=device,
        amp=config.amp,
    )
