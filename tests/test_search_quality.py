"""Search quality: cost in full evaluations, feature set 2, the prior-anchored action mode,
and the practitioner baselines (EagleEye sampling, Optuna TPE and CMA-ES)."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from rlprune.env.pruning_env import PruningEnv
from rlprune.errors import ConfigError
from rlprune.evaluation.candidates import Candidate, best_of
from rlprune.evaluation.task import PruningTask, Timings
from rlprune.mdp.features import FEATURES_V2
from rlprune.mdp.settings import EnvConfig
from rlprune.priors import (
    SENSITIVITY_RATIOS,
    curve_arrays,
    prior_channels,
    sensitivity_curves,
    uniform_channels,
)
from rlprune.rl.agents import build_algorithm, load_agent_config, make_agent_config
from rlprune.rl.policy import env_config_for_policy, load_policy
from rlprune.rl.training import TrainSettings, train
from rlprune.search.benchmark import BenchmarkSettings, run_benchmark
from rlprune.search.methods import get_baseline
from rlprune.search.optuna_search import refine
from rlprune.search.random_search import EAGLEEYE_WINDOW

TARGET = 0.5


@pytest.fixture()
def task(digits_task: PruningTask) -> PruningTask:
    """The digits task with its own cache and ledger (tests here count charges)."""
    return dataclasses.replace(digits_task, cache={}, ledger=[], memo={}, timings=Timings())


def _config(task: PruningTask, **changes: object) -> object:
    return EnvConfig(task.config).derive({"target": TARGET, **changes})


# --- cost in one currency -------------------------------------------------------------


def test_low_fidelity_probe_costs_its_share_and_is_never_best(task: PruningTask) -> None:
    full = task.analysis.channels
    probe = task.evaluate(full, val_images=90)
    assert probe.fidelity == pytest.approx(90 / task.val_size)
    assert task.charged() == pytest.approx(90 / task.val_size)
    again = task.evaluate(full, val_images=90)  # cached, still charged
    assert again is probe and task.charged() == pytest.approx(2 * 90 / task.val_size)
    whole = task.evaluate(full)
    assert whole.fidelity == 1.0 and task.charged() == pytest.approx(1 + 180 / task.val_size)
    better = dataclasses.replace(probe, accuracy=1.0)
    assert best_of([better, whole]) is whole
    assert Candidate.from_dict(probe.to_dict()) == probe


def test_feature_set_2_charges_its_probes_once(task: PruningTask) -> None:
    config = _config(task, features=2, probe_images=90)
    env = PruningEnv(task=task, config=config)
    probes = 3 * len(task.analysis.units)
    assert len(task.ledger) == probes
    assert task.charged() == pytest.approx(probes * 90 / task.val_size)
    PruningEnv(task=task, config=config)  # a second env of the same search: memoised
    assert len(task.ledger) == probes
    assert env.observation_space.shape == (len(FEATURES_V2),)


# --- feature set 2 and the residual action mode ----------------------------------------


@pytest.mark.parametrize("mode", ["absolute", "residual"])
def test_v2_env_passes_the_checkers(task: PruningTask, mode: str) -> None:
    env = PruningEnv(task=task, config=_config(task, features=2, action_mode=mode))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (23,) and np.all((obs >= 0) & (obs <= 1))
    named = dict(zip(FEATURES_V2, obs, strict=True))
    assert named["prior_keep"] == pytest.approx(env.prior_keep[0], abs=1e-6)
    assert named["budget_left"] > 0  # nothing removed yet, half the MACs to go
    assert 0 < named["l1_weak_half"] < 0.5  # the weakest half holds less than half


@pytest.mark.parametrize("prior", ["uniform", "magnitude", "sensitivity"])
def test_action_zero_plays_the_prior(task: PruningTask, prior: str) -> None:
    env = PruningEnv(
        task=task, config=_config(task, action_mode="residual", prior=prior, fill_budget=False)
    )
    env.reset(seed=0)
    done = False
    while not done:
        _, _, done, _, info = env.step(np.zeros(1, dtype=np.float32))
    expected = prior_channels(task, TARGET, prior, task.config.probe_images)
    assert list(info["channels"]) == [int(n) for n in expected]
    assert info["macs_ratio"] <= TARGET * 1.01


def test_residual_corrections_move_away_from_the_prior_within_budget(task: PruningTask) -> None:
    env = PruningEnv(task=task, config=_config(task, action_mode="residual", prior="uniform"))
    prior = uniform_channels(task, TARGET)
    seen = set()
    for action in (-1.0, -0.5, 0.5, 1.0):
        env.reset(seed=0)
        done = False
        while not done:
            _, _, done, _, info = env.step(np.full(1, action, dtype=np.float32))
        assert info["macs_ratio"] <= TARGET * 1.01
        seen.add(tuple(info["channels"]))
    assert len(seen) > 1 and any(c != tuple(int(n) for n in prior) for c in seen)


def _play(env: PruningEnv, actions: np.ndarray) -> dict:
    env.reset(options={"target": TARGET})
    done = False
    for a in actions:
        _, _, done, _, info = env.step(np.full(1, a, dtype=np.float32))
    assert done
    return info


@pytest.mark.parametrize("actions", [[0.0] * 4, [-1.0, 1.0, -0.5, 0.5], [-1.0] * 4])
def test_probe_shaping_charges_each_step_and_keeps_the_return(
    task: PruningTask, actions: list[float]
) -> None:
    units = len(task.analysis.units)
    plan = (actions * units)[:units]
    settings = {"features": 2, "action_mode": "residual", "probe_images": 90}
    plain = PruningEnv(task=task, config=_config(task, **settings))
    shaped = PruningEnv(task=task, config=_config(task, **settings, shaping="probes"))
    curves = sensitivity_curves(task, SENSITIVITY_RATIOS, 90)
    returns = []
    for env in (plain, shaped):
        env.reset(options={"target": TARGET})
        rewards, done = [], False
        for a in plan:
            _, reward, done, _, info = env.step(np.full(1, a, dtype=np.float32))
            rewards.append(reward)
        assert done
        returns.append((rewards, info))
    (plain_rewards, plain_info), (shaped_rewards, shaped_info) = returns
    assert plain_rewards[:-1] == [0.0] * (units - 1)
    assert shaped_info["channels"] == plain_info["channels"]
    assert shaped_info["reward"] == plain_info["reward"] == plain_rewards[-1]
    # the shaped return is the episode's reward (Ng et al.: the terminal potential is 0)
    assert sum(shaped_rewards) == pytest.approx(plain_rewards[-1], abs=1e-9)
    # each step before the last is charged the probes' (monotone) drop at the count chosen
    # (before the last step's top-up, which may give units back some channels)
    chosen = shaped._chosen
    for i, reward in enumerate(shaped_rewards[:-1]):
        xs, ys = curve_arrays([curves[i]], monotone=True)
        drop = max(ys[0][-1] - float(np.interp(chosen[i], xs[0], ys[0])), 0.0)
        assert reward == pytest.approx(-drop, abs=1e-9)
    if actions == [-1.0] * 4:  # pruning harder than the prior costs something somewhere
        assert min(shaped_rewards[:-1]) < 0


def test_unknown_shaping_is_refused(task: PruningTask) -> None:
    with pytest.raises(ConfigError, match="unknown shaping 'dense'; choose one of: none, probes"):
        _config(task, shaping="dense")


def test_anchor_best_corrects_the_best_configuration_so_far(task: PruningTask) -> None:
    config = _config(task, action_mode="residual", prior="uniform", anchor="best")
    env = PruningEnv(task=task, config=config)
    units = len(task.analysis.units)
    prior = env.prior_keep.copy()
    best = _play(env, np.zeros(units))  # action 0 plays the prior
    rng = np.random.default_rng(0)
    moved = 0
    for _ in range(12):
        info = _play(env, rng.uniform(-0.6, 0.6, units))  # corrections to the anchor
        if info["accuracy"] > best["accuracy"]:
            best, moved = info, moved + 1
        env.reset(options={"target": TARGET})
        assert np.allclose(env.prior_keep, np.asarray(best["channels"]) / task.analysis.channels)
    assert moved >= 1  # the incumbent changed at least once: the anchor followed it
    assert _play(env, np.zeros(units))["channels"] == best["channels"]  # 0 replays it
    # a checkpoint's anchor state restores it in a fresh env
    fresh = PruningEnv(task=task, config=config)
    fresh.set_anchor_state(env.anchor_state())
    fresh.reset(options={"target": TARGET})
    assert np.allclose(fresh.prior_keep, env.prior_keep)
    # the default anchor never moves
    plain = PruningEnv(task=task, config=_config(task, action_mode="residual", prior="uniform"))
    for _ in range(4):
        _play(plain, rng.uniform(-0.6, 0.6, units))
    assert plain.anchor_state() == [] and np.allclose(plain.prior_keep, prior)
    with pytest.raises(ConfigError, match="unknown anchor 'worst'; choose one of: prior, best"):
        _config(task, anchor="worst")


def test_unknown_prior_and_features_are_refused(task: PruningTask) -> None:
    with pytest.raises(ConfigError, match="unknown prior 'oracle'; choose one of"):
        _config(task, prior="oracle")
    with pytest.raises(ConfigError, match="unknown features 4"):
        _config(task, features=4)
    with pytest.raises(ConfigError, match="unknown env setting 'dataset'"):
        make_agent_config("x", {"algo": "ppo", "env": {"dataset": "digits"}})


# --- agents ---------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["ppo", "td3"])
def test_zero_init_action_makes_the_deterministic_action_zero(task: PruningTask, algo: str) -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    agent = make_agent_config("z", {"algo": algo, "zero_init_action": True})
    env = DummyVecEnv([lambda: PruningEnv(task=task, config=_config(task))])
    algorithm = build_algorithm(agent, env, len(task.analysis.units), seed=0)
    obs = np.random.default_rng(0).uniform(0, 1, size=(5, 12)).astype(np.float32)
    actions, _ = algorithm.predict(obs, deterministic=True)
    assert np.allclose(actions, 0.0)


def test_prior_agent_starts_from_the_prior_and_ships_a_v2_policy(
    task: PruningTask, tmp_path: Path
) -> None:
    agent = load_agent_config("ppo", task.config.name)
    config = _config(task)
    result = train(config, agent, TrainSettings(episodes=6, seed=0), run_dir=tmp_path, task=task)
    first = result.history[0]  # the run's episodes (the probes are in task.ledger)
    assert len(task.ledger) == 3 * len(task.analysis.units) + 6
    prior = prior_channels(task, TARGET, "sensitivity", agent.env["probe_images"])
    assert list(first.channels) == [int(n) for n in prior]
    assert result.best is not None and result.best.candidate.accuracy >= first.accuracy
    policy = load_policy(tmp_path)
    assert policy.metadata["feature_version"] == 2
    assert policy.metadata["features"] == list(FEATURES_V2)
    applied = env_config_for_policy(EnvConfig(task.config), policy, TARGET)
    assert (applied.env.features, applied.env.action_mode, applied.env.prior) == (
        2,
        "residual",
        "sensitivity",
    )


SIZES = ("log_in_channels", "log_out_channels", "kernel", "stride", "log_input_size")


def test_masked_features_read_zero_in_training_and_where_the_policy_is_applied(
    task: PruningTask, tmp_path: Path
) -> None:
    plain = PruningEnv(task=task, config=_config(task, features=2, action_mode="residual"))
    columns = [FEATURES_V2.index(name) for name in SIZES]
    seen = [plain.reset(seed=0)[0]]
    while len(seen) <= len(plain.units):
        seen.append(plain.step(np.zeros(1, dtype=np.float32))[0])
    assert np.all(np.max(seen, axis=0)[columns] > 0)  # unmasked, each size shows somewhere
    agent = load_agent_config("ppo-relative", task.config.name)
    assert tuple(agent.env["masked"]) == SIZES
    train(_config(task), agent, TrainSettings(episodes=2, seed=0), run_dir=tmp_path, task=task)
    policy = load_policy(tmp_path)
    assert policy.metadata["masked"] == list(SIZES)  # the artifact records it
    env = PruningEnv(task=task, config=env_config_for_policy(EnvConfig(task.config), policy, 0.5))
    obs, _ = env.reset(seed=0)
    done = False
    while not done:  # every observation of an episode, not just the first
        assert np.all(obs[columns] == 0) and obs[FEATURES_V2.index("macs_share")] > 0
        obs, _, done, _, _ = env.step(np.zeros(1, dtype=np.float32))


def test_a_masked_feature_outside_the_feature_set_is_refused(task: PruningTask) -> None:
    with pytest.raises(
        ConfigError, match="masked feature 'probe_drop_25' is not in feature set v1"
    ):
        _config(task, features=1, masked=["probe_drop_25"])


# --- practitioner baselines -----------------------------------------------------------


def test_eagleeye_draws_only_inside_the_window(task: PruningTask) -> None:
    result = get_baseline("eagleeye").search(task, TARGET, 8, 0)
    assert result.evaluations == pytest.approx(8) and len(result.history) == 8
    for candidate in result.history:
        assert (1 - EAGLEEYE_WINDOW) * TARGET - 1e-9 <= candidate.macs_ratio <= TARGET + 1e-9
    again = get_baseline("eagleeye").search(task, TARGET, 8, 0)
    assert [c.channels for c in again.history] == [c.channels for c in result.history]


@pytest.mark.parametrize("method", ["tpe", "cmaes"])
def test_optuna_samplers_spend_the_budget_within_target(task: PruningTask, method: str) -> None:
    torch.manual_seed(0)
    result = get_baseline(method).search(task, TARGET, 6, 3)
    assert result.evaluations == pytest.approx(6) and len(result.history) == 6
    assert all(c.macs_ratio <= TARGET * 1.01 for c in result.history)
    again = get_baseline(method).search(task, TARGET, 6, 3)
    assert [c.channels for c in again.history] == [c.channels for c in result.history]


def test_refine_spends_its_evaluations_and_never_reevaluates_its_start(task: PruningTask) -> None:
    start = task.evaluate(uniform_channels(task, TARGET))
    since = len(task.ledger)
    result = refine(task, TARGET, start, 6, 0, fidelity=1.0)  # one stage: full evaluations
    assert result.evaluations == pytest.approx(6) and len(result.history) == 6
    assert task.charged(since) == pytest.approx(6)  # the start was told, not evaluated
    assert all(c.macs_ratio <= TARGET * 1.01 for c in result.history)
    again = refine(task, TARGET, start, 6, 0, fidelity=1.0)
    assert [c.channels for c in again.history] == [c.channels for c in result.history]
    with pytest.raises(ConfigError, match="refine width"):
        refine(task, TARGET, start, 6, 0, width=0.0)
    with pytest.raises(ConfigError, match="refine fidelity"):
        refine(task, TARGET, start, 6, 0, fidelity=0.0)


def test_refine_screens_on_a_share_of_the_validation_set_then_scores_the_best_in_full(
    task: PruningTask,
) -> None:
    """8 evaluations: 2 finalists (a quarter), 6 spent screening at a quarter of the
    validation set each, so 24 screening trials; the finalists are the best-screened."""
    start = task.evaluate(uniform_channels(task, TARGET))
    since = len(task.ledger)
    result = refine(task, TARGET, start, 8, 0)
    assert task.charged(since) == pytest.approx(8) and result.evaluations == pytest.approx(8)
    share = round(0.25 * task.val_size) / task.val_size
    screened = [c for c in result.history if c.fidelity < 1.0]
    final = [c for c in result.history if c.fidelity >= 1.0]
    assert len(screened) == round(6 / share) and all(c.fidelity == share for c in screened)
    assert all(c.channels != start.channels for c in final)  # the start is never rescored
    scores: dict[tuple[int, ...], float] = {}
    for c in screened:
        if c.channels != start.channels:
            scores.setdefault(c.channels, c.accuracy)
    ranked = sorted(scores, key=lambda k: -scores[k])
    assert [c.channels for c in final] == ranked[: len(final)] and len(final) == 2
    assert result.best in final  # a screening score never counts as the result
    assert result.best.accuracy == max(c.accuracy for c in final)
    again = refine(task, TARGET, start, 8, 0)
    assert [c.channels for c in again.history] == [c.channels for c in result.history]


def test_refine_whose_trials_all_land_on_its_start_returns_the_start_in_full(
    task: PruningTask,
) -> None:
    """A box too narrow to move any unit (as budget clipping can make a small network's):
    every screening trial is the start, so the start is the one finalist, not an error."""
    uniform = task.evaluate(uniform_channels(task, TARGET))
    # where the env's budget clipping takes a box that narrow: the start that stays put
    start = task.evaluate(refine(task, TARGET, uniform, 8, 0, width=1e-6).history[0].channels)
    since = len(task.ledger)
    result = refine(task, TARGET, start, 8, 0, width=1e-6)
    assert {c.channels for c in result.history} == {start.channels}
    assert result.best.channels == start.channels and result.best.fidelity >= 1.0
    assert result.best.accuracy == start.accuracy
    # screening's 6, then the start once: the second finalist's slot has nothing to score
    assert task.charged(since) == pytest.approx(7)


def test_refine_stays_near_its_start(task: PruningTask) -> None:
    """Proposals come from a box around the start (the env's budget clipping may still
    move a unit): a narrow box lands far nearer the start than a full-range TPE search."""
    start = task.evaluate(uniform_channels(task, TARGET))
    full = task.analysis.channels

    def distance(result: object) -> float:
        keeps = [np.asarray(c.channels) / full for c in result.history]  # type: ignore[attr-defined]
        return float(np.mean([np.abs(k - np.asarray(start.channels) / full) for k in keeps]))

    narrow = refine(task, TARGET, start, 8, 0, width=0.05)
    free = get_baseline("tpe").search(task, TARGET, 8, 0)
    assert distance(narrow) < 0.5 * distance(free)


def test_benchmark_charges_the_prior_agent_for_its_probes(
    task: PruningTask, tmp_path: Path
) -> None:
    results, _ = run_benchmark(
        task,
        BenchmarkSettings(methods=("ppo", "random"), evals=12),
        tmp_path,
        config=EnvConfig(task.config),
    )
    by_method = {r.method: r for r in results}
    assert by_method["ppo"].evaluations == pytest.approx(12)
    saved = json.loads((tmp_path / "results" / "ppo__0.json").read_text())
    units = len(task.analysis.units)
    full = [int(n) for n in task.analysis.channels]
    for probe in saved["history"][: 3 * units]:  # charged and in the history
        assert sum(n != f for n, f in zip(probe["channels"], full, strict=True)) == 1
    first_episode = saved["history"][3 * units]
    assert by_method["ppo"].val_accuracy >= first_episode["accuracy"]  # never below the prior


def test_short_finetune_and_proxy_correlation(task: PruningTask, tmp_path: Path) -> None:
    settings = BenchmarkSettings(
        methods=("random",), evals=8, finetune_epochs=1, finetune_images=256, proxy_candidates=5
    )
    results, files = run_benchmark(task, settings, tmp_path, config=EnvConfig(task.config))
    assert results[0].test_accuracy_finetuned is not None
    proxy = json.loads((tmp_path / "proxy.json").read_text())
    assert proxy["n"] == 5 and -1.0 <= proxy["spearman"] <= 1.0
    accuracies = [p["val_accuracy"] for p in proxy["pairs"]]
    assert accuracies == sorted(accuracies) and accuracies[0] < accuracies[-1]
    assert "proxy: Spearman rho" in files["summary.md"].read_text()
    assert "(at most 256 images)" in files["summary.md"].read_text()
    with pytest.raises(ConfigError, match="at least 3 candidates"):
        BenchmarkSettings(methods=("random",), evals=8, proxy_candidates=2).check(task)


def test_finetune_stops_after_max_images(task: PruningTask) -> None:
    import copy

    from rlprune.evaluation.finetune import train_classifier

    model = copy.deepcopy(task.model)
    calls: list[int] = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])) if m.training else None)
    train_classifier(model, task.data, epochs=3, batch_size=32, max_images=70)
    assert calls == [32, 32, 32]  # ceil(70 / 32) batches, not 3 epochs


def test_a_v2_residual_policy_applies_to_a_model(task: PruningTask, tmp_path: Path) -> None:
    from rlprune.apply import ApplySettings, apply_policy

    agent = load_agent_config("ppo", task.config.name)
    train(
        _config(task), agent, TrainSettings(episodes=2, seed=0), run_dir=tmp_path / "run", task=task
    )
    report = apply_policy(
        tmp_path / "run",
        EnvConfig(task.config),
        ApplySettings(target=TARGET, latency_repeats=2, latency_batches=(1,)),
        tmp_path / "out",
    )
    prior = prior_channels(task, TARGET, "sensitivity", None)
    assert report.macs_ratio <= TARGET * 1.01
    assert list(report.candidate.channels) == [int(n) for n in prior]  # 2 episodes: still the prior


def test_residual_episodes_use_their_budget(task: PruningTask) -> None:
    env = PruningEnv(
        task=task, config=_config(task, action_mode="residual", prior="uniform", fill_budget=False)
    )
    env.reset(seed=0)
    done = False
    while not done:  # cut every unit as far as the correction allows
        _, _, done, _, info = env.step(np.full(1, -1.0, dtype=np.float32))
    channels = np.array(info["channels"])
    mac_model, budget = task.analysis.mac_model, TARGET * task.analysis.macs
    assert mac_model.macs(channels) <= budget
    for i, options in enumerate(task.candidates):  # no unit can grow a step within budget
        larger = options[options > channels[i]]
        if larger.size:
            grown = channels.copy()
            grown[i] = larger[0]
            assert mac_model.macs(grown) > budget
