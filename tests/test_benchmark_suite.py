"""experiments/benchmark_suite.py: a tiny suite on digits, then the page rebuilt from its results."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "experiments" / "benchmark_suite.py"


def _suite(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SUITE), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_suite_runs_then_page_only_rebuilds_and_lists_missing(tmp_path: Path) -> None:
    out, page, data = tmp_path / "suite", tmp_path / "B.md", tmp_path / "data"
    common = ["--settings", "digits-cnn@0.5", "--seeds", "1", "--no-transfer", "--out", str(out)]
    common += ["--finetune-images", "0", "--proxy-candidates", "0", "--markdown", str(page)]
    common += ["--data", str(data)]
    run = _suite("--budgets", "12", *common, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    # a log says which job runs before it ends: a start line, then its result
    assert re.search(r"\] ppo seed 0: started \d\d:\d\d\n.*\] 1/\d+ ppo seed 0: val ", run.stdout)
    folder = out / "digits-cnn-t0.5-b12"
    manifest = json.loads((folder / "benchmark.json").read_text())
    for method in manifest["settings"]["methods"]:
        assert (folder / "results" / f"{method}__0.json").is_file(), method
    first = page.read_text()
    assert "## digits-cnn, MACs target 0.5, budget 12 full evaluations" in first
    # the page says how to rebuild it from the kept data, with no local folder in the command
    rebuild = "`python experiments/benchmark_suite.py --budgets 12 --seeds 1 --finetune-images 0"
    rebuild += " --proxy-candidates 0 --settings digits-cnn@0.5 --no-transfer --page-only`"
    assert rebuild in first and "runs/" not in first
    # summaries and tables, no bullets under the tables: the "ppo beats X" notes stay in
    # each benchmark's own report
    tables = first.split("## digits-cnn, MACs target 0.5")[1]
    assert not [line for line in tables.splitlines() if line.startswith("- ")]
    assert " beats " not in first and " loses to " not in first and " ties with " not in first
    assert "Not run yet" not in first and "## Transfer" not in first
    # the goal line counts the settings where the summary ranks ppo first
    goal = first.split("Goal at budget 12: ppo has the best mean validation accuracy on ")[1]
    assert goal.startswith(f"{int('ppo ranks 1 of' in first)} of 1 settings")

    # a fresh clone holds only the kept data: the page comes back without rerunning
    kept = data / "digits-cnn-t0.5-b12.json.gz"
    assert kept.is_file()
    original = json.loads((folder / "results" / "ppo__0.json").read_text())
    shutil.rmtree(out)
    restored = _suite("--budgets", "12", "--page-only", *common, cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr[-2000:]
    assert json.loads((folder / "results" / "ppo__0.json").read_text()) == original
    assert page.read_text() == first  # byte for byte
    # and --resume from the kept data runs nothing again (the result is not recomputed)
    resumed = _suite("--budgets", "12", "--resume", *common, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert ": started " not in resumed.stdout
    assert json.loads((folder / "results" / "ppo__0.json").read_text()) == original
    # --rerun runs the methods it names again, and only them
    results = folder / "results"
    kept = {name: (results / name).stat().st_mtime_ns for name in ("random__0.json", "ppo__0.json")}
    rerun = _suite("--budgets", "12", "--resume", "--rerun", "random", *common, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert re.findall(r"\] (\S+) seed 0: started", rerun.stdout) == ["random"]
    assert (results / "random__0.json").stat().st_mtime_ns > kept["random__0.json"]
    assert (results / "ppo__0.json").stat().st_mtime_ns == kept["ppo__0.json"]

    # one finished setting and one not: the page keeps the first and names the second
    (folder / "results" / "random__0.json").rename(tmp_path / "held.json")
    empty = ["--data", str(tmp_path / "nothing-kept")]
    rebuilt = _suite("--budgets", "12,24", "--page-only", *common, *empty, cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    text = page.read_text()
    assert "Not run yet" in text
    assert "digits-cnn-t0.5-b12" in text.split("Not run yet")[1].splitlines()[0]
    assert "digits-cnn-t0.5-b24" in text.split("Not run yet")[1].splitlines()[0]
    assert not (out / "digits-cnn-t0.5-b24").exists()  # page-only runs nothing
    (tmp_path / "held.json").rename(folder / "results" / "random__0.json")
    again = _suite("--budgets", "12,24", "--page-only", *common, *empty, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    text = page.read_text()
    assert "## digits-cnn, MACs target 0.5, budget 12" in text
    assert "digits-cnn-t0.5-b12" not in text.split("Not run yet")[1].splitlines()[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rerun", "sensitivity"], "--rerun needs --resume"),
        (["--resume", "--rerun", "sensitivty"], "--rerun: unknown method 'sensitivty'"),
    ],
)
def test_a_rerun_that_would_do_nothing_is_a_usage_error(
    args: list[str], message: str, tmp_path: Path
) -> None:
    run = _suite(*args, "--out", str(tmp_path / "suite"), cwd=tmp_path)
    assert run.returncode == 2 and message in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "suite").exists()
