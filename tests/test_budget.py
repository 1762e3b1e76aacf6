"""The budget guarantee: with clipping on, every pruned model meets the MACs target."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlprune.env import PruningEnv
from rlprune.task import PruningTask

ACTIONS = st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=64, max_size=64)


@pytest.mark.parametrize("family", ["plain", "residual", "depthwise", "custom"])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=ACTIONS, target_frac=st.floats(0.0, 1.0), fill=st.booleans())
def test_measured_macs_never_exceed_target(
    family: str,
    make_small_task: Callable[..., PruningTask],
    actions: list[float],
    target_frac: float,
    fill: bool,
) -> None:
    task = make_small_task(family)
    floor = task.min_macs_ratio
    target = floor + (1.0 - floor) * target_frac
    env = PruningEnv(task=task, target=max(target, floor + 1e-6))
    env.config = dataclasses.replace(env.config, fill_budget=fill)
    env.reset(seed=0)
    done, step = False, 0
    info: dict = {}
    while not done:
        _, _, done, _, info = env.step(np.array([actions[step % len(actions)]], dtype=np.float32))
        step += 1
    measured = task.prune(info["channels"]).macs
    assert measured == info["macs"]
    assert measured <= env._target * task.analysis.macs * 1.01
    if fill:  # the budget is used: within one channel step of the target
        assert info["macs_ratio"] >= env._target * 0.85


def test_clipping_off_can_miss_the_target(make_small_task: Callable[..., PruningTask]) -> None:
    task = make_small_task("plain")
    env = PruningEnv(task=task, target=0.3)
    env.config = dataclasses.replace(env.config, budget_clipping=False)
    env.reset(seed=0)
    done = False
    while not done:
        _, _, done, _, info = env.step(np.array([1.0], dtype=np.float32))
    assert info["macs_ratio"] == pytest.approx(1.0)
