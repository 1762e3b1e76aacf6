"""Bad input, the table: every case ends in one line that names the problem and the fix,
a non-zero exit (2 for usage and input errors) and no output left behind.

Cases cover the command line, env and agent preset YAML, the Python API and damaged
run files. They run in-process through :func:`rlprune.cli.main`; each fails before any
search starts, so the table is fast.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

import rlprune
from rlprune.apply import ApplySettings
from rlprune.cli import main
from rlprune.env.pruning_env import PruningEnv
from rlprune.errors import RLPruneError
from rlprune.evaluation.task import PruningTask

ROOT = Path(__file__).resolve().parent.parent
DIGITS = yaml.safe_load((ROOT / "envs" / "digits-cnn.yaml").read_text())
DIGITS["weights"] = str(ROOT / "weights" / "digits-cnn.pt")


def env_yaml(tmp: Path, **changes: object) -> str:
    """A copy of the digits-cnn preset with ``changes``; returns its path."""
    path = tmp / "env.yaml"
    path.write_text(yaml.safe_dump({**DIGITS, **changes}))
    return str(path)


def agent_yaml(tmp: Path, **changes: object) -> str:
    """A PPO agent preset with ``changes`` in its default entry; returns its path."""
    path = tmp / "agent.yaml"
    path.write_text(yaml.safe_dump({"default": {"algo": "ppo", **changes}}))
    return str(path)


def policy_copy(tmp: Path, run: Path, edit: Callable[[dict], None] | None = None) -> str:
    """A copy of a trained policy folder, its policy.json edited by ``edit``."""
    folder = tmp / "policy"
    shutil.copytree(run / "policy", folder)
    if edit is not None:
        meta = json.loads((folder / "policy.json").read_text())
        edit(meta)
        (folder / "policy.json").write_text(json.dumps(meta))
    return str(folder)


def damaged(tmp: Path, run: Path, name: str) -> str:
    """A copy of a trained policy folder whose file ``name`` holds garbage."""
    folder = policy_copy(tmp, run)
    (Path(folder) / name).write_text("{ not what rlprune wrote")
    return folder


def write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


Case = Callable[[Path, Path], list[str]]
"""(tmp folder, a trained run folder) -> argv."""

# (id, argv builder, expected exit, text the message must contain)
CASES: list[tuple[str, Case, int, str]] = [
    # --- command line: usage errors (argparse, exit 2) ---
    ("episodes-0", lambda t, r: ["train", "--episodes", "0"], 2, "--episodes: must be at least 1"),
    ("episodes-neg", lambda t, r: ["train", "--episodes", "-5"], 2, "must be at least 1"),
    ("episodes-text", lambda t, r: ["train", "--episodes", "abc"], 2, "expected an integer"),
    ("n-envs-0", lambda t, r: ["train", "--n-envs", "0"], 2, "--n-envs: must be at least 1"),
    ("ckpt-neg", lambda t, r: ["train", "--checkpoint-every", "-1"], 2, "must be at least 0"),
    (
        "adapt-neg",
        lambda t, r: ["apply", "--policy", "x", "--adapt-episodes", "-2"],
        2,
        "at least 0",
    ),
    (
        "finetune-neg",
        lambda t, r: ["apply", "--policy", "x", "--finetune-epochs", "-1"],
        2,
        "at least 0",
    ),
    ("evals-0", lambda t, r: ["benchmark", "--evals", "0"], 2, "--evals: must be at least 1"),
    ("seeds-0", lambda t, r: ["benchmark", "--seeds", "0"], 2, "--seeds: must be at least 1"),
    ("proxy-neg", lambda t, r: ["benchmark", "--proxy-candidates", "-1"], 2, "at least 0"),
    ("ft-images-0", lambda t, r: ["benchmark", "--finetune-images", "0"], 2, "at least 1"),
    ("pretrain-epochs-neg", lambda t, r: ["pretrain", "--epochs", "-1"], 2, "at least 0"),
    (
        "target-text",
        lambda t, r: ["info", "--target", "half"],
        2,
        "expected a fraction such as 0.5",
    ),
    ("no-command", lambda t, r: ["frobnicate"], 2, "invalid choice"),
    (
        "apply-target-range",
        lambda t, r: ["apply", "--target", "0.3:0.7"],
        2,
        "only `rlprune train`",
    ),
    (
        "benchmark-target-range",
        lambda t, r: ["benchmark", "--target", "0.3:0.7"],
        2,
        "give `rlprune benchmark` one target",
    ),
    ("unknown-flag", lambda t, r: ["train", "--bogus"], 2, "unrecognized arguments"),
    # --- command line: values ---
    ("env-unknown", lambda t, r: ["info", "--env", "nope"], 2, "unknown env preset"),
    ("env-missing-yaml", lambda t, r: ["info", "--env", str(t / "no.yaml")], 2, "not found"),
    ("target-0", lambda t, r: ["info", "--target", "0"], 2, "outside (0, 1]"),
    ("target-big", lambda t, r: ["info", "--target", "1.5"], 2, "outside (0, 1]"),
    ("target-unreachable", lambda t, r: ["info", "--target", "0.01"], 2, "unreachable"),
    ("reward-unknown", lambda t, r: ["info", "--reward", "nope"], 2, "unknown reward"),
    ("model-unknown", lambda t, r: ["info", "--model", "nope"], 2, "unknown model"),
    ("model-file-missing", lambda t, r: ["info", "--model", "missing.py:build"], 2, "not found"),
    (
        "model-attr-missing",
        lambda t, r: ["info", "--model", str(ROOT / "examples" / "custom_model.py") + ":nope"],
        2,
        "has no attribute 'nope'",
    ),
    ("weights-missing", lambda t, r: ["info", "--weights", str(t / "w.pt")], 2, "not found"),
    ("weights-brackets", lambda t, r: ["info", "--weights", str(t / "[/x]")], 2, "[/x]"),
    ("weights-garbage", lambda t, r: ["info", "--weights", write(t, "w.pt", "junk")], 2, "w.pt"),
    ("dataset-unknown", lambda t, r: ["info", "--dataset", "nope"], 2, "nope"),
    ("methods-empty", lambda t, r: ["benchmark", "--methods", ","], 2, "names no method"),
    ("methods-unknown", lambda t, r: ["benchmark", "--methods", "nope"], 2, "nope"),
    ("agent-unknown", lambda t, r: ["train", "--agent", "nope"], 2, "unknown agent preset"),
    ("train-out-file", lambda t, r: ["train", "--out", write(t, "f", "")], 2, "is a file"),
    ("train-out-unwritable", lambda t, r: ["train", "--out", "/proc/rlprune"], 2, "cannot write"),
    (
        "bench-out-file",
        lambda t, r: ["benchmark", "--methods", "uniform", "--out", write(t, "f", "")],
        2,
        "is a file",
    ),
    ("apply-policy-empty", lambda t, r: ["apply", "--policy", str(t)], 2, "is not a policy"),
    ("apply-policy-missing", lambda t, r: ["apply", "--policy", str(t / "p")], 2, "does not exist"),
    (
        "apply-out-file",
        lambda t, r: ["apply", "--policy", str(r), "--out", write(t, "f", "")],
        2,
        "is a file",
    ),
    (
        "pretrain-bundled",
        lambda t, r: ["pretrain", "--out", str(ROOT / "weights" / "digits-cnn.pt")],
        2,
        "pass --overwrite",
    ),
    (
        "pretrain-in-package",
        lambda t, r: ["pretrain", "--out", str(Path(rlprune.__file__).parent / "w.pt")],
        2,
        "inside the installed rlprune package",
    ),
    ("pretrain-dir", lambda t, r: ["pretrain", "--out", str(t)], 2, "is a folder"),
    ("resume-missing", lambda t, r: ["train", "--resume", str(t / "nope")], 2, "nope"),
    ("resume-not-run", lambda t, r: ["train", "--resume", str(t)], 2, "not a run folder"),
    # --- env preset YAML ---
    (
        "yaml-min-keep",
        lambda t, r: ["info", "--env", env_yaml(t, min_keep="abc")],
        2,
        "'min_keep' must be a number",
    ),
    (
        "yaml-batch",
        lambda t, r: ["info", "--env", env_yaml(t, batch_size="big")],
        2,
        "'batch_size' must be a positive integer",
    ),
    (
        "yaml-seed",
        lambda t, r: ["info", "--env", env_yaml(t, seed="abc")],
        2,
        "'seed' must be an integer",
    ),
    (
        "yaml-kwargs",
        lambda t, r: ["info", "--env", env_yaml(t, model_kwargs=[1, 2])],
        2,
        "'model_kwargs' must be a mapping",
    ),
    (
        "yaml-clipping",
        lambda t, r: ["info", "--env", env_yaml(t, budget_clipping="no")],
        2,
        "'budget_clipping' must be true or false",
    ),
    (
        "yaml-target-bool",
        lambda t, r: ["info", "--env", env_yaml(t, target=True)],
        2,
        "target must be a number",
    ),
    (
        "yaml-round-0",
        lambda t, r: ["info", "--env", env_yaml(t, round_to=0)],
        2,
        "'round_to' must be a positive integer",
    ),
    ("yaml-round-neg", lambda t, r: ["info", "--env", env_yaml(t, round_to=-2)], 2, "'round_to'"),
    (
        "yaml-ignored-str",
        lambda t, r: ["info", "--env", env_yaml(t, ignored_layers="features.0")],
        2,
        "list of names",
    ),
    (
        "yaml-unknown-key",
        lambda t, r: ["info", "--env", env_yaml(t, foo=1)],
        2,
        "unknown preset key 'foo'",
    ),
    (
        "yaml-not-mapping",
        lambda t, r: ["info", "--env", write(t, "e.yaml", "- 1\n- 2\n")],
        2,
        "must be a mapping",
    ),
    (
        "yaml-invalid",
        lambda t, r: ["info", "--env", write(t, "e.yaml", "a: [\n")],
        2,
        "not valid YAML",
    ),
    ("yaml-min-keep-0", lambda t, r: ["info", "--env", env_yaml(t, min_keep=0)], 2, "0 < min_keep"),
    (
        "yaml-target-range",
        lambda t, r: ["info", "--env", env_yaml(t, target=[0.7, 0.3])],
        2,
        "low > high",
    ),
    (
        "yaml-importance",
        lambda t, r: ["info", "--env", env_yaml(t, importance="nope")],
        2,
        "unknown importance",
    ),
    (
        "yaml-features",
        lambda t, r: ["info", "--env", env_yaml(t, features=4)],
        2,
        "unknown features",
    ),
    (
        "yaml-probe-0",
        lambda t, r: ["info", "--env", env_yaml(t, probe_images=0)],
        2,
        "'probe_images'",
    ),
    ("yaml-val-size", lambda t, r: ["info", "--env", env_yaml(t, val_size=-1)], 2, "'val_size'"),
    # --- agent preset YAML (fail before training starts) ---
    (
        "agent-lr",
        lambda t, r: [
            "train",
            "--out",
            str(t / "runs"),
            "--agent",
            agent_yaml(t, learning_rate="fast"),
        ],
        2,
        "learning_rate",
    ),
    (
        "agent-net-arch",
        lambda t, r: [
            "train",
            "--out",
            str(t / "runs"),
            "--agent",
            agent_yaml(t, policy_kwargs={"net_arch": "big"}),
        ],
        2,
        "net_arch",
    ),
    (
        "agent-episodes-0",
        lambda t, r: [
            "train",
            "--out",
            str(t / "runs"),
            "--agent",
            agent_yaml(t, episodes_per_update=0),
        ],
        2,
        "episodes_per_update",
    ),
    (
        "agent-policy",
        lambda t, r: [
            "train",
            "--out",
            str(t / "runs"),
            "--agent",
            agent_yaml(t, policy="EvilPolicy"),
        ],
        2,
        "MlpPolicy",
    ),
    (
        "agent-algo",
        lambda t, r: ["train", "--out", str(t / "runs"), "--agent", agent_yaml(t, algo="sac")],
        2,
        "unknown algorithm",
    ),
    (
        "agent-unknown-key",
        lambda t, r: ["train", "--out", str(t / "runs"), "--agent", agent_yaml(t, foo=1)],
        2,
        "unknown key 'foo'",
    ),
    (
        "agent-kwargs-str",
        lambda t, r: [
            "train",
            "--out",
            str(t / "runs"),
            "--agent",
            agent_yaml(t, policy_kwargs="x"),
        ],
        2,
        "policy_kwargs",
    ),
    (
        "agent-zero-init",
        lambda t, r: [
            "train",
            "--out",
            str(t / "runs"),
            "--agent",
            agent_yaml(t, zero_init_action="yes"),
        ],
        2,
        "zero_init_action",
    ),
    # --- damaged policy files (apply) ---
    (
        "policy-evil-class",
        lambda t, r: [
            "apply",
            "--out",
            str(t / "o"),
            "--policy",
            policy_copy(t, r, lambda m: m["agent"]["hyperparams"].update(policy="EvilPolicy")),
        ],
        2,
        "MlpPolicy",
    ),
    (
        "policy-agent-str",
        lambda t, r: [
            "apply",
            "--out",
            str(t / "o"),
            "--policy",
            policy_copy(t, r, lambda m: m.update(agent="x")),
        ],
        2,
        "damaged",
    ),
    (
        "policy-net-arch",
        lambda t, r: [
            "apply",
            "--out",
            str(t / "o"),
            "--policy",
            policy_copy(
                t, r, lambda m: m["agent"]["hyperparams"].update(policy_kwargs={"net_arch": [7]})
            ),
        ],
        2,
        "cannot load policy weights",
    ),
    (
        "policy-version",
        lambda t, r: [
            "apply",
            "--out",
            str(t / "o"),
            "--policy",
            policy_copy(t, r, lambda m: m.update(feature_version=99)),
        ],
        2,
        "feature set v99",
    ),
    (
        "policy-json-garbage",
        lambda t, r: ["apply", "--out", str(t / "o"), "--policy", damaged(t, r, "policy.json")],
        2,
        "policy.json",
    ),
    (
        "policy-weights-garbage",
        lambda t, r: ["apply", "--out", str(t / "o"), "--policy", damaged(t, r, "policy.pt")],
        2,
        "cannot load policy weights",
    ),
]


@pytest.mark.parametrize(
    ("argv", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_gets_one_line_and_leaves_nothing(
    argv: Case,
    code: int,
    message: str,
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # default output folders land here
    args = argv(tmp_path, trained_run)
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    try:
        status = main(args)
    except SystemExit as exit_:  # argparse usage errors
        status = int(exit_.code or 0)
    err = capsys.readouterr().err.strip()
    assert status == code, err
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert message in lines[0], err
    after = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before, f"left behind: {sorted(map(str, after - before))}"


def test_the_table_is_large() -> None:
    assert len(CASES) >= 60


# --- the Python API: the same checks without the CLI ---


@pytest.mark.parametrize(
    "action",
    [np.array([0.1, 0.2, 0.3]), np.array([]), "high", None],
    ids=["3", "empty", "str", "none"],
)
def test_env_rejects_actions_that_are_not_one_number(
    digits_task: PruningTask, action: object
) -> None:
    env = PruningEnv(task=digits_task)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be (one|a finite) number"):
        env.step(action)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "settings", [{"adapt_episodes": -2}, {"finetune_epochs": -1}, {"finetune_lr": 0.0}]
)
def test_apply_settings_reject_negative_values(settings: dict[str, float]) -> None:
    with pytest.raises(RLPruneError):
        ApplySettings(**settings)  # type: ignore[arg-type]


class _Evil:
    """Pickles to a call of os.system: what a malicious params.pt would hold."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("touch pwned",))


