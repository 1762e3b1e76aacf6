"""The ecosystem's conventions: Gymnasium rendering, rl-baselines3-zoo, TensorBoard,
``--version`` / ``python -m rlprune``, and a benchmark that survives a missing matplotlib."""

from __future__ import annotations

import csv
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium
import pytest
import yaml
from torch import nn

import rlprune
from rlprune.cli import main
from rlprune.env.pruning_env import PruningEnv
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig
from rlprune.rl.agents import load_agent_config
from rlprune.rl.training import TrainSettings, train
from rlprune.search.benchmark import BenchmarkSettings, run_benchmark

ROOT = Path(__file__).resolve().parent.parent
ZOO_FILE = ROOT / "agents" / "rl-zoo3" / "ppo.yml"


# --- rendering --------------------------------------------------------------------


def test_ansi_render_shows_the_episode_so_far(digits_task: PruningTask) -> None:
    env = PruningEnv(task=digits_task, render_mode="ansi")
    env.reset(seed=0)
    first = env.render()
    assert first is not None and "unit 0/3" in first and "MACs so far" in first
    env.step([0.0])
    second = env.render()
    assert second is not None and env.units[0].name in second and "keep" in second
    while env.current_unit < len(env.units):
        env.step([0.0])
    last = env.render()
    assert last is not None and "pruned: MACs ratio" in last
    assert env.last_candidate is not None
    assert f"{env.last_candidate.accuracy:.4f}" in last
    for unit, n in zip(env.units, env.last_candidate.channels, strict=True):
        assert f"({n}/" in last.split(unit.name, 1)[1].splitlines()[0]


def test_human_render_prints_and_no_mode_renders_nothing(
    digits_task: PruningTask, capsys: pytest.CaptureFixture[str]
) -> None:
    env = PruningEnv(task=digits_task, render_mode="human")
    env.reset(seed=0)
    assert env.render() is None
    assert "unit 0/3" in capsys.readouterr().out
    quiet = PruningEnv(task=digits_task)
    quiet.reset(seed=0)
    assert quiet.render() is None
    assert capsys.readouterr().out == ""


def test_unknown_render_mode_is_refused(digits_task: PruningTask) -> None:
    with pytest.raises(ValueError, match="render_mode 'depth_array' is not one of"):
        PruningEnv(task=digits_task, render_mode="depth_array")


def test_make_passes_render_mode_and_agent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the env checker has nothing to complain about
        env = gymnasium.make(rlprune.ENV_ID, preset="digits-cnn", render_mode="ansi", agent="ppo")
    assert env.render_mode == "ansi"
    inner = env.unwrapped
    assert isinstance(inner, PruningEnv)
    # the agent preset's env: settings, as `rlprune train --agent ppo` applies them
    assert inner.config.env.action_mode == "residual" and inner.config.env.features == 2
    assert env.observation_space.shape == (23,)
    plain = gymnasium.make(rlprune.ENV_ID, preset="digits-cnn").unwrapped
    assert plain.config.env.action_mode == "absolute" and plain.config.env.features == 1


# --- rl-baselines3-zoo ------------------------------------------------------------


def test_zoo_settings_match_the_default_agent(digits_task: PruningTask) -> None:
    """agents/rl-zoo3/ppo.yml says in steps what agents/ppo.yaml says in episodes."""
    entry = yaml.safe_load(ZOO_FILE.read_text())[rlprune.ENV_ID]
    env_kwargs = entry.pop("env_kwargs")
    assert env_kwargs == {"preset": "digits-cnn", "agent": "ppo"}
    agent = dict(load_agent_config("ppo", "digits-cnn").hyperparams)
    units = len(digits_task.analysis.units)
    rollout = agent.pop("episodes_per_update") * units
    assert entry.pop("n_steps") == rollout
    assert entry.pop("batch_size") == rollout // agent.pop("minibatches")
    assert entry.pop("n_timesteps") == TrainSettings().episodes * units
    agent.pop("zero_init_action")  # rl-zoo3 has no such key (the file says so)
    zoo_kwargs = eval(entry.pop("policy_kwargs"), {"nn": nn})  # as rl-zoo3 reads it
    ours = agent.pop("policy_kwargs")
    assert zoo_kwargs["net_arch"] == ours["net_arch"]
    assert zoo_kwargs["activation_fn"] is nn.Tanh and ours["activation_fn"] == "tanh"
    assert zoo_kwargs["log_std_init"] == ours["log_std_init"]
    agent.pop("algo", None)
    assert entry == agent


@pytest.mark.slow
def test_rl_zoo3_trains_and_replays_the_registered_env(tmp_path: Path) -> None:
    env = {"OMP_NUM_THREADS": "1", "PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}
    common = ["--algo", "ppo", "--env", rlprune.ENV_ID, "--gym-packages", "rlprune"]
    common += ["-f", str(tmp_path / "logs")]
    trained = subprocess.run(
        [sys.executable, "-m", "rl_zoo3.train", *common, "--conf-file", str(ZOO_FILE)]
        + ["-n", "24", "--eval-freq", "-1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert list((tmp_path / "logs" / "ppo").glob("*/rlprune-LayerPrune-v0.zip"))
    # enjoy asks for render_mode="human" unless told --no-render
    replayed = subprocess.run(
        [sys.executable, "-m", "rl_zoo3.enjoy", *common, "-n", "6"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    assert "target 0.500 of the MACs" in replayed.stdout
    assert "Episode Reward" in replayed.stdout


# --- TensorBoard ------------------------------------------------------------------


def test_tensorboard_has_episode_returns_and_the_last_rollout(
    digits_task: PruningTask, tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # 11 episodes with 8 per update: the last 3 come after the last update
    result = train(
        EnvConfig(digits_task.config),
        load_agent_config("ppo-v1", "digits-cnn"),
        TrainSettings(episodes=11, seed=0, checkpoint_every=0),
        runs_root=tmp_path,
        task=digits_task,
    )
    events = EventAccumulator(str(result.run_dir / "sb3"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "rollout/ep_rew_mean" in tags and "episode/reward" in tags
    units = len(digits_task.analysis.units)
    # one point per episode, at step = episode, those after the last update included
    rewards = events.Scalars("episode/reward")
    assert [e.step for e in rewards] == list(range(1, 12))
    logged = [float(r["episode/reward"]) for r in csv.DictReader(
        (result.run_dir / "episodes.csv").open()
    )]  # fmt: skip
    assert [e.value for e in rewards] == pytest.approx(logged, abs=1e-5)
    assert [e.step for e in events.Scalars("rollout/ep_rew_mean")][-1] == 11 * units


# --- command line and plots -------------------------------------------------------


def test_version_flag_and_python_m(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"rlprune {rlprune.__version__}"
    run = subprocess.run(
        [sys.executable, "-m", "rlprune", "--version"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and run.stdout.strip() == f"rlprune {rlprune.__version__}"


def test_benchmark_without_matplotlib_writes_tables_and_says_so(
    digits_task: PruningTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as if matplotlib were not installed: importing it fails
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    settings = BenchmarkSettings(methods=("uniform", "random"), evals=3)
    with pytest.warns(UserWarning, match="need matplotlib.*tables written, plots skipped"):
        _, files = run_benchmark(
            digits_task, settings, tmp_path, config=EnvConfig(digits_task.config)
        )
    assert (tmp_path / "summary.md").is_file() and "summary.md" in files
    assert not list(tmp_path.glob("*.png"))
