"""The torchvision zoo: train it on Fashion-MNIST, then the general policy's transfer table on it.

    python experiments/zoo.py train                  # every zoo network, into the cache
    python experiments/zoo.py train --resume         # keep the finished ones, train the rest
    python experiments/zoo.py table --resume         # the transfer table (CPU hours), resumable
    python experiments/zoo.py table --page-only      # seconds: docs/zoo.md from the kept results
    python experiments/zoo.py table --resume --challenger runs/bundle-wide  # another policy

A challenger plays zero-shot and refine on every setting the table keeps (its other
columns stand); the page compares it with the shipped policy, which is how the zoo decides
whether a new policy ships.

Several ``train`` or ``table`` processes may run at once on other ``--networks`` (one per
core, ``OMP_NUM_THREADS=1`` for ``table``); each writes the page with every network the
data folder keeps, its own and the others' (``--page-only`` once they are all done catches
what finished after the last write).

``train`` trains every network of :data:`rlprune.models.torchvision_zoo.ZOO` as its preset
``envs/zoo-NAME.yaml`` says (``rlprune pretrain`` settings: epochs, images, lr, ...), with a
progress bar, into rlprune's cache folder (``$RLPRUNE_CACHE_DIR``, else
``~/.cache/rlprune``; ``zoo/NAME.pt``, written atomically) and records each network's
accuracy, time, images, parameters and MACs in docs/benchmarks/zoo/zoo.json. An interrupted
training keeps the networks finished before it (``--resume``); the one it stopped in trains
again from the start, and so does one whose preset's training settings changed since.

``table`` runs, for every zoo network and target (0.5 and 0.3 by default), 3 seeds, every
cost in full-evaluation equivalents (probes charged): ``transfer-apply`` (what ``rlprune
apply`` delivers by default: the bundled general policy's zero-shot configuration, the
uniform allocation or the policy's prior, the best), ``transfer-apply-refine`` (``rlprune
apply --refine 20``), ``transfer`` (the policy's episode alone), the heuristics ``uniform``, ``magnitude`` and
``sensitivity`` at their own costs, and ``random`` and ``tpe`` given --evals (100)
evaluations. A configuration scored for one method is not scored again for the next
(each is still charged for it). Results are kept, compressed, in docs/benchmarks/zoo/ after every one
(:mod:`rlprune.suites`), with the family distance ``rlprune apply`` prints for each
network; ``--resume`` continues from a fresh clone, ``--page-only`` rebuilds docs/zoo.md
and its gap figure from them alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rlprune.arguments import arg, parse
from rlprune.cli import fraction_list
from rlprune.cli.common import LogLines
from rlprune.env.rollout import TRUST_MODES
from rlprune.errors import ModelError, RLPruneError, RunError, run_script
from rlprune.files import atomic_write_json, file_digest
from rlprune.models.torchvision_zoo import ZOO, ZooNet, zoo_net
from rlprune.models.weights import load_weights
from rlprune.presets.loader import GENERAL_POLICY, load_env_config
from rlprune.presets.tasks import build_config_model, load_data
from rlprune.pretrain import pretrain
from rlprune.pruning.macs import count_macs_params
from rlprune.reports.tables import MethodSeedResult
from rlprune.rl.policy import load_policy
from rlprune.rl.transfer import network_distance
from rlprune.search.benchmark import MANIFEST, BenchmarkSettings, benchmark_config, load_task
from rlprune.search.methods import METHODS as REGISTRY
from rlprune.suites import adopt_settings, folder_results, rerun_error, run_kept, settle

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "benchmarks" / "zoo"
RECORD = "zoo.json"
"""Each trained network's accuracy, time and size, kept in --data."""
ZOO_ACCURACY = 0.85
"""The test accuracy every zoo network is to reach."""
INPUT = "grey repeated into 3 channels, zero-padded 28 -> 32 px (a thin adapter module)"

console = Console(stderr=True)


def name_list(text: str) -> list[str]:
    """An argparse type: zoo networks, comma-separated (torchvision or preset names)."""
    try:
        return [zoo_net(name).name for name in text.split(",")]
    except ModelError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def name_list_plain(text: str) -> list[str]:
    """An argparse type: names, comma-separated (checked later)."""
    return [name for name in text.split(",") if name]


# ------------------------------------------------------------------------------ train


@dataclass
class TrainArgs:
    """``zoo.py train``'s arguments (``--flag-name`` for each field)."""

    networks: list[str] = arg(list(ZOO), "zoo networks, comma-separated", parse=name_list)
    resume: bool = arg(False, "keep the networks whose weights are in the cache already")
    overwrite: bool = arg(False, "train the networks again, replacing their weights")
    data: Path = arg(DATA, f"where {RECORD} (each network's accuracy, time, size) is kept")
    threads: int = arg(0, "torch threads (0: torch's default)")


def check_train(args: TrainArgs) -> str | None:
    """Arguments that parse but do not go together."""
    if args.resume and args.overwrite:
        return "--resume keeps trained networks, --overwrite trains them again: pass one"
    return None


def read_record(data: Path) -> dict[str, Any]:
    """The kept training record (empty when there is none)."""
    path = data / RECORD
    return json.loads(path.read_text()) if path.is_file() else {"networks": {}}


def weights_path(net: ZooNet) -> Path:
    """Where ``net``'s trained weights lie (its preset's ``weights``)."""
    weights = load_env_config(net.preset).task.weights
    assert weights is not None  # every zoo preset names its weights
    return Path(weights)


def train_settings(net: ZooNet) -> dict[str, Any]:
    """How ``net``'s preset trains it (its ``pretrain`` section, with the default epochs)."""
    return {"epochs": 10, **load_env_config(net.preset).task.pretrain}


