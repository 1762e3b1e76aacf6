"""The torchvision zoo: registry, presets, bad input, training resume, a tiny transfer table."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rlprune.env.pruning_env import PruningEnv
from rlprune.errors import ModelError, RunError
from rlprune.evaluation.finetune import FitResult
from rlprune.evaluation.splits import from_tensors
from rlprune.evaluation.task import PruningTask
from rlprune.files import file_digest
from rlprune.mdp.settings import make_config
from rlprune.models import torchvision_zoo
from rlprune.models.specs import build_model
from rlprune.models.torchvision_zoo import ZOO, InputAdapter, torchvision_net, zoo_net
from rlprune.models.weights import load_weights, save_weights
from rlprune.presets.loader import GENERAL_POLICY, load_env_config
from rlprune.presets.tasks import load_task
from tests.test_data import write_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "experiments" / "zoo.py"
CHEAP = ("squeezenet1_1", "shufflenet_v2_x0_5")
"""Zoo networks cheap enough for the fast tests."""


def _harness() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("zoo_harness", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _fmnist_like(folder: Path) -> Path:
    """Tiny Fashion-MNIST look-alike IDX files, enough training images for the zoo presets'
    2000 validation images."""
    return write_fashion_mnist(folder, gz=False, n_train=2100)


def _episode(model: torch.nn.Module) -> tuple[PruningTask, float]:
    """Analyse ``model`` on random 28 x 28 grey images and play one random episode at 0.5."""
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, 1, 28, 28, generator=g), torch.randint(10, (n,), generator=g)

    data = from_tensors(*split(8), *split(8), *split(8))
    config = make_config({"target": 0.5, "calibration_batches": 1, "batch_size": 8})
    task = PruningTask.from_model(model.eval(), data, config.task)
    env = PruningEnv(task=task, config=config)
    env.reset(seed=0)
    info: dict[str, float] = {}
    done = False
    rng = np.random.default_rng(0)
    while not done:
        _, _, done, _, info = env.step(rng.uniform(-1, 1, size=1).astype(np.float32))
    return task, float(info["macs_ratio"])


# ------------------------------------------------------------------------- registry


def test_zoo_has_twelve_families_and_the_hard_structures() -> None:
    assert len(ZOO) >= 12
    assert len({net.family for net in ZOO.values()}) == len(ZOO)
    structures = {s for net in ZOO.values() for s in net.structures}
    assert {"grouped", "shuffle", "se", "dense", "inception"} <= structures
    assert structures <= set(torchvision_zoo.STRUCTURES)
    # none of the general policy's training family (this project's own networks)
    family = json.loads((ROOT / "policies" / "general" / "policy.json").read_text())["family"]
    assert not {net.preset for net in ZOO.values()} & set(family)


@pytest.mark.filterwarnings("ignore:21 layer:UserWarning")  # shufflenet's shuffled layers
@pytest.mark.parametrize("name", CHEAP)
def test_zoo_network_analyses_and_prunes_one_episode(name: str) -> None:
    model = build_model(
        "torchvision", in_channels=1, num_classes=10, input_size=28, kwargs={"name": name}
    )
    assert isinstance(model.adapt, InputAdapter)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    task, macs_ratio = _episode(model)
    assert len(task.analysis.units) > 5
    assert macs_ratio <= 0.5 * 1.01  # the budget guarantee


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ZOO if n not in CHEAP])
def test_every_zoo_network_analyses_and_prunes_one_episode(name: str) -> None:
    model = torchvision_net(name, in_channels=1, input_size=28)
    task, macs_ratio = _episode(model)
    assert task.analysis.units and macs_ratio <= 0.5 * 1.01


def test_adapter_repeats_grey_and_pads_to_32() -> None:
    x = torch.arange(28 * 28, dtype=torch.float32).view(1, 1, 28, 28)
    y = InputAdapter(1, 28)(x)
    assert y.shape == (1, 3, 32, 32)
    assert torch.equal(y[0, 2, 2:30, 2:30], x[0, 0]) and y[0, :, :2].abs().sum() == 0
    # RGB images of 32 px or more go to torchvision's network unchanged
    assert not hasattr(torchvision_net("squeezenet1_1", in_channels=3, input_size=32), "adapt")


def test_every_zoo_network_has_its_preset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RLPRUNE_CACHE_DIR", str(tmp_path))
    presets = {p.stem for p in (ROOT / "envs").glob("zoo-*.yaml")}
    assert presets == {net.preset for net in ZOO.values()}
    for name, net in ZOO.items():
        config = load_env_config(net.preset)
        assert config.task.model == "torchvision"
        assert config.task.model_kwargs == {"name": name}
        assert config.task.weights == str(tmp_path / "zoo" / f"{name}.pt")
        assert set(config.task.pretrain) >= {"epochs", "lr", "batch_size"}


# ------------------------------------------------------------------------ bad input


def test_a_name_not_in_the_zoo_is_one_line() -> None:
    with pytest.raises(
        ModelError, match=r"'resnet9000' is not in the torchvision zoo; choose"
    ) as e:
        zoo_net("resnet9000")
    assert "\n" not in str(e.value)
    assert zoo_net("zoo-mobilenet-v2").name == "mobilenet_v2"


def test_a_model_torchvision_lacks_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match=r"torchvision \S+ has no classification model 'nope'"):
        torchvision_net("nope")
    # an older torchvision without a zoo network
    older = types.SimpleNamespace(list_models=lambda module=None: ["resnet18"])
    monkeypatch.setattr(torchvision_zoo, "torchvision_models", lambda: older)
    with pytest.raises(ModelError, match="has no classification model 'mobilenet_v3_small'.*pip"):
        torchvision_net("mobilenet_v3_small")


def test_bad_constructor_arguments_and_channels_are_one_line() -> None:
    with pytest.raises(ModelError, match="does not take \\['wings'\\]"):
        torchvision_net("squeezenet1_1", wings=2)
    with pytest.raises(ModelError, match="not 4 channels"):
        torchvision_net("squeezenet1_1", in_channels=4)


def test_missing_weights_cache_names_the_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RLPRUNE_CACHE_DIR", str(tmp_path))
    with pytest.raises(
        ModelError, match="not found; run `rlprune pretrain --env zoo-squeezenet1-1"
    ):
        load_task("zoo-squeezenet1-1")
    harness = _harness()
    with pytest.raises(
        Exception, match=r"experiments/zoo.py train --resume --networks squeezenet1_1`"
    ):
        harness.table(["--networks", "squeezenet1_1", "--data", str(tmp_path / "d")])


def test_unknown_command_and_network_are_usage_errors() -> None:
    run = subprocess.run([sys.executable, str(HARNESS), "fly"], capture_output=True, text=True)
    assert run.returncode == 2 and "usage: zoo.py {train,table}" in run.stderr
    run = subprocess.run(
        [sys.executable, str(HARNESS), "train", "--networks", "resnet9000"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "'resnet9000' is not in the torchvision zoo" in run.stderr


# --------------------------------------------------------------------------- train


def test_interrupted_training_resumes_keeping_finished_networks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RLPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RLPRUNE_DATA", str(_fmnist_like(tmp_path / "fmnist")))
    harness = _harness()
    trained: list[str] = []

    def fake_pretrain(config, *, out, stop_at=None, **kwargs):  # type: ignore[no-untyped-def]
        """Save the untrained model as if trained (the test is about bookkeeping)."""
        name = config.model_kwargs["name"]
        if name == stop_at:
            raise KeyboardInterrupt
        trained.append(name)
        model = build_model(
            "torchvision", in_channels=1, num_classes=10, input_size=28, kwargs={"name": name}
        )
        save_weights(model, out, {"val_accuracy": 0.9, "test_accuracy": 0.88, "seconds": 1.0})
        return Path(out), FitResult(epochs=1, val_accuracy=0.9, test_accuracy=0.88, seconds=1.0)

    data = tmp_path / "record"
    argv = ["--networks", ",".join(CHEAP), "--data", str(data)]
    monkeypatch.setattr(harness, "pretrain", lambda c, **k: fake_pretrain(c, stop_at=CHEAP[1], **k))
    with pytest.raises(KeyboardInterrupt):
        harness.train(argv)
    assert trained == [CHEAP[0]]
    record = json.loads((data / "zoo.json").read_text())
    assert list(record["networks"]) == [CHEAP[0]]
    assert not (tmp_path / "cache" / "zoo" / f"{CHEAP[1]}.pt").exists()  # nothing half-written
    entry = record["networks"][CHEAP[0]]
    assert entry["test_accuracy"] == 0.88 and entry["params"] > 0 and entry["macs"] > 0

    with pytest.raises(Exception, match="pass --resume to keep the trained networks"):
        harness.train(argv)
    monkeypatch.setattr(harness, "pretrain", fake_pretrain)
    assert harness.train([*argv, "--resume"]) == 0
    assert trained == list(CHEAP)  # the finished one was kept, not trained again
    assert set(json.loads((data / "zoo.json").read_text())["networks"]) == set(CHEAP)
    # a preset that trains its network otherwise now: --resume trains that one again
    settings = harness.train_settings
    changed = {"epochs": 99}
    monkeypatch.setattr(
        harness, "train_settings", lambda n: changed if n.name == CHEAP[0] else settings(n)
    )
    assert harness.train([*argv, "--resume"]) == 0
    assert trained == [*CHEAP, CHEAP[0]]


def test_a_versioned_state_dict_round_trips_through_the_weight_file(tmp_path: Path) -> None:
    # torchvision's MNASNet refuses a state dict without its version (_metadata), which a
    # weights_only load drops: the zoo's trained mnasnet0_5 failed to load this way
    def build() -> torch.nn.Module:
        return build_model(
            "torchvision",
            in_channels=1,
            num_classes=10,
            input_size=28,
            kwargs={"name": "mnasnet0_5"},
        )

    model, other = build(), build()
    save_weights(model, tmp_path / "w.pt")
    load_weights(other, tmp_path / "w.pt")
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(model.eval()(x), other.eval()(x))


def test_two_trainers_on_other_networks_share_the_record(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RLPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RLPRUNE_DATA", str(_fmnist_like(tmp_path / "fmnist")))
    harness = _harness()
    data = tmp_path / "record"
    first, second = CHEAP[0], CHEAP[1]
    trained: list[str] = []

    def save(name: str, out: Path) -> None:
        model = build_model(
            "torchvision", in_channels=1, num_classes=10, input_size=28, kwargs={"name": name}
        )
        save_weights(model, out, {"val_accuracy": 0.9, "test_accuracy": 0.88, "seconds": 1.0})
        trained.append(name)

    def fake_pretrain(config, *, out, **kwargs):  # type: ignore[no-untyped-def]
        """While this trains ``first``, another process trains ``second`` and records it."""
        if config.model_kwargs["name"] == first:
            net = harness.ZOO[second]
            save(second, harness.weights_path(net))
            other = harness.read_record(data)
            other["networks"][second] = harness.describe(net, harness.weights_path(net))
            harness._write(data, other)
        save(config.model_kwargs["name"], Path(out))
        return Path(out), FitResult(epochs=1, val_accuracy=0.9, test_accuracy=0.88, seconds=1.0)

    monkeypatch.setattr(harness, "pretrain", fake_pretrain)
    assert harness.train(["--networks", f"{first},{second}", "--data", str(data)]) == 0
    assert trained == [second, first]  # the other's network is not trained again
    assert set(json.loads((data / "zoo.json").read_text())["networks"]) == {first, second}


# --------------------------------------------------------------------------- table


@pytest.mark.slow
def test_tiny_table_runs_then_resumes_and_rebuilds_from_kept_data(tmp_path: Path) -> None:
    name = "squeezenet1_1"
    cache, fmnist = tmp_path / "cache", _fmnist_like(tmp_path / "fmnist")
    model = build_model(
        "torchvision", in_channels=1, num_classes=10, input_size=28, kwargs={"name": name}
    )
    save_weights(model, cache / "zoo" / f"{name}.pt")
    env = {**os.environ, "RLPRUNE_CACHE_DIR": str(cache), "RLPRUNE_DATA": str(fmnist)}
    out, data, page = tmp_path / "out", tmp_path / "data", tmp_path / "zoo.md"
    common = ["--networks", name, "--targets", "0.5", "--seeds", "1", "--evals", "4"]
    common += ["--val-size", "100"]
    common += ["--refine", "2", "--heuristics", "uniform,magnitude", "--out", str(out)]
    common += ["--data", str(data), "--markdown", str(page)]
    common += ["--figure", str(tmp_path / "gaps.png")]

    def table(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(HARNESS), "table", *common, *extra],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=900,
        )

    run = table()
    assert run.returncode == 0, run.stderr[-2000:]
    first = page.read_text()
    assert (
        f"| {name} |" in first
        and "**median (1 of 13)**" in first
        and (tmp_path / "gaps.png").is_file()
    )
    assert f"**{name} @ 0.5**:" in first
    # a second run without --resume refuses to mix results
    again = table()
    assert again.returncode == 2 and "pass --resume" in again.stderr
    # a fresh clone (no results folder, no weights) resumes from the kept data alone
    shutil.rmtree(out)
    weights = cache / "zoo" / f"{name}.pt"
    shutil.copy(weights, tmp_path / "weights.pt")
    weights.unlink()
    resumed = table("--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert page.read_text() == first
    rebuilt = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            "table",
            "--page-only",
            "--networks",
            name,
            "--out",
            str(out),
            "--data",
            str(data),
            "--markdown",
            str(page),
            "--figure",
            str(tmp_path / "gaps.png"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert page.read_text() == first
    # a challenger policy plays zero-shot and refine beside the shipped one, kept for
    # --page-only; a copy of the shipped policy lands where the shipped one does
    # (a new policy needs the network: the very weights the row was scored on)
    shutil.copy(tmp_path / "weights.pt", weights)
    rival = tmp_path / "rival"
    shutil.copytree(GENERAL_POLICY, rival)
    challenged = table("--resume", "--challenger", str(rival))
    assert challenged.returncode == 0, challenged.stderr[-2000:]
    text = page.read_text()
    assert "## Challenger: rival" in text and f"**{name} @ 0.5**:" in text.split("rival")[-1]
    row = next(
        line for line in text.splitlines() if line.startswith(f"| {name}") and line.count("|") == 8
    )
    shipped_zero, rival_zero, shipped_refine, rival_refine = row.split("|")[2:6]
    assert shipped_zero == rival_zero and shipped_refine == rival_refine
    assert (data / f"zoo-{name}-t0.5-policy-rival.json.gz").is_file()
    rebuilt_page = page.read_text()
    rebuild = table("--page-only")
    assert rebuild.returncode == 0, rebuild.stderr[-2000:]
    assert page.read_text() == rebuilt_page
    # another process kept a second network in --data: a run on the first lists both
    other = "mobilenet_v3_small"
    for kept in data.glob(f"zoo-{name}-t*.json.gz"):
        if "policy" in kept.name:
            continue
        shutil.copy(kept, data / kept.name.replace(name, other))
    record = json.loads((data / "table.json").read_text())
    record["distance"][f"zoo-{other}-t0.5"] = record["distance"][f"zoo-{name}-t0.5"]
    (data / "table.json").write_text(json.dumps(record))
    both = table("--resume")
    assert both.returncode == 0, both.stderr[-2000:]
    assert f"**{name} @ 0.5**:" in page.read_text() and f"**{other} @ 0.5**:" in page.read_text()


def test_page_only_before_any_run_lists_the_zoo(tmp_path: Path) -> None:
    record = {
        "networks": {
            "squeezenet1_1": {
                "params": 735_000,
                "macs": 21_000_000,
                "train_images": 116_000,
                "test_accuracy": 0.871,
                "seconds": 300.0,
            },
            "googlenet": {
                "params": 5_600_000,
                "macs": 30_000_000,
                "train_images": 116_000,
                "test_accuracy": 0.8115,
                "seconds": 600.0,
            },
            "shufflenet_v2_x0_5": {
                "params": 352_042,
                "macs": 880_106,
                "train_images": 116_000,
                "test_accuracy": 0.8647,
                "seconds": 818.4,
                "train": {"epochs": 1},
            },
        }
    }
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "zoo.json").write_text(json.dumps(record))
    page = tmp_path / "zoo.md"
    argv = ["--page-only", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")]
    assert _harness().table([*argv, "--markdown", str(page)]) == 0
    text = page.read_text()
    assert "| squeezenet1_1 | squeezenet | fire | 0.73 M | 21.0 M | 116,000 | 87.10 | 5.0 |" in text
    assert "| densenet121 | densenet | dense | | | | not trained | |" in text
    assert "| 86.47 *to retrain* |" in text  # trained otherwise than its preset says now
    assert "| 81.15 *below 85 %* |" in text
    assert "1 of 13 networks are trained to at least 85 % test accuracy (as" in text
    assert "Nothing has run yet" in text and "densenet121 @ 0.3" in text


def test_pretrain_stops_after_its_images_and_recalibrates_batchnorm(tmp_path: Path) -> None:
    from rlprune.pretrain import pretrain

    config = load_env_config(
        "digits-cnn",
        {"pretrain": {"epochs": 3, "batch_size": 32, "images": 64, "calibrate_batches": 2}},
    )
    steps: list[tuple[int, int]] = []
    path, result = pretrain(
        config.task,
        out=tmp_path / "w.pt",
        on_step=lambda d, n: steps.append((d, n)),
        metadata={"note": "zoo"},
    )
    assert steps[-1] == (2, 2)  # 64 images of batch 32, of 3 epochs' worth
    meta = torch.load(path, weights_only=True)["metadata"]
    assert meta["images"] == 64 and meta["note"] == "zoo" and meta["seconds"] >= 0
    assert 0 <= result.test_accuracy <= 1


def test_page_counts_the_issue_figures_and_names_who_chose_what(tmp_path: Path) -> None:
    zoo = _harness()

    def setting(**means: float) -> list[types.SimpleNamespace]:
        return [
            types.SimpleNamespace(method=method, val_accuracy=value, evaluations=1.0)
            for method, value in means.items()
        ]

    names = ("transfer-apply", "transfer-apply-refine", "uniform", "sensitivity", "tpe")
    rows = {
        "a": {0.5: setting(**dict(zip(names, (0.80, 0.84, 0.70, 0.80, 0.82), strict=True)))},
        "b": {0.5: setting(**dict(zip(names, (0.60, 0.66, 0.61, 0.50, 0.63), strict=True)))},
        "c": {0.3: setting(**dict(zip(names, (0.50, 0.55, 0.40, 0.45, 0.52), strict=True)))},
    }
    assert zoo.at_chance(setting(tpe=0.115, uniform=0.1)) and not zoo.at_chance(rows["a"][0.5])
    lines = zoo.figure_lines(rows, [0.5, 0.3], 13)
    # a ties sensitivity (not a win) and beats uniform; b beats sensitivity, loses to uniform
    assert lines[0] == (
        "- **MACs target 0.5** (2 of 13 networks run): zero-shot at or above uniform on 1 of 2, "
        "above sensitivity on 1 of 2; median gap to TPE of zero-shot -2.50 points, of refine "
        "+2.50 points."
    )
    assert lines[1].startswith("- **MACs target 0.3** (1 of 13 networks run)")
    policy = tmp_path / "policy"
    policy.mkdir()
    meta = {"family": ["fmnist-resnet20", "fmnist-cnn"], "outside_scale": 0.25}
    meta["scale_selection"] = {"select_on": ["net-c"]}
    (policy / "policy.json").write_text(json.dumps(meta))
    read = zoo.policy_meta(policy)
    assert zoo.seen_families(read) == {"resnet": "fmnist-resnet20", "digits-cnn": "fmnist-cnn"}
    seen = zoo.seen_families(read)
    chosen = "\n".join(zoo.chooser_lines(read, seen, ["resnet18"]))
    assert "fmnist-resnet20, fmnist-cnn" in chosen and "(how far `--trust family` damps" in chosen
    assert "0.25): net-c." in chosen and "The zoo chose nothing" in chosen
    assert "resnet18 (resnet: fmnist-resnet20)" in chosen and "vgg11_bn (" not in chosen
    assert zoo.family_of("mobilenetv1") == "mobilenet-v1" and zoo.family_of("resnet20") == "resnet"


def test_table_processes_on_other_networks_keep_each_others_distances(tmp_path: Path) -> None:
    zoo = _harness()
    path = tmp_path / "table.json"
    settings = {"seeds": 3}
    first = {"settings": settings, "distance": {}}
    second = {"settings": settings, "distance": {}}  # read before the first wrote
    zoo.record_distance(path, first, "zoo-a-t0.5", {"units": 3, "outside": []})
    zoo.record_distance(path, second, "zoo-b-t0.5", {"units": 4, "outside": []})
    kept = json.loads(path.read_text())
    assert kept["settings"] == settings
    assert set(kept["distance"]) == {"zoo-a-t0.5", "zoo-b-t0.5"} == set(second["distance"])


def test_a_long_table_run_catches_up_on_challengers_kept_meanwhile(tmp_path: Path) -> None:
    zoo = _harness()
    path = tmp_path / "table.json"
    started = {"settings": {"seeds": 3}, "distance": {"zoo-a-t0.5": {"units": 3}}}
    path.write_text(json.dumps(started))
    kept = json.loads(path.read_text())  # a table run reads the record, then runs for hours
    meanwhile = {**started, "challengers": {"wide3": "policies/candidates/wide3"}}
    meanwhile["distance"] = {**started["distance"], "zoo-b-t0.5": {"units": 4}}
    path.write_text(json.dumps(meanwhile))
    zoo.catch_up(path, kept)
    assert kept["challengers"] == {"wide3": "policies/candidates/wide3"}
    assert set(kept["distance"]) == {"zoo-a-t0.5", "zoo-b-t0.5"}
    zoo.catch_up(tmp_path / "none.json", kept)  # no record yet: nothing changes
    assert set(kept["distance"]) == {"zoo-a-t0.5", "zoo-b-t0.5"}


def test_a_challenger_is_not_run_by_page_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zoo = _harness()
    with pytest.raises(SystemExit) as exit_info:
        zoo.table(["--page-only", "--challenger", str(tmp_path), "--data", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--page-only shows the challengers kept already" in capsys.readouterr().err
    assert zoo.challenger_tag(tmp_path / "runs" / "wide policy") == "wide-policy"


def test_a_challenger_is_refused_beside_a_row_scored_on_other_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    zoo = _harness()
    weights = tmp_path / "net.pt"
    weights.write_bytes(b"retrained")
    folders = {"zoo-a-t0.5-heuristics": ("uniform",), "zoo-a-t0.5": ("tpe",)}
    row = tmp_path / "out" / "zoo-a-t0.5"
    row.mkdir(parents=True)
    manifest = {"env": {}, "weights_digest": file_digest(weights)}
    (row / "benchmark.json").write_text(json.dumps(manifest))
    zoo.check_row_weights(tmp_path / "out", folders, weights, "c")  # same weights; one not run
    for before in ("0123456789abcdef", None):  # other weights, or scored before digests
        (row / "benchmark.json").write_text(json.dumps({"env": {}, "weights_digest": before}))
        with pytest.raises(RunError, match=r"c: the table's row zoo-a-t0.5 was scored on other"):
            zoo.check_row_weights(tmp_path / "out", folders, weights, "c")
    # and the table checks before it plays a challenger
    monkeypatch.setattr(zoo, "weights_path", lambda net: weights)
    monkeypatch.setattr(zoo, "_play", lambda *a, **k: pytest.fail("played on other weights"))
    args = zoo.Args(out=tmp_path / "out", heuristics=["uniform"])
    net = types.SimpleNamespace(name="a")
    with pytest.raises(RunError, match=r"zoo-a-t0.5-policy-c: the table's row zoo-a-t0.5 "):
        zoo.run_challenger(args, net, 0.5, {}, "c", tmp_path)
    # a page rebuilt from what was kept plays nothing: it restores, whatever the weights
    monkeypatch.setattr(zoo, "_play", lambda *a, **k: [])
    assert zoo.run_challenger(replace(args, page_only=True), net, 0.5, {}, "c", tmp_path) == []


def test_a_challenger_needs_the_weights_even_where_the_rows_are_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RLPRUNE_CACHE_DIR", str(tmp_path))
    zoo = _harness()
    monkeypatch.setattr(zoo, "_kept_setting", lambda args, name, target: True)
    args = zoo.Args(networks=["squeezenet1_1"], resume=True)
    assert zoo._missing_weights(args) == []  # every row kept: the table restores them
    args = zoo.Args(networks=["squeezenet1_1"], resume=True, challenger=tmp_path)
    assert zoo._missing_weights(args) == ["squeezenet1_1"]


def test_a_retrained_network_keeps_its_earlier_weights_and_marks_their_rows(
    tmp_path: Path,
) -> None:
    zoo = _harness()
    first = {"test_accuracy": 0.8663}  # trained before digests were kept
    second = zoo.with_earlier({"test_accuracy": 0.87, "weights_digest": "b"}, dict(first))
    assert second["earlier"] == [first]
    again = zoo.with_earlier({"test_accuracy": 0.87, "weights_digest": "b"}, dict(second))
    assert again["earlier"] == [first]  # the same weights described again: nothing earlier
    third = zoo.with_earlier({"test_accuracy": 0.88, "weights_digest": "c"}, dict(second))
    assert [e.get("weights_digest") for e in third["earlier"]] == [None, "b"]
    assert "earlier" not in third["earlier"][1]  # kept flat, oldest first
    assert "earlier" not in zoo.with_earlier({"weights_digest": "a"}, None)
    assert second["earlier"] == [first]  # what the caller holds is left as it was

    out = tmp_path / "out"
    for folder, digest in (("zoo-a-t0.5", None), ("zoo-a-t0.3", "c"), ("zoo-b-t0.3", "b")):
        (out / folder).mkdir(parents=True)
        (out / folder / "benchmark.json").write_text(json.dumps({"weights_digest": digest}))
    assert zoo.row_digests(out, ["zoo-a-t0.5", "zoo-a-t0.3", "not-run"]) == {
        "zoo-a-t0.5": None,
        "zoo-a-t0.3": "c",
    }
    a05 = zoo.row_digests(out, ["zoo-a-t0.5"])
    assert zoo.scored_earlier(a05, third)
    assert not zoo.scored_earlier(zoo.row_digests(out, ["zoo-a-t0.3", "not-run"]), third)
    assert zoo.scored_earlier(zoo.row_digests(out, ["zoo-b-t0.3"]), third)
    assert not zoo.scored_earlier(a05, first)  # no digest kept: unknown
    assert zoo.earlier_words("a", third, [None]) == "a tested 86.63 %"
    assert zoo.earlier_words("a", third, ["b", "c"]) == "a tested 87.00 %"
    assert zoo.earlier_words("a", third, ["z"]) == "a"  # weights the record never knew


def test_the_page_marks_a_row_scored_on_weights_retrained_since(tmp_path: Path) -> None:
    zoo = _harness()
    out, name = tmp_path / "out", "resnet18"
    args = zoo.Args(
        out=out, data=tmp_path, markdown=tmp_path / "zoo.md", figure=tmp_path / "gaps.png"
    )
    for folder in zoo._folders(args, name, 0.5):  # scored before digests were kept
        (out / folder).mkdir(parents=True)
        (out / folder / "benchmark.json").write_text(json.dumps({"env": {}}))
    means = {"transfer-apply": 0.8, "transfer-apply-refine": 0.82, "tpe": 0.81}
    rows = {
        name: {
            0.5: [
                types.SimpleNamespace(method=m, val_accuracy=v, evaluations=1.0)
                for m, v in means.items()
            ]
        }
    }
    info = {
        "params": 1e6,
        "macs": 1e6,
        "train_images": 1000,
        "seconds": 60.0,
        "train": zoo.train_settings(zoo.ZOO[name]),
        "test_accuracy": 0.8912,
        "weights_digest": "c",
    }
    record = {"networks": {name: {**info, "earlier": [{"test_accuracy": 0.8866}]}}}
    kept = {"settings": {}, "distance": {}}
    zoo.write_page(args, rows, kept, record, [])
    page = (tmp_path / "zoo.md").read_text()
    assert f"| {name}* ‡ |" in page and f"({name} tested 88.66 %)" in page
    record["networks"][name] = {**info, "weights_digest": None}  # not known: not marked
    zoo.write_page(args, rows, kept, record, [])
    assert f"| {name}* |" in (tmp_path / "zoo.md").read_text()


def test_page_only_leaves_a_distance_not_recorded_unmeasured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # measuring it costs the probes on the network's weights: not what --page-only promises
    zoo = _harness()
    monkeypatch.setattr(zoo, "settle", lambda *a, **k: True)  # every folder kept, finished
    monkeypatch.setattr(zoo, "folder_results", lambda folder: [folder.name])
    monkeypatch.setattr(zoo, "load_env_config", lambda *a: pytest.fail("built the network"))
    args = zoo.Args(out=tmp_path, page_only=True, resume=True)
    net = types.SimpleNamespace(name="a", preset="zoo-a")
    kept: dict = {"distance": {}}
    folders = {"zoo-a-t0.5": ("tpe",)}
    assert zoo._play(args, net, 0.5, kept, folders, tmp_path, "zoo-a-t0.5") == ["zoo-a-t0.5"]
    assert kept["distance"] == {}
    assert zoo._distance_words(kept["distance"].get("zoo-a-t0.5")) == "not measured"
    with pytest.raises(pytest.fail.Exception, match="built the network"):  # a run measures it
        zoo._play(replace(args, page_only=False), net, 0.5, kept, folders, tmp_path, "zoo-a-t0.5")


def test_the_wide_family_shares_no_family_with_the_zoo() -> None:
    spec = importlib.util.spec_from_file_location(
        "train_general_policy", ROOT / "experiments" / "train_general_policy.py"
    )
    assert spec is not None and spec.loader is not None
    trainer = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = trainer  # (its dataclasses look their module up)
    spec.loader.exec_module(trainer)
    zoo = _harness()
    families = {zoo.family_of(load_env_config(p).task.model) for p in trainer.WIDE}
    assert families == {"ghostnet", "convmixer", "mobilenet-v1"}
    assert not families & {net.family for net in ZOO.values()}
    # the shipped policy's family does share two (the page stars them)
    shipped = {zoo.family_of(load_env_config(p).task.model) for p in trainer.FAMILY}
    assert shipped & {net.family for net in ZOO.values()} == {"resnet", "regnet"}
