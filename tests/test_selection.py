"""rlprune.selection: a family run's checkpoints scored on networks outside the family.

Playing checkpoints is tested end to end through the experiments that use it
(tests/test_family.py: select_checkpoint, train_general_policy, bundle_policy); here, the
parts that need no training: which checkpoints and targets a run offers, scores read back
instead of played again, and the one-line errors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from rlprune.errors import ConfigError
from rlprune.rl.policy import LoadedPolicy
from rlprune.selection import Boards, Scored, pick_scale, run_checkpoints, run_targets, score_runs


def _run(folder: Path, episodes: tuple[int, ...], targets: list[float]) -> Path:
    """A run folder as ``rlprune train --env A,B --checkpoint-every N`` leaves it, with
    stand-in weights (scores read back never load them)."""
    for episode in episodes:
        checkpoint = folder / "checkpoints" / f"ep{episode:06d}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "params.pt").write_bytes(f"weights of {episode}".encode())
    (folder / "checkpoints" / "latest.json").write_text("{}")
    (folder / "family.json").write_text(json.dumps({"train": {"targets": targets}}))
    return folder


class _NoPlaying(Boards):
    def gain(self, *args: object, **kwargs: object) -> float:
        raise AssertionError("a kept score was played again")


def test_checkpoints_come_in_episode_order_and_within_a_range(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", (16, 8, 24), [0.3, 0.7])
    assert [p.name for p in run_checkpoints(run)] == ["ep000008", "ep000016", "ep000024"]
    assert [p.name for p in run_checkpoints(run, (10, 24))] == ["ep000016", "ep000024"]
    with pytest.raises(ConfigError, match="has no checkpoints/ep.*within episodes 30:40"):
        run_checkpoints(run, (30, 40))
    with pytest.raises(ConfigError, match="has no checkpoints/ep.*--checkpoint-every"):
        run_checkpoints(tmp_path)


def test_a_single_target_run_plays_only_its_own_target(tmp_path: Path) -> None:
    family = _run(tmp_path / "family", (8,), [0.3, 0.5, 0.7])
    single = _run(tmp_path / "single", (8,), [0.5, 0.5])
    assert run_targets(family, [0.3, 0.7]) == [0.3, 0.7]
    assert run_targets(single, [0.3, 0.5, 0.7]) == [0.5]
    assert run_targets(single, [0.3, 0.7]) == []
    with pytest.raises(ConfigError, match="has no readable family.json"):
        run_targets(tmp_path, [0.5])


def test_scores_kept_in_the_results_file_are_read_back_not_played(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", (8, 16), [0.3, 0.7])
    select, report, targets = ["net-a"], ["net-b"], [0.3, 0.7]
    results = tmp_path / "scores.jsonl"
    lines = []
    for name, score in (("ep000008", 1.5), ("ep000016", 2.5)):
        digest = hashlib.sha256((run / "checkpoints" / name / "params.pt").read_bytes())
        key = [str(run), name, digest.hexdigest()[:16], select, report, targets]
        record = {"accuracy": [["net-a", 0.3, 80.0]], "select": score, "report": -score}
        lines.append(json.dumps({"key": json.dumps(key), **record}))
    results.write_text("\n".join(lines) + '\n{"key": "cut short')  # an interrupt's last line
    seen: list[Scored] = []
    scored, picks = score_runs(
        [run], select, report, targets, boards=_NoPlaying(), results=results, on_scored=seen.append
    )
    assert (
        [s.checkpoint for s in scored] == ["ep000008", "ep000016"] == [s.checkpoint for s in seen]
    )
    assert picks[run].checkpoint == "ep000016" and picks[run].report == -2.5
    assert scored[0].accuracy == {("net-a", 0.3): 80.0}
    assert "ep000016: select-prior +2.50 report-prior -2.50 | net-a@0.3 80.00" in picks[run].line()


def test_a_run_trained_for_another_target_is_skipped(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", (8,), [0.45])
    skipped: list[Path] = []
    scored, picks = score_runs(
        [run], ["net-a"], [], [0.3, 0.5], boards=_NoPlaying(), on_skipped=skipped.append
    )
    assert scored == [] and picks == {} and skipped == [run]


def test_selection_needs_networks_and_strengths_in_range(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", (8,), [0.5])
    with pytest.raises(ConfigError, match="no networks to select on; give --select-on"):
        score_runs([run], [], [], [0.5])
    policy: LoadedPolicy = None  # type: ignore[assignment]  # refused before it is used
    with pytest.raises(ConfigError, match="no networks to select on"):
        pick_scale(policy, [], [0.5], [0, 1])
    with pytest.raises(ConfigError, match=r"scales must lie in \[0, 1\], got \[0, 1.5\]"):
        pick_scale(policy, ["net-a"], [0.5], [0, 1.5])
