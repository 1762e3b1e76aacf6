"""Presets, overrides and the bad-input errors of building a task."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlprune.env.pruning_env import PruningEnv
from rlprune.errors import BudgetError, ConfigError, DatasetError, ModelError
from rlprune.evaluation.task import PruningTask
from rlprune.models.specs import build_model
from rlprune.models.weights import save_weights
from rlprune.presets.loader import available_presets, env_spec, load_env_config
from rlprune.presets.tasks import load_task
from tests.conftest import CUSTOM_MODEL


def test_bundled_presets_load() -> None:
    assert set(available_presets()) >= {
        "digits-cnn",
        "fmnist-resnet20",
        "fmnist-vgg",
        "fmnist-mobilenetv2",
    }
    for name in available_presets():
        config = load_env_config(name)
        assert (
            config.name == name and config.task.weights and Path(config.task.weights).is_absolute()
        )


def test_overrides_and_yaml_path(tmp_path: Path) -> None:
    preset = tmp_path / "mine.yaml"
    preset.write_text("model: vgg\ndataset: digits\ntarget: [0.3, 0.6]\nseed: 3\n")
    config = load_env_config(str(preset), {"target": 0.4, "reward": None})
    assert config.name == "mine" and config.task.model == "vgg" and config.task.seed == 3
    assert config.env.target == (0.4, 0.4) and config.env.reward == "acc"
    assert load_env_config(str(preset)).env.target == (0.3, 0.6)


def test_env_spec_finds_a_relative_yaml_under_the_root_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "mine.yaml").write_text("model: vgg\ndataset: digits\nseed: 3\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the relative path does not resolve from here
    assert load_env_config(env_spec("envs/mine.yaml", tmp_path)).task.seed == 3
    assert env_spec("digits-cnn", tmp_path) == "digits-cnn"  # a bundled name is left alone
    assert env_spec("envs/mine.yaml") == "envs/mine.yaml"  # no root: as given
    absolute = str(tmp_path / "envs" / "mine.yaml")
    assert env_spec(absolute, tmp_path / "other") == absolute


@pytest.mark.parametrize("target", [0.0, -0.1, 1.5])
def test_target_outside_unit_interval(target: float) -> None:
    with pytest.raises(ConfigError, match=r"outside \(0, 1\]"):
        load_env_config("digits-cnn", {"target": target})


def test_unknown_preset_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown env preset 'nope'.*digits-cnn"):
        load_env_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: vgg\nlearning_rat: 3\n")
    with pytest.raises(ConfigError, match="unknown preset key 'learning_rat'"):
        load_env_config(str(bad))
    with pytest.raises(ConfigError, match="not found"):
        load_env_config(str(tmp_path / "missing.yaml"))


def test_unreachable_target(digits_task: PruningTask) -> None:
    with pytest.raises(BudgetError, match="unreachable.*min_keep"):
        PruningEnv(task=digits_task, target=0.01)


def test_unknown_model_spec() -> None:
    with pytest.raises(ModelError, match="unknown model 'resnet99'"):
        load_task(load_env_config("digits-cnn", {"model": "resnet99"}))


def test_missing_weights_names_the_pretrain_command(tmp_path: Path) -> None:
    config = load_env_config("digits-cnn", {"weights": str(tmp_path / "none.pt")})
    with pytest.raises(ModelError, match="rlprune pretrain --env digits-cnn"):
        load_task(config)


def test_weights_that_do_not_fit_the_model(tmp_path: Path) -> None:
    other = build_model("vgg", in_channels=1, num_classes=10, input_size=8)
    save_weights(other, tmp_path / "vgg.pt")
    config = load_env_config("digits-cnn", {"weights": str(tmp_path / "vgg.pt")})
    with pytest.raises(ModelError, match="does not fit"):
        load_task(config)


def test_model_failing_on_input_shape_or_class_count(tmp_path: Path) -> None:
    spec_file = tmp_path / "bad_models.py"
    spec_file.write_text(
        "import torch.nn as nn\n"
        "def wrong_channels():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(10))\n"
        "def wrong_classes():\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 7))\n"
    )
    with pytest.raises(ModelError, match="fails on input shape"):
        load_task(load_env_config("digits-cnn", {"model": f"{spec_file}:wrong_channels"}))
    with pytest.raises(ModelError, match="10"):
        load_task(load_env_config("digits-cnn", {"model": f"{spec_file}:wrong_classes"}))


def test_missing_dataset_folder(tmp_path: Path) -> None:
    config = load_env_config("digits-cnn", {"dataset": str(tmp_path / "no-such-dir")})
    with pytest.raises(DatasetError, match="does not exist"):
        load_task(config)


def test_user_model_with_residual_and_depthwise_blocks_by_spec_string(tmp_path: Path) -> None:
    """A user's own file, named only by its spec string, is wrapped by the env."""
    torch.manual_seed(0)
    model = build_model(CUSTOM_MODEL, in_channels=1, num_classes=10, input_size=8)
    save_weights(model, tmp_path / "custom.pt")
    env = PruningEnv(
        "digits-cnn", model=CUSTOM_MODEL, weights=str(tmp_path / "custom.pt"), target=0.6
    )
    kinds = {u.kind for u in env.units}
    assert "depthwise" in kinds
    env.reset(seed=0)
    done = False
    while not done:
        *_, done, _, info = env.step(env.action_space.sample())
    assert info["macs_ratio"] <= 0.6 * 1.01
