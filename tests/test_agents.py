"""Agent presets and the SB3 algorithms they build."""

from __future__ import annotations

from pathlib import Path

import pytest
from stable_baselines3 import DDPG, PPO, TD3

from rlprune.errors import ConfigError
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig
from rlprune.presets.loader import available_agents
from rlprune.rl.agents import build_algorithm, load_agent_config
from rlprune.rl.training import make_vec_env


def test_bundled_presets_and_env_override(tmp_path: Path) -> None:
    assert {"ppo", "ddpg", "td3"} <= set(available_agents())
    preset = tmp_path / "mine.yaml"
    preset.write_text(
        "default:\n  algo: ppo\n  n_epochs: 5\n  policy_kwargs: {net_arch: [32], log_std_init: 0.0}\n"
        "digits-cnn:\n  n_epochs: 3\n  policy_kwargs: {net_arch: [16]}\n"
    )
    agent = load_agent_config(str(preset), "digits-cnn")
    assert agent.hyperparams["n_epochs"] == 3
    assert agent.hyperparams["policy_kwargs"] == {"net_arch": [16], "log_std_init": 0.0}
    assert load_agent_config(str(preset), "other-env").hyperparams["n_epochs"] == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default:\n  algo: ppo\n  learning_rat: 0.1\n", "unknown key 'learning_rat' for ppo"),
        ("default:\n  algo: dqn\n", "unknown algorithm 'dqn'.*ppo, ddpg, td3"),
        ("default:\n  algo: ppo\n  n_steps: 64\n", "unknown key 'n_steps'"),
        ("default:\n  policy_kwargs: {activation_fn: swish}\n", "unknown activation_fn"),
        ("- just\n- a list\n", "must map 'default'"),
    ],
)
def test_bad_agent_presets(tmp_path: Path, text: str, message: str) -> None:
    preset = tmp_path / "bad.yaml"
    preset.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_agent_config(str(preset), "digits-cnn")


def test_unknown_agent_name() -> None:
    with pytest.raises(ConfigError, match="unknown agent preset 'sac'"):
        load_agent_config("sac", "digits-cnn")


def test_steps_are_derived_from_episodes(digits_task: PruningTask) -> None:
    units = len(digits_task.analysis.units)
    vec = make_vec_env(digits_task, EnvConfig(digits_task.config), 2)
    ppo = build_algorithm(load_agent_config("ppo-v1", "digits-cnn"), vec, units, seed=0)
    assert isinstance(ppo, PPO)
    assert ppo.n_steps == 8 * units and ppo.batch_size == 8 * units * 2 // 2
    assert ppo.gamma == 1.0
    for name, cls in (("ddpg", DDPG), ("td3", TD3)):
        agent = build_algorithm(load_agent_config(name, "digits-cnn"), vec, units, seed=0)
        assert isinstance(agent, cls)
        assert agent.learning_starts == 20 * units * 2


def test_the_default_agent_is_the_recommended_prior_correcting_one() -> None:
    from rlprune.cli import build_parser
    from rlprune.search.methods import DEFAULT_METHODS, RECOMMENDED

    agent = load_agent_config("ppo", "fmnist-resnet20")
    assert agent.env["features"] == 2 and agent.env["action_mode"] == "residual"
    assert agent.hyperparams["zero_init_action"] is True
    assert RECOMMENDED == "ppo" == DEFAULT_METHODS[0]
    v1 = load_agent_config("ppo-v1", "fmnist-resnet20")  # the old default, by name
    assert v1.algo == "ppo" and not v1.env
    args = build_parser().parse_args(["train"])
    assert (args.agent or "ppo") == "ppo"