def describe(net: ZooNet, path: Path) -> dict[str, Any]:
    """What the record keeps of a trained network: its weights' metadata (accuracy, time,
    settings), its size and MACs at Fashion-MNIST's 28 x 28."""
    config = load_env_config(net.preset)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    meta = payload.get("metadata", {})
    data = load_data(config.task)
    model = build_config_model(config.task, data)
    load_weights(model, path)
    macs, params = count_macs_params(model.eval(), torch.zeros(1, *data.input_shape))
    settings = {"epochs": 10, "images": None, **config.task.pretrain}
    train_size = len(data.train)  # type: ignore[arg-type]
    images = int(settings["epochs"]) * train_size
    if settings["images"] is not None:
        images = min(images, int(settings["images"]))
    return {
        "family": net.family,
        "structures": list(net.structures),
        "preset": net.preset,
        "input": INPUT,
        "train": train_settings(net),
        "train_images": images,
        "val_accuracy": meta.get("val_accuracy"),
        "test_accuracy": meta.get("test_accuracy"),
        "seconds": meta.get("seconds"),
        "threads": meta.get("threads"),
        "params": params,
        "macs": macs,
        "command": meta.get("command"),
    }


def train(argv: list[str]) -> int:
    """Train the zoo networks asked for into the cache, recording each."""
    args = parse(TrainArgs, argv, description="Train the torchvision zoo.", check=check_train)
    if args.threads:
        torch.set_num_threads(args.threads)
    record = read_record(args.data)
    kept_at_start = dict(record["networks"])  # several `train`s may share the record
    nets = [ZOO[name] for name in args.networks]
    todo = []
    for net in nets:
        path = weights_path(net)
        if path.is_file() and not args.overwrite:
            if not args.resume:
                raise RunError(
                    f"{path} holds {net.name}'s weights already; pass --resume to keep the "
                    "trained networks (or --overwrite to train them again)"
                )
            kept = record["networks"].get(net.name)
            if kept is not None and kept["train"] != train_settings(net):
                console.print(
                    f"{net.name}: its preset trains it otherwise now; training it again",
                    highlight=False,
                )
                todo.append(net)
                continue
            if kept is None:  # trained, then stopped before recording
                record["networks"][net.name] = describe(net, path)
                _write(args.data, record)
            console.print(f"{net.name}: trained already ({path})", highlight=False)
            continue
        todo.append(net)
    for number, net in enumerate(todo, 1):
        path = weights_path(net)
        latest = read_record(args.data)["networks"].get(net.name)
        if (  # another `train` (on other --networks) finished it since this one began
            not args.overwrite
            and path.is_file()
            and latest
            and latest != kept_at_start.get(net.name)
            and latest["train"] == train_settings(net)
        ):
            console.print(f"{net.name}: trained meanwhile ({path})", highlight=False)
            continue
        config = load_env_config(net.preset)
        command = "python experiments/zoo.py train --networks " + net.name
        label = f"{number}/{len(todo)} {net.name}"
        start, cpu_start = time.perf_counter(), time.process_time()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} batches"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            bar = progress.add_task(label, total=None)
            log = LogLines(f"  {label}", out=console)

            def on_step(
                done: int, steps: int, bar: Any = bar, progress: Any = progress, log: LogLines = log
            ) -> None:
                progress.update(bar, completed=done, total=steps)
                log(done, steps, "batches")

            _, result = pretrain(
                config.task,
                out=path,
                overwrite=True,
                command=command,
                on_step=on_step,
                metadata={"threads": torch.get_num_threads()},
            )
        record = read_record(args.data)  # what other `train` processes recorded since
        entry = {
            **describe(net, path),
            # the CPU time (all threads) stands apart from the machine's load; wall time not
            "cpu_seconds": round(time.process_time() - cpu_start, 1),
            "load_average": round(os.getloadavg()[0], 2),
            # what the table's kept results record too: retraining elsewhere is not
            # bit-reproducible, so this names the network its rows were scored on
            "weights_digest": file_digest(path),
        }
        record["networks"][net.name] = with_earlier(entry, record["networks"].get(net.name))
        _write(args.data, record)
        verdict = "" if result.test_accuracy >= ZOO_ACCURACY else "  (below 85 %!)"
        console.print(
            f"{net.name}: test {100 * result.test_accuracy:.2f} % val "
            f"{100 * result.val_accuracy:.2f} % in {time.perf_counter() - start:.0f} s -> "
            f"{path}{verdict}",
            highlight=False,
            soft_wrap=True,
        )
    return 0


