"""Faults lose little work: checkpoints by count or time, SIGTERM, exact resume, kills.

A resumed run must produce the same ``episodes.csv`` as an uninterrupted run with the
same seed (every column but the wall clock), with ``best.json`` consistent with it.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rlprune.cli import main
from rlprune.env.pruning_env import PruningEnv
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig
from rlprune.rl.agents import load_agent_config
from rlprune.rl.checkpoint import latest_checkpoint
from rlprune.rl.recorder import RunRecorder
from rlprune.rl.training import TrainResult, TrainSettings, resume, train
from rlprune.search.benchmark import BenchmarkSettings, run_benchmark

ROOT = Path(__file__).resolve().parent.parent
CLOCK = "time/elapsed_s"


def _rows(run_dir: Path) -> list[dict[str, str]]:
    """episodes.csv without the wall-clock column (it differs between runs)."""
    with (run_dir / "episodes.csv").open(newline="") as handle:
        return [{k: v for k, v in row.items() if k != CLOCK} for row in csv.DictReader(handle)]


def _assert_best_matches_log(run_dir: Path) -> None:
    """Every row's best columns are the best of the rows so far; best.json is the last."""
    rows = _rows(run_dir)
    best_reward = float("-inf")
    for row in rows:
        best_reward = max(best_reward, float(row["episode/reward"]))
        assert float(row["best/reward"]) == pytest.approx(best_reward, abs=1e-6), row["episode"]
    best = json.loads((run_dir / "best.json").read_text())
    assert best["reward"] == pytest.approx(best_reward, abs=1e-6)
    assert rows[best["episode"] - 1]["episode/reward"] == f"{best['reward']:.6f}"


def _train(
    task: PruningTask,
    run_dir: Path,
    agent: str = "ppo-v1",
    episodes: int = 20,
    stop_at: int | None = None,
    **kwargs: object,
) -> TrainResult:
    def stop(recorder: RunRecorder) -> None:
        if recorder.episodes == stop_at:
            raise KeyboardInterrupt

    return train(
        EnvConfig(task.config),
        load_agent_config(agent, task.config.name),
        TrainSettings(episodes=episodes, seed=7, **kwargs),
        run_dir=run_dir,
        task=task,
        on_episode=stop if stop_at else None,
    )


@pytest.mark.parametrize(
    ("agent", "episodes", "stop_at", "checkpoint"),
    [
        ("ppo-v1", 20, 5, None),  # before the first checkpoint: starts again, same episodes
        ("ppo-v1", 20, 13, 8),  # PPO updates every 8 episodes
        ("ppo", 20, 13, 9),  # a deterministic episode first, then updates of 8
        ("td3", 24, 23, 22),  # learns after 20 warm-up episodes, once per episode
    ],
)
def test_resume_reproduces_the_uninterrupted_run(
    digits_task: PruningTask,
    tmp_path: Path,
    agent: str,
    episodes: int,
    stop_at: int,
    checkpoint: int | None,
) -> None:
    whole = _train(digits_task, tmp_path / "whole", agent, episodes, checkpoint_every=1)
    cut = _train(digits_task, tmp_path / "cut", agent, episodes, stop_at, checkpoint_every=1)
    assert cut.interrupted and cut.episodes == stop_at
    latest = latest_checkpoint(cut.run_dir)
    assert (latest.name if latest else None) == (f"ep{checkpoint:06d}" if checkpoint else None)
    resumed = resume(cut.run_dir)
    assert resumed.episodes == episodes and resumed.resumed_from == (checkpoint or 0)
    assert _rows(cut.run_dir) == _rows(whole.run_dir)
    assert (cut.run_dir / "best.json").read_text() == (whole.run_dir / "best.json").read_text()
    _assert_best_matches_log(cut.run_dir)
    ranges = [
        json.loads((r / "policy" / "policy.json").read_text())["feature_ranges"]
        for r in (cut.run_dir, whole.run_dir)
    ]
    assert ranges[0] == ranges[1]  # the policy's training ranges resume exactly too


def test_resume_keeps_the_anchor_of_a_best_anchored_agent(
    digits_task: PruningTask, tmp_path: Path
) -> None:
    """``anchor: best`` remembers the incumbent in the env: a checkpoint saves it, so the
    resumed run's corrections start from the same configuration as the uninterrupted one."""
    preset = tmp_path / "ppo-anchor.yaml"
    text = (Path(__file__).parent.parent / "agents" / "ppo.yaml").read_text()
    # a weak prior and wide corrections, so the incumbent moves before the checkpoint
    text = text.replace("    prior: sensitivity", "    prior: uniform")
    text = text.replace("    residual_scale: 0.3", "    residual_scale: 0.8\n    anchor: best")
    preset.write_text(text)
    whole = _train(digits_task, tmp_path / "whole", str(preset), 20, checkpoint_every=1)
    cut = _train(digits_task, tmp_path / "cut", str(preset), 20, 13, checkpoint_every=1)
    checkpoint = latest_checkpoint(cut.run_dir)
    assert checkpoint is not None
    saved = json.loads((checkpoint / "state.json").read_text())["envs"][0]["anchors"]
    prior = PruningEnv(
        task=digits_task,
        config=load_agent_config(str(preset), "digits-cnn").env_config(
            EnvConfig(digits_task.config)
        ),
    ).prior_keep
    assert len(saved) == 1 and not np.allclose(saved[0][2:], prior)  # the anchor moved
    resume(cut.run_dir)
    assert _rows(cut.run_dir) == _rows(whole.run_dir)


