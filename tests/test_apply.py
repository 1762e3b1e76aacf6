"""Applying a saved policy: zero-shot, adapted, fine-tuned; export and report."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from rlprune.cli import main
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig
from rlprune.rl.agents import load_agent_config
from rlprune.rl.training import TrainSettings, train


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_zero_shot_apply_writes_report_and_loadable_model(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "apply"
    assert (
        main(
            [
                "apply",
                "--policy",
                str(trained_run),
                "--env",
                "digits-cnn",
                "--target",
                "0.4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "zero-shot" and report["target"] == 0.4
    pruned = report["candidate"]
    assert pruned["macs_ratio"] <= 0.4 * 1.01 and pruned["macs"] < report["macs_before"]
    assert pruned["channels"] == [u["channels_after"] for u in report["units"]]
    assert 0.0 < report["test_accuracy_after"] <= 1.0
    assert report["val_accuracy_finetuned"] is None
    assert set(report["latency"]) == {"1", "64"}
    assert len(report["units"]) == 3
    scripted = torch.jit.load(out / "pruned_model.pt")
    assert scripted(torch.zeros(5, 1, 8, 8)).shape == (5, 10)
    state = torch.load(out / "pruned_state_dict.pt", weights_only=True)
    kept = [u["channels_after"] for u in report["units"]]
    assert state["features.0.weight"].shape[0] == kept[0]
    assert "MACs" in (out / "report.md").read_text()
    assert "CPU latency batch 64" in capsys.readouterr().out


def test_adapt_and_finetune(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "apply"
    assert (
        main(
            [
                "apply",
                "--policy",
                str(trained_run),
                "--env",
                "digits-cnn",
                "--adapt-episodes",
                "4",
                "--finetune-epochs",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "adapted" and report["adapt_episodes"] == 4
    assert report["val_accuracy_finetuned"] is not None
    assert (out / "adapt" / "episodes.csv").is_file()


def test_apply_delivers_the_uniform_allocation_when_the_policy_scores_worse(
    trained_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 38: a policy's zero-shot result below the uniform ratio was delivered."""
    import rlprune.apply as apply_module

    played = apply_module.zero_shot

    def poor(*args: Any, **kwargs: Any) -> Any:  # the policy's episode, scored at 0
        shot = played(*args, **kwargs)
        return dataclasses.replace(shot, candidate=dataclasses.replace(shot.candidate, accuracy=0))

    monkeypatch.setattr(apply_module, "zero_shot", poor)
    out = tmp_path / "apply"
    base = ["apply", "--policy", str(trained_run), "--env", "digits-cnn", "--target", "0.5"]
    assert main([*base, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["choice"] == "uniform"
    assert report["scored"]["policy"] == 0 and report["scored"]["uniform"] > 0.5
    assert report["candidate"]["accuracy"] == report["scored"]["uniform"]
    ratios = [u["keep_ratio"] for u in report["units"]]
    steps = [1 / u["channels_before"] for u in report["units"]]
    assert max(ratios) - min(ratios) <= max(steps) + 1e-9  # one keep-ratio for every unit
    said = "delivered the uniform allocation"
    assert said in capsys.readouterr().out
    assert said in (out / "report.md").read_text()


def test_finetuning_that_lowers_val_accuracy_is_not_delivered(
    digits_task: PruningTask, tmp_path: Path
) -> None:
    """Issue 38: fine-tuning took val 98.06 -> 95.83 and the report still led with it."""
    from rlprune.evaluation.finetune import deliver
    from rlprune.priors import uniform_channels
    from rlprune.reports.apply_report import ApplyReport, render_markdown

    candidate = digits_task.evaluate(uniform_channels(digits_task, 0.5))
    # a learning rate that wrecks the weights in one epoch
    delivered = deliver(digits_task, candidate, finetune_epochs=1, lr=50.0, seed=0)
    assert delivered.val_accuracy_finetuned is not None
    assert delivered.val_accuracy_finetuned < delivered.val_accuracy
    assert delivered.finetune_kept is False
    # the shipped model is the one before fine-tuning
    assert digits_task.evaluator.score(delivered.final) == pytest.approx(delivered.val_accuracy)
    report = ApplyReport(
        env="digits-cnn",
        model="digits-cnn",
        policy="p",
        target=0.5,
        mode="zero-shot",
        adapt_episodes=0,
        finetune_epochs=1,
        units=[],
        candidate=dataclasses.replace(candidate, accuracy=delivered.val_accuracy),
        macs_before=digits_task.analysis.macs,
        params_before=digits_task.analysis.params,
        val_accuracy_before=0.98,
        test_accuracy_before=0.98,
        test_accuracy_after=delivered.test_accuracy,
        val_accuracy_finetuned=delivered.val_accuracy_finetuned,
        test_accuracy_finetuned=delivered.test_accuracy_finetuned,
        finetune_kept=delivered.finetune_kept,
        wall_time_s=1.0,
    )
    page = render_markdown(report)
    headline = page.splitlines()[2]
    assert "after fine-tuning" not in headline and "not kept" in headline
    assert "the model before fine-tuning is delivered" in page
    assert "pruned + fine-tuned (not kept)" in page
    # the final row measures the delivered model: before fine-tuning
    final = next(line for line in page.splitlines() if line.startswith("| final vs original"))
    assert f"{100 * (delivered.test_accuracy - 0.98):+.1f} pp" in final


def test_refine_searches_after_the_zero_shot_episode(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["apply", "--policy", str(trained_run), "--env", "digits-cnn", "--target", "0.4"]
    assert main([*base, "--out", str(tmp_path / "zero")]) == 0
    assert main([*base, "--refine", "5", "--out", str(tmp_path / "refined")]) == 0
    zero = json.loads((tmp_path / "zero" / "report.json").read_text())
    report = json.loads((tmp_path / "refined" / "report.json").read_text())
    assert report["refine_evaluations"] == 5 and report["mode"] == "zero-shot"
    accuracy = report["candidate"]["accuracy"]
    assert accuracy >= zero["candidate"]["accuracy"]
    assert report["refine_improved"] == (accuracy > zero["candidate"]["accuracy"])
    assert report["candidate"]["macs_ratio"] <= 0.4 * 1.01
    assert "refined with 5 evaluations" in capsys.readouterr().out
    assert "refined with 5 evaluations" in (tmp_path / "refined" / "report.md").read_text()


def test_refine_reports_progress_after_each_batch(trained_run: Path, tmp_path: Path) -> None:
    from rlprune.apply import ApplySettings, apply_policy
    from rlprune.presets.loader import load_env_config

    calls: list[tuple[float, float]] = []
    report = apply_policy(
        trained_run,
        load_env_config("digits-cnn", {"target": 0.4}),
        ApplySettings(refine=4),
        tmp_path / "apply",
        on_refine=lambda done, best: calls.append((done, best.accuracy)),
    )
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})  # increasing
    assert calls[-1][0] == pytest.approx(4)  # every evaluation reported, screening in shares
    leaders = [accuracy for _, accuracy in calls]
    assert leaders == sorted(leaders)  # the best so far never drops
    assert calls[-1][1] == pytest.approx(report.candidate.accuracy)  # and is what was delivered


def test_policy_from_another_input_shape_still_applies(
    make_small_task: Callable[..., PruningTask], tmp_path: Path
) -> None:
    """Trained on 1x28x28 inputs, applied to the 1x8x8 digits preset: not an error."""
    task = make_small_task("residual")
    run = train(
        EnvConfig(task.config),
        load_agent_config("ppo-v1", "synthetic"),
        TrainSettings(episodes=4, checkpoint_every=0),
        runs_root=tmp_path,
        task=task,
    )
    out = tmp_path / "apply"
    assert (
        main(["apply", "--policy", str(run.run_dir), "--env", "digits-cnn", "--out", str(out)]) == 0
    )
    assert json.loads((out / "report.json").read_text())["candidate"]["macs_ratio"] <= 0.5 * 1.01


def test_user_model_by_spec_string(trained_run: Path, tmp_path: Path) -> None:
    weights = tmp_path / "custom.pt"
    spec = str(Path(__file__).resolve().parent.parent / "examples" / "custom_model.py") + ":build"
    assert (
        main(
            [
                "pretrain",
                "--env",
                "digits-cnn",
                "--model",
                spec,
                "--epochs",
                "1",
                "--out",
                str(weights),
            ]
        )
        == 0
    )
    out = tmp_path / "apply"
    assert (
        main(
            [
                "apply",
                "--policy",
                str(trained_run),
                "--env",
                "digits-cnn",
                "--model",
                spec,
                "--weights",
                str(weights),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert {u["kind"] for u in report["units"]} >= {"depthwise"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "no/such/run"], "does not exist"),
        (["--policy", "."], "is not a policy"),
    ],
)
def test_apply_bad_input(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apply", *args, "--env", "digits-cnn"]) == 2
    assert message in capsys.readouterr().err


def test_target_range_needs_a_target(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preset = tmp_path / "range.yaml"
    weights = Path(__file__).resolve().parent.parent / "weights" / "digits-cnn.pt"
    preset.write_text(
        f"model: digits-cnn\nweights: {weights}\ndataset: digits\ntarget: [0.3, 0.6]\n"
    )
    assert main(["apply", "--policy", str(trained_run), "--env", str(preset)]) == 2
    assert "choose one with --target" in capsys.readouterr().err
