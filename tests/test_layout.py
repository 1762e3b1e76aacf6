"""The layout's promises: imports flow one way, light rooms stay light, experiments stand alone."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlprune.arguments import build_parser as arguments_parser
from rlprune.cli import build_parser
from rlprune.evaluation.candidates import Candidate
from rlprune.search.methods import DEFAULT_METHODS, METHODS, methods_help

ROOT = Path(__file__).resolve().parent.parent


def _modules_after_import(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


@pytest.mark.parametrize(
    "statement",
    ["import rlprune", "import rlprune.rl.policy", "from rlprune.rl.policy import load_policy"],
)
def test_policy_loading_does_not_import_data_models_or_plotting(statement: str) -> None:
    loaded = _modules_after_import(statement)
    heavy = ("sklearn", "matplotlib", "rlprune.data", "rlprune.models", "rlprune.presets.tasks")
    assert not [m for m in loaded if m.startswith(heavy)]
    if "policy" in statement:
        assert "rlprune.rl.policy" in loaded  # the check above saw a real import


def test_public_api_is_importable_lazily() -> None:
    import rlprune

    assert rlprune.PruningEnv.__module__ == "rlprune.env.pruning_env"
    assert rlprune.PruningTask.__module__ == "rlprune.evaluation.task"
    assert set(rlprune.__all__) <= set(dir(rlprune))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rlprune.nope  # noqa: B018


def test_import_contracts_hold() -> None:
    """An upward import (say core importing env) breaks a contract in pyproject.toml."""
    linter = Path(sys.executable).parent / "lint-imports"  # the dev extra installs it
    result = subprocess.run([str(linter)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "0 broken" in result.stdout


HARNESSES = sorted([*(ROOT / "experiments").glob("*.py"), *(ROOT / "tools").glob("*.py")])


def test_experiments_and_tools_stand_alone() -> None:
    """Each file under experiments/ and tools/ imports the library, never another of them,
    and never edits sys.path: one file reads on its own, as CleanRL's do."""
    assert len(HARNESSES) >= 14
    names = {path.stem for path in HARNESSES} | {p.stem for p in (ROOT / "scripts").glob("*.py")}
    for path in HARNESSES:
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert not imported & names, f"{path.name} imports {imported & names}"
        assert "sys.path" not in path.read_text(), path.name


@pytest.mark.parametrize("path", HARNESSES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_harness_takes_its_arguments_from_one_dataclass(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location(f"harness_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses resolve names there
    spec.loader.exec_module(module)  # defines Args and main; runs nothing
    # a harness with commands (zoo.py train / table) has one more dataclass per command
    commands = [v for k, v in vars(module).items() if k.endswith("Args") and k != "Args"]
    for args in (module.Args, *commands):
        text = arguments_parser(args).format_help()
        for name, field in args.__dataclass_fields__.items():
            assert f"--{name.replace('_', '-')}" in text
            assert field.metadata.get("help"), f"{path.name}: --{name} has no help"


def test_method_help_and_defaults_come_from_the_registry() -> None:
    text = methods_help()
    assert all(f"{name}: " in text for name in METHODS)
    assert set(DEFAULT_METHODS) <= set(METHODS)
    benchmark = build_parser()._subparsers._group_actions[0].choices["benchmark"]  # type: ignore[union-attr]
    assert benchmark.get_default("methods") == ",".join(DEFAULT_METHODS)


def test_candidate_record_round_trips_and_rejects_damage() -> None:
    candidate = Candidate((4, 8), (0.5, 1.0), 0.9, 100, 10, 0.5, 0.25)
    assert Candidate.from_dict(json.loads(json.dumps(candidate.to_dict()))) == candidate
    assert Candidate.from_dict({**candidate.to_dict(), "target": 0.5}) == candidate
    from rlprune.errors import ConfigError

    with pytest.raises(ConfigError, match="missing field 'macs'"):
        Candidate.from_dict({k: v for k, v in candidate.to_dict().items() if k != "macs"})