def test_resume_forgets_the_best_of_dropped_episodes(
    digits_task: PruningTask, tmp_path: Path
) -> None:
    cut = _train(digits_task, tmp_path / "run", stop_at=13, checkpoint_every=1)
    # a best found in episodes 9-13, which the resumed run drops (and runs again)
    best = json.loads((cut.run_dir / "best.json").read_text())
    (cut.run_dir / "best.json").write_text(json.dumps({**best, "episode": 12, "reward": 9.0}))
    resume(cut.run_dir)
    rows = _rows(cut.run_dir)
    assert len(rows) == 20 and all(float(r["best/reward"]) < 9.0 for r in rows)
    _assert_best_matches_log(cut.run_dir)


def test_sigterm_stops_like_ctrl_c(digits_task: PruningTask, tmp_path: Path) -> None:
    def terminate(recorder: RunRecorder) -> None:
        if recorder.episodes == 10:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    result = train(
        EnvConfig(digits_task.config),
        load_agent_config("ppo-v1", "digits-cnn"),
        TrainSettings(episodes=40, checkpoint_every=100),
        run_dir=tmp_path / "run",
        task=digits_task,
        on_episode=terminate,
    )
    assert result.interrupted and result.stop_signal == signal.SIGTERM
    assert result.episodes == 10
    assert latest_checkpoint(result.run_dir).name == "ep000008"
    assert (result.run_dir / "policy" / "policy.pt").is_file()
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is only set while training


def test_checkpoints_by_time_and_by_count(digits_task: PruningTask, tmp_path: Path) -> None:
    # any time at all is "due": a checkpoint at every update boundary (8, 16), each
    # time-triggered one removed once a newer one exists; the end (24) always
    by_time = _train(
        digits_task, tmp_path / "time", episodes=24, checkpoint_every=0, checkpoint_seconds=1e-9
    )
    folders = sorted(p.name for p in (by_time.run_dir / "checkpoints").iterdir())
    assert folders == ["ep000024", "latest.json"]
    # never due: only the end
    never = _train(
        digits_task, tmp_path / "never", episodes=20, checkpoint_every=0, checkpoint_seconds=0
    )
    assert latest_checkpoint(never.run_dir).name == "ep000016"
    assert len(list((never.run_dir / "checkpoints").glob("ep*"))) == 1
    # by count: at the first update boundary past each multiple of 10 episodes
    by_count = _train(
        digits_task, tmp_path / "count", episodes=24, checkpoint_every=10, checkpoint_seconds=0
    )
    folders = sorted(p.name for p in (by_count.run_dir / "checkpoints").glob("ep*"))
    assert folders == ["ep000016", "ep000024"]


