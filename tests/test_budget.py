"""The budget guarantee: with clipping on, every pruned model meets the MACs target."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlprune.env.pruning_env import PruningEnv
from rlprune.evaluation.task import PruningTask

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
    env.config = env.config.derive({"fill_budget": fill})
    env.reset(seed=0)
    done, step = False, 0
    info: dict = {}
    while not done:
        _, _, done, _, info = env.step(np.array([actions[step % len(actions)]], dtype=np.float32))
        step += 1
    measured = task.prune(info["channels"], count=True).macs
    assert measured == info["macs"]
    assert measured <= env._target * task.analysis.macs * 1.01
    if fill:  # the budget is used: within one channel step of the target
        assert info["macs_ratio"] >= env._target * 0.85


def test_clipping_off_can_miss_the_target(make_small_task: Callable[..., PruningTask]) -> None:
    task = make_small_task("plain")
    env = PruningEnv(task=task, target=0.3)
    env.config = env.config.derive({"budget_clipping": False})
    env.reset(seed=0)
    done = False
    while not done:
        _, _, done, _, info = env.step(np.array([1.0], dtype=np.float32))
    assert info["macs_ratio"] == pytest.approx(1.0)


def test_env_repairs_overshoot_when_the_macs_model_is_approximate(
    make_small_task: Callable[..., PruningTask],
) -> None:
    """If the fitted model under-predicts, the env measures and shrinks until the target holds."""
    from rlprune.evaluation.task import PruningTask as Task

    base = make_small_task("residual")
    biased = dataclasses.replace(
        base.analysis.mac_model, lin_coef=base.analysis.mac_model.lin_coef * 0.7, exact=False
    )
    task = Task.from_model(base.model, base.data, base.config)
    task.analysis = dataclasses.replace(task.analysis, mac_model=biased)
    env = PruningEnv(task=task, target=0.5)
    env.reset(seed=0)
    done = False
    while not done:
        _, _, done, _, info = env.step(np.array([1.0], dtype=np.float32))
    assert info["macs"] == task.prune(info["channels"], count=True).macs
    assert info["macs_ratio"] <= 0.5
    # what clipping chose with the biased model overshot, and was shrunk before scoring
    assert task.prune(env._chosen, count=True).macs > 0.5 * task.analysis.macs
    assert info["channels"] != tuple(env._chosen)