def with_earlier(entry: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """``entry`` keeping the networks it replaces under ``earlier`` (oldest first): rows the
    table scored on those weights stay on the page, and the page says which they were."""
    if previous is None:
        return entry
    earlier = list(previous.get("earlier", []))
    before = previous.get("weights_digest")
    if before is None or before != entry.get("weights_digest"):  # (None: not known same)
        earlier.append({k: v for k, v in previous.items() if k != "earlier"})
    return {**entry, "earlier": earlier} if earlier else entry


def _write(data: Path, record: dict[str, Any]) -> None:
    record["torch"] = torch.__version__
    record["torchvision"] = _torchvision_version()
    record["input"] = INPUT
    record["networks"] = dict(sorted(record["networks"].items()))
    atomic_write_json(data / RECORD, record)


def _torchvision_version() -> str:
    from importlib.metadata import version

    return version("torchvision")


# ------------------------------------------------------------------------------ table

TABLE = "table.json"
"""The table run's settings and every network's family distance, kept in --data."""
TARGETS = (0.5, 0.3)
HEURISTICS = ("uniform", "magnitude", "sensitivity")
SEARCHES = ("random", "tpe")
SEARCHED = ("transfer-apply", "transfer-apply-refine", "transfer", *SEARCHES)
"""Run with --evals (random and TPE spend them all, the transfer methods their own cost)."""
CHALLENGED = ("transfer-apply", "transfer-apply-refine")
"""What a challenger policy plays on each setting (the shipped policy's other columns stand)."""
COLUMNS = {
    "transfer-apply": "zero-shot",
    "transfer-apply-refine": "refine",
    "transfer": "policy alone",
    "uniform": "uniform",
    "magnitude": "magnitude",
    "sensitivity": "sensitivity",
    "random": "random",
    "tpe": "TPE",
}
"""The table's columns: method -> heading."""


@dataclass
class Args:
    """``zoo.py table``'s arguments (``--flag-name`` for each field)."""

    networks: list[str] = arg(list(ZOO), "zoo networks, comma-separated", parse=name_list)
    targets: list[float] = arg(list(TARGETS), "MACs targets, comma-separated", parse=fraction_list)
    seeds: int = arg(3, "seeds per method")
    evals: int = arg(100, "evaluations for random search and TPE")
    refine: int = arg(20, "evaluations of transfer-refine (rlprune apply --refine N)")
    policy: Path = arg(GENERAL_POLICY, "the policy played (default: the bundled general one)")
    heuristics: list[str] = arg(
        list(HEURISTICS),
        "heuristics, comma-separated, each run at its own cost (sensitivity: units x 3 "
        "probes + 1, whatever --evals says)",
        parse=name_list_plain,
    )
    trust: str = arg(
        "family", "as rlprune apply --trust (its default: family)", choices=TRUST_MODES
    )
    val_size: int = arg(
        0, "validation images per evaluation (0: the preset's 2000; fewer: cheaper, noisier)"
    )
    finetune_images: int = arg(
        0, "fine-tune each best candidate on this many training images (0: none)"
    )
    rerun: list[str] = arg(
        [],
        "with --resume: run these methods again; the kept results of the others stand",
        parse=name_list_plain,
        metavar="METHODS",
    )
    challenger: Path | None = arg(
        None,
        "also play this policy (zero-shot and refine) on every setting the table keeps, "
        "beside the shipped one: the zoo decides whether it ships (--page-only shows every "
        "challenger kept)",
    )
    out: Path = arg(ROOT / "results" / "zoo", "where the benchmark folders go")
    data: Path = arg(DATA, "where each setting's results and the run's settings are kept")
    resume: bool = arg(False, "keep finished results (restored from --data)")
    page_only: bool = arg(
        False, f"run nothing: rebuild the page from what --data keeps ({TABLE}, {RECORD})"
    )
    markdown: Path = arg(ROOT / "docs" / "zoo.md", "where to write the page")
    figure: Path = arg(DATA / "gaps.png", "where to draw the gaps to TPE")


def check_table(args: Args) -> str | None:
    """Arguments that parse but would be ignored or fail later: a usage error up front."""
    error = rerun_error(args.rerun, args.resume)
    if error:
        return error
    unknown = sorted(set(args.heuristics) - set(HEURISTICS))
    if unknown:
        return f"--heuristics: unknown {unknown[0]!r}; choose from {', '.join(HEURISTICS)}"
    if args.challenger is not None and args.page_only:
        return "--challenger runs a policy; --page-only shows the challengers kept already"
    if not 0 < args.refine < args.evals:
        return f"--refine must lie in 1..{args.evals - 1} (below --evals), got {args.refine}"
    if args.seeds < 1 or args.evals < 1:
        return "--seeds and --evals must be positive"
    return None


def settings_of(args: Args) -> dict[str, Any]:
    """What the kept record says the table ran with (a resume must match it)."""
    return {
        "policy": _shown(args.policy),
        "targets": args.targets,
        "seeds": args.seeds,
        "evals": args.evals,
        "refine": args.refine,
        "heuristics": args.heuristics,
        "trust": args.trust,
        "finetune_images": args.finetune_images,
        "val_size": args.val_size,
    }


def _shown(path: Path) -> str:
    """A path relative to the repository when it lies inside it."""
    try:
        return str(path.resolve().relative_to(ROOT.resolve()))
    except ValueError:
        return str(path)


def _key(name: str, target: float) -> str:
    return f"zoo-{name}-t{target}"


def _folders(args: Args, name: str, target: float) -> dict[str, tuple[str, ...]]:
    """A setting's benchmark folders and their methods, in the order they run: the
    heuristics (if any) at their own costs first, so the columns the zero-shot policy is
    judged against land before the long searches; then the searches and transfer methods
    with --evals."""
    key = _key(name, target)
    folders: dict[str, tuple[str, ...]] = {}
    if args.heuristics:
        folders[f"{key}-heuristics"] = tuple(args.heuristics)
    folders[key] = SEARCHED
    return folders


def run_setting(
    args: Args, net: ZooNet, target: float, kept: dict[str, Any]
) -> list[MethodSeedResult]:
    """One (network, target): its benchmark folders run or restored, kept in --data, and
    their results; its family distance recorded in ``kept`` (the table record)."""
    key = _key(net.name, target)
    return _play(args, net, target, kept, _folders(args, net.name, target), args.policy, key)


def challenger_tag(policy: Path) -> str:
    """A challenger's name in folder names and on the page: its folder's name."""
    folder = policy.parent if policy.is_file() or policy.suffix else policy
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name) or "policy"


def run_challenger(
    args: Args, net: ZooNet, target: float, kept: dict[str, Any], tag: str, policy: Path
) -> list[MethodSeedResult]:
    """One (network, target) played by challenger ``policy`` (:data:`CHALLENGED`), run or
    restored, kept in --data; its family distance recorded under the folder's name."""
    folder = f"{_key(net.name, target)}-policy-{tag}"
    if not args.page_only:  # (restoring what was played then needs no weights)
        check_row_weights(args.out, _folders(args, net.name, target), weights_path(net), folder)
    return _play(args, net, target, kept, {folder: CHALLENGED}, policy, folder)


def check_row_weights(out: Path, folders: Iterable[str], weights: Path, label: str) -> None:
    """Refuse to play a challenger (``label``) beside a row the shipped policy was scored on
    other weights for (or before digests were kept): it would be judged against another
    network, since training is not bit-reproducible. Folders not run yet are skipped."""
    now = file_digest(weights)
    for folder, before in row_digests(out, folders).items():
        if before != now:
            raise RunError(
                f"{label}: the table's row {folder} was scored on other weights than "
                f"{weights} (sha256 {before or 'not recorded'}, now {now}); rerun the row on "
                "these (--resume --rerun with every method) or restore those weights"
            )


