"""The equal-cost benchmark: settings checks, outputs, resume, transfer."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rlprune.cli import main
from rlprune.errors import ConfigError, RunError
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig
from rlprune.search.benchmark import BenchmarkSettings, run_benchmark


@pytest.mark.slow
def test_all_methods_at_equal_cost(digits_task: PruningTask, tmp_path: Path) -> None:
    settings = BenchmarkSettings(
        methods=("ppo-v1", "random", "uniform", "magnitude", "sensitivity", "ddpg"), evals=12
    )
    results, files = run_benchmark(
        digits_task, settings, tmp_path, config=EnvConfig(digits_task.config)
    )
    used = {r.method: r.evaluations for r in results}
    assert used == {
        "ppo-v1": 12,
        "random": 12,
        "uniform": 1,
        "magnitude": 1,
        "sensitivity": 10,
        "ddpg": 12,
    }
    for r in results:
        assert r.macs_ratio <= 0.5 * 1.01
        assert 0 < r.test_accuracy <= 1 and r.latency_speedup > 0
    for name in (
        "summary.md",
        "summary.csv",
        "summary.json",
        "results.csv",
        "accuracy_vs_macs.png",
        "sample_efficiency.png",
        "keep_ratios.png",
    ):
        assert (tmp_path / name).is_file(), name
    summary = (tmp_path / "summary.md").read_text()
    assert "sensitivity" in summary and "ppo" in summary and "evaluations per method" in summary
    assert (tmp_path / "comparison.md").read_text().count("ppo") == 10  # 5 rivals x val, test


def test_refuses_to_mix_results_and_resumes_missing_ones(
    digits_task: PruningTask, tmp_path: Path
) -> None:
    settings = BenchmarkSettings(methods=("uniform", "random"), evals=3, seeds=2)
    run_benchmark(digits_task, settings, tmp_path, config=EnvConfig(digits_task.config))
    with pytest.raises(RunError, match="already holds a benchmark.*--resume.*--overwrite"):
        run_benchmark(digits_task, settings, tmp_path, config=EnvConfig(digits_task.config))
    (tmp_path / "results" / "random__1.json").unlink()  # as if interrupted before it
    started: list[tuple[str, int]] = []
    results, _ = run_benchmark(
        digits_task,
        settings,
        tmp_path,
        resume=True,
        on_start=lambda m, s: started.append((m, s)),
        config=EnvConfig(digits_task.config),
    )
    assert started == [("random", 1)] and len(results) == 4
    # uniform is deterministic: seed 1 repeats seed 0 without a new search
    uniform = [r for r in results if r.method == "uniform"]
    assert uniform[0].val_accuracy == uniform[1].val_accuracy and uniform[1].seed == 1
    # more seeds: the kept ones stand, only the new seed runs, and the manifest says 3
    started.clear()
    more = dataclasses.replace(settings, seeds=3)
    results, _ = run_benchmark(
        digits_task,
        more,
        tmp_path,
        resume=True,
        on_start=lambda m, s: started.append((m, s)),
        config=EnvConfig(digits_task.config),
    )
    assert sorted(started) == [("random", 2), ("uniform", 2)] and len(results) == 6
    assert json.loads((tmp_path / "benchmark.json").read_text())["settings"]["seeds"] == 3
    with pytest.raises(RunError, match="other settings"):  # fewer seeds would drop results
        run_benchmark(
            digits_task, settings, tmp_path, resume=True, config=EnvConfig(digits_task.config)
        )
    other = BenchmarkSettings(methods=("uniform",), evals=3)
    with pytest.raises(RunError, match="other settings"):
        run_benchmark(
            digits_task, other, tmp_path, resume=True, config=EnvConfig(digits_task.config)
        )
    results, _ = run_benchmark(
        digits_task, other, tmp_path, overwrite=True, config=EnvConfig(digits_task.config)
    )
    assert len(results) == 1
    assert json.loads((tmp_path / "benchmark.json").read_text())["settings"]["methods"] == [
        "uniform"
    ]


def test_deterministic_method_searches_once_but_fine_tunes_every_seed(
    digits_task: PruningTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fine-tuned mean of a deterministic method must average as many seeded
    # fine-tunes as any other method's, not repeat seed 0's one draw.
    import rlprune.search.benchmark as benchmark

    tuned: list[int] = []
    real = benchmark.deliver

    def spy(*args: object, **kwargs: object) -> object:
        tuned.append(int(kwargs["seed"]))  # type: ignore[call-overload]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(benchmark, "deliver", spy)
    settings = BenchmarkSettings(
        methods=("magnitude",), evals=3, seeds=3, finetune_epochs=1, finetune_images=64
    )
    started: list[tuple[str, int]] = []
    results, _ = run_benchmark(
        digits_task,
        settings,
        tmp_path,
        on_start=lambda m, s: started.append((m, s)),
        config=EnvConfig(digits_task.config),
    )
    assert started == [("magnitude", 0)]  # one search
    assert tuned == [0, 1, 2]  # three fine-tunes, one per seed
    assert [r.seed for r in results] == [0, 1, 2]
    assert len({tuple(r.best.channels) for r in results}) == 1
    assert all(r.test_accuracy_finetuned is not None for r in results)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (BenchmarkSettings(methods=("ppo", "grid"), evals=5), "unknown method 'grid'.*random"),
        (BenchmarkSettings(methods=("sensitivity",), evals=5), "at least 10 evaluations"),
        (BenchmarkSettings(methods=("uniform",), evals=5, seeds=0), "--seeds must be a positive"),
        (BenchmarkSettings(methods=("transfer",), evals=5), "need --policy"),
        (BenchmarkSettings(methods=("uniform", "uniform"), evals=5), "listed twice"),
    ],
)
def test_bad_settings(
    settings: BenchmarkSettings, message: str, digits_task: PruningTask, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=message):
        run_benchmark(digits_task, settings, tmp_path, config=EnvConfig(digits_task.config))
    assert not (tmp_path / "benchmark.json").exists()  # nothing half-written


def test_transfer_methods_count_their_cost(
    trained_run: Path, digits_task: PruningTask, tmp_path: Path
) -> None:
    settings = BenchmarkSettings(
        methods=("transfer", "transfer-adapt", "transfer-refine"),
        evals=6,
        policy=str(trained_run),
        adapt_episodes=4,
    )
    results, _ = run_benchmark(
        digits_task, settings, tmp_path, config=EnvConfig(digits_task.config)
    )
    used = {r.method: r.evaluations for r in results}
    assert used == {"transfer": 1, "transfer-adapt": 5, "transfer-refine": 5}
    by_method = {r.method: r for r in results}
    # the refinement starts from the zero-shot configuration: never below it
    assert by_method["transfer-refine"].val_accuracy >= by_method["transfer"].val_accuracy


def test_transfer_apply_methods_score_what_apply_compares(
    trained_run: Path, digits_task: PruningTask, tmp_path: Path
) -> None:
    settings = BenchmarkSettings(
        methods=("transfer", "transfer-apply", "transfer-apply-refine"),
        evals=8,
        policy=str(trained_run),
        adapt_episodes=4,
    )
    results, _ = run_benchmark(
        digits_task, settings, tmp_path, config=EnvConfig(digits_task.config)
    )
    by_method = {r.method: r for r in results}
    zero, applied = by_method["transfer"], by_method["transfer-apply"]
    # the uniform allocation, and the prior when the policy corrects one: +1 evaluation each
    assert applied.evaluations - zero.evaluations in (1, 2)
    assert applied.val_accuracy >= zero.val_accuracy
    refined = by_method["transfer-apply-refine"]
    assert refined.evaluations == applied.evaluations + 4
    assert refined.val_accuracy >= applied.val_accuracy  # refine starts from apply's best


def test_cli_benchmark_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert (
        main(
            [
                "benchmark",
                "--env",
                "digits-cnn",
                "--methods",
                "ppo,nope",
                "--evals",
                "5",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "unknown method 'nope'" in err and len(err.splitlines()) == 1


def test_ctrl_c_during_an_agent_search_records_nothing_partial(
    digits_task: PruningTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rlprune.rl.recorder import RunRecorder

    real_record = RunRecorder.record

    def record(self: RunRecorder, reward: float, info: dict) -> None:
        real_record(self, reward, info)
        if self.episodes == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunRecorder, "record", record)
    settings = BenchmarkSettings(methods=("uniform", "ppo-v1"), evals=10)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(digits_task, settings, tmp_path, config=EnvConfig(digits_task.config))
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["uniform__0.json"]


def test_cli_policy_adds_the_transfer_methods(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "benchmark",
                "--env",
                "digits-cnn",
                "--methods",
                "uniform",
                "--evals",
                "4",
                "--policy",
                str(trained_run),
                "--adapt-episodes",
                "2",
                "--trust",
                "always",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    names = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert names == [
        "transfer-adapt__0.json",
        "transfer-refine__0.json",
        "transfer__0.json",
        "uniform__0.json",
    ]
    out = capsys.readouterr().out
    assert "transfer-adapt" in out and "transfer-refine" in out
    manifest = json.loads((tmp_path / "benchmark.json").read_text())
    assert manifest["settings"]["trust"] == "always"  # as apply --trust always plays it
