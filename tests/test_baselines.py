"""Baseline search methods: budget, cost accounting, determinism and what each one favours."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch

from rlprune.errors import BudgetError, ConfigError
from rlprune.evaluation.candidates import SearchResult
from rlprune.evaluation.scoring import Evaluator
from rlprune.evaluation.task import PruningTask, Timings
from rlprune.priors import (
    allocate_by_sensitivity,
    magnitude_channels,
    prior_channels,
    sensitivity_curves,
    uniform_keep_ratio,
)
from rlprune.search.base import BaselineMethod
from rlprune.search.heuristics import search_sensitivity
from rlprune.search.methods import BASELINES, get_baseline
from rlprune.search.random_search import RandomPolicy, search_random

TARGET = 0.5


@pytest.fixture(scope="module")
def digits(digits_task: PruningTask) -> PruningTask:
    """The digits task calibrating on one batch instead of four (same model, same val split)."""
    evaluator = Evaluator(
        digits_task.evaluator.calibration_batches[:1],
        digits_task.evaluator.val_x,
        digits_task.evaluator.val_y,
    )
    return dataclasses.replace(
        digits_task, evaluator=evaluator, cache={}, ledger=[], memo={}, timings=Timings()
    )


@pytest.fixture(scope="module")
def custom(make_small_task: Callable[..., PruningTask]) -> PruningTask:
    """The example custom model (a depthwise and a residual unit) on synthetic data."""
    return make_small_task("custom")


@pytest.fixture
def tasks(request: pytest.FixtureRequest) -> Callable[[str], PruningTask]:
    """Look a task up by family name, building only the one asked for."""

    def get(name: str) -> PruningTask:
        if name == "digits":
            return request.getfixturevalue("digits")
        return request.getfixturevalue("make_small_task")(name)

    return get


def run(method: str, task: PruningTask, evals: int | None = None, seed: int = 0) -> SearchResult:
    baseline = get_baseline(method)
    return baseline.search(
        task, TARGET, baseline.min_evals(task) + 1 if evals is None else evals, seed
    )


def check_result(result: SearchResult, task: PruningTask, target: float, evals: int) -> None:
    assert result.evaluations == len(result.history) <= evals
    assert result.best in result.history
    assert result.best.macs <= target * task.analysis.macs * 1.01
    if task.analysis.mac_model.exact:
        assert result.best.macs <= target * task.analysis.macs
    assert result.seconds > 0
    for candidate in result.history:
        for n, allowed in zip(candidate.channels, task.candidates, strict=True):
            assert n in allowed


@pytest.mark.parametrize("method", sorted(BASELINES))
@pytest.mark.parametrize("family", ["digits", "residual", "depthwise", "custom"])
def test_meets_budget_within_evals(
    method: str, family: str, tasks: Callable[[str], PruningTask]
) -> None:
    task = tasks(family)
    evals = BASELINES[method].min_evals(task) + 1
    result = get_baseline(method).search(task, TARGET, evals, 0)
    assert result.method == method
    check_result(result, task, TARGET, evals)


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_meets_a_tighter_budget(method: str, digits: PruningTask) -> None:
    result = get_baseline(method).search(digits, 0.25, 12, 0)
    check_result(result, digits, 0.25, 12)


@pytest.mark.parametrize("method", ["uniform", "magnitude", "sensitivity"])
def test_heuristics_repair_an_approximate_macs_model(method: str, custom: PruningTask) -> None:
    # a MACs model that underestimates by a fifth of the network: the chosen
    # configuration is measured and shrunk before it is evaluated (at no extra cost)
    model = custom.analysis.mac_model
    biased = dataclasses.replace(model, const=model.const - 0.2 * custom.analysis.macs, exact=False)
    analysis = dataclasses.replace(custom.analysis, mac_model=biased)
    task = dataclasses.replace(
        custom, analysis=analysis, cache={}, ledger=[], memo={}, timings=Timings()
    )
    evals = BASELINES[method].min_evals(task)
    result = get_baseline(method).search(task, TARGET, evals, 0)
    assert result.evaluations == evals
    # the final allocation (the only candidate, but for sensitivity's probes) fits
    assert result.history[-1].macs <= TARGET * task.analysis.macs
    assert result.best.macs <= TARGET * task.analysis.macs


def test_registry_describes_each_method(digits: PruningTask) -> None:
    assert set(BASELINES) == {
        "random",
        "eagleeye",
        "tpe",
        "cmaes",
        "uniform",
        "magnitude",
        "sensitivity",
    }
    for name, method in BASELINES.items():
        assert isinstance(method, BaselineMethod) and method.name == name
        assert method.description and "\n" not in method.description
    assert BASELINES["sensitivity"].min_evals(digits) == 3 * 3 + 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        BASELINES["random"].name = "other"  # type: ignore[misc]


def test_unknown_method_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="unknown baseline method 'greedy'.*magnitude, random"):
        get_baseline("greedy")


def test_too_few_evaluations_is_a_config_error(digits: PruningTask) -> None:
    message = (
        r"method 'sensitivity' needs at least 10 evaluations for this network "
        r"\(3 units x 3 ratios \+ 1\), got 5; raise --evals"
    )
    with pytest.raises(ConfigError, match=message):
        run("sensitivity", digits, evals=5)
    with pytest.raises(ConfigError, match="method 'random' needs at least 1 evaluation, got 0"):
        search_random(digits, TARGET, 0, 0)


def test_unreachable_target_is_a_budget_error(custom: PruningTask) -> None:
    for method in BASELINES.values():
        with pytest.raises(BudgetError, match="unreachable"):
            method.search(custom, 0.01, 20, 0)


def test_random_policy_is_seeded_and_bounded() -> None:
    obs = np.zeros(12, dtype=np.float32)
    first = [RandomPolicy(3).predict(obs)[0] for _ in range(2)]
    assert first[0].shape == (1,) and first[0].dtype == np.float32
    np.testing.assert_array_equal(first[0], first[1])
    policy = RandomPolicy(3)
    actions = np.array([policy.predict(obs, deterministic=True)[0][0] for _ in range(200)])
    assert actions.min() >= -1.0 and actions.max() <= 1.0 and actions.std() > 0.3
    with pytest.raises(ConfigError, match="within"):
        RandomPolicy(0, low=-2.0)


def test_random_search_is_deterministic_per_seed(custom: PruningTask) -> None:
    def channels(seed: int) -> list[tuple[int, ...]]:
        return [c.channels for c in search_random(custom, TARGET, 3, seed).history]

    assert channels(0) == channels(0)
    assert channels(0) != channels(1)


@pytest.mark.parametrize("method", ["uniform", "magnitude", "sensitivity"])
def test_heuristics_are_deterministic(method: str, custom: PruningTask) -> None:
    first, second = run(method, custom, seed=0), run(method, custom, seed=1)
    assert [c.channels for c in first.history] == [c.channels for c in second.history]


def test_uniform_keeps_one_ratio(digits: PruningTask) -> None:
    result = run("uniform", digits, evals=20)
    assert result.evaluations == 1  # it never spends more than it needs
    ratio = uniform_keep_ratio(digits, TARGET)
    for keep, channels in zip(result.best.keep_ratios, digits.analysis.channels, strict=True):
        assert abs(keep - ratio) <= 1.0 / channels


def test_evaluations_are_charged_even_when_cached(digits: PruningTask) -> None:
    run("uniform", digits)
    assert run("uniform", digits).evaluations == 1


def test_sensitivity_spends_units_times_ratios_plus_one(digits: PruningTask) -> None:
    result = run("sensitivity", digits, evals=30)
    assert result.evaluations == len(result.history) == 3 * 3 + 1
    # the probes prune one unit alone, so the last candidate is the allocation
    for unit in range(3):
        for probe in result.history[3 * unit : 3 * unit + 3]:
            others = [n for i, n in enumerate(probe.channels) if i != unit]
            assert others == [int(n) for i, n in enumerate(digits.max_channels) if i != unit]
    assert result.history[-1].macs <= TARGET * digits.analysis.macs


def test_sensitivity_uses_its_budget_like_the_envs_prior(
    make_small_task: Callable[..., PruningTask],
) -> None:
    task = make_small_task("residual")  # its greedy allocation leaves budget at 0.6
    target = 0.6
    result = search_sensitivity(task, target, 100, 0)
    greedy = allocate_by_sensitivity(task, target, sensitivity_curves(task))
    allocation = np.asarray(result.history[-1].channels)
    budget = target * task.analysis.macs
    # the budget the greedy allocation's last step leaves is given back: no unit can grow
    assert np.all(allocation >= greedy) and not np.array_equal(allocation, greedy)
    for i, options in enumerate(task.candidates):
        larger = options[options > allocation[i]]
        if larger.size:
            grown = allocation.copy()
            grown[i] = larger[0]
            assert task.analysis.mac_model.macs(grown) > budget
    assert task.analysis.mac_model.macs(allocation) <= budget
    # and it is what a residual policy's action 0 plays
    assert np.array_equal(allocation, prior_channels(task, target, "sensitivity"))


def test_sensitivity_ratios_set_the_cost(custom: PruningTask) -> None:
    units = len(custom.analysis.units)
    result = search_sensitivity(custom, TARGET, 20, 0, ratios=(0.5,))
    assert result.evaluations == units + 1
    with pytest.raises(ConfigError, match=rf"at least {2 * units + 1} evaluations.*x 2 ratios"):
        search_sensitivity(custom, TARGET, 2 * units, 0, ratios=(0.3, 0.6))
    with pytest.raises(ConfigError, match=r"must be in \(0, 1\]"):
        search_sensitivity(custom, TARGET, 20, 0, ratios=(0.0,))


def _with_scaled_unit(task: PruningTask, unit: int, scale: torch.Tensor | float) -> PruningTask:
    """A copy of ``task`` whose unit's output weights (conv/linear and BatchNorm) are scaled."""
    model = copy.deepcopy(task.model)
    layers = dict(model.named_modules())
    names = list(layers)
    with torch.no_grad():
        for name in task.analysis.units[unit].modules:
            weight = layers[name].weight
            factor = torch.as_tensor(scale).reshape(-1, *([1] * (weight.dim() - 1)))
            weight.mul_(factor)
            after = names[names.index(name) + 1]
            if isinstance(layers[after], torch.nn.BatchNorm2d):
                layers[after].weight.mul_(torch.as_tensor(scale))
    return dataclasses.replace(task, model=model, cache={}, ledger=[], memo={}, timings=Timings())


