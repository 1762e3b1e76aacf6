"""Training runs: run folder, determinism, checkpoints, resume, interrupts, failures."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest
import torch
import yaml

from rlprune.errors import RunError
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig
from rlprune.rl import checkpoint as checkpoint_module
from rlprune.rl.agents import load_agent_config
from rlprune.rl.checkpoint import latest_checkpoint
from rlprune.rl.recorder import RunRecorder
from rlprune.rl.training import TrainSettings, load_run, resume, train


def _train(task: PruningTask, root: Path, **kwargs: object) -> object:
    settings = TrainSettings(**{"episodes": 10, "seed": 0, "checkpoint_every": 5, **kwargs})
    return train(
        EnvConfig(task.config),
        load_agent_config("ppo-v1", "digits-cnn"),
        settings,
        runs_root=root,
        task=task,
        command="rlprune train --env digits-cnn",
    )


def test_run_folder_holds_everything(trained_run: Path) -> None:
    names = {p.name for p in trained_run.iterdir()}
    assert {
        "config.yaml",
        "command.txt",
        "versions.json",
        "episodes.csv",
        "best.json",
        "checkpoints",
        "policy",
        "sb3",
    } <= names
    assert trained_run.name.startswith("digits-cnn__ppo-v1__0__")
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert config["env"]["name"] == "digits-cnn" and config["train"]["episodes"] == 16
    assert config["agent"]["algo"] == "ppo"
    versions = json.loads((trained_run / "versions.json").read_text())
    assert {"torch", "stable-baselines3", "gymnasium", "torch-pruning"} <= set(versions)
    rows = list(csv.DictReader((trained_run / "episodes.csv").open()))
    assert len(rows) == 16 and "prune/macs_ratio" in rows[0] and "best/accuracy" in rows[0]
    assert float(rows[-1]["best/keep_ratio/features.3"]) > 0
    best = json.loads((trained_run / "best.json").read_text())
    assert best["accuracy"] == pytest.approx(
        max(float(r["prune/accuracy"]) for r in rows), abs=1e-6
    )
    assert len(best["keep_ratios"]) == len(best["units"]) == 3
    assert float(rows[-1]["best/keep_ratio/features.0"]) == pytest.approx(
        best["keep_ratios"][0], abs=1e-4
    )
    assert best["macs_ratio"] <= 0.5 * 1.01
    assert latest_checkpoint(trained_run).name == "ep000016"
    assert (trained_run / "checkpoints" / "ep000008").is_dir()


def test_same_seed_same_best(digits_task: PruningTask, tmp_path: Path) -> None:
    a = _train(digits_task, tmp_path / "a", episodes=12, seed=3)
    b = _train(digits_task, tmp_path / "b", episodes=12, seed=3)
    assert (a.run_dir / "best.json").read_text() == (b.run_dir / "best.json").read_text()
    log_a = [r["prune/accuracy"] for r in csv.DictReader((a.run_dir / "episodes.csv").open())]
    log_b = [r["prune/accuracy"] for r in csv.DictReader((b.run_dir / "episodes.csv").open())]
    assert log_a == log_b


def test_resume_continues_from_last_checkpoint(
    digits_task: PruningTask, tmp_path: Path, trained_run: Path
) -> None:
    first = _train(digits_task, tmp_path, episodes=10)
    # checkpoints are update boundaries (8 episodes per PPO update): episodes 9-10 run again
    assert latest_checkpoint(first.run_dir).name == "ep000008"
    result = resume(first.run_dir, episodes=16)
    assert result.episodes == 16 and result.resumed_from == 8
    rows = list(csv.DictReader((first.run_dir / "episodes.csv").open()))
    assert [int(r["episode"]) for r in rows] == list(range(1, 17))
    assert latest_checkpoint(first.run_dir).name == "ep000016"
    # the same as the 16-episode run with this seed: extending a run = running it longer
    reference = list(csv.DictReader((trained_run / "episodes.csv").open()))
    for row in (*rows, *reference):
        del row["time/elapsed_s"]
    assert rows == reference
    assert yaml.safe_load((first.run_dir / "config.yaml").read_text())["train"]["episodes"] == 16


def test_resume_on_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="not a run folder"):
        load_run(tmp_path)


def test_ctrl_c_saves_everything(digits_task: PruningTask, tmp_path: Path) -> None:
    def interrupt(recorder: RunRecorder) -> None:
        if recorder.episodes == 11:
            raise KeyboardInterrupt

    result = train(
        EnvConfig(digits_task.config),
        load_agent_config("ppo-v1", "digits-cnn"),
        TrainSettings(episodes=50, checkpoint_every=100),
        runs_root=tmp_path,
        task=digits_task,
        on_episode=interrupt,
    )
    assert result.interrupted and result.episodes == 11
    assert result.stop_signal == signal.SIGINT
    # the last update boundary is checkpointed on the way out
    checkpoint = latest_checkpoint(result.run_dir)
    assert checkpoint is not None and checkpoint.name == "ep000008"
    assert json.loads((checkpoint / "state.json").read_text())["reason"] == "interrupt"
    assert json.loads((result.run_dir / "best.json").read_text())["episode"] <= 11
    assert (result.run_dir / "policy" / "policy.json").is_file()


def test_write_failure_keeps_last_good_checkpoint(
    digits_task: PruningTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = checkpoint_module.atomic_write_bytes
    calls = {"n": 0}

    def flaky_write(path: Path, data: bytes) -> Path:
        if Path(path).name == "params.pt":
            calls["n"] += 1
            if calls["n"] >= 2:  # the second checkpoint hits a full disk
                raise OSError(28, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(checkpoint_module, "atomic_write_bytes", flaky_write)
    with pytest.raises(RunError, match=r"No space left.*ep000008\) is intact"):
        _train(digits_task, tmp_path, episodes=20, checkpoint_every=8)
    run_dir = next(tmp_path.iterdir())
    good = latest_checkpoint(run_dir)
    assert good is not None and good.name == "ep000008"
    params = torch.load(good / "params.pt", weights_only=True)
    assert "policy" in params
    assert not any(p.name.startswith(".tmp") for p in (run_dir / "checkpoints").iterdir())


def test_budget_conditioned_training_samples_targets(
    digits_task: PruningTask, tmp_path: Path
) -> None:
    config = EnvConfig(digits_task.config).derive({"target": [0.3, 0.7]})
    task = PruningTask.from_model(digits_task.model, digits_task.data, config)
    result = train(
        config,
        load_agent_config("ppo-v1", "digits-cnn"),
        TrainSettings(episodes=8, checkpoint_every=0),
        runs_root=tmp_path,
        task=task,
    )
    rows = list(csv.DictReader((result.run_dir / "episodes.csv").open()))
    targets = {float(r["prune/target"]) for r in rows}
    assert len(targets) == 8 and all(0.3 <= t <= 0.7 for t in targets)
    assert all(float(r["prune/macs_ratio"]) <= float(r["prune/target"]) * 1.01 for r in rows)
    meta = json.loads((result.run_dir / "policy" / "policy.json").read_text())
    assert meta["target"] == [0.3, 0.7]


@pytest.mark.parametrize("agent", ["ddpg", "td3"])
def test_amc_family_agents_train(agent: str, digits_task: PruningTask, tmp_path: Path) -> None:
    result = train(
        EnvConfig(digits_task.config),
        load_agent_config(agent, "digits-cnn"),
        TrainSettings(episodes=6, checkpoint_every=0),
        runs_root=tmp_path,
        task=digits_task,
    )
    assert result.episodes == 6 and result.best is not None
    assert (result.run_dir / "policy" / "policy.pt").is_file()