def row_digests(out: Path, folders: Iterable[str]) -> dict[str, str | None]:
    """The weights digest each run folder of a row was scored on (None: before digests
    were kept); folders not run yet are left out."""
    digests = {}
    for folder in folders:
        manifest = out / folder / MANIFEST
        if manifest.is_file():
            digests[folder] = json.loads(manifest.read_text()).get("weights_digest")
    return digests


def scored_earlier(digests: dict[str, str | None], info: dict[str, Any] | None) -> bool:
    """Whether a row whose folders were scored on ``digests`` (:func:`row_digests`) used
    other weights than the record's network ``info`` (retrained since). Unknown, so False,
    where the record keeps no digest."""
    now = (info or {}).get("weights_digest")
    return now is not None and any(d != now for d in digests.values())


def _play(
    args: Args,
    net: ZooNet,
    target: float,
    kept: dict[str, Any],
    folders: dict[str, tuple[str, ...]],
    policy: Path,
    searched: str,
) -> list[MethodSeedResult]:
    """Run or restore benchmark ``folders`` (folder -> methods) of one (network, target),
    kept in --data: folder ``searched`` plays ``policy`` with --evals and --refine, the
    others (heuristics) run at their own costs. The family distance of ``policy`` is
    recorded under ``searched``."""
    done = {
        folder: settle(
            args.out / folder,
            args.data,
            ROOT,
            methods,
            resume=args.resume,
            page_only=args.page_only,
            rerun=args.rerun,
        )
        for folder, methods in folders.items()
    }
    # (--page-only runs nothing: a distance not recorded yet shows as not measured; the
    # table process recording it, or the next --resume, puts it on the page)
    if not all(done.values()) or (searched not in kept["distance"] and not args.page_only):
        overrides = {"target": target, "val_size": args.val_size or None}
        config = benchmark_config(load_env_config(net.preset, overrides), str(policy))
        task = load_task(config, None)
        # the methods' sensitivity probes are the same configurations: scored once, each
        # method still charged for them (wall times then no longer compare; not shown)
        task.keep_cache = True
        for folder, methods in folders.items():
            if done[folder]:
                continue
            own_cost = max(REGISTRY[m].min_evals(task) for m in methods)
            settings = BenchmarkSettings(
                methods=methods,
                evals=args.evals if folder == searched else own_cost,
                seeds=args.seeds,
                finetune_epochs=1 if args.finetune_images else 0,
                finetune_images=args.finetune_images or None,
                policy=str(policy) if folder == searched else None,
                adapt_episodes=args.refine if folder == searched else 0,
                trust=args.trust,
            )
            out = args.out / folder
            if args.resume and args.rerun:
                adopt_settings(out, settings)
            run_kept(task, config, settings, out, args.data, ROOT, folder, resume=args.resume)
        outside = network_distance(load_policy(policy), task, target)
        entry = {
            "units": len(task.analysis.units),
            "outside": [[name, steps, round(d, 4)] for name, steps, d in outside],
        }
        record_distance(args.data / TABLE, kept, searched, entry)
    return [r for folder in folders for r in folder_results(args.out / folder)]


def record_distance(path: Path, kept: dict[str, Any], key: str, entry: dict[str, Any]) -> None:
    """Keep one setting's family distance in the table record at ``path``, re-read first:
    several ``table`` processes on other ``--networks`` may share it."""
    latest = json.loads(path.read_text()) if path.is_file() else {}
    latest.setdefault("settings", kept["settings"])
    latest.setdefault("distance", {})[key] = entry
    kept["distance"].update(latest["distance"])
    atomic_write_json(path, latest)


def catch_up(path: Path, kept: dict[str, Any]) -> None:
    """Add to ``kept`` the distances and challengers that other ``table`` processes recorded
    in ``path`` since this one read it (a long run would write a page without them)."""
    if path.is_file():
        latest = json.loads(path.read_text())
        for field in ("distance", "challengers"):
            kept.setdefault(field, {}).update(latest.get(field, {}))


def _kept_setting(args: Args, name: str, target: float) -> bool:
    """Whether --data keeps every folder of the setting (finished or not)."""
    return all((args.data / f"{f}.json.gz").is_file() for f in _folders(args, name, target))


def _missing_weights(args: Args) -> list[str]:
    """The networks asked for whose weights are not in the cache and whose settings are not
    all kept, or that a challenger plays (those need the network)."""
    missing = []
    for name in args.networks:
        net = ZOO[name]
        kept = all(_kept_setting(args, name, t) for t in args.targets)
        needed = args.challenger is not None or not (args.resume and kept)
        if not weights_path(net).is_file() and needed:
            missing.append(name)
    return missing


