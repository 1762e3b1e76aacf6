"""Hostile input, second round (issue #40, items 7-12): episode counts that overshoot,
input at fault that ended in "unexpected error", messages that misled, debris an
interrupted apply left, tools that destroyed their input, and a stale README line.

Every bad input ends in one line naming the file or field and the fix, and a non-zero exit.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

from rlprune.cli import main
from rlprune.errors import ConfigError, RunError
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig
from rlprune.rl.agents import load_agent_config
from rlprune.rl.training import TrainSettings, train

ROOT = Path(__file__).resolve().parent.parent
DIGITS = yaml.safe_load((ROOT / "envs" / "digits-cnn.yaml").read_text())
DIGITS["weights"] = str(ROOT / "weights" / "digits-cnn.pt")

MODELS = '''
import torch
from torch import nn


class Net(nn.Module):
    """A small CNN for 8x8 digits whose forward can fail as user code does."""

    def __init__(self, fail: str = "") -> None:
        super().__init__()
        self.fail = fail
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail == "one" and x.shape[0] == 1:
            raise RuntimeError("this model needs a batch of at least two")
        x = torch.relu(self.bn1(self.conv1(x)))
        if self.fail == "pruned" and x.shape[0] > 1 and x.shape[1] != 16:  # not on a probe
            raise RuntimeError(f"expected 16 channels, got {x.shape[1]}")
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def pruned_fails() -> nn.Module:
    return Net("pruned")


def batch_of_one_fails() -> nn.Module:
    return Net("one")
'''

DATASETS = '''
import errno

import torch
from torch.utils.data import Dataset


class Images(Dataset):
    """n random 1x8x8 images, labels 0..9; reads fail past ``readable`` samples."""

    def __init__(self, n, dtype=torch.float32, claimed=None, readable=None):
        g = torch.Generator().manual_seed(n)
        self.x = torch.rand(n, 1, 8, 8, generator=g).to(dtype)
        self.targets = [i % 10 for i in range(n)]
        self.claimed = claimed
        self.readable = readable

    def __len__(self):
        return self.claimed or len(self.targets)

    def __getitem__(self, i):
        if self.readable is not None and i >= self.readable:
            raise OSError(errno.EIO, "Input/output error", f"img{i}.png")
        return self.x[i % len(self.targets)], self.targets[i % len(self.targets)]


def float64():
    return {"train": Images(40, torch.float64), "val": Images(20), "test": Images(20),
            "num_classes": 10}


def huge():
    return {"train": Images(40, claimed=10**12), "val": Images(20), "test": Images(20),
            "num_classes": 10}


def unreadable():
    return {"train": Images(40, readable=1), "val": Images(20), "test": Images(20),
            "num_classes": 10}


def one_heldout():
    return {"train": Images(40), "heldout": Images(1), "num_classes": 10}
'''


def env_yaml(tmp: Path, **changes: object) -> str:
    """A copy of the digits-cnn preset with ``changes`` (``None`` drops a key)."""
    raw = {k: v for k, v in {**DIGITS, **changes}.items() if v is not None}
    path = tmp / "env.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def code_file(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return path


def models(tmp: Path, factory: str) -> str:
    """An env preset whose model is ``factory`` in a model file of the test's (no weights)."""
    spec = f"{code_file(tmp, 'models.py', MODELS)}:{factory}"
    return env_yaml(tmp, model=spec, weights=None, calibration_batches=1, val_size=60)


def dataset(tmp: Path, factory: str) -> str:
    return f"{code_file(tmp, 'datasets.py', DATASETS)}:{factory}"


def edited_policy(tmp: Path, run: Path, edit: Callable[[dict], None]) -> str:
    """A copy of ``run``'s policy with its policy.json edited by ``edit``."""
    folder = tmp / "policy"
    shutil.copytree(run / "policy", folder)
    meta = json.loads((folder / "policy.json").read_text())
    edit(meta)
    (folder / "policy.json").write_text(json.dumps(meta))
    return str(folder)


