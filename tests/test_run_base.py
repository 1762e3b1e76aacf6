"""The run base both trainers share: opening a run folder, resume checks, stopping."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from rlprune.errors import RunError
from rlprune.rl.recorder import FAMILY_LOG_FIELDS, FamilyRecorder
from rlprune.rl.run import check_latest_pointer, check_more_episodes, open_run, until_stopped


def test_a_new_run_writes_its_files_and_clears_an_old_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "ep000008").mkdir(parents=True)
    for name in ("episodes.csv", "best.json"):
        (run_dir / name).write_text("old")
    written: list[str] = []
    assert (
        open_run(run_dir, "rlprune train", lambda: written.append("config"), resume=False) is None
    )
    assert written == ["config"]
    assert (run_dir / "command.txt").read_text() == "rlprune train\n"
    assert "torch" in json.loads((run_dir / "versions.json").read_text())
    assert sorted(p.name for p in run_dir.iterdir()) == ["command.txt", "versions.json"]


def test_a_resumed_run_without_a_checkpoint_starts_again(tmp_path: Path) -> None:
    def refuse() -> None:
        raise AssertionError("a resumed run keeps its config")

    assert open_run(tmp_path / "run", "", refuse, resume=True) is None
    check_latest_pointer(tmp_path / "run")  # no pointer: nothing to refuse
    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "run" / "checkpoints" / "latest.json").write_text('{"checkpoint": "ep000008"}')
    with pytest.raises(RunError, match="names a missing checkpoint"):
        check_latest_pointer(tmp_path / "run")


def test_more_episodes_counts_the_logged_rows(tmp_path: Path) -> None:
    recorder = FamilyRecorder(tmp_path)
    info = {"member": "a", "target": 0.5, "accuracy": 0.9, "macs_ratio": 0.5, "prior_reward": 0.8}
    for _ in range(3):
        recorder.record(0.1, info)
    recorder.close()
    check_more_episodes(tmp_path, 3)
    check_more_episodes(tmp_path, None)
    with pytest.raises(RunError, match="--episodes 2 is fewer than the 3 episodes"):
        check_more_episodes(tmp_path, 2)
    # a resumed log keeps the rows its checkpoint covers and appends after them
    again = FamilyRecorder(tmp_path, start_episode=2)
    assert again.episodes == 2 and [r["reward"] for r in again.rows] == [0.1, 0.1]
    again.record(0.2, info)
    again.close()
    lines = (tmp_path / "episodes.csv").read_text().splitlines()
    assert lines[0] == ",".join(FAMILY_LOG_FIELDS)
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]


def test_until_stopped_returns_the_signal_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    assert until_stopped(lambda: None) == 0

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    assert until_stopped(ctrl_c) == signal.SIGINT
    assert until_stopped(lambda: os.kill(os.getpid(), signal.SIGTERM)) == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before
