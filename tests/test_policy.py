"""The policy artifact: safe loading, metadata, version checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rlprune.errors import ConfigError
from rlprune.mdp.features import FEATURE_VERSION, FEATURES
from rlprune.rl.policy import install_policy, load_policy


def test_policy_loads_from_run_or_policy_folder(trained_run: Path) -> None:
    policy = load_policy(trained_run)
    assert policy.path == trained_run / "policy"
    meta = policy.metadata
    assert meta["feature_version"] == FEATURE_VERSION and meta["features"] == list(FEATURES)
    assert meta["env"] == "digits-cnn" and meta["training_episodes"] == 16
    assert meta["min_keep"] == 0.2 and meta["max_keep"] == 1.0 and meta["reward"] == "acc"
    assert meta["best"]["accuracy"] > 0.5
    # plain tensors: loads with weights_only=True, nothing unpickled
    state = torch.load(trained_run / "policy" / "policy.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    obs = np.linspace(0, 1, len(FEATURES), dtype=np.float32)
    a1, _ = policy.predict(obs)
    a2, _ = load_policy(trained_run / "policy" / "policy.json").predict(obs)
    assert a1.shape == (1,) and np.array_equal(a1, a2)


def test_install_policy_replaces_the_destination_with_the_policy_alone(
    trained_run: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "general"
    dest.mkdir()
    (dest / "stale.txt").write_text("from the policy installed before")
    assert install_policy(trained_run / "policy", dest) == dest
    assert sorted(p.name for p in dest.iterdir()) == ["policy.json", "policy.pt"]
    obs = np.linspace(0, 1, len(FEATURES), dtype=np.float32)
    installed, original = load_policy(dest), load_policy(trained_run)
    assert np.array_equal(installed.predict(obs)[0], original.predict(obs)[0])
    assert installed.metadata == original.metadata


def test_missing_and_non_policy_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "nope")
    with pytest.raises(ConfigError, match="is not a policy"):
        load_policy(tmp_path)


def test_other_feature_version_is_refused(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "policy"
    shutil.copytree(trained_run / "policy", copy)
    meta = json.loads((copy / "policy.json").read_text())
    meta["feature_version"] = 99
    (copy / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="v99, this rlprune knows v1, v2"):
        load_policy(copy)


def test_corrupt_weights(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "policy"
    shutil.copytree(trained_run / "policy", copy)
    (copy / "policy.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="cannot load policy weights"):
        load_policy(copy)