def test_magnitude_keeps_more_of_a_heavier_unit(digits: PruningTask) -> None:
    # unit 0: the first conv's weights belong to no other group (a later unit's conv
    # weights are also the input channels of the unit before it, which would gain too)
    unit = 0
    before = magnitude_channels(digits, TARGET, normalizer=None)
    heavier = _with_scaled_unit(digits, unit, 10.0)
    after = magnitude_channels(heavier, TARGET, normalizer=None)
    assert (
        after[unit] / digits.analysis.channels[unit] > before[unit] / digits.analysis.channels[unit]
    )
    assert heavier.analysis.mac_model.macs(after) <= TARGET * heavier.analysis.macs


def test_magnitude_default_ranks_within_unit_spread(digits: PruningTask) -> None:
    # the "mean" normalizer cancels a unit's overall scale, so a unit with a block of
    # near-zero channels is what loses more
    unit = 1
    before = magnitude_channels(digits, TARGET)[unit]
    n = int(digits.analysis.channels[unit])
    scale = torch.ones(n)
    scale[: n // 2] = 1e-3
    after = magnitude_channels(_with_scaled_unit(digits, unit, scale), TARGET)[unit]
    assert after < before
    assert n // 2 - 2 <= after <= n // 2  # the near-zero half goes first, little else


@pytest.mark.parametrize("family", ["residual", "depthwise"])
def test_fixed_configurations_replay_exactly_through_the_env(
    family: str, make_small_task: Callable[[str], PruningTask]
) -> None:
    """Heuristics are scored through predict() and the env, like agents, and the env keeps
    their configuration as given."""
    from rlprune.priors import magnitude_channels, uniform_channels
    from rlprune.search.base import play

    task = make_small_task(family)
    for channels in (uniform_channels(task, 0.5), magnitude_channels(task, 0.5)):
        candidate = play(task, channels, 0.5)
        assert candidate.channels == tuple(int(c) for c in channels)
