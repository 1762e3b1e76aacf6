"""Shared fixtures: the digits preset task and small synthetic tasks for zoo models."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from rlprune.evaluation.splits import DataSplits, from_tensors
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig, make_config
from rlprune.models.specs import build_model
from rlprune.presets.loader import load_env_config
from rlprune.presets.tasks import load_task

# One intra-op thread: the networks here are tiny, and on a shared 2-core machine two
# threads contending with another process make small convolutions ~100x slower.
torch.set_num_threads(1)
# latency models are cached here, not in the user's ~/.cache (CLI subprocesses inherit it)
os.environ["RLPRUNE_CACHE_DIR"] = tempfile.mkdtemp(prefix="rlprune-test-cache-")

ROOT = Path(__file__).resolve().parent.parent
CUSTOM_MODEL = str(ROOT / "examples" / "custom_model.py") + ":build"

# Small versions of each zoo architecture family, for fast structural tests.
SMALL_MODELS: dict[str, tuple[str, dict]] = {
    "plain": ("vgg", {"cfg": (8, 8, "M", 16, 16, "M")}),
    "residual": ("resnet", {"depth": 8, "width": 8}),
    "depthwise": ("mobilenetv2", {"width_mult": 0.5}),
    "custom": (CUSTOM_MODEL, {}),
}


def synthetic_data(shape: tuple[int, int, int] = (1, 28, 28), classes: int = 10) -> DataSplits:
    """Random images and labels: enough to exercise pruning and scoring, not to learn."""
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, *shape, generator=g), torch.randint(classes, (n,), generator=g)

    return from_tensors(*split(32), *split(16), *split(16))


TRUSTED_CODE_ENV = "RLPRUNE_TRUSTED_CODE"  # rlprune.code.TRUSTED_CODE_ENV


@pytest.fixture(scope="session", autouse=True)
def trusted_code_list(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's own list of trusted code (never the user's ``~/.config``); child
    processes inherit it."""
    path = tmp_path_factory.mktemp("config") / "trusted-code.json"
    before = os.environ.get(TRUSTED_CODE_ENV)
    os.environ[TRUSTED_CODE_ENV] = str(path)
    yield path
    if before is None:
        os.environ.pop(TRUSTED_CODE_ENV, None)
    else:
        os.environ[TRUSTED_CODE_ENV] = before


@pytest.fixture(scope="session")
def digits_task() -> PruningTask:
    """The bundled digits preset with its committed base model."""
    return load_task(load_env_config("digits-cnn"))


@pytest.fixture(scope="session")
def make_small_task() -> Callable[..., PruningTask]:
    """Build (and cache) a task for one of :data:`SMALL_MODELS` on synthetic data."""
    cache: dict[str, PruningTask] = {}

    def make(family: str) -> PruningTask:
        if family not in cache:
            spec, kwargs = SMALL_MODELS[family]
            data = synthetic_data()
            torch.manual_seed(0)
            model = build_model(spec, in_channels=1, num_classes=10, input_size=28, kwargs=kwargs)
            config = make_config(
                {
                    "model": spec,
                    "model_kwargs": kwargs,
                    "calibration_batches": 1,
                    "batch_size": 8,
                    "target": 0.5,
                }
            )
            cache[family] = PruningTask.from_model(model, data, config)
        return cache[family]

    return make


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, digits_task: PruningTask) -> Path:
    """A short PPO run on digits (16 episodes), shared by tests that need a policy."""
    from rlprune.rl.agents import load_agent_config
    from rlprune.rl.training import TrainSettings, train

    result = train(
        EnvConfig(digits_task.config),
        load_agent_config("ppo-v1", "digits-cnn"),
        TrainSettings(episodes=16, seed=0, checkpoint_every=8),
        runs_root=tmp_path_factory.mktemp("runs"),
        task=digits_task,
    )
    return result.run_dir
