"""One policy across a family of networks and targets: the env, training, the CLI, apply."""

from __future__ import annotations

import csv
import json
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rlprune.cli import main
from rlprune.env.pruning_env import PruningEnv
from rlprune.errors import ConfigError, RunError
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.features import features_for
from rlprune.mdp.settings import EnvConfig
from rlprune.presets.loader import GENERAL_POLICY, load_env_config
from rlprune.presets.tasks import build_config_model, load_data, load_task
from rlprune.rl.agents import load_agent_config
from rlprune.rl.family import (
    FamilyEnv,
    FamilySettings,
    _member_configs,
    resume_family,
    target_grid,
    train_family,
)
from rlprune.rl.policy import load_policy, save_ensemble
from rlprune.rl.transfer import family_distance

pytestmark = [pytest.mark.filterwarnings("ignore:.*near chance")]

VARIANT = """\
model: vgg
model_kwargs: {cfg: [12, M, 24, 24]}
dataset: digits
target: 0.5
calibration_batches: 2
val_size: 200
seed: 0
"""


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second digits network (an untrained plain net, its random weights saved so that
    every load is the same network: its accuracy is near chance, which the reward relative
    to the prior does not mind)."""
    folder = tmp_path_factory.mktemp("presets")
    path = folder / "digits-plain.yaml"
    path.write_text(VARIANT)
    config = load_env_config(str(path))
    torch.manual_seed(0)
    model = build_config_model(config.task, load_data(config.task))
    torch.save(model.state_dict(), folder / "digits-plain.pt")
    path.write_text(VARIANT + "weights: digits-plain.pt\n")
    return path


@pytest.fixture(scope="module")
def family(variant: Path) -> tuple[list, list[PruningTask]]:
    agent = load_agent_config("ppo", "digits-cnn")
    configs = [load_env_config("digits-cnn"), load_env_config(str(variant))]
    members = _member_configs(configs, agent, target_grid(0.4, 0.6))
    return configs, [load_task(c) for c in members]


def test_family_resume_imports_dataset_code_only_if_unchanged(
    variant: Path, tmp_path: Path
) -> None:
    from rlprune.errors import DatasetError

    examples = Path(__file__).resolve().parent.parent / "examples"
    code = tmp_path / "mydata.py"
    code.write_text((examples / "tensor_dataset.py").read_text())
    spec = f"{code}:standardised"
    configs = [load_env_config(e, {"dataset": spec}) for e in ("digits-cnn", str(variant))]
    agent = load_agent_config("ppo", "digits-cnn")
    settings = FamilySettings(episodes=8, targets=(0.5,), save_every=8)
    train_family(configs, agent, settings, tmp_path / "run")
    assert resume_family(tmp_path / "run", episodes=10).episodes == 10  # same file: resumes
    code.write_text(code.read_text() + "\n# changed\n")
    with pytest.raises(DatasetError, match="whose file changed since training.*--dataset"):
        resume_family(tmp_path / "run", episodes=12)
    with pytest.raises(RunError, match="conflicts with the family run"):
        resume_family(tmp_path / "run", episodes=12, trust_dataset="digits")
    assert resume_family(tmp_path / "run", episodes=12, trust_dataset=spec).episodes == 12
    code.write_text(code.read_text() + "\n# changed again\n")  # the CLI's --dataset trusts it
    assert main(["train", "--resume", str(tmp_path / "run"), "--episodes", "14"]) == 2
    resumed = ["train", "--resume", str(tmp_path / "run"), "--episodes", "14", "--dataset", spec]
    assert main(resumed) == 0


def test_target_grid() -> None:
    assert target_grid(0.3, 0.7) == (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
    assert target_grid(0.5, 0.5) == (0.5,)
    with pytest.raises(Exception, match="low <= high"):
        target_grid(0.7, 0.3)


def test_family_env_draws_members_and_targets_and_rewards_over_the_prior(
    family: tuple[list, list[PruningTask]],
) -> None:
    configs, tasks = family
    agent = load_agent_config("ppo", "digits-cnn")
    members = _member_configs(configs, agent, (0.4, 0.5, 0.6))
    envs = [PruningEnv(task=t, config=c) for t, c in zip(tasks, members, strict=True)]
    env = FamilyEnv(envs, (0.4, 0.5, 0.6))
    env.reset(seed=0)
    seen = set()
    for _ in range(30):
        _, info = env.reset()
        seen.add((info["member"], round(info["target"], 6)))
        assert info["target"] in (0.4, 0.5, 0.6)
    assert {m for m, _ in seen} == {c.name for c in configs}
    assert len({t for _, t in seen}) == 3

    def play(action: float, member: int, target: float) -> tuple[float, dict]:
        env.reset(options={"member": member, "target": target})
        while True:
            _, reward, done, _, info = env.step(np.array([action], dtype=np.float32))
            if done:
                return reward, info

    # action 0 plays the prior: nothing gained over it
    reward, info = play(0.0, 0, 0.5)
    assert reward == pytest.approx(0.0, abs=1e-9)
    assert info["member"] == "digits-cnn"
    assert info["prior_reward"] == pytest.approx(info["accuracy"])
    # cutting every unit to its minimum keeps less of the budget: it can only lose accuracy
    # relative to the prior, and the reward says by how much
    reward, info = play(-1.0, 0, 0.5)
    assert reward == pytest.approx(info["accuracy"] - info["prior_reward"])
    assert info["macs_ratio"] <= 0.5 + 1e-6


def test_train_family_saves_a_policy_with_its_family_and_ranges(
    family: tuple[list, list[PruningTask]], tmp_path: Path
) -> None:
    configs, tasks = family
    agent = load_agent_config("ppo", "digits-cnn")
    result = train_family(
        configs,
        agent,
        FamilySettings(episodes=24, targets=target_grid(0.4, 0.6), save_every=8),
        tmp_path / "run",
        command="rlprune train --env digits-cnn,digits-plain",
        tasks=tasks,
    )
    assert result.episodes == 24 and not result.interrupted
    rows = list(csv.DictReader((tmp_path / "run" / "episodes.csv").open()))
    assert len(rows) == 24
    assert {r["member"] for r in rows} == {"digits-cnn", "digits-plain"}
    assert {float(r["target"]) for r in rows} <= set(target_grid(0.4, 0.6))
    for r in rows:
        assert float(r["reward"]) == pytest.approx(float(r["accuracy"]) - float(r["prior_reward"]))
        assert float(r["macs_ratio"]) <= float(r["target"]) + 1e-6
    policy = load_policy(tmp_path / "run" / "policy")
    meta = policy.metadata
    assert meta["family"] == ["digits-cnn", "digits-plain"]
    assert meta["targets"] == list(target_grid(0.4, 0.6))
    assert meta["training_episodes"] == 24
    assert meta["command"].startswith("rlprune train")
    assert "torch" in meta["versions"]
    ranges = meta["feature_ranges"]
    assert set(ranges) == set(features_for(2))
    assert ranges["target"][0] >= 0.4 - 1e-9 and ranges["target"][1] <= 0.6 + 1e-9
    assert all(lo <= hi for lo, hi in ranges.values())


def test_a_killed_family_run_resumes_exactly(
    family: tuple[list, list[PruningTask]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configs, tasks = family
    agent = load_agent_config("ppo", "digits-cnn")
    settings = FamilySettings(episodes=24, targets=target_grid(0.4, 0.6), save_every=8)
    whole = train_family(configs, agent, settings, tmp_path / "whole", tasks=tasks)
    assert whole.episodes == 24 and not whole.interrupted

    def kill(episodes: int, row: dict) -> None:
        if episodes == 13:  # mid-rollout: the checkpoint at episode 8 is the last one
            raise KeyboardInterrupt

    killed = train_family(configs, agent, settings, tmp_path / "killed", on_episode=kill)
    assert killed.interrupted and killed.episodes == 13
    latest = json.loads((tmp_path / "killed" / "checkpoints" / "latest.json").read_text())
    assert latest["episodes"] == 8
    resumed = resume_family(tmp_path / "killed")
    assert resumed.episodes == 24 and not resumed.interrupted

    def rows(run: str) -> list[tuple]:
        with (tmp_path / run / "episodes.csv").open() as handle:
            return [
                (r["episode"], r["member"], r["target"], r["accuracy"], r["reward"])
                for r in csv.DictReader(handle)
            ]

    assert rows("killed") == rows("whole")  # episodes 9-13 ran again, identically
    a = load_policy(tmp_path / "whole" / "policy")
    b = load_policy(tmp_path / "killed" / "policy")
    for key, value in a.network.state_dict().items():
        assert torch.equal(value, b.network.state_dict()[key]), key
    assert b.metadata["training_episodes"] == 24
    # the CLI routes --resume of a family folder here, and refuses flags that change it
    code = main(["train", "--resume", str(tmp_path / "killed"), "--env", "digits-cnn"])
    assert code != 0
    err = capsys.readouterr().err
    assert "--env cannot change a resumed family run" in err and "Traceback" not in err


def test_family_distance_names_features_outside_the_training_ranges() -> None:
    names = features_for(2)
    meta = {"feature_version": 2, "feature_ranges": {n: [0.0, 0.5] for n in names}}
    inside = np.full((4, len(names)), 0.25)
    assert family_distance(meta, inside) == []
    outside = inside.copy()
    outside[1, names.index("probe_drop_25")] = 0.9
    outside[2, names.index("probe_drop_25")] = 0.7
    outside[3, names.index("kernel")] = 0.6
    report = family_distance(meta, outside)
    assert report[0] == ("probe_drop_25", 2, pytest.approx(0.4))
    assert report[1] == ("kernel", 1, pytest.approx(0.1))
    assert family_distance({"feature_version": 2}, outside) == []  # no ranges recorded


@pytest.mark.slow
def test_cli_trains_a_family_and_apply_reports_the_distance(
    variant: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    code = main(
        [
            "train",
            "--env",
            f"digits-cnn,{variant}",
            "--target",
            "0.4:0.6",
            "--episodes",
            "16",
            "--out",
            str(runs),
        ]
    )
    assert code == 0
    (run,) = runs.iterdir()
    assert run.name.startswith("family__ppo__0__")
    out = capsys.readouterr().out
    assert "digits-cnn: last quarter's episodes" in out and "16 episodes" in out
    code = main(
        ["apply", "--policy", str(run), "--env", "digits-cnn", "--target", "0.5"]
        + ["--out", str(tmp_path / "apply")]
    )
    assert code == 0
    out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert f"policy: {run / 'policy'} (trained on digits-cnn, digits-plain)" in out
    report = json.loads((tmp_path / "apply" / "report.json").read_text())
    assert report["policy_family"] == ["digits-cnn", "digits-plain"]
    assert report["policy_ranges"] is True
    # digits-cnn was in the family: its observations lie inside, but for targets 0.5 only
    assert all(o["feature"] != "kernel" for o in report["outside_family"])


def test_family_flags_that_name_one_network_are_errors(
    variant: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["train", "--env", f"digits-cnn,{variant}", "--model", "vgg", "--out", str(tmp_path)]
    )
    assert code != 0
    err = capsys.readouterr().err
    assert "--model names one network" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--env", "digits-cnn", "--target", "0.3:x"])
    assert exit_info.value.code == 2
    assert "expected a fraction such as 0.5 or a range" in capsys.readouterr().err


def test_cli_family_targets_listed_with_repeats_are_drawn_from_as_given(
    variant: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    argv = ["train", "--env", f"digits-cnn,{variant}", "--targets", "0.4,0.4,0.6"]
    assert main([*argv, "--episodes", "8", "--out", str(runs)]) == 0
    (run,) = runs.iterdir()
    assert json.loads((run / "family.json").read_text())["train"]["targets"] == [0.4, 0.4, 0.6]
    rows = list(csv.DictReader((run / "episodes.csv").open()))
    assert len(rows) == 8 and {float(r["target"]) for r in rows} <= {0.4, 0.6}
    assert load_policy(run / "policy").metadata["targets"] == [0.4, 0.4, 0.6]
    capsys.readouterr()
    # a list and a range at once, or a list for one network, is a one-line error
    assert main([*argv, "--target", "0.3:0.7", "--out", str(tmp_path / "x")]) != 0
    assert "--targets lists a family's targets and --target gives them" in capsys.readouterr().err
    assert main(["train", "--env", "digits-cnn", "--targets", "0.3,0.5"]) != 0
    err = capsys.readouterr().err
    assert "one network takes --target" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main([*argv[:-1], "0.3,1.5"])
    assert exit_info.value.code == 2
    assert "expected fractions in (0, 1]" in capsys.readouterr().err


def test_the_bundled_general_policy_is_a_family_policy() -> None:
    policy = load_policy(GENERAL_POLICY)
    meta = policy.metadata
    assert meta["feature_version"] == 2 and meta["action_mode"] == "residual"
    assert len(meta["family"]) >= 3
    for held_out in ("fmnist-vgg", "fmnist-mobilenetv2"):
        assert held_out not in meta["family"]
    assert meta["targets"][0] <= 0.3 and meta["targets"][-1] >= 0.7
    assert meta["feature_ranges"] and meta["command"].startswith("rlprune train")
    # an ensemble of family runs, its off-family strength chosen on networks outside both
    # its family and the transfer table
    assert len(policy.networks) == meta["members"] == len(meta["member_commands"]) >= 2
    assert all(c.startswith("rlprune train --env") for c in meta["member_commands"])
    selection = meta["scale_selection"]
    assert policy.outside_scale == max(
        (float(s) for s in selection["gain_over_prior"]),
        key=lambda s: (selection["gain_over_prior"][f"{s:g}"], -s),
    )
    assert not set(selection["select_on"]) & {*meta["family"], "fmnist-vgg", "fmnist-mobilenetv2"}
    size = sum(p.stat().st_size for p in GENERAL_POLICY.iterdir())
    assert size < 400_000


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_apply_without_policy_uses_the_general_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "apply"
    assert main(["apply", "--env", "digits-cnn", "--target", "0.5", "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"policy: {GENERAL_POLICY}" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["policy"] == str(GENERAL_POLICY)
    assert report["candidate"]["macs_ratio"] <= 0.5 + 1e-6
    # digits (8x8 images, another dataset) lies outside the Fashion-MNIST family somewhere
    assert report["outside_family"]
    assert "outside the policy's training ranges" in printed
    assert "consider --refine 20" in printed  # the way out, until it has been taken
    # so it played the policy's corrections damped to its off-family strength, not in full
    # (--trust family, the default)
    assert report["deferred"] is True and report["prior"] == "sensitivity"
    strength = load_policy(GENERAL_POLICY).outside_scale
    assert 0 < strength < 1 and report["correction_scale"] == strength
    played = f"its corrections to the sensitivity prior at {strength:.0%} strength"
    assert f"played {played} (--trust always plays its corrections in full)" in printed
    assert f"played {played} (outside the family)" in (out / "report.md").read_text()
    refined = tmp_path / "refined"
    args = ["apply", "--env", "digits-cnn", "--target", "0.5", "--refine", "2"]
    assert main([*args, "--out", str(refined)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "refined with 2 evaluations" in printed and "consider --refine" not in printed


@pytest.mark.slow
def test_transfer_suite_writes_verdicts_for_a_held_out_network(
    family: tuple[list, list[PruningTask]], tmp_path: Path
) -> None:
    import subprocess
    import sys

    configs, tasks = family
    train_family(
        configs,
        load_agent_config("ppo", "digits-cnn"),
        FamilySettings(episodes=8, targets=target_grid(0.4, 0.6)),
        tmp_path / "run",
        command="rlprune train --env digits-cnn,digits-plain",
        tasks=tasks,
    )
    # a single-target policy: the same family at 0.5 alone
    train_family(
        configs,
        load_agent_config("ppo", "digits-cnn"),
        FamilySettings(episodes=8, targets=(0.5,)),
        tmp_path / "single",
        command="rlprune train --env digits-cnn,digits-plain --target 0.5",
        tasks=tasks,
    )
    page = tmp_path / "transfer.md"
    script = Path(__file__).resolve().parent.parent / "experiments" / "transfer_suite.py"
    args = ["--policy", str(tmp_path / "run" / "policy"), "--envs", "digits-cnn"]
    args += ["--targets", "0.4,0.5", "--evals", "12", "--adapt-episodes", "3", "--seeds", "1"]
    args += ["--finetune-images", "0", "--out", str(tmp_path / "out"), "--data"]
    args += [str(tmp_path / "data"), "--markdown", str(page), "--no-page"]
    # two single-target policies (here the same one twice): each plays once, as seeds 0 and 1
    args += ["--single-target", f"0.5={tmp_path / 'single' / 'policy'}"] * 2
    # another training seed of the budget-conditioned policy (here the single-target one)
    args += ["--budget-policy", str(tmp_path / "single" / "policy")]
    # the single-target policies bundled (here the same one twice: it plays as that one)
    single = load_policy(tmp_path / "single" / "policy")
    save_ensemble([single, single], tmp_path / "ensemble", {"outside_scale": 0.5})
    args += ["--single-ensemble", f"0.5={tmp_path / 'ensemble'}"]
    run = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-2000:]
    text = page.read_text()
    assert "policy zero-shot" in text and "digits-cnn, digits-plain" in text
    assert "- **digits-cnn @ 0.4**: zero-shot vs uniform" in text
    verdict = next(line for line in text.splitlines() if line.startswith("- **digits-cnn @ 0.5"))
    for part in ("sensitivity", "adapted vs random@12", "adapted vs tpe@12", "refined vs tpe@12"):
        assert part in verdict
    # the single-target comparison is between both policies' own corrections
    assert "budget-conditioned vs single-target" in verdict
    assert "| transfer-always |" in text and "--trust family` plays it" in text
    assert "| transfer-refine |" in text
    assert "### digits-cnn (held out), MACs target 0.5" in text
    assert (tmp_path / "data" / "transfer-digits-cnn-t0.5.json.gz").is_file()
    assert (tmp_path / "data" / "transfer-digits-cnn-t0.5-single-1.json.gz").is_file()
    assert "single-target 2" in text  # one row, its seeds the two policies
    assert "2 such policies per target" in text
    # the budget-conditioned row: the policy's own corrections and the other seed's, once each
    assert (tmp_path / "data" / "transfer-digits-cnn-t0.4-always-1.json.gz").is_file()
    assert "budget-conditioned 2" in text and "1 more policy trained" in text
    assert "`--budget-policy PATH` once per other training seed of the policy (1)" in text
    row = {
        line.split("|")[1].strip(): line.split("|")[3].strip()
        for line in text.split("MACs target 0.5")[1].splitlines()
        if line.startswith("| ")
    }
    # its mean is the two policies' own corrections, so it lies between them (or equals both)
    own, other = (
        float(row[m].split(" ")[0].strip("*%")) for m in ("transfer-always", "single-target")
    )
    mean = float(row["budget-conditioned"].split(" ")[0].strip("*%"))
    assert abs(mean - (own + other) / 2) < 0.011
    # the ensemble of two copies plays as its member does, in full; both of its rows are kept
    ensemble, single_row = (
        float(row[m].split(" ")[0].strip("*%")) for m in ("single-target-ensemble", "single-target")
    )
    assert ensemble == single_row
    assert "| single-target-ensemble-applied |" in text
    for trust in ("always", "family"):
        kept = tmp_path / "data" / f"transfer-digits-cnn-t0.5-single-ensemble-{trust}.json.gz"
        assert kept.is_file()
    assert "general vs single-target ensemble, in full" in verdict and "as applied" in verdict
    assert "`--single-ensemble T=PATH` once per single-target ensemble (1)" in text
    assert "kept strength 0.5" in text
    # the page comes back from the kept data alone: no benchmark folder, no policy folder
    assert "Regenerate with `python experiments/transfer_suite.py --page-only`" in text
    assert (tmp_path / "data" / "transfer.json").is_file()
    for folder in ("out", "ensemble", "single"):
        shutil.rmtree(tmp_path / folder)
    again = tmp_path / "again.md"
    rebuild = [sys.executable, str(script), "--page-only", "--data", str(tmp_path / "data")]
    rebuild += ["--out", str(tmp_path / "out"), "--markdown", str(again), "--no-page"]
    rebuilt = subprocess.run(rebuild, capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert again.read_text() == text
    # it takes the run's settings from the record, not from flags it would ignore
    refused = subprocess.run([*rebuild, "--evals", "5"], capture_output=True, text=True)
    assert refused.returncode == 2 and "--page-only rebuilds the page" in refused.stderr
    assert "drop --evals" in refused.stderr


def test_transfer_suite_refuses_a_missing_policy_before_any_work(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "experiments" / "transfer_suite.py"
    args = ["--envs", "digits-cnn", "--out", str(tmp_path / "out"), "--no-page"]
    args += ["--markdown", str(tmp_path / "t.md"), "--budget-policy", str(tmp_path / "gone")]
    run = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 2
    assert f"no policy at {tmp_path / 'gone'}" in run.stderr and "Traceback" not in run.stderr
    for flag, value in (("--single-target", "0.5"), ("--single-ensemble", "abc=runs/x")):
        bad = subprocess.run(
            [sys.executable, str(script), *args[:-2], flag, value],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert f"argument {flag}: expected T=PATH" in bad.stderr and repr(value) in bad.stderr
    assert not (tmp_path / "out").exists()  # failed before the first benchmark


def test_zero_shot_script_prints_one_line_per_env_and_target() -> None:
    import re
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "experiments" / "zero_shot.py"
    run = subprocess.run(
        [sys.executable, str(script), "--envs", "digits-cnn", "--targets", "0.4,0.6"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if "zero-shot" in line]
    pattern = r"digits-cnn @ (0\.\d): zero-shot val ([\d.]+) % at MACs ([\d.]+) \(cost ([\d.]+)"
    found = [re.match(pattern, line) for line in lines]
    assert all(found) and [m.group(1) for m in found if m] == ["0.4", "0.6"]
    assert all("its sensitivity prior" in line for line in lines)  # the default is residual
    for m in found:
        assert m is not None
        assert float(m.group(3)) <= float(m.group(1)) + 1e-6  # the budget holds
        assert float(m.group(4)) > 1  # probes + the one evaluation, charged


class _ConstantPolicy:
    """A stand-in for a loaded family policy: one action everywhere, given training ranges."""

    def __init__(
        self,
        action: float,
        ranges: tuple[float, float],
        features: int = 2,
        outside_scale: float = 0.0,
    ) -> None:
        self.action = action
        self.outside_scale = outside_scale
        self.metadata = {
            "feature_version": features,
            "feature_ranges": {name: list(ranges) for name in features_for(features)},
        }

    def predict(self, observation: np.ndarray, deterministic: bool = True) -> tuple:
        return np.array([self.action], dtype=np.float32), None


@pytest.fixture(scope="module")
def residual_env() -> PruningEnv:
    return PruningEnv(preset="digits-cnn", agent="ppo", target=0.5)


def test_zero_shot_plays_the_prior_outside_the_family(residual_env: PruningEnv) -> None:
    from rlprune.env.rollout import PriorPlayer, rollout
    from rlprune.rl.transfer import zero_shot

    prior = rollout(PriorPlayer(), residual_env).channels
    cutting = _ConstantPolicy(-0.8, (0.0, 1.0))  # every observation inside: trusted
    inside = zero_shot(cutting, residual_env)  # type: ignore[arg-type]
    assert not inside.deferred and inside.outside == []
    assert not np.array_equal(inside.candidate.channels, prior)  # its corrections played
    narrow = _ConstantPolicy(-0.8, (0.0, 0.0))  # nothing like this network seen in training
    deferred = zero_shot(narrow, residual_env)  # type: ignore[arg-type]
    assert deferred.deferred and deferred.outside
    assert np.array_equal(deferred.candidate.channels, prior)
    trusted = zero_shot(narrow, residual_env, trust="always")  # type: ignore[arg-type]
    assert not trusted.deferred and trusted.outside
    assert np.array_equal(trusted.candidate.channels, inside.candidate.channels)
    with pytest.raises(ConfigError, match="unknown trust 'sometimes'"):
        zero_shot(narrow, residual_env, trust="sometimes")  # type: ignore[arg-type]


def test_zero_shot_outside_the_family_damps_corrections_to_the_policys_scale(
    residual_env: PruningEnv,
) -> None:
    from rlprune.env.rollout import Damped, PriorPlayer, rollout
    from rlprune.rl.transfer import zero_shot

    prior = rollout(PriorPlayer(), residual_env).channels
    full = rollout(_ConstantPolicy(-0.8, (0.0, 1.0)), residual_env).channels
    damped = _ConstantPolicy(-0.8, (0.0, 0.0), outside_scale=0.5)  # outside, played at half
    shot = zero_shot(damped, residual_env)  # type: ignore[arg-type]
    assert shot.deferred and shot.scale == 0.5
    half = rollout(Damped(_ConstantPolicy(-0.4, (0.0, 1.0)), 1.0), residual_env).channels
    assert np.array_equal(shot.candidate.channels, half)  # -0.8 at half strength is -0.4
    assert not np.array_equal(half, prior) and not np.array_equal(half, full)
    always = zero_shot(damped, residual_env, trust="always")  # type: ignore[arg-type]
    assert always.scale == 1.0 and np.array_equal(always.candidate.channels, full)


def _perturbed_copy(folder: Path, noise: float, **metadata: object) -> Path:
    """The bundled general policy's first member, its weights moved by ``noise`` (seeded),
    ``metadata`` merged in: a single policy that plays differently from the others."""
    from rlprune.rl.policy import save_policy

    policy = load_policy(GENERAL_POLICY)
    torch.manual_seed(1)
    with torch.no_grad():
        for tensor in policy.network.parameters():
            tensor.add_(noise * torch.randn_like(tensor))
    skip = {"format", "feature_version", "features", "rlprune_version", "outside_scale"}
    skip |= {"scale_selection", "member_commands"}  # what the bundle added
    meta = {k: v for k, v in policy.metadata.items() if k not in skip} | metadata
    return save_policy(policy.network, folder, meta, policy.metadata["feature_version"])


def test_an_ensemble_plays_the_mean_of_its_members_and_keeps_their_ranges(
    tmp_path: Path,
) -> None:
    ranges = dict(load_policy(GENERAL_POLICY).metadata["feature_ranges"])
    wider = {**ranges, "target": [0.1, 0.9]}
    first = _perturbed_copy(tmp_path / "first", 0.0)
    other = _perturbed_copy(tmp_path / "other", 0.3, feature_ranges=wider)
    members = [load_policy(first), load_policy(other)]
    out = save_ensemble(members, tmp_path / "ensemble", {"outside_scale": 0.25})
    ensemble = load_policy(out)
    assert len(ensemble.networks) == 2 and ensemble.metadata["members"] == 2
    assert ensemble.outside_scale == 0.25 and members[0].outside_scale == 0.0
    assert ensemble.metadata["feature_ranges"]["target"] == [0.1, 0.9]  # the union
    assert ensemble.metadata["training_episodes"] == 2 * members[0].metadata["training_episodes"]
    for loaded, member in zip(ensemble.networks, members, strict=True):
        for name, tensor in member.network.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor)
    observations = np.random.default_rng(0).uniform(0, 1, (5, len(features_for(2))))
    for obs in observations.astype(np.float32):
        actions = [m.predict(obs)[0] for m in members]
        assert not np.allclose(actions[0], actions[1])  # the members disagree
        assert np.allclose(ensemble.predict(obs)[0], np.mean(actions, axis=0), atol=1e-6)
    unlike = load_policy(_perturbed_copy(tmp_path / "unlike", 0.1, prior="magnitude"))
    with pytest.raises(ConfigError, match="differs from .* in prior"):
        save_ensemble([members[0], unlike], tmp_path / "bad", {})
    with pytest.raises(ConfigError, match="is an ensemble already"):
        save_ensemble([ensemble, members[0]], tmp_path / "bad", {})
    with pytest.raises(ConfigError, match="at least two"):
        save_ensemble(members[:1], tmp_path / "bad", {})


def test_bundle_policy_picks_the_strength_that_plays_the_selection_networks_best(
    tmp_path: Path,
) -> None:
    import re
    import subprocess
    import sys

    first = _perturbed_copy(tmp_path / "first", 0.0)
    other = _perturbed_copy(tmp_path / "other", 0.3)
    script = Path(__file__).resolve().parent.parent / "experiments" / "bundle_policy.py"
    out = tmp_path / "bundle"
    command = [sys.executable, str(script), "--members", str(first), str(other)]
    command += ["--select-on", "digits-cnn", "--targets", "0.4,0.6", "--scales", "0,0.5,1"]
    done = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pattern = r".* scale ([\d.]+): select-prior ([-+][\d.]+) \| (.*)"
    found = [m for m in map(re.match, [pattern] * 99, done.stdout.splitlines()) if m]
    assert [m.group(1) for m in found] == ["0", "0.5", "1"]
    assert float(found[0].group(2)) == 0.0  # strength 0 is the prior itself
    for m in found:
        assert len(re.findall(r"digits-cnn@0\.[46] [\d.]+", m.group(3))) == 2
    scores = {float(m.group(1)): float(m.group(2)) for m in found}
    best = max(scores, key=lambda s: (scores[s], -s))
    bundle = load_policy(out)
    assert bundle.outside_scale == pytest.approx(best)
    assert f"off-family strength: {best:g}; ensemble of 2" in done.stdout
    selection = bundle.metadata["scale_selection"]
    assert selection["select_on"] == ["digits-cnn"] and selection["targets"] == [0.4, 0.6]
    assert selection["gain_over_prior"] == pytest.approx(
        {f"{s:g}": v for s, v in scores.items()}, abs=0.01
    )
    bad = subprocess.run(
        [*command[:-1], "0,1.5", "--out", str(tmp_path / "no")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--scales" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "no").exists()
    # interrupted after its first strength: a valid bundle that keeps the score it measured
    cut = tmp_path / "cut"
    many = ",".join(f"{s / 10:g}" for s in range(11))  # work left when the signal lands
    running = subprocess.Popen(
        [*command[:-1], many, "--out", str(cut)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C reaches it even where the tests run as a background job (`make test &`),
        # whose children inherit SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert running.stdout is not None
    first_line = next(line for line in running.stdout if " scale 0:" in line)
    running.send_signal(signal.SIGINT)
    assert running.wait(timeout=120) != 0
    kept = load_policy(cut)
    assert kept.outside_scale == 0 and kept.metadata["scale_selection"]["unfinished"] is True
    assert kept.metadata["scale_selection"]["gain_over_prior"]["0"] == 0.0
    assert "scale 0: select-prior +0.00" in first_line
    assert "unfinished" not in selection  # the finished run's


def test_zero_shot_never_defers_an_absolute_action_policy() -> None:
    from rlprune.rl.transfer import zero_shot

    env = PruningEnv(preset="digits-cnn", target=0.5)  # absolute actions: 0 is no prior
    shot = zero_shot(_ConstantPolicy(0.0, (0.0, 0.0), features=1), env)  # type: ignore[arg-type]
    assert shot.outside and not shot.deferred


def test_a_kept_benchmark_from_before_trust_resumes_as_it_ran(tmp_path: Path) -> None:
    from rlprune.search.benchmark import BenchmarkSettings, manifest_settings, prepare_out_dir

    env = json.loads(json.dumps(EnvConfig().to_dict(), default=list))
    old = {"env": env, "settings": {"methods": ["transfer"], "evals": 5}}
    (tmp_path / "benchmark.json").write_text(json.dumps(old))
    before = {"env": env, "settings": {"methods": ["transfer"], "evals": 5, "trust": "always"}}
    prepare_out_dir(tmp_path, before, overwrite=False, resume=True)  # what it ran: resumes
    now = {"env": env, "settings": {"methods": ["transfer"], "evals": 5, "trust": "family"}}
    with pytest.raises(RunError, match="other settings"):
        prepare_out_dir(tmp_path, now, overwrite=False, resume=True)
    # trust is recorded only where a transfer method plays it: other benchmarks resume
    assert "trust" not in manifest_settings(BenchmarkSettings(methods=("random",), evals=5))
    recorded = manifest_settings(BenchmarkSettings(methods=("transfer",), evals=5))
    assert recorded["trust"] == "family"


def test_refine_width_script_prints_each_width_and_fidelity_with_its_seeds_and_mean() -> None:
    import re
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "experiments" / "refine_width.py"
    run = subprocess.run(
        [sys.executable, str(script), "--envs", "digits-cnn", "--widths", "0.1,0.3"]
        + ["--fidelities", "1,0.25", "--evals", "6", "--seeds", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    pattern = (
        r"digits-cnn @ 0.5, width (0\.\d), fidelity ([\d.]+): zero-shot ([\d.]+) %, "
        r"refined \(6 evaluations\) ([\d.]+), ([\d.]+) %, mean ([\d.]+) %"
    )
    found = [re.match(pattern, line) for line in run.stdout.splitlines()]
    assert [(m.group(1), m.group(2)) for m in found if m] == [
        ("0.1", "1.0"),
        ("0.1", "0.25"),
        ("0.3", "1.0"),
        ("0.3", "0.25"),
    ]
    for m in found:
        assert m is not None
        zero, first, second, mean = (float(m.group(i)) for i in range(3, 7))
        assert first >= zero and second >= zero
        assert mean == pytest.approx((first + second) / 2, abs=0.01)
    bad = subprocess.run(
        [sys.executable, str(script), "--envs", "digits-cnn", "--fidelities", "abc"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--fidelities" in bad.stderr and "Traceback" not in bad.stderr


def test_select_checkpoint_scores_every_checkpoint_and_exports_the_best(
    variant: Path, tmp_path: Path
) -> None:
    import re
    import subprocess
    import sys

    runs = tmp_path / "runs"
    argv = ["train", "--env", f"digits-cnn,{variant}", "--target", "0.4:0.6", "--episodes", "40"]
    assert main([*argv, "--checkpoint-every", "4", "--out", str(runs)]) == 0
    (run,) = runs.iterdir()
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("ep*"))
    assert len(checkpoints) >= 3
    script = Path(__file__).resolve().parent.parent / "experiments" / "select_checkpoint.py"
    out = tmp_path / "picked"
    command = [sys.executable, str(script), "--runs", str(run), "--select-on", "digits-cnn"]
    command += ["--report", str(variant), "--targets", "0.4,0.6"]
    results = tmp_path / "scores.jsonl"
    done = subprocess.run(
        [*command, "--export", str(out), "--out", str(results)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pattern = r".* (ep\d+): select-prior ([-+][\d.]+) report-prior ([-+][\d.]+) \| (.*)"
    found = [m for m in map(re.match, [pattern] * 99, done.stdout.splitlines()) if m]
    assert [m.group(1) for m in found] == checkpoints
    for m in found:  # each checkpoint played both networks at both targets
        assert len(re.findall(r"@0\.[46] [\d.]+", m.group(4))) == 4
    best = max(found, key=lambda m: float(m.group(2))).group(1)
    assert f"pick {run}: {best} " in done.stdout
    assert f"spearman(select, report) over {len(checkpoints)} checkpoints" in done.stdout
    exported = load_policy(out)
    assert exported.metadata["selected"]["checkpoint"] == best
    assert exported.metadata["family"] == load_policy(run / "policy").metadata["family"]
    params = torch.load(run / "checkpoints" / best / "params.pt", weights_only=True)["policy"]
    for name, tensor in exported.network.state_dict().items():
        assert torch.equal(tensor, params[name])
    # --out kept one line per checkpoint; a rerun reads them back instead of playing again:
    # a score edited in the file decides the pick
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(records) == len(checkpoints)
    worst = min(found, key=lambda m: float(m.group(2))).group(1)
    for record in records:
        if json.loads(record["key"])[1] == worst:
            record["select"] = 99.0
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    again = subprocess.run(
        [*command, "--out", str(results)], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"pick {run}: {worst} (select-prior +99.00" in again.stdout
    assert len(results.read_text().splitlines()) == len(checkpoints)  # nothing replayed
    # --episodes keeps the checkpoints taken within LOW:HIGH (read back from --out too)
    (first, second, *_) = checkpoints
    window = f"{int(first[2:])}:{int(second[2:])}"
    kept = subprocess.run(
        [*command, "--out", str(results), "--episodes", window],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert kept.returncode == 0, kept.stderr[-2000:]
    assert re.findall(r" (ep\d+): select-prior", kept.stdout) == [first, second]
    # a folder without checkpoints is a one-line error
    bad = subprocess.run(
        [sys.executable, str(script), "--runs", str(tmp_path), "--select-on", "digits-cnn"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "has no checkpoints/" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_train_general_policy_select_on_exports_the_checkpoint_that_plays_best(
    variant: Path, tmp_path: Path
) -> None:
    import re
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "experiments" / "train_general_policy.py"
    command = [sys.executable, str(script), "--family", f"digits-cnn,{variant}"]
    command += ["--target", "0.4:0.6", "--episodes", "24", "--checkpoint-every", "8"]
    command += ["--select-on", str(variant), "--select-targets", "0.4,0.6"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path)], capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = [p for p in tmp_path.glob("run-*/family__*") if p.is_dir()]
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("ep*"))
    assert len(checkpoints) >= 2
    lines = re.findall(r" (ep\d+): select-prior ([-+][\d.]+) \|", done.stdout)
    assert [name for name, _ in lines] == checkpoints
    best = max(lines, key=lambda m: float(m[1]))[0]
    assert f"pick: {best} " in done.stdout
    assert len((run / "selection.jsonl").read_text().splitlines()) == len(checkpoints)
    # a run whose one target would not be scored is refused before it trains
    refused = [sys.executable, str(script), "--target", "0.45", "--select-on", "digits-cnn"]
    bad = subprocess.run(
        [*refused, "--out", str(tmp_path / "no")], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode != 0 and "0.45 is not among --select-targets" in bad.stderr
    assert not (tmp_path / "no").exists()
    picked = load_policy(run / "selected")
    assert picked.metadata["selected"]["checkpoint"] == best
    assert picked.metadata["selected"]["select_on"] == [str(variant)]
    params = torch.load(run / "checkpoints" / best / "params.pt", weights_only=True)["policy"]
    for name, tensor in picked.network.state_dict().items():
        assert torch.equal(tensor, params[name])


def test_a_kept_benchmark_resumes_where_its_policy_moved_but_not_with_another(
    tmp_path: Path,
) -> None:
    from rlprune.presets.loader import GENERAL_POLICY
    from rlprune.search.benchmark import BenchmarkSettings, manifest_settings, prepare_out_dir

    env = json.loads(json.dumps(EnvConfig().to_dict(), default=list))
    moved, other = tmp_path / "moved", tmp_path / "other"
    shutil.copytree(GENERAL_POLICY, moved)
    shutil.copytree(GENERAL_POLICY, other)
    (other / "policy.json").write_text((other / "policy.json").read_text() + " ")
    out = tmp_path / "bench"

    def manifest(policy: Path) -> dict[str, Any]:
        settings = BenchmarkSettings(methods=("transfer",), evals=5, policy=str(policy))
        return {"env": env, "settings": json.loads(json.dumps(manifest_settings(settings)))}

    kept = manifest(GENERAL_POLICY)
    kept["settings"]["policy"] = "/gone/checkout/policies/general"  # recorded elsewhere
    out.mkdir()
    (out / "benchmark.json").write_text(json.dumps(kept))
    prepare_out_dir(out, manifest(moved), overwrite=False, resume=True)  # same content
    assert json.loads((out / "benchmark.json").read_text())["settings"]["policy"] == str(moved)
    with pytest.raises(RunError, match=r"other settings \(settings.policy.*policy_digest"):
        prepare_out_dir(out, manifest(other), overwrite=False, resume=True)