def table(argv: list[str]) -> int:
    """Run (or restore) every zoo setting, keep the results, write docs/zoo.md and its figure."""
    args = parse(Args, argv, description="The zoo's transfer table.", check=check_table)
    path = args.data / TABLE
    kept: dict[str, Any] = (
        json.loads(path.read_text()) if path.is_file() else {"settings": {}, "distance": {}}
    )
    if args.page_only and kept["settings"]:
        saved = kept["settings"]
        args.targets, args.seeds = [float(t) for t in saved["targets"]], int(saved["seeds"])
        args.evals, args.refine = int(saved["evals"]), int(saved["refine"])
        args.heuristics = list(saved["heuristics"])
        args.val_size = int(saved["val_size"])
    elif not args.page_only:  # (--page-only before any table run: the zoo, nothing run yet)
        if args.resume and kept["settings"] and kept["settings"] != settings_of(args):
            raise RunError(
                f"{args.data / TABLE} was run with {kept['settings']}; resume it with those "
                "settings (or pass another --data and --out)"
            )
        if not args.resume and any(args.data.glob("zoo-*.json.gz")):
            raise RunError(
                f"{args.data} keeps results of an earlier table; pass --resume to finish it "
                "(or another --data and --out)"
            )
        missing = _missing_weights(args)
        if missing:
            raise RunError(
                f"no trained weights in the cache for {', '.join(missing)}; make them with "
                f"`python experiments/zoo.py train --resume --networks {','.join(missing)}`"
            )
        kept["settings"] = settings_of(args)
        if args.challenger is not None:
            kept.setdefault("challengers", {})[challenger_tag(args.challenger)] = _shown(
                args.challenger
            )
        args.data.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, kept)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[float, list[MethodSeedResult]]] = {}
    pending: list[str] = []
    # the page lists every zoo network: those not asked for are restored from --data (a
    # process on other --networks may have kept them), so no run writes a partial page
    restore = replace(args, page_only=True, resume=True)
    for name in ZOO:
        run = name in args.networks and not args.page_only
        for target in args.targets:
            if not run and not _kept_setting(args, name, target):
                pending.append(f"{name} @ {target}")
                continue
            print(f"zoo: {name} at {target}{'' if run else ' (kept)'}", flush=True)
            if not run:
                catch_up(path, kept)
            try:
                results = run_setting(args if run else restore, ZOO[name], target, kept)
            except RunError:
                if run:
                    raise
                pending.append(f"{name} @ {target}")  # kept, but not finished
                continue
            rows.setdefault(name, {})[target] = results
    catch_up(path, kept)  # a challenger kept while this run went on is on the page too
    challenged = play_challengers(args, rows, kept)
    write_page(args, rows, kept, read_record(args.data), pending, challenged)
    return 0


def play_challengers(
    args: Args, rows: dict[str, dict[float, list[MethodSeedResult]]], kept: dict[str, Any]
) -> dict[str, dict[str, dict[float, list[MethodSeedResult]]]]:
    """Every kept challenger on the settings the table has: ``--challenger`` run on each
    kept setting of ``--networks``, the rest restored where they finished. Tag -> network
    -> target -> its results."""
    challengers = kept.get("challengers", {})
    ran = challenger_tag(args.challenger) if args.challenger is not None else None
    restore = replace(args, page_only=True, resume=True)
    played: dict[str, dict[str, dict[float, list[MethodSeedResult]]]] = {}
    for tag, shown in challengers.items():
        policy = ROOT / shown  # (an absolute path stays as it is)
        for name, by_target in rows.items():
            for target in by_target:
                run = tag == ran and not args.page_only and name in args.networks
                if run:
                    print(f"zoo: {name} at {target}, challenger {tag}", flush=True)
                try:
                    results = run_challenger(
                        args if run else restore, ZOO[name], target, kept, tag, policy
                    )
                except RunError:
                    if run:
                        raise
                    continue  # kept, but not finished
                played.setdefault(tag, {}).setdefault(name, {})[target] = results
    return played


def _mean(results: list[MethodSeedResult], method: str) -> float | None:
    values = [r.val_accuracy for r in results if r.method == method]
    return sum(values) / len(values) if values else None


def _cost(results: list[MethodSeedResult], method: str) -> float | None:
    values = [r.evaluations for r in results if r.method == method]
    return sum(values) / len(values) if values else None


def gaps(results: list[MethodSeedResult]) -> tuple[float | None, float | None]:
    """Mean validation accuracy of zero-shot and of refine minus TPE's, in points."""
    tpe = _mean(results, "tpe")
    if tpe is None:
        return None, None
    zero, refined = _mean(results, "transfer-apply"), _mean(results, "transfer-apply-refine")
    return (
        None if zero is None else 100 * (zero - tpe),
        None if refined is None else 100 * (refined - tpe),
    )


CHANCE_MARGIN = 0.02
"""A setting whose best method is within this of chance (10 classes) compares nothing."""


def at_chance(results: list[MethodSeedResult]) -> bool:
    """Whether every method's mean validation accuracy is within :data:`CHANCE_MARGIN` of
    chance (Fashion-MNIST's 10 classes)."""
    means = [
        m for m in (_mean(results, name) for name in {r.method for r in results}) if m is not None
    ]
    return bool(means) and max(means) <= 0.1 + CHANCE_MARGIN


def _distance_words(entry: dict[str, Any] | None) -> str:
    """The family distance as ``rlprune apply`` words it."""
    if entry is None:
        return "not measured"
    if not entry["outside"]:
        return "every observation inside the policy's training ranges"
    return "; ".join(
        f"{name} on {steps}/{entry['units']} units (up to {distance:.2f} beyond)"
        for name, steps, distance in entry["outside"]
    )


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _wins(settled: list[list[MethodSeedResult]], method: str, *, strict: bool) -> str:
    """On how many settings zero-shot's mean is above ``method``'s (or equal, unless
    ``strict``), as "N of M" over the settings where both ran."""
    pairs = [
        (zero, other)
        for results in settled
        if (zero := _mean(results, "transfer-apply")) is not None
        and (other := _mean(results, method)) is not None
    ]
    margin = 1e-9 if strict else -1e-9  # means of the same scores tie exactly, up to rounding
    won = sum(1 for zero, other in pairs if zero - other > margin)
    return f"{won} of {len(pairs)}"