def test_a_new_run_in_an_old_folder_starts_clean(digits_task: PruningTask, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _train(digits_task, run_dir, episodes=16, checkpoint_every=8)
    again = _train(digits_task, run_dir, episodes=4, checkpoint_every=8)
    assert [int(r["episode"]) for r in _rows(run_dir)] == [1, 2, 3, 4]
    assert (
        again.best is not None
        and json.loads((run_dir / "best.json").read_text())["episode"] == again.best.episode
    )
    assert latest_checkpoint(run_dir) is None  # none of the old run's checkpoints is left


@pytest.fixture()
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of the shared 16-episode run (seed 0), safe to resume."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        (["--env", "fmnist-vgg"], "--env"),
        (["--target", "0.3"], "--target"),
        (["--agent", "td3"], "--agent"),
        (["--seed", "4"], "--seed"),
        (["--n-envs", "2"], "--n-envs"),
    ],
)
def test_resume_refuses_other_settings(
    run_copy: Path, flags: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (run_copy / "config.yaml").read_text()
    assert main(["train", "--resume", str(run_copy), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{flag} {flags[1]} conflicts with the run" in err
    assert f"drop {flag}, or start a new run without --resume" in err
    assert (run_copy / "config.yaml").read_text() == before


def test_resume_refuses_fewer_episodes(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--resume", str(run_copy), "--episodes", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--episodes 10 is fewer than the 16 episodes" in err
    assert "give --episodes 16 or more, or drop --episodes" in err


def test_resume_accepts_the_run_s_own_settings(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--env", "digits-cnn", "--agent", "ppo-v1", "--seed", "0", "--target", "0.5"]
    assert main(["train", "--resume", str(run_copy), *flags, "--episodes", "16"]) == 0
    assert "16 episodes" in capsys.readouterr().out
    assert len(_rows(run_copy)) == 16


def test_benchmark_resume_starts_a_killed_job_clean(
    digits_task: PruningTask, tmp_path: Path
) -> None:
    settings = BenchmarkSettings(methods=("ppo-v1",), evals=5)
    run_benchmark(digits_task, settings, tmp_path, config=EnvConfig(digits_task.config))
    job = tmp_path / "runs" / "ppo-v1__0"
    clean = _rows(job)
    assert [int(r["episode"]) for r in clean] == [1, 2, 3, 4, 5]
    # as a kill inside the agent leaves it: no result, a longer log, a checkpoint
    (tmp_path / "results" / "ppo-v1__0.json").unlink()
    with (job / "episodes.csv").open("a") as log:
        log.write("6,0.1,0.1,0.1,0.1,0.5,0.9,0.9,0.1,1.0,1,1,1\n7,0.2")
    (job / "checkpoints" / "ep000007").mkdir(parents=True)
    run_benchmark(
        digits_task, settings, tmp_path, resume=True, config=EnvConfig(digits_task.config)
    )
    assert _rows(job) == clean
    assert (tmp_path / "results" / "ppo-v1__0.json").is_file()
    assert not (job / "checkpoints" / "ep000007").exists()


# --- a real kill ----------------------------------------------------------------------


def _cli(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # tiny networks: one thread is fastest on a busy machine
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "rlprune", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _logged(run_root: Path) -> int:
    """Rows in the episodes.csv of the one run folder under ``run_root`` (0 before)."""
    logs = list(run_root.glob("*/episodes.csv"))
    if not logs:
        return 0
    return max(len(logs[0].read_bytes().splitlines()) - 1, 0)


def _wait_for_rows(process: subprocess.Popen[str], run_root: Path, rows: int) -> None:
    deadline = time.monotonic() + 120
    while _logged(run_root) < rows:
        assert process.poll() is None, f"the run ended before {rows} episodes"
        assert time.monotonic() < deadline, f"no {rows} episodes after 120 s"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_run(tmp_path: Path) -> None:
    episodes, seed = 24, 3
    train_args = ["train", "--env", "digits-cnn", "--episodes", str(episodes)]
    train_args += ["--seed", str(seed), "--checkpoint-every", "1"]
    reference = _cli([*train_args, "--out", "whole"], tmp_path)
    victim = _cli([*train_args, "--out", "cut"], tmp_path)
    # before, at or after a checkpoint (8, 16), leaving the resumed run episodes to be
    # stopped in (a SIGTERM after its last episode would find it finished, rc 0)
    kill_at = random.randint(2, episodes - 8)
    _wait_for_rows(victim, tmp_path / "cut", kill_at)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_with = _logged(tmp_path / "cut")
    (run_dir,) = (tmp_path / "cut").iterdir()
    latest = latest_checkpoint(run_dir)
    covered = int(latest.name[2:]) if latest else 0
    assert covered <= killed_with

    # the resumed run gets SIGTERM once it is past where the kill was: saved, rc 143
    resumed = _cli(["train", "--resume", str(run_dir)], tmp_path)
    _wait_for_rows(resumed, tmp_path / "cut", killed_with + 2)
    resumed.send_signal(signal.SIGTERM)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 128 + signal.SIGTERM, err
    assert "interrupted: checkpoint, best.json and policy saved" in err
    _assert_best_matches_log(run_dir)

    final = _cli(["train", "--resume", str(run_dir)], tmp_path)
    _, err = final.communicate(timeout=180)
    assert final.returncode == 0, err
    _, err = reference.communicate(timeout=180)
    assert reference.returncode == 0, err
    (whole,) = (tmp_path / "whole").iterdir()
    note = f"killed at {killed_with} episodes (checkpoint ep{covered:06d})"
    assert len(_rows(run_dir)) == episodes, note
    assert _rows(run_dir) == _rows(whole), note
    assert (run_dir / "best.json").read_text() == (whole / "best.json").read_text(), note
    _assert_best_matches_log(run_dir)
    print(note)


def test_a_checkpoint_from_before_exact_resume_still_resumes(
    digits_task: PruningTask, tmp_path: Path
) -> None:
    cut = _train(digits_task, tmp_path / "run", stop_at=13, checkpoint_every=1)
    checkpoint = latest_checkpoint(cut.run_dir)
    assert checkpoint is not None
    # what rlprune wrote before: weights and counters only
    (checkpoint / "state.json").write_text(json.dumps({"episodes": 8, "num_timesteps": 24}))
    (checkpoint / "best.json").unlink()
    with pytest.warns(UserWarning, match="will not match an uninterrupted run"):
        resumed = resume(cut.run_dir)
    assert resumed.episodes == 20 and resumed.resumed_from == 8
    assert [int(r["episode"]) for r in _rows(cut.run_dir)] == list(range(1, 21))
    _assert_best_matches_log(cut.run_dir)


@pytest.mark.parametrize("value", ["-1", "abc", "inf"])
def test_checkpoint_seconds_must_be_a_time(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--checkpoint-seconds", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--checkpoint-seconds" in err
