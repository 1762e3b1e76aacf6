"""rlprune.suites: benchmark folders kept in a committed data folder and restored from it.

The committed results of BENCHMARKS.md (docs/benchmarks/data/) are the fixture: a fresh
clone must restore them into folders the page is built from, and keep them unchanged.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig
from rlprune.search.benchmark import BenchmarkSettings, run_benchmark
from rlprune.suites import (
    elapsed,
    finished,
    folder_results,
    forget,
    rerun_error,
    restore,
    retime,
    store,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "benchmarks" / "data"
KEPT = "fmnist-vgg-t0.5-b50"  # 9 methods x 3 seeds, with a proxy


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "suite" / KEPT
    assert restore(DATA, out, ROOT)
    return out


def test_restore_then_store_gives_back_the_kept_bytes(folder: Path, tmp_path: Path) -> None:
    manifest = json.loads((folder / "benchmark.json").read_text())
    weights = Path(manifest["env"]["weights"])
    assert weights.is_absolute() and weights == ROOT / "weights" / "fmnist-vgg.pt"
    assert (folder / "proxy.json").is_file()
    path = store(folder, tmp_path / "data", ROOT)
    assert path is not None and path.name == f"{KEPT}.json.gz"
    assert path.read_bytes() == (DATA / f"{KEPT}.json.gz").read_bytes()  # weights relative again
    stored = json.loads(gzip.decompress(path.read_bytes()))
    assert stored["manifest"]["env"]["weights"] == "weights/fmnist-vgg.pt"


def test_restore_never_writes_over_a_result(folder: Path) -> None:
    result = folder / "results" / "ppo__0.json"
    result.write_text("{}")
    assert restore(DATA, folder, ROOT)
    assert result.read_text() == "{}"
    assert not restore(DATA, folder.parent / "not-kept", ROOT)
    assert store(folder.parent / "not-kept", folder.parent, ROOT) is None


def test_a_folder_is_finished_when_every_method_and_seed_has_a_result(folder: Path) -> None:
    assert finished(folder)
    assert not finished(folder, methods=("transfer",))  # one the manifest does not list
    forget(folder, ["random"])
    assert not (folder / "results" / "random__0.json").exists()
    assert (folder / "results" / "ppo__0.json").exists()  # the others' results stand
    assert not finished(folder)
    assert not finished(folder.parent / "nothing")


def test_results_and_search_time_come_from_the_result_files(folder: Path) -> None:
    results = folder_results(folder)
    assert len(results) == 27 and {r.seed for r in results} == {0, 1, 2}
    total = sum(r.wall_time_s for r in results)
    # the deterministic baselines search once; their seeds 1 and 2 are copies, not charged
    deterministic = ("magnitude", "sensitivity")
    copies = sum(r.wall_time_s for r in results if r.method in deterministic and r.seed > 0)
    assert elapsed(folder) == pytest.approx(total - copies)
    assert f"{KEPT} {elapsed(folder) / 60:.1f} min" in (ROOT / "BENCHMARKS.md").read_text()
    shutil.rmtree(folder / "results")
    (folder / "results").mkdir()
    assert elapsed(folder) == 0.0


@pytest.mark.parametrize(
    ("rerun", "resume", "message"),
    [
        ([], False, None),
        (["random", "ppo"], True, None),
        (["random"], False, "--rerun needs --resume"),
        (["sensitivty"], True, "--rerun: unknown method 'sensitivty'; valid: "),
    ],
)
def test_rerun_must_name_methods_and_come_with_resume(
    rerun: list[str], resume: bool, message: str | None
) -> None:
    error = rerun_error(rerun, resume)
    assert error == message if message is None else error is not None and message in error


def test_retime_replaces_each_results_speedups_and_marks_it(
    digits_task: PruningTask, tmp_path: Path
) -> None:
    settings = BenchmarkSettings(methods=("uniform", "random"), evals=2, seeds=1)
    run_benchmark(digits_task, settings, tmp_path, config=EnvConfig(digits_task.config))
    for path in (tmp_path / "results").glob("*.json"):  # as if timed on a busy machine
        raw = json.loads(path.read_text())
        raw["result"]["speedup_b1"] = raw["result"]["latency_speedup"] = -1.0
        path.write_text(json.dumps(raw))
    lines: list[str] = []
    assert retime(tmp_path, digits_task, repeats=2, echo=lines.append) == 2
    for path in (tmp_path / "results").glob("*.json"):
        raw = json.loads(path.read_text())
        result = raw["result"]
        assert raw["retimed"] and result["speedup_b1"] > 0 and result["latency_speedup"] > 0
        assert set(result["speedup_spread"]) == {"1", "64"}
        assert all(p10 <= p90 for p10, p90 in result["speedup_spread"].values())
    assert len(lines) == 2 and lines[0].endswith("x b64")
    assert {r.method for r in folder_results(tmp_path)} == {"uniform", "random"}