def figure_lines(
    rows: dict[str, dict[float, list[MethodSeedResult]]],
    targets: list[float],
    zoo_size: int,
    label: str = "",
) -> list[str]:
    """The issue's figures per target, counted from the results: zero-shot against uniform
    and sensitivity (mean over seeds; a tie does not count as beating), and the median gaps
    of zero-shot and refine to TPE. ``label`` follows the target's name."""
    lines: list[str] = []
    for target in targets:
        settled = [
            results
            for by_target in rows.values()
            if (results := by_target.get(target)) is not None
            and _mean(results, "transfer-apply") is not None
        ]
        if not settled:
            continue
        zero = _median([g for r in settled if (g := gaps(r)[0]) is not None])
        refine = _median([g for r in settled if (g := gaps(r)[1]) is not None])
        shown = ["not measured" if m is None else f"{m:+.2f} points" for m in (zero, refine)]
        uniform = _wins(settled, "uniform", strict=False)
        sensitivity = _wins(settled, "sensitivity", strict=True)
        lines.append(
            f"- **MACs target {target}**{label} ({len(settled)} of {zoo_size} networks run): "
            f"zero-shot at or above uniform on {uniform}, above sensitivity on {sensitivity}; "
            f"median gap to TPE of zero-shot {shown[0]}, of refine {shown[1]}."
        )
    return lines


def policy_meta(policy: Path) -> dict[str, Any]:
    """The played policy's metadata (``{}`` when it cannot be read)."""
    path = policy / "policy.json" if policy.is_dir() else policy.with_suffix(".json")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def family_of(model: str) -> str:
    """A model builder's name as a zoo family (``resnet20`` -> ``resnet``,
    ``mobilenetv1`` -> ``mobilenet-v1``)."""
    name = model.lower()
    version = re.fullmatch(r"(mobilenet)v(\d)", name)
    return f"{version[1]}-v{version[2]}" if version else re.sub(r"\d+$", "", name)


def seen_families(meta: dict[str, Any]) -> dict[str, str]:
    """The zoo families of the networks the policy trained on: family -> its presets."""
    seen: dict[str, list[str]] = {}
    for preset in meta.get("family") or []:
        try:
            model = load_env_config(preset).task.model
        except RLPruneError:
            continue  # a preset this checkout lacks: its family is unknown, not claimed
        seen.setdefault(family_of(model), []).append(preset)
    return {family: ", ".join(presets) for family, presets in seen.items()}


def chooser_lines(meta: dict[str, Any], seen: dict[str, str], shared: list[str]) -> list[str]:
    """Which networks chose what for the played policy, from its metadata: the family it
    trained on, the networks that chose its off-family strength, and the zoo networks
    whose family it trained on."""
    if not meta:
        return ["- The policy's metadata could not be read."]
    family = ", ".join(meta.get("family") or [meta.get("env", "?")])
    lines = [f"- **Trained on** (its training family): {family}."]
    selection = meta.get("scale_selection") or {}
    if selection.get("select_on"):
        lines.append(
            "- **Chose its off-family strength** (how far `--trust family` damps its "
            f"corrections, {meta.get('outside_scale')}): {', '.join(selection['select_on'])}."
        )
    if shared:
        lines.append(
            "- **Zoo networks of a family it trained on** (marked * in the tables; the figures "
            "are also counted without them): "
            + "; ".join(f"{name} ({ZOO[name].family}: {seen[ZOO[name].family]})" for name in shared)
            + ". The networks differ (torchvision's, not this project's), the family does not."
        )
    lines.append(
        "- **The zoo chose nothing**: no zoo network trained, selected or tuned the policy, "
        "its strength, its checkpoint or the recipe; it is only played here."
    )
    return lines


def earlier_words(name: str, info: dict[str, Any], digests: Iterable[str | None]) -> str:
    """What the record knows of the earlier weights (``digests``, None: not recorded) a
    row of network ``name`` was scored on: their test accuracy, where it kept them."""
    wanted = set(digests) - {info.get("weights_digest")}
    known = [e for e in info.get("earlier", []) if e.get("weights_digest") in wanted]
    accuracy = known[-1].get("test_accuracy") if known else None
    return name + ("" if accuracy is None else f" tested {100 * accuracy:.2f} %")