def _latest(run: Path) -> Path:
    name = json.loads((run / "checkpoints" / "latest.json").read_text())["checkpoint"]
    return run / "checkpoints" / name


def _damage_csv_row(run: Path) -> None:
    lines = (run / "episodes.csv").read_text().splitlines()
    lines[3] = "3,not,a,number"
    (run / "episodes.csv").write_text("\n".join(lines) + "\n")


def _edit_config(run: Path, edit: Callable[[dict], None]) -> None:
    raw = yaml.safe_load((run / "config.yaml").read_text())
    edit(raw)
    (run / "config.yaml").write_text(yaml.safe_dump(raw))


DAMAGE: dict[str, Callable[[Path], object]] = {
    "checkpoint-state": lambda run: (_latest(run) / "state.json").write_text("[1, 2"),
    "checkpoint-best": lambda run: (_latest(run) / "best.json").write_text("nope"),
    "checkpoint-pointer": lambda run: (run / "checkpoints" / "latest.json").write_text("{"),
    "params-pickle": lambda run: __import__("torch").save(_Evil(), _latest(run) / "params.pt"),
    "params-garbage": lambda run: (_latest(run) / "params.pt").write_bytes(b"\x00junk"),
    "config-yaml": lambda run: (run / "config.yaml").write_text("env: [\n"),
    "config-net-arch": lambda run: _edit_config(
        run, lambda raw: raw["agent"]["hyperparams"]["policy_kwargs"].update(net_arch="big")
    ),
    "config-net-arch-size": lambda run: _edit_config(
        run, lambda raw: raw["agent"]["hyperparams"]["policy_kwargs"].update(net_arch=[7])
    ),
    "config-agent-missing": lambda run: _edit_config(run, lambda raw: raw.pop("agent")),
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_run_folder_gets_one_line_on_resume(
    damage: str,
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    DAMAGE[damage](run)
    status = main(["train", "--resume", str(run), "--episodes", "24"])
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error:"), err
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "damage",
    [lambda run: (run / "best.json").write_text("{"), _damage_csv_row],
    ids=["best-json", "episodes-row"],
)
def test_files_a_resume_rewrites_may_be_damaged(
    damage: Callable[[Path], object], trained_run: Path, tmp_path: Path
) -> None:
    """best.json comes back from the checkpoint and episodes.csv rows are not parsed on
    resume, so damage there does not stop a resume."""
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    damage(run)
    assert main(["train", "--resume", str(run), "--episodes", "24"]) == 0
    assert json.loads((run / "best.json").read_text())["accuracy"] > 0
    assert len((run / "episodes.csv").read_text().splitlines()) == 25


def test_run_script_turns_user_errors_into_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rlprune.errors import ConfigError, run_script

    def bad() -> int:
        raise ConfigError("unknown env preset 'nope';\n choose one of: a, b")

    monkeypatch.delenv("RLPRUNE_DEBUG", raising=False)
    assert run_script(bad) == 2
    assert capsys.readouterr().err == "error: unknown env preset 'nope'; choose one of: a, b\n"
    assert run_script(lambda: None) == 0 and run_script(lambda: 3) == 3
    monkeypatch.setenv("RLPRUNE_DEBUG", "1")
    with pytest.raises(ConfigError):
        run_script(bad)


@pytest.mark.parametrize(
    ("script", "args"),
    [("zero_shot.py", ["--envs", "nope"]), ("exhaustive.py", ["--env", "nope"])],
)
def test_scripts_report_a_bad_env_in_one_line(script: str, args: list[str]) -> None:
    import os
    import subprocess
    import sys

    path = Path(__file__).resolve().parent.parent / "experiments" / script
    env = {k: v for k, v in os.environ.items() if k != "RLPRUNE_DEBUG"}
    run = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]
    assert run.stderr.startswith("error: unknown env preset 'nope'")
