"""The benchmark report: summaries, verdicts, tables and plots from synthetic results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rlprune.errors import ConfigError
from rlprune.evaluation.candidates import Candidate, SearchResult, best_of
from rlprune.reports.plots import PLOT_FILES, method_colors, plot_all
from rlprune.reports.tables import (
    TABLE_FILES,
    MethodSeedResult,
    Stat,
    comparison_lines,
    read_summary,
    render_markdown,
    summarise,
    write_tables,
)

UNITS = ("features.0", "features.3", "features.6")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def result(method: str, seed: int, val: float, test: float, **changes: object) -> MethodSeedResult:
    """A synthetic per-seed result; ``macs_ratio``, ``params_ratio`` and ``keep_ratios``
    go into its best candidate, every other change into the result."""
    keep = tuple(changes.pop("keep_ratios", (0.5, 0.75, 0.6)))  # type: ignore[call-overload]
    macs_ratio = float(changes.pop("macs_ratio", 0.48))  # type: ignore[arg-type]
    params_ratio = float(changes.pop("params_ratio", 0.4))  # type: ignore[arg-type]
    best = Candidate(
        channels=tuple(int(64 * k) for k in keep),
        keep_ratios=keep,
        accuracy=val,
        macs=int(1_000_000 * macs_ratio),
        params=int(50_000 * params_ratio),
        macs_ratio=macs_ratio,
        params_ratio=params_ratio,
    )
    values: dict[str, object] = {
        "method": method,
        "seed": seed,
        "evaluations": 50,
        "best": best,
        "test_accuracy": test,
        "test_accuracy_finetuned": None,
        "latency_speedup": 1.8,
        "wall_time_s": 12.0,
        "units": UNITS,
    }
    values.update(changes)
    return MethodSeedResult(**values)  # type: ignore[arg-type]


# ppo: val 90/92/94 (mean 92, std 2), test 89/90/91 (mean 90, std 1)
# random: val 90.5/91.5/92.5 (mean 91.5, std 1): ppo ahead by 0.5 pp, well within noise
# magnitude: deterministic, val 85, test 95 every seed: ppo far behind on test
RESULTS = [
    result("ppo", 0, 0.90, 0.89, test_accuracy_finetuned=0.93, wall_time_s=10.0),
    result("ppo", 1, 0.92, 0.90, test_accuracy_finetuned=0.95, wall_time_s=12.0),
    result("ppo", 2, 0.94, 0.91, test_accuracy_finetuned=0.94, wall_time_s=14.0),
    result("random", 0, 0.905, 0.90, evaluations=48),
    result("random", 1, 0.915, 0.90),
    result("random", 2, 0.925, 0.90, evaluations=49),
    result("magnitude", 0, 0.85, 0.95, evaluations=1),
    result("magnitude", 1, 0.85, 0.95, evaluations=1),
    result("magnitude", 2, 0.85, 0.95, evaluations=1),
]


def candidate(accuracy: float, macs_ratio: float, keep: float = 0.5) -> Candidate:
    return Candidate(
        channels=tuple(int(64 * keep) for _ in UNITS),
        keep_ratios=tuple(keep for _ in UNITS),
        accuracy=accuracy,
        macs=int(1_000_000 * macs_ratio),
        params=int(50_000 * macs_ratio),
        macs_ratio=macs_ratio,
        params_ratio=0.9 * macs_ratio,
    )


def search(method: str, seed: int, n: int, base: float) -> SearchResult:
    history = tuple(
        candidate(
            base + 0.05 * ((7 * i + 3 * seed) % 11) / 10,
            0.35 + 0.15 * ((5 * i + seed) % 13) / 12,
            keep=0.3 + 0.05 * (i % 10),
        )
        for i in range(n)
    )
    return SearchResult(method, best_of(history), history, evaluations=n, seconds=0.1 * n)


HISTORIES = {
    "ppo": [search("ppo", s, 50, 0.88) for s in range(3)],
    "random": [search("random", s, 50, 0.87) for s in range(3)],
    "magnitude": [search("magnitude", s, 1, 0.85) for s in range(3)],
}


# ---------------------------------------------------------------------- summaries


def test_summarise_mean_and_sample_std_per_method_in_first_seen_order() -> None:
    summaries = summarise(RESULTS)
    assert [s.method for s in summaries] == ["ppo", "random", "magnitude"]
    ppo, random, magnitude = summaries
    assert ppo.seeds == 3
    assert ppo.val_accuracy.mean == pytest.approx(0.92)
    assert ppo.val_accuracy.std == pytest.approx(0.02)  # ddof=1, not 0.0163 (ddof=0)
    assert ppo.test_accuracy.std == pytest.approx(0.01)
    assert ppo.wall_time_s == Stat(mean=12.0, std=2.0, n=3)
    assert ppo.test_accuracy_finetuned is not None
    assert ppo.test_accuracy_finetuned.mean == pytest.approx(0.94)
    assert random.test_accuracy_finetuned is None
    assert magnitude.test_accuracy == Stat(mean=pytest.approx(0.95), std=0.0, n=3)


def test_summarise_evaluations_mean_min_max() -> None:
    ppo, random, magnitude = summarise(RESULTS)
    assert (ppo.evaluations_min, ppo.evaluations_max, ppo.evaluations_label) == (50, 50, "50")
    assert random.evaluations_mean == pytest.approx(49.0)
    assert (random.evaluations_min, random.evaluations_max) == (48, 50)
    assert random.evaluations_label == "49 (48–50)"
    assert magnitude.evaluations_label == "1"


def test_single_seed_has_zero_std() -> None:
    (summary,) = summarise([result("uniform", 0, 0.8, 0.79)])
    assert summary.val_accuracy == Stat(mean=0.8, std=0.0, n=1)


def test_summarise_rejects_a_seed_given_twice() -> None:
    with pytest.raises(ConfigError, match="ppo seed 1 appears twice"):
        summarise([*RESULTS, result("ppo", 1, 0.5, 0.5)])


def test_result_needs_one_keep_ratio_per_unit() -> None:
    with pytest.raises(ConfigError, match="2 keep ratios for 3 units"):
        result("ppo", 0, 0.9, 0.9, keep_ratios=(0.5, 0.5))


def test_result_json_round_trip() -> None:
    for r in (RESULTS[0], RESULTS[3]):
        assert MethodSeedResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_result_from_dict_rejects_unknown_fields() -> None:
    data = RESULTS[0].to_dict() | {"top5": 0.99}
    with pytest.raises(ConfigError, match="unknown field"):
        MethodSeedResult.from_dict(data)


# ---------------------------------------------------------------------- verdicts


def test_comparison_lines_call_a_loss_a_loss() -> None:
    lines = comparison_lines(summarise(RESULTS))
    assert "ppo loses to magnitude on test accuracy by -5.00 pp (7.1 std)" in lines
    assert "ppo beats magnitude on val accuracy by +7.00 pp (4.9 std)" in lines


def test_comparison_lines_within_noise_keeps_the_direction() -> None:
    lines = comparison_lines(summarise(RESULTS))
    assert "ppo beats random on val accuracy by +0.50 pp (0.3 std, within noise)" in lines
    close_loss = summarise([*RESULTS[:3], *(result("tuned", s, 0.925, 0.9) for s in range(3))])
    (val_line, _test_line) = comparison_lines(close_loss)
    assert val_line.startswith("ppo loses to tuned on val accuracy by -0.50 pp")
    assert "within noise" in val_line


def test_comparison_lines_ties_and_missing_spread() -> None:
    ties = summarise([result("ppo", 0, 0.9, 0.9), result("uniform", 0, 0.9, 0.8)])
    assert comparison_lines(ties) == [
        "ppo ties with uniform on val accuracy (+0.00 pp)",
        "ppo beats uniform on test accuracy by +10.00 pp (one seed each, noise unknown)",
    ]


def test_comparison_lines_fine_tuned_only_when_both_have_it() -> None:
    with_finetuned = [r for r in RESULTS if r.method != "magnitude"]
    with_finetuned += [
        result("magnitude", s, 0.85, 0.95, test_accuracy_finetuned=0.96) for s in range(3)
    ]
    lines = comparison_lines(summarise(with_finetuned))
    assert not any("fine-tuned" in line and "random" in line for line in lines)
    assert "ppo loses to magnitude on fine-tuned test accuracy by -2.00 pp (2.8 std)" in lines


def test_comparison_lines_unknown_reference() -> None:
    with pytest.raises(ConfigError, match="reference method 'amc' has no results"):
        comparison_lines(summarise(RESULTS), reference="amc")


# ---------------------------------------------------------------------- tables


def test_write_tables_files_rows_and_json_round_trip(tmp_path: Path) -> None:
    paths = write_tables(RESULTS, tmp_path / "bench", title="digits", notes=["target 0.5"])
    assert set(paths) == set(TABLE_FILES)
    assert all(p.is_file() and p.parent == tmp_path / "bench" for p in paths.values())

    with paths["results.csv"].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(RESULTS)
    assert rows[0]["units"] == ";".join(UNITS)
    assert rows[3]["test_accuracy_finetuned"] == ""

    with paths["summary.csv"].open(newline="") as handle:
        summary_rows = list(csv.DictReader(handle))
    assert [r["method"] for r in summary_rows] == ["ppo", "random", "magnitude"]
    assert float(summary_rows[0]["val_accuracy_std"]) == pytest.approx(0.02)

    assert read_summary(paths["summary.json"]) == summarise(RESULTS)
    data = json.loads(paths["summary.json"].read_text())
    assert data["title"] == "digits" and data["notes"] == ["target 0.5"]


def test_summary_markdown_table(tmp_path: Path) -> None:
    notes = comparison_lines(summarise(RESULTS))
    paths = write_tables(RESULTS, tmp_path, title="digits @ 0.5 MACs", notes=notes)
    md = paths["summary.md"].read_text()
    assert md.startswith("# digits @ 0.5 MACs\n")
    assert (
        "| method | cost (full evals) | val acc | test acc | test acc (fine-tuned) | MACs ratio "
        "| params ratio | speedup b64 | wall time |"
    ) in md
    lines = md.splitlines()
    ppo_row = next(line for line in lines if line.startswith("| ppo |"))
    random_row = next(line for line in lines if line.startswith("| random |"))
    magnitude_row = next(line for line in lines if line.startswith("| magnitude |"))
    # best mean per accuracy column in bold: ppo on val and fine-tuned, magnitude on test
    assert "**92.00 ± 2.00%**" in ppo_row
    assert "**94.00 ± 1.00%**" in ppo_row
    assert "**95.00 ± 0.00%**" in magnitude_row
    assert "| 90.00 ± 1.00% |" in ppo_row
    assert "0.480 ± 0.000" in ppo_row and "1.80 ± 0.00×" in ppo_row
    assert "12.0 ± 2.0 s" in ppo_row
    assert "| random | 49 (48–50) | 91.50 ± 1.00% | 90.00 ± 0.00% | n/a |" in random_row
    assert (
        "3 seeds; cost per method, in full-evaluation equivalents: ppo 50, random 49 (48–50), "
        "magnitude 1." in md
    )
    assert "- ppo loses to magnitude on test accuracy by -5.00 pp (7.1 std)" in lines


def test_summary_markdown_single_seed_and_partial_finetuning(tmp_path: Path) -> None:
    results = [
        result("ppo", 0, 0.9, 0.9, test_accuracy_finetuned=0.92),
        result("ppo", 1, 0.9, 0.9),
        result("uniform", 0, 0.8, 0.8),
    ]
    md = write_tables(results, tmp_path, title="t")["summary.md"].read_text()
    assert "| uniform | 50 | 80.00% | 80.00% | n/a |" in md
    assert "**92.00% (n=1)**" in md
    assert "seeds per method: ppo 2, uniform 1; cost per method" in md


def test_write_tables_rejects_no_results(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no benchmark results"):
        write_tables([], tmp_path, title="empty")


# ---------------------------------------------------------------------- plots


def test_method_colors_distinct_and_stable() -> None:
    colors = method_colors(["ppo", "random", "magnitude", "ppo"])
    assert list(colors) == ["ppo", "random", "magnitude"]
    assert len(set(colors.values())) == 3
    assert method_colors(["ppo", "random"]) == {m: colors[m] for m in ("ppo", "random")}


def test_plot_all_writes_valid_pngs(tmp_path: Path) -> None:
    results = [
        result(
            m,
            s,
            run.best.accuracy,
            run.best.accuracy - 0.01,
            evaluations=run.evaluations,
            keep_ratios=run.best.keep_ratios,
        )
        for m, runs in HISTORIES.items()
        for s, run in enumerate(runs)
    ]
    paths = plot_all(HISTORIES, results, tmp_path / "plots", target=0.5)
    assert set(paths) == set(PLOT_FILES)
    for path in paths.values():
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC, path.name
        assert len(data) > 5_000, path.name
    assert not list((tmp_path / "plots").glob(".*.tmp"))


def test_plot_all_without_histories_still_writes_every_plot(tmp_path: Path) -> None:
    paths = plot_all({}, RESULTS, tmp_path, target=None)
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths.values())


def test_plot_keep_ratios_needs_one_model(tmp_path: Path) -> None:
    other = result("random", 0, 0.9, 0.9, units=("a", "b", "c"))
    with pytest.raises(ConfigError, match="compares methods on one model"):
        plot_all({}, [RESULTS[0], other], tmp_path, target=None)


def test_plots_accept_identical_one_shot_results(tmp_path: Path) -> None:
    """Three equal one-evaluation results (a deterministic heuristic over 3 seeds)."""
    candidate = Candidate((4, 4), (0.5, 0.5), 0.6315, 10, 10, 0.5, 0.5)  # mean > min in floats
    runs = [SearchResult("uniform", candidate, (candidate,), 1, 0.1, 0.5) for _ in range(3)]
    results = [
        MethodSeedResult("uniform", s, 1, candidate, 0.3, None, 1.5, 0.1, ("a", "b"))
        for s in range(3)
    ]
    files = plot_all({"uniform": runs}, results, tmp_path, target=0.5)
    assert all(p.stat().st_size > 5000 for p in files.values())


def test_a_speedup_timed_on_a_busy_machine_is_marked_noisy() -> None:
    import dataclasses

    steady = dataclasses.replace(
        RESULTS[0], speedup_b1=1.9, speedup_spread={"1": [1.8, 2.0], "64": [1.9, 2.1]}
    )
    busy = dataclasses.replace(steady, seed=1, speedup_spread={"1": [0.6, 4.8], "64": [1.9, 2.1]})
    quiet = render_markdown(summarise([steady]), title="t")
    assert "(noisy)" not in quiet
    marked = render_markdown(summarise([steady, busy]), title="t")
    assert marked.count("× (noisy)") == 2  # both speedup cells of the method
    assert "spread more than 1.5×" in marked
    (summary,) = summarise([steady, busy])
    assert summary.noisy_speedups == 1