def policy_weights(tmp: Path, run: Path, value: float | None) -> str:
    """A copy of ``run``'s policy whose first tensor is filled with ``value``, or whose
    policy.pt is empty (``None``)."""
    folder = tmp / "policy"
    shutil.copytree(run / "policy", folder)
    if value is None:
        (folder / "policy.pt").write_bytes(b"")
    else:
        state = torch.load(folder / "policy.pt", weights_only=True)
        next(iter(state.values())).fill_(value)
        torch.save(state, folder / "policy.pt")
    return str(folder)


def agent_section(meta: dict, **kwargs: object) -> None:
    meta["agent"]["hyperparams"].setdefault("policy_kwargs", {}).update(kwargs)


def set_range(meta: dict, pair: list[float]) -> None:
    meta["feature_ranges"] = {meta["features"][0]: pair}


HUGE = [10**8, 10**8]
"""Hidden layers that would take petabytes."""

Case = Callable[[Path, Path], list[str]]
"""(tmp folder, a trained run folder) -> argv."""

APPLY = ["apply", "--target", "0.5"]

# (id, argv builder, text the one-line message must contain); every case exits 2
INPUT_CASES: list[tuple[str, Case, str]] = [
    (
        "policy-pt-empty",
        lambda t, r: [*APPLY, "--out", str(t / "o"), "--policy", policy_weights(t, r, None)],
        "cannot load policy weights",
    ),
    (
        "policy-pt-nan",
        lambda t, r: [*APPLY, "--out", str(t / "o"), "--policy", policy_weights(t, r, math.nan)],
        "NaN or inf",
    ),
    (
        "policy-pt-inf",
        lambda t, r: [*APPLY, "--out", str(t / "o"), "--policy", policy_weights(t, r, math.inf)],
        "NaN or inf",
    ),
    *[
        (
            f"outside-scale-{name}",
            lambda t, r, v=value: [  # type: ignore[misc]
                *APPLY,
                "--out",
                str(t / "o"),
                "--policy",
                edited_policy(t, r, lambda m: m.update(outside_scale=v)),
            ],
            "'outside_scale' must be a number in [0, 1]",
        )
        for name, value in (("text", "x"), ("nan", math.nan), ("5", 5.0), ("bool", True))
    ],
    (
        "policy-net-arch-huge",
        lambda t, r: [
            *APPLY,
            "--out",
            str(t / "o"),
            "--policy",
            edited_policy(t, r, lambda m: agent_section(m, net_arch=HUGE)),
        ],
        "policy.json is damaged: net_arch",
    ),
    (
        "agent-net-arch-huge",
        lambda t, r: [
            "train",
            "--out",
            str(t / "o"),
            "--agent",
            str(code_file(t, "a.yaml", f"default: {{policy_kwargs: {{net_arch: {HUGE}}}}}")),
        ],
        "at most 16 layer widths of 1 to 4096",
    ),
    (
        "policy-features-reversed",
        lambda t, r: [
            *APPLY,
            "--out",
            str(t / "o"),
            "--policy",
            edited_policy(t, r, lambda m: m.update(features=m["features"][::-1])),
        ],
        "'features' must list feature set",
    ),
    *[
        (
            f"policy-ranges-{name}",
            lambda t, r, p=pair: [  # type: ignore[misc]
                *APPLY,
                "--out",
                str(t / "o"),
                "--policy",
                edited_policy(t, r, lambda m: set_range(m, p)),
            ],
            "'feature_ranges'",
        )
        for name, pair in (("nan", [math.nan, 1.0]), ("inverted", [1.0, 0.0]), ("text", "x"))
    ],
    (
        "preset-not-utf8",
        lambda t, r: ["info", "--env", _latin1(t)],
        "is not UTF-8 text",
    ),
    (
        "normalize-nan",
        lambda t, r: ["info", "--env", env_yaml(t, normalize={"mean": [math.nan], "std": [1]})],
        "must be finite",
    ),
    (
        "normalize-inf",
        lambda t, r: ["info", "--env", env_yaml(t, normalize={"mean": [0], "std": [math.inf]})],
        "must be finite",
    ),
    (
        "factory-float64",
        lambda t, r: ["info", "--dataset", dataset(t, "float64")],
        "images must be float32",
    ),
    (
        "factory-length-1e12",
        lambda t, r: ["info", "--dataset", dataset(t, "huge")],
        "claims 1,000,000,000,000 samples",
    ),
    (
        "model-fails-on-one",
        lambda t, r: ["info", "--env", models(t, "batch_of_one_fails")],
        "a batch of one",
    ),
    (
        "model-fails-pruned",
        lambda t, r: [
            "train",
            "--episodes",
            "2",
            "--out",
            str(t / "o"),
            "--env",
            models(t, "pruned_fails"),
        ],
        "the model failed on the pruned candidate",
    ),
]


