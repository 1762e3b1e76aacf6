"""The evaluation service: worker processes and Ray actors give the in-process results,
survive a killed worker, and forked vector envs do not hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from rlprune.cli import main as cli_main
from rlprune.evaluation.backends import ProcessPool, set_default_backend
from rlprune.evaluation.candidates import SearchResult
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig
from rlprune.presets.loader import load_env_config
from rlprune.presets.tasks import load_task
from rlprune.search.heuristics import search_sensitivity
from rlprune.search.random_search import search_eagleeye, search_random


@pytest.fixture()
def task() -> Iterator[PruningTask]:
    """A digits task of its own (its backend and cache are this test's)."""
    task = load_task(load_env_config("digits-cnn"))
    yield task
    task.close_backend()


@pytest.fixture(scope="session")
def ray_local() -> Iterator[object]:
    """One local Ray instance for the session (loopback, 2 CPUs): its start-up is paid once."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _trace(result: SearchResult) -> list[tuple[tuple[int, ...], float, float]]:
    return [(c.channels, c.accuracy, c.fidelity) for c in result.history]


def _search(task: PruningTask, method: str) -> SearchResult:
    task.reset_search()
    if method == "random":
        return search_random(task, 0.5, 10, seed=3)
    if method == "eagleeye":
        return search_eagleeye(task, 0.5, 6, seed=3)
    return search_sensitivity(task, 0.5, 40, seed=0)


@pytest.mark.parametrize("method", ["random", "eagleeye", "sensitivity"])
def test_process_workers_give_the_in_process_result(task: PruningTask, method: str) -> None:
    expected = _search(task, method)
    hits = task.timings.cache_hits  # repeated proposals; a prefetched one is not a hit
    for workers in (1, 2):
        task.use_backend("process", workers)
        got = _search(task, method)
        assert _trace(got) == _trace(expected), f"{method} with {workers} workers"
        assert got.best == expected.best
        assert got.evaluations == expected.evaluations
        assert task.timings.cache_hits == hits * (workers + 1)


def test_prefetch_charges_nothing_until_asked(task: PruningTask) -> None:
    task.use_backend("process", 2)
    configs = [np.array(task.max_channels), np.array(task.min_channels)]
    task.prefetch(configs)
    assert task.ledger == [] and task.charged() == 0.0
    assert len(task.cache) == 2
    first = task.evaluate(configs[0])
    assert task.charged() == 1.0 and task.timings.cache_hits == 0
    assert task.evaluate(configs[0]) == first and task.timings.cache_hits == 1


def _kill_a_worker_during(
    task: PruningTask, pids: Callable[[], list[int]], search: Callable[[], SearchResult]
) -> SearchResult:
    """Run ``search``; once it has two evaluations back, SIGKILL one of the workers."""
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 60
        while task.timings.evaluations < 2 and time.monotonic() < deadline:
            time.sleep(0.002)
        pid = pids()[0]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    thread = threading.Thread(target=killer)
    thread.start()
    result = search()
    thread.join()
    assert killed, "no worker was killed"
    return result


def test_a_killed_worker_process_is_replaced_and_the_search_finishes(task: PruningTask) -> None:
    expected = search_random(task, 0.5, 30, seed=5)
    task.reset_search()
    pool = task.use_backend("process", 2)
    assert isinstance(pool, ProcessPool)
    pool.start()
    got = _kill_a_worker_during(task, pool.pids, lambda: search_random(task, 0.5, 30, seed=5))
    assert pool.restarts == 1
    assert _trace(got) == _trace(expected) and got.best == expected.best


def test_ray_actors_give_the_in_process_result_and_survive_a_kill(
    task: PruningTask, ray_local: object
) -> None:
    expected = search_random(task, 0.5, 30, seed=7)
    task.reset_search()
    actors = task.use_backend("ray", 2)
    pids = actors.start()  # type: ignore[attr-defined]
    assert len(set(pids)) == 2 and os.getpid() not in pids
    got = _kill_a_worker_during(task, lambda: pids, lambda: search_random(task, 0.5, 30, seed=7))
    assert _trace(got) == _trace(expected) and got.best == expected.best
    assert actors.pids() != pids  # type: ignore[attr-defined]  # the killed actor restarted


def test_ppo_with_two_envs_scores_them_in_parallel_with_the_same_result(
    task: PruningTask,
) -> None:
    from rlprune.rl.agents import load_agent_config
    from rlprune.rl.training import TrainSettings, train

    def run(tmp: str) -> list[tuple[tuple[int, ...], float]]:
        task.reset_search()
        train(
            EnvConfig(task.config),
            load_agent_config("ppo-v1", "digits-cnn"),
            TrainSettings(episodes=8, seed=0, n_envs=2, checkpoint_every=0),
            runs_root=__import__("pathlib").Path(tmp),
            task=task,
        )
        return [(c.channels, c.accuracy) for c in task.ledger]

    import tempfile

    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        expected = run(a)
        pool = task.use_backend("process", 2)
        got = run(b)
    assert got == expected and len(got) >= 8
    assert task.timings.cache_hits == 0 and pool.workers == 2


FORKED_VECTOR_ENVS = """
import numpy as np, torch, gymnasium, rlprune
torch.ones(512, 512) @ torch.ones(512, 512)  # the parent's OpenMP pool is up, as in real use
envs = gymnasium.make_vec("rlprune/LayerPrune-v0", num_envs=2, vectorization_mode="async",
                          preset="digits-cnn")
envs.reset(seed=0)
for _ in range(8):
    envs.step(np.zeros((2, 1), dtype=np.float32))
envs.close()
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv
# SB3's default start method is forkserver: the "rlprune:" prefix imports rlprune there
vec = make_vec_env("rlprune:rlprune/LayerPrune-v0", n_envs=2, vec_env_cls=SubprocVecEnv,
                   env_kwargs={"preset": "digits-cnn"})
vec.reset()
for _ in range(8):
    vec.step(np.zeros((2, 1), dtype=np.float32))
vec.close()
print("ok")
"""


@pytest.mark.slow
def test_forked_vector_envs_do_not_hang() -> None:
    """gymnasium's async vector env and SB3's SubprocVecEnv with Linux's default fork (they
    hung in torch's OpenMP pool before rlprune set a forked child's threads to 1)."""
    done = subprocess.run(
        [sys.executable, "-c", FORKED_VECTOR_ENVS],
        capture_output=True,
        text=True,
        timeout=180,
        env={
            **{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"},
            "PYTHONWARNINGS": "ignore",
        },
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


def test_cli_workers(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    out = f"{tmp_path}/bench"
    try:
        code = cli_main(
            ["benchmark", "--methods", "random", "--evals", "4", "--workers", "2", "--out", out]
        )
        assert code == 0
        assert cli_main(["benchmark", "--workers", "2", "--backend", "local", "--out", out]) == 2
        assert "needs --backend process or ray" in capsys.readouterr().err
        code = cli_main(
            ["benchmark", "--backend", "process", "--ray-address", "auto", "--out", out]
        )
        assert code == 2 and "--ray-address needs --backend ray" in capsys.readouterr().err
    finally:
        set_default_backend()  # the process default back to in-process


@pytest.mark.slow
def test_a_ray_run_prints_no_ray_notices(tmp_path: object) -> None:
    """No token-authentication warning, "Started a local Ray instance" or actor-restart
    error line (a preset's recipe is sent inline, not through the object store)."""
    done = subprocess.run(
        [sys.executable, "-m", "rlprune", "benchmark", "--methods", "uniform", "--evals", "1"]
        + ["--workers", "2", "--backend", "ray", "--out", f"{tmp_path}/bench"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == "", done.stderr
    assert "2 ray worker(s)" in done.stdout
