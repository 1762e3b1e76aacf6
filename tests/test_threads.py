"""Torch threads (issue 38, item 3): a sane default beside workers, and recorded wherever
results are kept (apply reports, benchmark manifests and notes, train run configs)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from rlprune.cli import main
from rlprune.cli.common import use_workers
from rlprune.evaluation.backends import set_default_backend, threads_beside
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig
from rlprune.rl.agents import load_agent_config
from rlprune.rl.training import TrainSettings, train
from rlprune.search.benchmark import BenchmarkSettings, run_benchmark


@pytest.fixture
def keep_threads() -> Iterator[None]:
    """Restore torch's threads and the default backend after a test that changes them."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)
        set_default_backend()


def workers_args(workers: int, threads: int | None = None, **changes: object) -> argparse.Namespace:
    values = {"workers": workers, "backend": None, "ray_address": None, "threads": threads}
    return argparse.Namespace(**{**values, **changes})


def test_threads_beside_workers_leave_each_worker_a_core() -> None:
    assert threads_beside(2, cores=8) == 6
    assert threads_beside(2, cores=2) == 1  # never 0
    assert threads_beside(16, cores=4) == 1


def test_workers_give_this_process_the_cores_they_leave(
    keep_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    torch.set_num_threads(8)
    use_workers(workers_args(3))
    assert torch.get_num_threads() == 5
    torch.set_num_threads(8)
    use_workers(workers_args(3, threads=2))  # --threads decides (env_config_from_args)
    assert torch.get_num_threads() == 8
    use_workers(workers_args(1))  # in-process scoring keeps torch's default
    assert torch.get_num_threads() == 8
    use_workers(workers_args(3, ray_address="ray://head:10001"))  # remote workers
    assert torch.get_num_threads() == 8


def test_the_command_line_leaves_torchs_threads_as_they_were(keep_threads: None) -> None:
    before = torch.get_num_threads()
    assert main(["info", "--threads", "1"]) == 0
    assert torch.get_num_threads() == before


def test_benchmark_records_threads_in_manifest_and_notes(
    digits_task: PruningTask, tmp_path: Path, keep_threads: None
) -> None:
    settings = BenchmarkSettings(methods=("uniform",), evals=1, seeds=1)
    config = EnvConfig(digits_task.config)
    torch.set_num_threads(1)
    _, files = run_benchmark(digits_task, settings, tmp_path, config=config)
    manifest = json.loads((tmp_path / "benchmark.json").read_text())
    assert manifest["threads"] == 1 and manifest["workers"] == 1
    summary = files["summary.md"].read_text()
    assert "scoring: in-process, 1 torch thread(s) in this process" in summary
    # other threads change the wall time, not the results: a resume accepts them
    torch.set_num_threads(2)
    run_benchmark(digits_task, settings, tmp_path, config=config, resume=True)


def test_train_run_config_records_threads(
    digits_task: PruningTask, tmp_path: Path, keep_threads: None
) -> None:
    torch.set_num_threads(1)
    result = train(
        EnvConfig(digits_task.config),
        load_agent_config("ppo-v1", "digits-cnn"),
        TrainSettings(episodes=1, seed=0, checkpoint_every=0),
        runs_root=tmp_path,
        task=digits_task,
    )
    recorded = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert recorded["threads"] == 1 and recorded["workers"] == 1


@pytest.mark.parametrize(("load", "expected"), [(0.1, 2), (1.2, 1), (2.5, 1), (7.0, 1)])
def test_default_threads_leave_the_cores_other_processes_hold(
    load: float, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import torch

    from rlprune.evaluation.devices import threads_for_load

    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert threads_for_load() == expected
    finally:
        torch.set_num_threads(before)