def _latin1(tmp: Path) -> str:
    path = tmp / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\nmodel: digits-cnn\n".encode("latin-1"))
    return str(path)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit status and the stderr lines other than warnings."""
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse usage errors
        status = int(exit_.code or 0)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    return status, "\n".join(line for line in err.splitlines() if not line.startswith("warning:"))


@pytest.mark.parametrize(
    ("argv", "message"), [c[1:] for c in INPUT_CASES], ids=[c[0] for c in INPUT_CASES]
)
def test_input_at_fault_gets_one_line_not_unexpected_error(
    argv: Case,
    message: str,
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    status, err = _run(argv(tmp_path, trained_run), capsys)
    assert status == 2 and len(err.splitlines()) == 1, err
    assert message in err and "unexpected" not in err, err


# --- a run folder's files, edited: refused on resume --------------------------------


def _latest(run: Path) -> Path:
    name = json.loads((run / "checkpoints" / "latest.json").read_text())["checkpoint"]
    return run / "checkpoints" / name


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _edit_config(run: Path, edit: Callable[[dict], None]) -> None:
    raw = yaml.safe_load((run / "config.yaml").read_text())
    edit(raw)
    (run / "config.yaml").write_text(yaml.safe_dump(raw))


def _nan_params(run: Path) -> None:
    path = _latest(run) / "params.pt"
    params = torch.load(path, weights_only=True)
    next(iter(params["policy"].values())).fill_(math.nan)
    torch.save(params, path)


def _wide_best(best: dict) -> None:
    best["channels"][0] = 10**6


RUN_DAMAGE: dict[str, tuple[Callable[[Path], object], str]] = {
    "config-episodes-text": (
        lambda run: _edit_config(run, lambda raw: raw["train"].update(episodes="many")),
        "train.episodes must be a number",
    ),
    "config-checkpoint-negative": (
        lambda run: _edit_config(run, lambda raw: raw["train"].update(checkpoint_every=-3)),
        "train.checkpoint_every",
    ),
    "config-net-arch-huge": (
        lambda run: _edit_config(
            run,
            lambda raw: raw["agent"]["hyperparams"]["policy_kwargs"].update(
                net_arch=[10**8, 10**8]
            ),
        ),
        "config.yaml",
    ),
    "state-episodes-negative": (
        lambda run: _edit_json(_latest(run) / "state.json", lambda s: s.update(episodes=-8)),
        "must be 0 or more",
    ),
    "checkpoint-params-nan": (_nan_params, "NaN or inf"),
    "checkpoint-best-channels": (
        lambda run: _edit_json(_latest(run) / "best.json", _wide_best),
        "'channels'",
    ),
}


@pytest.mark.parametrize("damage", list(RUN_DAMAGE), ids=list(RUN_DAMAGE))
def test_an_edited_run_folder_is_refused_on_resume_in_one_line(
    damage: str,
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    edit, message = RUN_DAMAGE[damage]
    edit(run)
    best_before = (run / "best.json").read_text()
    status, err = _run(["train", "--resume", str(run), "--episodes", "24"], capsys)
    assert status == 2 and len(err.splitlines()) == 1, err
    assert message in err and "unexpected" not in err, err
    assert (run / "best.json").read_text() == best_before  # nothing propagated


def test_the_bad_input_count() -> None:
    """The closing note's count: the cases of this file's two tables."""
    assert len(INPUT_CASES) + len(RUN_DAMAGE) >= 25


# --- item 7: --episodes is what runs ----------------------------------------------------


def _logged(run_dir: Path) -> list[int]:
    with (run_dir / "episodes.csv").open() as handle:
        return [int(row["episode"]) for row in csv.DictReader(handle)]


@pytest.mark.parametrize(("episodes", "n_envs"), [(10, 2), (2, 3), (6, 4)])
def test_episodes_do_not_overshoot_with_several_envs(
    digits_task: PruningTask, tmp_path: Path, episodes: int, n_envs: int
) -> None:
    result = train(
        EnvConfig(digits_task.config),
        load_agent_config("ppo", "digits-cnn"),
        TrainSettings(episodes=episodes, n_envs=n_envs, checkpoint_every=0),
        runs_root=tmp_path,
        task=digits_task,
    )
    assert result.episodes == episodes
    assert _logged(result.run_dir) == list(range(1, episodes + 1))
    meta = json.loads((result.run_dir / "policy" / "policy.json").read_text())
    assert meta["training_episodes"] == episodes


def test_an_absurd_worker_count_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--workers", "1000", "--episodes", "2", "--out", str(tmp_path / "runs")]
    status, err = _run(argv, capsys)
    assert status == 2 and "--workers 1000" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


# --- item 9: messages that named the wrong culprit --------------------------------------


def test_an_unreadable_dataset_file_is_not_blamed_on_the_output_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    status, err = _run(["info", "--dataset", dataset(tmp_path, "unreadable")], capsys)
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "of the train split of dataset" in err and "Input/output error" in err, err
    assert "output folder" not in err


def test_a_one_sample_heldout_set_says_it_needs_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    status, err = _run(["info", "--dataset", dataset(tmp_path, "one_heldout")], capsys)
    assert status == 2 and "1 sample cannot be split" in err and "1..0" not in err, err


def test_a_negative_seed_is_a_usage_error_and_leaves_no_run_folder(
    digits_task: PruningTask,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    for seed in ("-1", str(2**32)):
        status, err = _run(["train", "--seed", seed, "--out", "runs"], capsys)
        assert status == 2 and "--seed" in err and "agent preset" not in err, err
    with pytest.raises(RunError, match="--seed -1 is out of range"):
        train(
            EnvConfig(digits_task.config),
            load_agent_config("ppo", "digits-cnn"),
            TrainSettings(episodes=2, seed=-1),
            runs_root=tmp_path / "runs",
            task=digits_task,
        )
    assert not (tmp_path / "runs").exists()


def test_pretrain_into_a_file_says_the_parent_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    status, err = _run(["pretrain", "--epochs", "0", "--out", "afile/w.pt"], capsys)
    assert status == 2 and "afile is a file" in err and "File exists" not in err, err


def test_resume_takes_a_relative_model_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code_file(tmp_path, "model.py", (ROOT / "examples" / "custom_model.py").read_text())
    spec = "model.py:build"
    assert main(["pretrain", "--model", spec, "--epochs", "0", "--out", "w.pt"]) == 0
    args = ["train", "--model", spec, "--weights", "w.pt", "--episodes", "2", "--out", "runs"]
    assert main(args) == 0
    (run,) = (tmp_path / "runs").iterdir()
    capsys.readouterr()
    status, err = _run(["train", "--resume", str(run), "--model", spec, "--episodes", "3"], capsys)
    assert status == 0, err


# --- item 10: an interrupted apply or benchmark ------------------------------------------

_KILLED = """
import os, signal, sys
import rlprune.{module} as target

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    raise AssertionError("SIGTERM did not stop the command")

