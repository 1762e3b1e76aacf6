"""The command line: info, pretrain, and one-line errors."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

from rlprune.cli import main
from rlprune.cli.common import LogLines, status_progress


def test_info_prints_units_and_totals(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--env", "digits-cnn"]) == 0
    out = capsys.readouterr().out
    assert "features.0" in out and "features.7" in out
    assert "MACs: 1.82M" in out and "units: 3" in out


def test_pretrain_writes_loadable_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "w.pt"
    assert main(["pretrain", "--env", "digits-cnn", "--epochs", "1", "--out", str(out)]) == 0
    payload = torch.load(out, weights_only=True)
    assert payload["metadata"]["epochs"] == 1 and "features.0.weight" in payload["state_dict"]
    out_text = capsys.readouterr().out
    assert "saved" in out_text
    # a log file (captured output is no terminal) gets plain progress lines, the last at the end
    lines = [line for line in out_text.splitlines() if line.startswith("pretrain digits-cnn: ")]
    assert 2 <= len(lines) <= 11 and lines[-1].endswith(" batches")
    done, total = lines[-1].split(": ")[1].split()[0].split("/")
    assert done == total


def test_episode_progress_prints_a_line_per_tenth_to_a_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress, set_status = status_progress(20, "ppo on digits-cnn")
    with progress:
        for episode in range(1, 21):
            set_status(episode, f"best {episode}")
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if line.startswith("ppo on digits-cnn: ")]  # rich's bar aside
    assert lines[0] == "ppo on digits-cnn: 1/20 best 1"  # the first tenth, then one per tenth
    assert lines[-1] == "ppo on digits-cnn: 20/20 best 20" and len(lines) == 11


def test_log_lines_print_on_the_console_they_are_given() -> None:
    # experiments/zoo.py draws on its own console: its log lines must go there, not to stdout
    text = io.StringIO()
    log = LogLines("  1/1 resnet18", out=Console(file=text, width=200))
    for done in range(1, 31):
        log(done, 30, "batches")
    lines = text.getvalue().splitlines()
    assert lines[0] == "  1/1 resnet18: 1/30 batches" and lines[1].endswith(": 3/30 batches")
    assert lines[-1] == "  1/1 resnet18: 30/30 batches" and len(lines) == 11


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info", "--env", "digits-cnn", "--target", "1.5"], "outside (0, 1]"),
        (["info", "--env", "digits-cnn", "--target", "0.01"], "unreachable"),
        (["info", "--env", "nope"], "unknown env preset"),
        (["info", "--env", "digits-cnn", "--reward", "bogus"], "unknown reward"),
        (["info", "--env", "digits-cnn", "--model", "nope.py:f"], "nope.py"),
        (["info", "--env", "digits-cnn", "--weights", "missing.pt"], "not found"),
    ],
)
def test_bad_input_is_one_line_error(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_console_script_exits_nonzero_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rlprune.cli", "info", "--env", "digits-cnn", "--target", "2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "outside (0, 1]" in proc.stderr


def test_debug_after_the_command_shows_the_traceback() -> None:
    with pytest.raises(ValueError, match="outside"):
        main(["info", "--env", "digits-cnn", "--target", "2", "--debug"])
    with pytest.raises(ValueError, match="outside"):
        main(["--debug", "info", "--env", "digits-cnn", "--target", "2"])