def write_page(
    args: Args,
    rows: dict[str, dict[float, list[MethodSeedResult]]],
    kept: dict[str, Any],
    record: dict[str, Any],
    pending: list[str],
    challenged: dict[str, dict[str, dict[float, list[MethodSeedResult]]]] | None = None,
) -> None:
    """docs/zoo.md: the zoo, the table per target with costs and gaps, the challengers
    against the shipped policy, the family distances, and the figure of the gaps."""
    meta = policy_meta(args.policy)
    seen = seen_families(meta)
    shared = [name for name in ZOO if ZOO[name].family in seen]
    lines = [
        "# The general policy on a torchvision zoo it never saw",
        "",
        "Generated by `python experiments/zoo.py table` (`--page-only` rebuilds it in seconds "
        "from the results kept in docs/benchmarks/zoo/; `--resume` finishes an interrupted "
        "run). The networks are torchvision's, unchanged, trained on Fashion-MNIST by "
        "`python experiments/zoo.py train`; the general policy never saw one of them (it trained "
        "on this project's own networks: which, and which families they share with the zoo, "
        "under *Which networks chose what*).",
        "",
        "## The zoo",
        "",
        f"Input: {record.get('input', INPUT)}."
        + (
            f" torchvision {record['torchvision']}, torch {record['torch']}."
            if "torchvision" in record
            else ""
        )
        + " Trained on a 2-core CPU (time shared with other work) with SGD, Nesterov "
        "momentum and a cosine schedule, batch 64, as each preset's `pretrain` section says "
        "(`envs/zoo-*.yaml`); test accuracy on the 10 000 official test images. A network "
        "marked *to retrain* was trained with settings its preset has changed since (it fell "
        "short of 85 %); `python experiments/zoo.py train --resume` trains it again.",
        "",
        "Training is seeded but not bit-reproducible across machines (the CPU's kernels "
        "differ): the same command on another machine gives a network about a point "
        "apart (densenet121 88.32 % then 89.63 %, vgg11_bn 87.66 % then 87.55 %, on "
        "2026-12-05; resnext50_32x4d 86.63 % then 86.80 %, on 2026-12-06). The record "
        "keeps each network's weights digest (sha256, 16 digits), "
        "and so does every table result kept since: a `--resume` on other weights is "
        "refused, and rows scored on weights nobody has any longer stand as measured "
        "(marked ‡ where the record knows the network was retrained since).",
        "",
        "Train min is wall time on this shared 2-core CPU (other jobs ran beside it); CPU min "
        "is the training process's own CPU time, which the load does not inflate (blank where "
        "it was not recorded).",
        "",
        "| network | family | structures | params | MACs | train images | test % | train min "
        "| CPU min |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    reached = 0  # networks at ZOO_ACCURACY, trained as their presets say now
    for name, net in ZOO.items():
        info = record["networks"].get(name)
        if info is None:
            lines.append(
                f"| {name} | {net.family} | {', '.join(net.structures)} | | | | not trained | | |"
            )
            continue
        changed = info.get("train", train_settings(net)) != train_settings(net)
        stale = " *to retrain*" if changed else ""
        if not changed and info["test_accuracy"] < ZOO_ACCURACY:
            stale = " *below 85 %*"
        elif not changed:
            reached += 1
        lines.append(
            f"| {name} | {net.family} | {', '.join(net.structures)} | "
            f"{info['params'] / 1e6:.2f} M | {info['macs'] / 1e6:.1f} M | "
            f"{info['train_images']:,} | {100 * info['test_accuracy']:.2f}{stale} | "
            f"{(info['seconds'] or 0) / 60:.1f} | "
            + (f"{info['cpu_seconds'] / 60:.1f} |" if "cpu_seconds" in info else " |")
        )
    lines += [
        "",
        f"{reached} of {len(ZOO)} networks are trained to at least 85 % test accuracy "
        "(as their presets say now).",
        "",
        "## Transfer table",
        "",
        f"Mean validation accuracy (%) over {args.seeds} seeds, cost in full-evaluation "
        "equivalents (probes charged) in brackets. zero-shot: what `rlprune apply` delivers "
        f"by default (`--trust {args.trust}`): the bundled general policy's zero-shot "
        "configuration, the uniform allocation or the policy's prior, whichever scores best; "
        f"refine: what `rlprune apply --refine {args.refine}` delivers (that best, refined); "
        "policy alone: the policy's zero-shot episode without the comparison; uniform, magnitude, sensitivity at their own costs; random "
        f"and TPE given {args.evals} evaluations; {args.val_size or 2000} validation images per "
        "evaluation. Gaps: zero-shot and refine minus TPE, in points (negative: TPE better).",
        "",
    ]
    figure_rows: dict[float, list[tuple[str, float | None, float | None]]] = {}
    for target in args.targets if rows else ():
        heading = " | ".join(COLUMNS.values())
        lines += [
            f"### MACs target {target}",
            "",
            f"| network | {heading} | gap zero-shot | gap refine |",
            "| --- |" + " ---: |" * (len(COLUMNS) + 2),
        ]
        zero_gaps: list[float] = []
        chance_rows: list[str] = []
        earlier_rows: list[str] = []
        refine_gaps: list[float] = []
        for name in ZOO:
            results = rows.get(name, {}).get(target)
            if results is None:
                continue
            cells = []
            for method in COLUMNS:
                mean, cost = _mean(results, method), _cost(results, method)
                cells.append("" if mean is None else f"{100 * mean:.2f} ({cost:.1f})")
            zero, refined = gaps(results)
            if zero is not None:
                zero_gaps.append(zero)
            if refined is not None:
                refine_gaps.append(refined)
            figure_rows.setdefault(target, []).append((name, zero, refined))
            shown = ["" if g is None else f"{g:+.2f}" for g in (zero, refined)]
            mark = "*" if name in shared else ""
            if at_chance(results):
                mark += " †"
                chance_rows.append(name)
            info = record["networks"].get(name)
            digests = row_digests(args.out, _folders(args, name, target))
            if info is not None and scored_earlier(digests, info):
                mark += " ‡"
                earlier_rows.append(earlier_words(name, info, digests.values()))
            lines.append(f"| {name}{mark} | {' | '.join(cells)} | {' | '.join(shown)} |")
        medians = [_median(zero_gaps), _median(refine_gaps)]
        counted = len(zero_gaps)
        label = "median" if counted == len(ZOO) else f"median ({counted} of {len(ZOO)})"
        lines.append(
            f"| **{label}** |"
            + " |" * len(COLUMNS)
            + " "
            + " | ".join("" if m is None else f"**{m:+.2f}**" for m in medians)
            + " |"
        )
        if chance_rows:
            lines += [
                "",
                f"† Every method within {100 * CHANCE_MARGIN:.0f} points of chance (10 %): none "
                "found a working network at this target without fine-tuning, so the row's gaps "
                "say nothing; it counts in the medians as measured.",
            ]
        if earlier_rows:
            lines += [
                "",
                "‡ Scored on earlier weights of the network than the zoo above lists: it was "
                "retrained since, and training is not bit-reproducible, so the row stands as "
                f"measured on those ({'; '.join(earlier_rows)}).",
            ]
        lines.append("")
    if not rows:
        lines += ["Nothing has run yet: `python experiments/zoo.py table --resume` runs it.", ""]
    else:
        lines += [
            "### Against the figures asked for",
            "",
            "Counted from the rows above (mean over seeds); asked: zero-shot never below "
            "uniform and above sensitivity on at least 8 of 12 at 0.5, median gap of zero-shot "
            "to TPE at least -1.0 point and of refine at least 0.",
            "",
            *figure_lines(rows, args.targets, len(ZOO)),
            *(
                figure_lines(
                    {name: by_target for name, by_target in rows.items() if name not in shared},
                    args.targets,
                    len(ZOO) - len(shared),
                    " without the families it trained on",
                )
                if shared
                else []
            ),
            "",
        ]
    for tag, played in (challenged or {}).items():
        lines += challenger_lines(args, tag, played, rows, kept)
    candidates = ROOT / "policies" / "candidates" / "README.md"
    if candidates.is_file():
        lines += [
            "Every candidate policy measured against the shipped one, with the commands "
            "that made it and how it was judged, is listed in "
            f"[policies/candidates]({_relative(candidates, args.markdown.parent)}); a "
            "candidate whose selection networks chose strength 0 plays the sensitivity prior "
            "off its family and can beat the heuristic here only where the uniform "
            "allocation does.",
            "",
        ]
    lines += [
        "## Which networks chose what",
        "",
        *chooser_lines(meta, seen, shared),
        "",
    ]
    lines += [
        "## Family distance",
        "",
        "What `rlprune apply` prints about each network: the observation features outside "
        "the ranges the policy saw in training (with `--trust family` the policy then plays "
        "its corrections damped to its off-family strength).",
        "",
    ]
    for name in ZOO:
        for target in args.targets:
            entry = kept["distance"].get(_key(name, target))
            if name in rows and target in rows[name]:
                lines.append(f"- **{name} @ {target}**: {_distance_words(entry)}")
    if pending:
        lines += ["", "Not run yet: " + ", ".join(pending) + "."]
    if figure_rows:
        draw_gaps(figure_rows, args.figure)
        lines += [
            "",
            "## Gaps across the zoo",
            "",
            f"![gaps to TPE@{args.evals}]({_relative(args.figure, args.markdown.parent)})",
        ]
    args.markdown.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.markdown}")


