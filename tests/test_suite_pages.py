"""The sentences the suites' pages compute from kept results: where ppo ranks (docs/vit.md)
and how far searched bests measure from their predicted latency (docs/latency.md).

The committed results are the fixture: a wrong verdict would misstate them on the page.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from rlprune.suites import restore

ROOT = Path(__file__).resolve().parent.parent


def _harness(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"{name}_page", ROOT / "experiments" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _kept(data: Path, name: str, tmp_path: Path) -> Path:
    folder = tmp_path / name
    assert restore(data, folder, ROOT), name
    return folder


def test_the_vit_page_says_where_ppo_is_not_best_and_where_it_ties(tmp_path: Path) -> None:
    vit = _harness("vit_suite")
    behind = vit.verdict(_kept(vit.KEPT, "fmnist-vit-t0.5", tmp_path))
    assert behind.startswith("**ppo is not best here**: 2nd of 8")
    assert "0.03 points behind tpe (81.88 %)" in behind
    tied = vit.verdict(_kept(vit.KEPT, "fmnist-vit-t0.7", tmp_path))
    assert "shares the best validation accuracy (88.25 %) with sensitivity" in tied
    assert "the same pruned network as sensitivity on every seed" in tied
    assert vit.verdict(tmp_path / "fmnist-vit-t0.7", method="nobody") == ""


@pytest.mark.parametrize(
    ("n", "word"), [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (22, "22nd")]
)
def test_ordinals(n: int, word: str) -> None:
    assert _harness("vit_suite")._ordinal(n) == word


def test_the_latency_page_measures_searched_bests_against_their_prediction(
    tmp_path: Path,
) -> None:
    latency = _harness("latency_suite")
    folder = _kept(latency.KEPT, "fmnist-resnet20-lat0.5-b50", tmp_path)
    line = latency._curse_line(folder, 1, {"median_error": 0.016})[0]
    assert line.startswith("Measured against predicted at batch 1: these 27 bests measure")
    assert "over random candidates the model's median error is 1.6 %" in line
    low, high = (
        float(x) for x in line.split("measure ")[1].split(" off")[0].replace(" %", "").split(" to ")
    )
    assert low < 0 < high  # some bests measure faster than predicted, some slower
    assert latency._curse_line(tmp_path / "nothing", 1, None) == []