target.{name} = killed
from rlprune.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _terminated(module: str, name: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    code = _KILLED.format(module=module, name=name)
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_sigterm_during_apply_says_so_and_leaves_nothing(trained_run: Path, tmp_path: Path) -> None:
    argv = ["apply", "--policy", str(trained_run), "--target", "0.5", "--out", "out"]
    done = _terminated("apply", "_apply", argv, tmp_path)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert "interrupted" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_benchmark_says_where_the_results_are(tmp_path: Path) -> None:
    argv = ["benchmark", "--methods", "uniform", "--evals", "1", "--out", "bench"]
    done = _terminated("cli.benchmark", "_run_with_progress", argv, tmp_path)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert "interrupted: finished (method, seed) results are kept" in done.stderr, done.stderr


def test_a_killed_applys_staging_folder_goes_with_the_next_run(
    trained_run: Path, tmp_path: Path
) -> None:
    dead = tmp_path / ".out.partial-999999999-0a1b2c3d"  # no such process
    old = tmp_path / ".out.partial-0a1b2c3d"  # an older rlprune's name, no pid
    live = tmp_path / f".out.partial-{os.getpid()}-0a1b2c3d"  # an apply running now
    for folder in (dead, old, live):
        folder.mkdir()
        (folder / "report.json").write_text("{}")
    out = tmp_path / "out"
    assert main(["apply", "--policy", str(trained_run), "--target", "0.5", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "out"])


# --- item 11: tools that destroyed their input -------------------------------------------


def _bundle_script() -> ModuleType:
    path = ROOT / "experiments" / "bundle_policy.py"
    spec = importlib.util.spec_from_file_location("bundle_policy_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("out", "select", "twice", "message"),
    [
        ("a/policy", "fmnist-cnn", False, "would overwrite the member"),
        ("a", "fmnist-cnn", False, "would overwrite the member"),
        ("bundle", "nope", False, "unknown env preset 'nope'"),
        ("bundle", ",", False, "no networks to select on"),
        ("bundle", "fmnist-cnn", True, "twice"),
    ],
    ids=["out-is-member", "out-is-members-run", "select-unknown", "select-empty", "twice"],
)
def test_bundle_policy_refuses_before_writing(
    out: str, select: str, twice: bool, message: str, trained_run: Path, tmp_path: Path
) -> None:
    a = Path(shutil.copytree(trained_run, tmp_path / "a"))
    b = Path(shutil.copytree(trained_run / "policy", tmp_path / "b"))
    members = [str(a), str(a / "policy")] if twice else [str(a), str(b)]
    before = _tree(tmp_path)
    argv = ["--members", *members, "--select-on", select, "--out", str(tmp_path / out)]
    with pytest.raises(ConfigError, match=message):
        _bundle_script().main(argv)
    assert _tree(tmp_path) == before


def test_pretrain_refuses_to_overwrite_its_own_preset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preset = Path(env_yaml(tmp_path))
    text = preset.read_text()
    argv = ["pretrain", "--env", str(preset), "--out", str(preset), "--overwrite", "--epochs", "0"]
    status, err = _run(argv, capsys)
    assert status == 2 and "is not a weights file" in err, err
    assert preset.read_text() == text


# --- item 12 ----------------------------------------------------------------------------


def test_the_guide_says_family_runs_resume() -> None:
    for page in (ROOT / "README.md", ROOT / "docs" / "guide" / "cli.md"):
        assert "not resumable" not in page.read_text(), page
    assert "A family run resumes" in (ROOT / "docs" / "guide" / "cli.md").read_text()