def challenger_lines(
    args: Args,
    tag: str,
    played: dict[str, dict[float, list[MethodSeedResult]]],
    rows: dict[str, dict[float, list[MethodSeedResult]]],
    kept: dict[str, Any],
) -> list[str]:
    """A challenger's section: its zero-shot and refine beside the shipped policy's on
    every setting it played, the figures counted for both, and what chose it."""
    shown = kept.get("challengers", {}).get(tag, tag)
    meta = policy_meta(ROOT / shown)
    seen = seen_families(meta)
    shared = [name for name in ZOO if ZOO[name].family in seen]
    lines = [
        f"## Challenger: {tag}",
        "",
        f"`{shown}` played as the shipped policy is (zero-shot and `--refine {args.refine}`, "
        f"`--trust {args.trust}`) on the same settings; the other columns are the table's. "
        "Mean validation accuracy (%) over the seeds; the zoo decides whether it ships.",
        "",
    ]
    swapped: dict[str, dict[float, list[MethodSeedResult]]] = {}
    for target in args.targets:
        table = [
            f"### {tag} at MACs target {target}",
            "",
            "| network | zero-shot shipped | zero-shot challenger | refine shipped "
            "| refine challenger | sensitivity | TPE |",
            "| --- |" + " ---: |" * 6,
        ]
        for name in ZOO:
            theirs = played.get(name, {}).get(target)
            ours = rows.get(name, {}).get(target)
            if theirs is None or ours is None:
                continue
            both = [r for r in ours if r.method not in CHALLENGED] + theirs
            swapped.setdefault(name, {})[target] = both
            cells = [
                _mean(results, method)
                for results, method in (
                    (ours, "transfer-apply"),
                    (theirs, "transfer-apply"),
                    (ours, "transfer-apply-refine"),
                    (theirs, "transfer-apply-refine"),
                    (ours, "sensitivity"),
                    (ours, "tpe"),
                )
            ]
            mark = "*" if name in shared else ""
            table.append(
                f"| {name}{mark} | "
                + " | ".join("" if c is None else f"{100 * c:.2f}" for c in cells)
                + " |"
            )
        if len(table) > 4:
            lines += [*table, ""]
    if not swapped:
        return [*lines, "Not played on any kept setting yet.", ""]
    lines += [
        f"**The figures, shipped then {tag}** (counted as in *Against the figures asked for*):",
        "",
        *figure_lines(
            {n: {t: rows[n][t] for t in by_target} for n, by_target in swapped.items()},
            args.targets,
            len(ZOO),
            " (shipped, same settings)",
        ),
        *figure_lines(swapped, args.targets, len(ZOO), f" ({tag})"),
        "",
        f"**What chose {tag}:**",
        "",
        *chooser_lines(meta, seen, shared),
        "",
        "**Its family distance** (`rlprune apply`'s printout):",
        "",
    ]
    for name in ZOO:
        for target in args.targets:
            folder = f"{_key(name, target)}-policy-{tag}"
            if target in swapped.get(name, {}):
                entry = kept["distance"].get(folder)
                lines.append(f"- **{name} @ {target}**: {_distance_words(entry)}")
    return [*lines, ""]


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path.resolve(), start.resolve())


def draw_gaps(rows: dict[float, list[tuple[str, float | None, float | None]]], path: Path) -> None:
    """One panel per target: zero-shot's and refine's gap to TPE per network, in points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(rows), 1, figsize=(10, 3.2 * len(rows)), squeeze=False, constrained_layout=True
    )
    for ax, (target, entries) in zip(axes[:, 0], sorted(rows.items(), reverse=True), strict=True):
        names = [e[0] for e in entries]
        positions = range(len(names))
        series = (("zero-shot", [e[1] for e in entries]), ("refine", [e[2] for e in entries]))
        for offset, (label, measured) in zip((-0.2, 0.2), series, strict=True):
            values = [float("nan") if v is None else v for v in measured]
            median = _median([v for v in measured if v is not None])
            shown = "" if median is None else f" (median {median:+.2f})"
            ax.bar([p + offset for p in positions], values, width=0.4, label=label + shown)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(list(positions), names, rotation=30, ha="right")
        ax.set_ylabel("points vs TPE")
        ax.set_title(f"MACs target {target}")
        ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


# ------------------------------------------------------------------------------ main


COMMANDS = {"train": train, "table": table}


def main(argv: list[str] | None = None) -> int:
    """``zoo.py COMMAND [flags]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        given = shlex.quote(argv[0]) if argv else "nothing"
        print(
            f"usage: zoo.py {{{','.join(COMMANDS)}}} [--help]; got {given}",
            file=sys.stderr,
        )
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(run_script(main))
