"""The apply report: JSON round trip, the Markdown page, helpers."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from pathlib import Path

import pytest
import torch

from rlprune.errors import ConfigError
from rlprune.evaluation.candidates import Candidate
from rlprune.models.zoo import digits_cnn
from rlprune.pruning.analysis import analyse
from rlprune.reports.apply_report import (
    ApplyReport,
    format_count,
    read_report,
    render_markdown,
    unit_rows,
    write_report,
)
from rlprune.reports.versions import software_versions

UNITS = [
    {
        "name": "features.0",
        "kind": "conv",
        "channels_before": 32,
        "channels_after": 16,
        "keep_ratio": 0.5,
    },
    {
        "name": "features.3",
        "kind": "conv",
        "channels_before": 64,
        "channels_after": 48,
        "keep_ratio": 0.75,
    },
]


def make_report(**changes: object) -> ApplyReport:
    values: dict[str, object] = {
        "env": "digits-cnn",
        "model": "digits-cnn",
        "policy": "runs/digits__ppo__0/policy.zip",
        "target": 0.5,
        "mode": "zero-shot",
        "adapt_episodes": 0,
        "finetune_epochs": 0,
        "units": UNITS,
        "candidate": Candidate(
            channels=(16, 48),
            keep_ratios=(0.5, 0.75),
            accuracy=0.985,
            macs=910_000,
            params=20_500,
            macs_ratio=0.5,
            params_ratio=20_500 / 57_000,
        ),
        "macs_before": 1_820_000,
        "params_before": 57_000,
        "val_accuracy_before": 0.991,
        "test_accuracy_before": 0.994,
        "test_accuracy_after": 0.989,
        "latency": {
            1: {"before_ms": 0.52, "after_ms": 0.31, "speedup": 0.52 / 0.31},
            64: {"before_ms": 4.1, "after_ms": 2.2, "speedup": 4.1 / 2.2},
        },
        "wall_time_s": 12.34,
        "exported": {"torchscript": "pruned_model.pt", "state_dict": "pruned_state_dict.pt"},
        "versions": {"torch": "2.13.0", "rlprune": "0.1.0"},
    }
    values.update(changes)
    return ApplyReport(**values)  # type: ignore[arg-type]


def test_write_report_round_trips_every_field(tmp_path: Path) -> None:
    report = make_report(
        mode="adapted",
        adapt_episodes=40,
        finetune_epochs=2,
        val_accuracy_finetuned=0.99,
        test_accuracy_finetuned=0.992,
    )
    json_path, md_path = write_report(report, tmp_path / "apply")

    assert (json_path.name, md_path.name) == ("report.json", "report.md")
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["report.json", "report.md"]
    raw = json.loads(json_path.read_text())
    # every field, and the derived list of noisy timings
    assert set(raw) == {f.name for f in dataclasses.fields(ApplyReport)} | {"latency_noisy"}
    assert raw["latency"]["64"]["after_ms"] == 2.2
    assert raw["units"][1]["keep_ratio"] == 0.75
    loaded = read_report(json_path)
    assert loaded == report
    assert list(loaded.latency) == [1, 64]


def test_markdown_has_headline_tables_and_no_finetuned_row_without_finetuning(
    tmp_path: Path,
) -> None:
    _, md_path = write_report(make_report(), tmp_path)
    text = md_path.read_text()

    assert "MACs 1.82M → 0.91M (0.50×), test acc 99.4% → 98.9%" in text
    assert "| model | MACs | params | val acc | test acc | latency b1 | latency b64 |" in text
    assert "| original | 1.82M | 57K | 99.1% | 99.4% | 0.52 ms | 4.1 ms |" in text
    assert "| pruned | 910K | 20.5K | 98.5% | 98.9% | 0.31 ms | 2.2 ms |" in text
    assert (
        "| final vs original | 0.50× | 0.36× | -0.6 pp | -0.5 pp | 1.68× faster | 1.86× faster |"
        in text
    )
    assert "fine-tuned" not in text
    assert "| 0 | `features.0` | conv | 32 → 16 | 0.50 |" in text
    assert "| 1 | `features.3` | conv | 64 → 48 | 0.75 |" in text
    assert "- policy mode: zero-shot" in text
    assert "`pruned_model.pt`" in text


def test_markdown_shows_finetuned_row_and_adaptation() -> None:
    text = render_markdown(
        make_report(
            mode="adapted",
            adapt_episodes=40,
            finetune_epochs=3,
            val_accuracy_finetuned=0.99,
            test_accuracy_finetuned=0.992,
        )
    )
    assert "test acc 99.4% → 98.9% (99.2% after fine-tuning)" in text
    assert "| pruned + fine-tuned | 910K | 20.5K | 99.0% | 99.2% | 0.31 ms | 2.2 ms |" in text
    # The change row compares the final (fine-tuned) model with the original.
    assert "| final vs original | 0.50× | 0.36× | -0.1 pp | -0.2 pp |" in text
    assert "- policy mode: adapted (40 episodes)" in text
    assert "- fine-tuning: 3 epochs" in text


def test_markdown_without_latency_has_no_latency_columns() -> None:
    text = render_markdown(make_report(latency={}))
    assert "| model | MACs | params | val acc | test acc |\n" in text
    assert "latency b" not in text


@pytest.mark.parametrize(
    ("n", "unit", "expected"),
    [
        (0, None, "0"),
        (950, None, "950"),
        (12_345, None, "12.3K"),
        (999_999, None, "1M"),
        (1_820_000, None, "1.82M"),
        (182_400_000, None, "182M"),
        (3_200_000_000, None, "3.2G"),
        (910_000, "M", "0.91M"),
        (1_500, "", "1500"),
    ],
)
def test_format_count(n: int, unit: str | None, expected: str) -> None:
    assert format_count(n, unit) == expected


def test_format_count_rejects_unknown_unit() -> None:
    with pytest.raises(ConfigError, match="unit must be one of"):
        format_count(10, "T")


def test_software_versions_reads_installed_packages() -> None:
    versions = software_versions()
    assert set(versions) >= {
        "python",
        "torch",
        "stable-baselines3",
        "gymnasium",
        "torch-pruning",
        "rlprune",
    }
    assert versions["torch"] == importlib.metadata.version("torch")
    assert torch.__version__.startswith(versions["torch"].split("+")[0])


def test_unit_rows_from_analysis() -> None:
    units = analyse(digits_cnn(width=4).eval(), torch.zeros(1, 1, 8, 8)).units
    counts = [max(1, u.out_channels // 2) for u in units]
    rows = unit_rows(units, counts)
    assert [row["name"] for row in rows] == [u.name for u in units]
    assert rows[0] == {
        "name": units[0].name,
        "kind": units[0].kind,
        "channels_before": units[0].out_channels,
        "channels_after": counts[0],
        "keep_ratio": counts[0] / units[0].out_channels,
    }
    # A PruneResult.channels mapping; units it omits kept all their channels.
    by_name = unit_rows(units, {units[0].name: counts[0]})
    assert by_name[0]["channels_after"] == counts[0]
    assert [row["keep_ratio"] for row in by_name[1:]] == [1.0] * (len(units) - 1)
    with pytest.raises(ConfigError, match=f"need {len(units)} channel counts"):
        unit_rows(units, counts[:-1])


def test_report_validates_mode_and_fields(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="report mode must be one of"):
        make_report(mode="fine-tuned")
    with pytest.raises(ConfigError, match="adapt_episodes must be >= 0"):
        make_report(adapt_episodes=-1)
    with pytest.raises(ConfigError, match=r"unknown apply-report field\(s\) \['extra'\]"):
        ApplyReport.from_dict({**make_report().to_dict(), "extra": 1})
    with pytest.raises(ConfigError, match="not found"):
        read_report(tmp_path / "report.json")


def test_report_defaults_record_installed_versions() -> None:
    report = make_report()
    values = {f.name: getattr(report, f.name) for f in dataclasses.fields(report)}
    del values["versions"], values["exported"], values["latency"]
    report = ApplyReport(**values)
    assert report.versions == software_versions()
    assert report.exported == {}
    assert report.latency == {}


def test_a_slower_pruned_model_is_reported_as_slower(tmp_path: Path) -> None:
    latency = {1: {"before_ms": 0.62, "after_ms": 0.68, "speedup": 0.62 / 0.68}}
    report = make_report(latency=latency, device="cuda:0", latency_gpu=latency)
    text = write_report(report, tmp_path)[1].read_text()
    assert "| final vs original | 0.50× | 0.36× | -0.6 pp | -0.5 pp | 1.10× slower |" in text
    assert "- cuda:0 latency, batch 1: 0.62 ms → 0.68 ms (1.10× slower)" in text
    assert "faster" not in text


def test_a_latency_whose_spread_is_too_wide_is_marked_noisy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rlprune.cli.apply import _print_results

    steady = {"before_ms": 0.52, "after_ms": 0.31, "speedup": 1.68, "p10": 1.5, "p90": 1.8}
    noisy = {"before_ms": 4.1, "after_ms": 2.2, "speedup": 1.86, "p10": 0.9, "p90": 3.1}
    report = make_report(latency={1: steady, 64: noisy}, threads=1)
    assert report.noisy_latency == ["cpu b64"]
    text = render_markdown(report)
    assert "batch 64: speedup 1.86× (p10–p90 of paired passes 0.90–3.10) (noisy)" in text
    assert "batch 1: speedup 1.68× (p10–p90 of paired passes 1.50–1.80);" in text
    assert "1.86× faster (noisy)" in text and "1.68× faster |" in text
    json_path, _ = write_report(report, tmp_path)
    assert json.loads(json_path.read_text())["latency_noisy"] == ["cpu b64"]
    assert read_report(json_path) == report
    _print_results(report)
    printed = capsys.readouterr().out.splitlines()
    assert [line.endswith("(noisy)") for line in printed if "latency batch" in line] == [
        False,
        True,
    ]
    assert any(line.startswith("(noisy): ") and "--threads 1" in line for line in printed)
