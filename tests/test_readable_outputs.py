"""Outputs people can read (issue 38, item 6): unwrapped pipes, help text, progress that
leaves nothing stale, hints that work, quiet libraries, plots and logs that say what they
should."""

from __future__ import annotations

import importlib.util
import io
import re
import sys
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml
from rich.console import Console
from rich.table import Table

import rlprune
from rlprune.cli import main
from rlprune.cli.common import console, stage_progress
from rlprune.errors import ConfigError
from rlprune.evaluation.task import PruningTask
from rlprune.presets.loader import available_agents, available_presets, load_env_config
from rlprune.presets.tasks import load_task
from rlprune.search.methods import DEFAULT_METHODS, METHODS

ROOT = Path(__file__).resolve().parent.parent
LONG_NAME = "features.stage4.block2.expand_conv.depthwise_separable_projection"


# --- piped output is not wrapped ------------------------------------------------------


def test_a_table_piped_to_a_file_keeps_its_rows_whole(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    table = Table(title="units")
    for column in ("#", "unit", "MACs ratio", "channels"):
        table.add_column(column)
    table.add_row("0", LONG_NAME, "0.500", "128 → 64")
    console.print(table)
    line = "| method | val acc | test acc | MACs ratio | speedup b1 | speedup b64 |" * 3
    console.print(line)
    out = capsys.readouterr().out
    assert any(LONG_NAME in row and "MACs ratio" not in row for row in out.splitlines())
    assert "MACs ratio" in out and line in out.splitlines()


def test_a_terminal_still_wraps_at_its_width() -> None:
    terminal = type(console)(file=io.StringIO(), force_terminal=True, width=40)
    assert terminal.width == 40


# --- help text ------------------------------------------------------------------------


def help_text(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_pretrain_offers_no_search_flags(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(capsys, "pretrain")
    assert "--target" not in text and "--reward" not in text and "--metric" not in text
    assert "--env" in text and "--epochs" in text and "--threads" in text
    with pytest.raises(SystemExit) as refused:
        main(["pretrain", "--target", "0.5"])
    assert refused.value.code == 2


def test_help_never_splits_a_method_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "70")
    text = " ".join(help_text(capsys, "benchmark").split())
    assert re.search(r"\w- \w", text) is None, "a name split at its hyphen"
    assert f"default: {', '.join(DEFAULT_METHODS)}" in text
    for name in METHODS:
        assert f"{name}: " in text


def test_env_and_agent_help_list_the_bundled_names(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(help_text(capsys, "train").split())
    assert ", ".join(available_presets()) in text
    assert ", ".join(available_agents()) in text


# --- apply's progress -----------------------------------------------------------------


def test_a_stage_line_has_no_bar_or_count() -> None:
    progress = stage_progress()
    stage = progress.add_task("exporting", total=None, bar=False, status="")
    progress.add_task("adapt", total=4, bar=True, status="best acc 0.9")
    progress.update(stage, description="exporting")
    out = Console(file=io.StringIO(), width=120)
    out.print(progress.make_tasks_table(progress.tasks))
    lines = out.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert "exporting" in lines[0] and "/" not in lines[0]
    assert "adapt" in lines[1] and "0/4" in lines[1] and "exporting" not in lines[1]


def test_piped_apply_output_ends_with_results_not_a_stale_bar(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "apply"
    argv = ["apply", "--policy", str(trained_run), "--target", "0.5", "--out", str(out)]
    assert main([*argv, "--adapt-episodes", "1"]) == 0
    printed = capsys.readouterr().out
    assert "exporting" not in printed and "adapting" not in printed
    assert printed.splitlines()[-1] == f"report and pruned model: {out}"


# --- apply and benchmark agree on an existing --out -----------------------------------


def test_apply_refuses_a_used_out_folder_unless_overwrite(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "apply"
    argv = ["apply", "--policy", str(trained_run), "--target", "0.5", "--out", str(out)]
    assert main(argv) == 0
    stale = out / "pruned_model.onnx"
    stale.write_bytes(b"from an earlier apply")
    keep = out / "notes.txt"
    keep.write_text("mine")
    before = (out / "report.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds files" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert (out / "report.json").stat().st_mtime_ns == before
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "report.json").stat().st_mtime_ns != before
    assert keep.read_text() == "mine"
    assert stale.exists() == (importlib.util.find_spec("onnx") is not None)
    if stale.exists():
        assert stale.read_bytes() != b"from an earlier apply"


# --- the missing-weights hint ---------------------------------------------------------


def test_missing_weights_hint_names_the_yaml_preset_as_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("mine.yaml").write_text(yaml.safe_dump({"weights": "mine.pt", "target": 0.5}))
    assert main(["info", "--env", "mine.yaml"]) == 2
    err = capsys.readouterr().err
    assert "rlprune pretrain --env mine.yaml --out " in err, err
    # the command it names works
    assert main(["pretrain", "--env", "mine.yaml", "--epochs", "0", "--out", "mine.pt"]) == 0
    # without the path (the Python API), a YAML preset's name is not offered as a preset
    with pytest.raises(Exception, match="--env PRESET.yaml"):
        load_task(load_env_config("mine.yaml", {"weights": str(tmp_path / "none.pt")}))


# --- load_task takes a dict -----------------------------------------------------------


def test_load_task_takes_a_dict_of_preset_keys() -> None:
    weights = str(ROOT / "weights" / "digits-cnn.pt")
    values = {"name": "mine", "model": "digits-cnn", "dataset": "digits", "weights": weights}
    task = rlprune.load_task({**values, "target": 0.5, "val_size": 200})
    assert task.config.name == "mine" and task.val_size == 200
    with pytest.raises(ConfigError, match="unknown preset key 'targt'"):
        rlprune.load_task({"targt": 0.5})
    with pytest.raises(ConfigError, match="not a int; e.g. load_task"):
        rlprune.load_task(3)  # type: ignore[arg-type]


# --- SB3's make_vec_env ---------------------------------------------------------------


def test_make_vec_env_raises_no_warning(digits_task: PruningTask) -> None:
    from stable_baselines3.common.env_util import make_vec_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vec = make_vec_env(rlprune.ENV_ID, n_envs=1, env_kwargs={"task": digits_task})
    vec.reset()
    frame = vec.env_method("render")[0]  # what SB3 asked for: rgb_array
    units = len(digits_task.analysis.units)
    assert isinstance(frame, np.ndarray) and frame.shape == (64, 16 * units, 3)
    vec.step(np.zeros((1, 1), dtype=np.float32))
    frame = vec.env_method("render")[0]
    assert (frame[:, 2:14] != 255).any()  # the first unit's bar
    vec.close()


# --- TensorBoard: tested in test_conventions (one point per episode) ------------------


# --- the keep-ratio plot's title ------------------------------------------------------


def test_keep_ratio_plot_title_lies_inside_the_figure() -> None:
    from rlprune.evaluation.candidates import Candidate
    from rlprune.reports import plots
    from rlprune.reports.tables import MethodSeedResult

    units = ("features.0", "features.4", "features.8")
    methods = ["ppo", "random", "eagleeye", "tpe", "cma-es", "uniform", "magnitude"]
    results = [
        MethodSeedResult(
            method=m,
            seed=0,
            evaluations=50,
            best=Candidate(
                channels=(8, 16, 32),
                keep_ratios=(0.5, 0.5, 0.5),
                accuracy=0.9,
                macs=1000,
                params=100,
                macs_ratio=0.5,
                params_ratio=0.5,
            ),
            test_accuracy=0.9,
            test_accuracy_finetuned=None,
            latency_speedup=1.5,
            wall_time_s=1.0,
            units=units,
        )
        for m in methods
    ]
    figure = plots._keep_ratios(results, plots.method_colors(methods))
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    titles = [t for t in figure.texts if "Keep ratio" in t.get_text()]
    titles += [ax.title for ax in figure.axes if "Keep ratio" in ax.title.get_text()]
    assert len(titles) == 1
    box = titles[0].get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= figure.bbox.x1 and box.y1 <= figure.bbox.y1


# --- profile_env's shares -------------------------------------------------------------


def _profile_env() -> ModuleType:
    path = ROOT / "tools" / "profile_env.py"
    spec = importlib.util.spec_from_file_location("profile_env_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_profile_env_shares_add_up_to_the_whole() -> None:
    tool = _profile_env()
    # the parts' medians come from different episodes: 3 + 3 + 3 + 1 ms of a 10 ms median
    rows = {
        "prune": [1.0, 3.0, 3.0],
        "calibrate": [3.0, 1.0, 3.0],
        "evaluate": [3.0, 3.0, 1.0],
        "other": [1.0, 1.0, 1.0],
    }
    rows["total"] = [sum(parts) for parts in zip(*rows.values(), strict=True)]
    shares = tool.shares(rows)
    assert sum(v for k, v in shares.items() if k != "total") == pytest.approx(1.0)
    assert shares["total"] == 1.0


def test_profile_env_prints_shares_that_add_up(capsys: pytest.CaptureFixture[str]) -> None:
    tool = _profile_env()
    assert tool.main(["--episodes", "3"]) == 0
    out = capsys.readouterr().out
    parts = re.findall(r"^  (prune|calibrate|evaluate|other)\s+[\d.]+ ms\s+([\d.]+)%", out, re.M)
    assert len(parts) == 4
    assert sum(float(share) for _, share in parts) == pytest.approx(100.0, abs=0.25)


def test_no_weights_warning_names_the_yaml_preset_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("mine.yaml").write_text(yaml.safe_dump({"target": 0.5, "weights": None}))
    with pytest.warns(UserWarning, match=r"gives no weights.*rlprune pretrain --env mine\.yaml"):
        assert main(["info", "--env", "mine.yaml"]) == 0
