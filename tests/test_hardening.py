"""Faults and unsafe defaults: a full disk, bundled weights, a model that does not fit its
data, the candidate cache's bound, and model code named in a run folder."""

from __future__ import annotations

import errno
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rlprune.cli import main
from rlprune.code import trust_code
from rlprune.errors import ModelError
from rlprune.evaluation.task import PruningTask
from rlprune.models.specs import check_recorded_spec, spec_fingerprint
from rlprune.presets.tasks import warn_if_near_chance

ROOT = Path(__file__).resolve().parent.parent


def test_a_full_disk_during_export_ends_in_one_line_and_leaves_nothing(
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real = Path.write_bytes

    def full_disk(self: Path, data: bytes) -> int:
        if "pruned_model" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    out = tmp_path / "apply"
    assert main(["apply", "--policy", str(trained_run), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: No space left on device") and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == [], "a half-written output or staging folder was left"


def test_pretrain_never_replaces_the_bundled_weights_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = ROOT / "weights" / "digits-cnn.pt"
    before = bundled.read_bytes()
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "--env", "digits-cnn", "--epochs", "0"]) == 0
    assert (tmp_path / "pretrained" / "digits-cnn.pt").is_file()
    assert main(["pretrain", "--env", "digits-cnn", "--epochs", "0"]) == 2  # exists now
    assert main(["pretrain", "--env", "digits-cnn", "--epochs", "0", "--overwrite"]) == 0
    assert bundled.read_bytes() == before


def test_a_model_that_scores_near_chance_is_warned_about(
    digits_task: PruningTask, make_small_task: Callable[[str], PruningTask]
) -> None:
    untrained = make_small_task("plain")  # random weights on random labels
    with pytest.warns(UserWarning, match="near chance"):
        warn_if_near_chance(untrained)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_near_chance(digits_task) > 0.9


def test_the_candidate_cache_is_bounded(digits_task: PruningTask) -> None:
    limit = digits_task.cache_limit
    digits_task.reset_search()
    digits_task.cache_limit = 2
    try:
        configs = [
            np.maximum(digits_task.min_channels, digits_task.max_channels - k) for k in range(3)
        ]
        for channels in configs:
            digits_task.evaluate(channels)
        assert len(digits_task.cache) == 2
        assert (tuple(int(c) for c in configs[0]), digits_task.val_size) not in digits_task.cache
        assert len(digits_task.ledger) == 3  # the charge is unaffected
    finally:
        digits_task.cache_limit = limit
        digits_task.reset_search()


def test_a_kept_cache_spares_the_scoring_not_the_charge(digits_task: PruningTask) -> None:
    from rlprune.priors import sensitivity_channels

    def search() -> tuple[np.ndarray, int, int]:
        digits_task.reset_search()
        before = digits_task.timings.evaluations
        channels = sensitivity_channels(digits_task, 0.5)
        return channels, len(digits_task.ledger), digits_task.timings.evaluations - before

    try:
        first, charged, scored = search()
        assert charged == scored > 0  # alone, every probe is scored
        again, charged_again, scored_again = search()
        assert charged_again == charged and scored_again == scored  # the default re-scores
        digits_task.keep_cache = True  # the last search's candidates stay
        shared, charged_shared, scored_shared = search()
        assert charged_shared == charged and scored_shared == 0  # charged, not scored
        assert first.tolist() == again.tolist() == shared.tolist()
    finally:
        digits_task.keep_cache = False
        digits_task.reset_search()


def test_model_code_from_a_run_folder_runs_only_if_unchanged(tmp_path: Path) -> None:
    model = tmp_path / "model.py"
    model.write_text((ROOT / "examples" / "custom_model.py").read_text())
    spec = f"{model}:build"
    recorded = spec_fingerprint(spec)
    with pytest.raises(ModelError, match="did not name when training"):
        check_recorded_spec(spec, recorded, "run folder r")  # the folder's word is no proof
    with pytest.raises(ModelError, match="no recorded checksum; .* pass --model"):
        check_recorded_spec(spec, None, "run folder r")
    trust_code(spec)  # what training records outside the folder
    check_recorded_spec(spec, recorded, "run folder r")  # same file, trusted: allowed
    check_recorded_spec("resnet20", None, "run folder r")  # zoo models are rlprune's code
    model.write_text(model.read_text() + "\nopen('pwned', 'w').write('x')\n")
    with pytest.raises(ModelError, match="changed since training"):
        check_recorded_spec(spec, recorded, "run folder r")
    model.unlink()
    with pytest.raises(ModelError, match="missing"):
        check_recorded_spec(spec, recorded, "run folder r")


def test_resume_imports_a_run_folders_model_file_only_if_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "model.py"
    model.write_text((ROOT / "examples" / "custom_model.py").read_text())
    spec = f"{model}:build"
    args = ["train", "--env", "digits-cnn", "--model", spec, "--episodes", "2", "--out", "runs"]
    assert main(["pretrain", "--env", "digits-cnn", "--model", spec, "--epochs", "0"]) == 0
    weights = str(tmp_path / "pretrained" / "digits-cnn.pt")
    assert main([*args, "--weights", weights]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    # someone edits the model file the run folder names: a resume must not import it
    model.write_text(model.read_text() + "\nopen('pwned', 'w').write('x')\n")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--episodes", "3"]) == 2
    err = capsys.readouterr().err
    assert "changed since training" in err and f"pass --model {spec}" in err
    assert not (tmp_path / "pwned").exists()
    # naming it on the command line is trusting it
    assert main(["train", "--resume", str(run), "--episodes", "3", "--model", spec]) == 0
    assert (tmp_path / "pwned").exists()


def test_onednn_primitive_cache_is_capped_unless_the_user_chose() -> None:
    import os
    import subprocess
    import sys

    code = "import os, rlprune; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "128"
    env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = "7"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "7"
