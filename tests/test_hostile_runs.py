"""Hostile run folders and resumes (issue 40, items 1-6): code a copied run folder names,
flags a resume would ignore, a worker that dies while idle, names that escape ``--out``,
off-family detection for single-run policies, and non-finite data."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from rlprune.cli import main
from rlprune.presets.loader import load_env_config
from rlprune.rl.agents import load_agent_config
from rlprune.rl.training import TrainSettings

EVIL = """\
from pathlib import Path
Path({pwned!r}).write_text("x")
from rlprune.models.zoo import digits_cnn as build
from rlprune.data.datasets import load_dataset as make
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plain(value: object) -> object:
    return json.loads(json.dumps(value, default=list))


def _evil_file(folder: Path, pwned: Path) -> Path:
    evil = folder / "evil.py"
    evil.write_text(EVIL.format(pwned=str(pwned)))
    return evil


def _copied_run(folder: Path, env: dict[str, object], **sha: object) -> Path:
    """A run folder as someone else could hand it over: config.yaml and nothing else."""
    folder.mkdir(parents=True)
    config = {
        "env": _plain({**load_env_config("digits-cnn").to_dict(), **env}),
        "agent": _plain(load_agent_config("ppo-v1", "digits-cnn").to_dict()),
        "train": dataclasses.asdict(TrainSettings(episodes=4)),
        **sha,
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


@pytest.mark.parametrize("key", ["model", "dataset"])
def test_resume_runs_no_code_a_copied_run_folder_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    pwned = tmp_path / "pwned"
    run = tmp_path / "run"
    evil = _evil_file(run.parent, pwned)
    attr = "build" if key == "model" else "make"
    spec = f"{evil}:{attr}"
    # the folder's own checksum matches: it proves nothing about who wrote the code
    _copied_run(run, {key: spec}, **{f"{key}_sha256": _sha(evil)})
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert not pwned.exists()
    assert "did not name when training" in err and f"pass --{key} {spec}" in err
    assert len(err.strip().splitlines()) == 1


def test_resume_runs_no_library_function_a_copied_run_folder_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    pwned = tmp_path / "pwned"
    spec = "subprocess:getoutput"
    run = _copied_run(
        tmp_path / "run",
        {"model": spec, "model_kwargs": {"cmd": f"touch {pwned}"}},
        model_sha256=_sha(Path(subprocess.__file__)),
    )
    assert main(["train", "--resume", str(run)]) == 2
    assert not pwned.exists()
    assert "pass --model subprocess:getoutput" in capsys.readouterr().err


def test_family_resume_runs_no_code_a_copied_family_json_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rlprune.rl.family import FamilySettings

    pwned = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    evil = _evil_file(tmp_path, pwned)
    member = {**load_env_config("digits-cnn").to_dict(), "model": f"{evil}:build"}
    settings = dataclasses.asdict(FamilySettings(episodes=4, targets=(0.5,)))
    family = {  # no model_sha256 at all: a family run checked models only where listed
        "family": ["digits-cnn"],
        "targets": [0.5],
        "agent": load_agent_config("ppo", "digits-cnn").to_dict(),
        "train": settings,
        "command": "rlprune train",
        "members": [member],
    }
    (run / "family.json").write_text(json.dumps(_plain(family)))
    assert main(["train", "--resume", str(run)]) == 2
    assert not pwned.exists()
    assert f"pass --model {evil}:build" in capsys.readouterr().err


def test_trusted_code_is_what_this_user_named_unchanged(
    tmp_path: Path, trusted_code_list: Path
) -> None:
    from rlprune.code import is_trusted_code, trust_code

    code = tmp_path / "mine.py"
    code.write_text("def build():\n    return None\n")
    spec = f"{code}:build"
    assert not is_trusted_code(spec)
    trust_code(spec)
    assert is_trusted_code(spec) and str(code.resolve()) in trusted_code_list.read_text()
    code.write_text(code.read_text() + "# changed\n")
    assert not is_trusted_code(spec)
    assert is_trusted_code("rlprune.models.zoo:resnet")  # rlprune's own model code
    assert not is_trusted_code("rlprune.files:atomic_write_text")  # but not any of its code


def _copied_family(folder: Path) -> Path:
    """A family run folder of digits-cnn alone (family.json only: no checkpoint yet)."""
    from rlprune.rl.family import FamilySettings

    folder.mkdir(parents=True)
    family = {
        "family": ["digits-cnn"],
        "targets": [0.5],
        "agent": load_agent_config("ppo", "digits-cnn").to_dict(),
        "train": dataclasses.asdict(FamilySettings(episodes=4, targets=(0.5,))),
        "command": "rlprune train",
        "members": [load_env_config("digits-cnn").to_dict()],
        "model_sha256": [None],
        "dataset_sha256": [None],
    }
    (folder / "family.json").write_text(json.dumps(_plain(family)))
    return folder


@pytest.mark.parametrize(
    "flags",
    [["--amp"], ["--device", "cuda"], ["--device", "cpu"], ["--out", "elsewhere"]],
)
@pytest.mark.parametrize("kind", ["run", "family run"])
def test_resume_refuses_every_flag_it_would_ignore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], kind: str
) -> None:
    run = tmp_path / "run"
    if kind == "run":
        _copied_run(run, {})
    else:
        _copied_family(run)
    before = {p.name: p.read_text() for p in run.iterdir()}
    assert main(["train", "--resume", str(run), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"drop {flags[0]}" in err, err
    assert {p.name: p.read_text() for p in run.iterdir()} == before  # nothing ran


@pytest.mark.parametrize("flags", [["--normalize", "none"], ["--reward", "acc_only"]])
def test_family_resume_refuses_what_a_single_resume_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str]
) -> None:
    run = _copied_family(tmp_path / "run")
    assert main(["train", "--resume", str(run), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{flags[0]} cannot change a resumed family run" in err
    assert not (run / "episodes.csv").exists()


def test_family_runs_refuse_checkpoint_seconds_and_honour_checkpoint_every(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import rlprune.rl.family as family

    new = ["train", "--env", "digits-cnn,fmnist-cnn", "--out", str(tmp_path / "runs")]
    assert main([*new, "--checkpoint-seconds", "5"]) == 2
    assert "--checkpoint-every" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    run = _copied_family(tmp_path / "run")
    seen: list[int] = []
    monkeypatch.setattr(
        family, "train_family", lambda _m, _a, s, *_x, **_k: seen.append(s.save_every)
    )
    main(["train", "--resume", str(run), "--checkpoint-every", "3"])
    assert seen == [3]
    assert json.loads((run / "family.json").read_text())["train"]["save_every"] == 3


def test_benchmark_resume_refuses_another_worker_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    args = ["benchmark", "--methods", "uniform", "--evals", "2", "--out", str(out)]
    assert main(args) == 0
    kept = sorted(p.name for p in (out / "results").iterdir())
    capsys.readouterr()
    assert main([*args, "--resume", "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--workers 2 differs from the 1" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in (out / "results").iterdir()) == kept
    assert main([*args, "--resume", "--workers", "1"]) == 0


def test_a_worker_that_dies_while_idle_is_replaced_and_the_search_finishes() -> None:
    import os
    import signal
    import time

    from rlprune.evaluation.backends import ProcessPool
    from rlprune.presets.tasks import load_task
    from rlprune.search.random_search import search_random

    task = load_task(load_env_config("digits-cnn"))
    try:
        expected = search_random(task, 0.5, 6, seed=5)
        task.reset_search()
        pool = task.use_backend("process", 2)
        assert isinstance(pool, ProcessPool)
        pool.start()
        os.kill(pool.pids()[0], signal.SIGKILL)  # between two searches: nothing in flight
        deadline = time.monotonic() + 30
        while not pool._pool._broken and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.01)
        got = search_random(task, 0.5, 6, seed=5)
        assert pool.restarts == 1
        assert [c.channels for c in got.history] == [c.channels for c in expected.history]
        assert got.best == expected.best
    finally:
        task.close_backend()


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/rlprune-escaped", "a/b", ".."])
def test_a_preset_name_never_leads_a_run_folder_out_of_out(tmp_path: Path, name: str) -> None:
    from rlprune.files import safe_name
    from rlprune.rl.run import run_folder_name

    folder = run_folder_name(name, name, 0)
    assert "/" not in folder and not folder.startswith(".")
    assert (tmp_path / folder).resolve().parent == tmp_path.resolve()
    assert safe_name(name) not in ("", ".", "..")


def test_train_keeps_a_hostile_preset_name_inside_out(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    preset = tmp_path / "hostile.yaml"
    weights = root / "weights" / "digits-cnn.pt"
    preset.write_text(
        f'name: "../../escaped"\nmodel: digits-cnn\nweights: {weights}\ndataset: digits\n'
        "calibration_batches: 1\nval_size: 64\n"
    )
    out = tmp_path / "a" / "b" / "runs"
    assert main(["train", "--env", str(preset), "--episodes", "1", "--out", str(out)]) == 0
    (run,) = out.iterdir()
    assert run.name.startswith("_.._escaped__")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_dir() and "escaped" in p.name) == [
        run.name
    ]


def test_a_single_run_policy_records_its_ranges_and_apply_tells_another_network(
    trained_run: Path, make_small_task: object, digits_task: object
) -> None:
    from rlprune.rl.policy import load_policy
    from rlprune.rl.transfer import policy_env, zero_shot

    policy = load_policy(trained_run / "policy")
    ranges = policy.metadata["feature_ranges"]
    assert set(ranges) == set(policy.metadata["features"])  # every feature, seen
    assert all(low <= high for low, high in ranges.values())
    resnet = make_small_task("residual")  # type: ignore[operator]
    outside = zero_shot(policy, policy_env(policy, resnet, 0.5)).outside
    assert outside, "a residual net on 28x28 images lies outside a digits CNN's ranges"
    inside = zero_shot(policy, policy_env(policy, digits_task, 0.5)).outside  # type: ignore[arg-type]
    assert [name for name, _, _ in inside] == []


def test_non_finite_images_are_refused_before_any_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    examples = Path(__file__).resolve().parent.parent / "examples"
    code = tmp_path / "poisoned.py"
    code.write_text(
        (examples / "tensor_dataset.py").read_text()
        + "\n\ndef poisoned():\n"
        + "    splits = standardised()\n"
        + "    x, y = splits['train'].tensors\n"
        + "    x = x.clone()\n"
        + "    x[:45, 0, 0, 0] = float('inf')  # 45 training images\n"
        + "    splits['train'] = TensorDataset(x, y)\n"
        + "    return splits\n"
    )
    assert main(["info", "--env", "digits-cnn", "--dataset", f"{code}:poisoned"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "45 image(s) of the train split hold NaN or inf" in err


def test_non_finite_weights_or_streamed_images_are_refused(tmp_path: Path) -> None:
    import torch
    from torch.utils.data import Dataset

    from rlprune.errors import DatasetError, ModelError
    from rlprune.evaluation.task import PruningTask
    from rlprune.mdp.settings import make_config
    from rlprune.models.specs import build_model
    from tests.conftest import synthetic_data

    config = make_config({"model": "digits-cnn", "calibration_batches": 1, "batch_size": 8})
    data = synthetic_data()

    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model("digits-cnn", in_channels=1, num_classes=10, input_size=28)

    PruningTask.from_model(model(), data, config)  # finite: fine
    broken = model()
    next(broken.parameters()).data[0] = float("nan")
    with pytest.raises(ModelError, match="NaN/inf"):
        PruningTask.from_model(broken, data, config)

    class Streamed(Dataset):  # a factory's dataset, read sample by sample
        def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
            self.x, self.y = x.clone(), y
            self.x[:, 0, 0, 0] = float("inf")

        def __len__(self) -> int:
            return len(self.y)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return self.x[i], int(self.y[i])

    streamed = dataclasses.replace(data, train=Streamed(*data.train.tensors))
    with pytest.raises(DatasetError, match="calibration batches"):
        PruningTask.from_model(model(), streamed, config)


def test_benchmark_resume_refuses_retrained_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    import torch

    from rlprune.files import file_digest

    weights = tmp_path / "w.pt"
    shutil.copy(load_env_config("digits-cnn").task.weights or "", weights)
    out = tmp_path / "bench"
    args = ["benchmark", "--methods", "uniform", "--evals", "2", "--weights", str(weights)]
    args += ["--out", str(out)]
    assert main(args) == 0
    manifest = json.loads((out / "benchmark.json").read_text())
    assert manifest["weights_digest"] == file_digest(weights)
    kept = sorted(p.name for p in (out / "results").iterdir())
    original = weights.read_bytes()
    saved = torch.load(weights, weights_only=True)
    first = next(k for k, v in saved["state_dict"].items() if v.is_floating_point())
    saved["state_dict"][first] = saved["state_dict"][first] + 0.01  # "retrained", same path
    torch.save(saved, weights)
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "differ from those the benchmark" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in (out / "results").iterdir()) == kept
    weights.write_bytes(original)
    del manifest["weights_digest"]  # kept before digests were recorded: taken as this one's
    (out / "benchmark.json").write_text(json.dumps(manifest))
    assert main([*args, "--resume"]) == 0
    assert json.loads((out / "benchmark.json").read_text())["weights_digest"] == file_digest(
        weights
    )
