"""The Gymnasium environment contract."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import rlprune
from rlprune.env.pruning_env import PruningEnv
from rlprune.errors import ConfigError, ResetNeeded
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.features import FEATURE_VERSION, FEATURES
from rlprune.mdp.settings import EnvConfig


def _run_episode(env: gymnasium.Env, actions: list[float], seed: int = 0) -> list:
    trajectory = []
    obs, info = env.reset(seed=seed)
    trajectory.append((obs.tolist(), info))
    done, i = False, 0
    while not done:
        obs, reward, done, truncated, info = env.step(np.array([actions[i]], dtype=np.float32))
        trajectory.append((obs.tolist(), reward, done, truncated, info))
        i += 1
    return trajectory


def test_registered_env_passes_both_checkers_without_warnings() -> None:
    env = gymnasium.make(rlprune.ENV_ID, preset="digits-cnn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)


def test_make_with_overrides(digits_task: PruningTask) -> None:
    env = gymnasium.make(rlprune.ENV_ID, preset="digits-cnn", target=0.3, reward="acc_log_flops")
    assert env.unwrapped.config.env.target.low == 0.3
    assert env.unwrapped.config.env.reward == "acc_log_flops"
    *_, last = _run_episode(env, [0.0] * 8)
    assert last[1] < 0  # -error * log(MACs) is negative
    assert last[4]["macs_ratio"] <= 0.3 * 1.01


def test_same_seed_same_actions_same_trajectory(digits_task: PruningTask) -> None:
    actions = list(np.random.default_rng(3).uniform(-1, 1, 8))
    a = _run_episode(PruningEnv(config=EnvConfig(digits_task.config)), actions, seed=7)
    b = _run_episode(PruningEnv(config=EnvConfig(digits_task.config)), actions, seed=7)
    assert a == b


def test_episode_structure_and_final_info(digits_task: PruningTask) -> None:
    env = PruningEnv(task=digits_task)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (len(FEATURES),) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    n_units = len(digits_task.analysis.units)
    for t in range(n_units):
        obs, reward, terminated, truncated, info = env.step(np.array([0.5], dtype=np.float32))
        assert env.observation_space.contains(obs)
        assert not truncated
        assert terminated == (t == n_units - 1)
        if not terminated:
            assert reward == 0.0 and info == {}
    assert set(info) >= {"keep_ratios", "macs", "params", "macs_ratio", "accuracy"}
    assert len(info["keep_ratios"]) == n_units
    assert reward == pytest.approx(info["accuracy"])  # the default reward is "acc"
    assert 0.5 < info["accuracy"] <= 1.0
    assert info["macs_ratio"] <= 0.5 * 1.01


def test_step_before_reset_and_after_end_raise(digits_task: PruningTask) -> None:
    env = PruningEnv(task=digits_task)
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(np.zeros(1, dtype=np.float32))
    _run_episode(env, [0.0] * 8)
    with pytest.raises(ResetNeeded):
        env.step(np.zeros(1, dtype=np.float32))


def test_nan_action_is_rejected(digits_task: PruningTask) -> None:
    env = PruningEnv(task=digits_task)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan], dtype=np.float32))


def test_repeated_candidate_is_cached(digits_task: PruningTask) -> None:
    env = PruningEnv(task=digits_task)
    first = _run_episode(env, [0.3] * 8)[-1][4]
    evaluations = digits_task.timings.evaluations
    second = _run_episode(env, [0.3] * 8)[-1][4]
    assert first == second
    assert digits_task.timings.evaluations == evaluations  # nothing was pruned again


def test_target_range_is_sampled_and_options_fix_it(digits_task: PruningTask) -> None:
    env = PruningEnv(task=digits_task, target=(0.3, 0.7))
    targets = {env.reset(seed=s)[1]["target"] for s in range(5)}
    assert len(targets) == 5 and all(0.3 <= t <= 0.7 for t in targets)
    obs, info = env.reset(seed=0, options={"target": 0.4})
    assert info["target"] == 0.4 and obs[FEATURES.index("target")] == pytest.approx(0.4)


def test_observation_is_architecture_independent(
    digits_task: PruningTask, make_small_task: Callable[..., PruningTask]
) -> None:
    spaces = {PruningEnv(task=digits_task).observation_space.shape}
    for family in ("plain", "residual", "depthwise", "custom"):
        spaces.add(PruningEnv(task=make_small_task(family)).observation_space.shape)
    assert spaces == {(len(FEATURES),)}
    assert FEATURE_VERSION == 1


def test_unknown_reward_lists_valid_ones(digits_task: PruningTask) -> None:
    with pytest.raises(ConfigError, match="unknown reward 'bogus'.*acc, acc_log_flops"):
        PruningEnv(task=digits_task, reward="bogus")


def test_budget_penalty_reward_punishes_overshoot(digits_task: PruningTask) -> None:
    task = digits_task
    from rlprune.mdp.rewards import Outcome, get_reward

    fn = get_reward("acc_budget_penalty")
    assert fn(Outcome(0.9, 100, 0.5, 0.5)) == pytest.approx(0.9)
    assert fn(Outcome(0.9, 100, 0.75, 0.5)) == pytest.approx(0.9 - 2 * 0.5)
    assert task is digits_task
