"""Regenerate the transfer section of BENCHMARKS.md: the general policy on networks it never saw.

    python experiments/transfer_suite.py --page-only  # seconds: the page from the kept results
    python experiments/transfer_suite.py              # about an hour on a 2-core CPU
    python experiments/transfer_suite.py --resume     # finish an interrupted run

For every held-out network (not in the general policy's training family: fmnist-vgg,
fmnist-mobilenetv2, examples/fmnist-custom.yaml) and every target (0.3, 0.5, 0.7), 3 seeds,
all charged in the benchmark's currency (full-evaluation equivalents, probes included):

- ``transfer``: the bundled general policy (``policies/general``) zero-shot: its probes + 1
  evaluation;
- ``transfer-adapt`` (target 0.5): the same policy adapted with --adapt-episodes PPO
  episodes on the new network;
- ``transfer-refine`` (target 0.5): its zero-shot configuration refined by a TPE search of
  --adapt-episodes evaluations within 0.25 keep-ratio of it (``rlprune apply --refine``);
- ``uniform``, ``magnitude``, ``sensitivity`` (every target) and ``random``, ``tpe`` with
  --evals evaluations (target 0.5);
- ``single-target``: with ``--single-target T=PATH`` (per target, and per training seed), a
  policy trained on the same family at that target alone, zero-shot: the budget-conditioned
  policy's reference;
- ``budget-conditioned``: with ``--budget-policy PATH`` (per training seed), the policy's own
  corrections and those of other seeds of its recipe, so the single-target verdicts compare
  training recipes, each a mean over its seeds;
- ``single-target-ensemble``: with ``--single-ensemble T=PATH`` (one per target), the
  single-target policies of T bundled as the general policy was
  (``experiments/bundle_policy.py`` with ``--targets T``), played in full (``--trust always``)
  and as ``rlprune apply`` plays it (``single-target-ensemble-applied``): the like-for-like
  reference, the same number of networks and of training episodes as the general policy.

Writes docs/transfer.md (BENCHMARKS.md includes it; this script rewrites BENCHMARKS.md from
the suite's finished results at the end) and keeps every setting's results, compressed, in
docs/benchmarks/data/ (as the suite does, :mod:`rlprune.suites`), with the run's settings and
what the page says about its policies (``transfer.json``): ``--resume`` continues from a fresh
clone, and ``--page-only`` rebuilds the page from them alone, without the policies' folders.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlprune.arguments import arg, parse
from rlprune.cli import fraction_list
from rlprune.env.rollout import TRUST_MODES
from rlprune.errors import RunError, run_script
from rlprune.presets.loader import GENERAL_POLICY, env_spec, load_env_config
from rlprune.reports.tables import MethodSeedResult, render_markdown, summarise
from rlprune.search.benchmark import (
    BenchmarkSettings,
    benchmark_config,
    load_task,
)
from rlprune.suites import (
    adopt_settings,
    elapsed,
    folder_results,
    rerun_error,
    run_kept,
    settle,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "benchmarks" / "data"
RECORD = "transfer.json"
"""The run's settings and its policies' metadata, kept in --data beside its results."""
HELD_OUT = ("fmnist-vgg", "fmnist-mobilenetv2", "examples/fmnist-custom.yaml")
TARGETS = (0.3, 0.5, 0.7)
HEURISTICS = ("uniform", "magnitude", "sensitivity")
SEARCHES = ("random", "tpe")
ADAPTED = {"transfer-adapt": "adapted", "transfer-refine": "refined"}
"""The ways a policy spends --adapt-episodes more evaluations, and their verdicts' names."""
ENSEMBLE_ROWS = {
    "always": "single-target-ensemble",
    "family": "single-target-ensemble-applied",
}
"""How a --single-ensemble policy is played (--trust), and its rows' names."""
PAGE_KEYS = (
    "targets",
    "family",
    "members",
    "training_episodes",
    "command",
    "member_commands",
    "outside_scale",
    "scale_selection",
)
"""The metadata of a policy that the page describes it by (kept in the record)."""


def target_path(text: str) -> tuple[float, Path]:
    """An argparse type: ``T=PATH``, a MACs target in (0, 1] and a policy folder."""
    t, sep, path = text.partition("=")
    try:
        target = float(t)
    except ValueError:
        target = -1.0
    if not sep or not path or not 0 < target <= 1:
        raise argparse.ArgumentTypeError(
            f"expected T=PATH with a target in (0, 1], such as 0.5=runs/single, got {text!r}"
        )
    return target, Path(path)


def name_list(text: str) -> list[str]:
    """An argparse type: names, comma-separated."""
    return text.split(",")


@dataclass
class Args:
    """The transfer suite's arguments (``--flag-name`` for each field)."""

    policy: Path = arg(GENERAL_POLICY, "the policy played zero-shot (default: the bundled one)")
    single_target: list[tuple[float, Path]] = arg(
        [],
        "a policy trained on the family at target T alone (repeat per target, and per "
        "training seed: with several, each plays once and the row's seeds are the policies)",
        parse=target_path,
        append=True,
        metavar="T=PATH",
    )
    budget_policy: list[Path] = arg(
        [],
        "another training seed of --policy's recipe (repeat per seed): its own corrections "
        "join --policy's in the budget-conditioned row the single-target verdicts use",
        append=True,
        metavar="PATH",
    )
    single_ensemble: list[tuple[float, Path]] = arg(
        [],
        "the single-target policies of target T bundled into one ensemble (one per "
        "target): compared with the general policy in full and as apply plays both",
        parse=target_path,
        append=True,
        metavar="T=PATH",
    )
    envs: list[str] = arg(
        list(HELD_OUT),
        "held-out networks, comma-separated (presets or YAML paths)",
        parse=name_list,
    )
    targets: list[float] = arg(list(TARGETS), "MACs targets, comma-separated", parse=fraction_list)
    evals: int = arg(50, "evaluations for random search and TPE (target 0.5)")
    adapt_episodes: int = arg(
        20, "PPO episodes for transfer-adapt, TPE evaluations for transfer-refine"
    )
    trust: str = arg(
        "family",
        "as rlprune apply --trust: family (default) plays a policy's corrections damped to its "
        "off-family strength on a network outside its training ranges; always: in full",
        choices=TRUST_MODES,
    )
    rerun: list[str] = arg(
        [],
        "with --resume: run these methods again (say, transfer,transfer-adapt after a new "
        "policy or --trust); the kept results of the others stand",
        parse=name_list,
        metavar="METHODS",
    )
    seeds: int = arg(3, "seeds per method")
    finetune_images: int = arg(10_000, "one fine-tuning pass over this many training images")
    out: Path = arg(ROOT / "results" / "transfer", "where the benchmark folders go")
    data: Path = arg(DATA, "where each setting's results and the run's settings are kept")
    resume: bool = arg(False, "keep finished results (restored from --data)")
    page_only: bool = arg(
        False,
        f"run nothing: rebuild the page from the results and settings kept in --data ({RECORD})",
    )
    markdown: Path = arg(ROOT / "docs" / "transfer.md", "where to write the section")
    no_page: bool = arg(False, "do not rewrite BENCHMARKS.md afterwards")

    def others(self) -> list[Path]:
        """Every policy folder besides --policy."""
        return [
            *self.budget_policy,
            *(p for _, p in self.single_target),
            *(p for _, p in self.single_ensemble),
        ]


PAGE_ONLY_FLAGS = ("out", "data", "markdown", "no_page", "page_only")
"""What --page-only takes from the command line; everything else comes from the record."""


def check(args: Args) -> str | None:
    """Arguments that parse but would be ignored or fail later: a usage error up front."""
    if args.page_only:
        defaults = Args()
        given = [
            "--" + f.name.replace("_", "-")
            for f in dataclasses.fields(Args)
            if f.name not in PAGE_ONLY_FLAGS and getattr(args, f.name) != getattr(defaults, f.name)
        ]
        if given:
            return (
                f"--page-only rebuilds the page with the settings kept in --data ({RECORD}); "
                f"drop {', '.join(given)}"
            )
        return None
    error = rerun_error(args.rerun, args.resume)
    if error:
        return error
    missing = [str(p) for p in args.others() if not p.exists()]
    if missing and not args.resume:  # with --resume, kept folders need no policy
        return f"no policy at {', '.join(missing)}; give run folders or their policy/"
    return None


def _label(env: str) -> str:
    return Path(env).stem if env.endswith(".yaml") else env


def _shown(path: Path) -> str:
    """A path relative to the repository when it lies inside it."""
    try:
        return str(path.resolve().relative_to(ROOT.resolve()))
    except ValueError:
        return str(path)


def _inward(shown: str) -> Path:
    """A path as :func:`_shown` wrote it, back (relative ones are in the repository)."""
    return Path(shown) if Path(shown).is_absolute() else ROOT / shown


def _current(command: str) -> str:
    """A recorded command as it runs today: the research scripts moved from scripts/ to
    experiments/ (same names, same flags)."""
    return command.replace("python scripts/", "python experiments/")


class Policies:
    """What the page says about each policy: its metadata's :data:`PAGE_KEYS`, read from
    its folder or, for a folder gone (or always, with ``kept_first``: the page shows what
    was measured), from the record in --data."""

    def __init__(self, kept: dict[str, dict[str, Any]], *, kept_first: bool) -> None:
        self.kept = kept
        self.kept_first = kept_first
        self.seen: dict[str, dict[str, Any]] = {}

    def get(self, policy: Path) -> dict[str, Any] | None:
        """``policy``'s page metadata (``None`` when neither its folder nor the record has
        it); remembered for the next record."""
        shown = _shown(policy)
        path = policy / "policy.json"
        found = None
        if path.is_file() and not (self.kept_first and shown in self.kept):
            meta = json.loads(path.read_text())
            found = {k: meta[k] for k in PAGE_KEYS if k in meta}
        elif shown in self.kept:
            found = self.kept[shown]
        if found is not None:
            self.seen[shown] = found
        return found


def _record(args: Args, policies: Policies) -> dict[str, Any]:
    """The run's settings and what the page says about its policies, for --page-only."""
    return {
        "settings": {
            "policy": _shown(args.policy),
            "single_target": [[t, _shown(p)] for t, p in args.single_target],
            "budget_policy": [_shown(p) for p in args.budget_policy],
            "single_ensemble": [[t, _shown(p)] for t, p in args.single_ensemble],
            "envs": args.envs,
            "targets": args.targets,
            "evals": args.evals,
            "adapt_episodes": args.adapt_episodes,
            "trust": args.trust,
            "seeds": args.seeds,
            "finetune_images": args.finetune_images,
        },
        "policies": policies.seen,
    }


def _kept(data: Path) -> dict[str, Any] | None:
    path = data / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def _with_kept_settings(args: Args, record: dict[str, Any]) -> Args:
    """``args`` with the settings of the run that ``record`` keeps."""
    kept = record["settings"]
    return dataclasses.replace(
        args,
        policy=_inward(kept["policy"]),
        single_target=[(float(t), _inward(p)) for t, p in kept["single_target"]],
        budget_policy=[_inward(p) for p in kept["budget_policy"]],
        single_ensemble=[(float(t), _inward(p)) for t, p in kept["single_ensemble"]],
        envs=list(kept["envs"]),
        targets=[float(t) for t in kept["targets"]],
        evals=int(kept["evals"]),
        adapt_episodes=int(kept["adapt_episodes"]),
        trust=str(kept["trust"]),
        seeds=int(kept["seeds"]),
        finetune_images=int(kept["finetune_images"]),
    )


def _run(
    key: str,
    env: str,
    target: float,
    methods: tuple[str, ...],
    policy: Path,
    args: Args,
    trust: str | None = None,
    rerun: bool = True,
) -> Path:
    """One benchmark folder, kept in --data; ``rerun`` lets --rerun drop its kept results
    (the single-target folders' policies are not the one --rerun is about). With
    --page-only, the kept folder alone."""
    out = args.out / key
    kept = settle(
        out,
        args.data,
        ROOT,
        methods,
        resume=args.resume,
        page_only=args.page_only,
        rerun=args.rerun if rerun else (),
    )
    if kept:  # nothing to run (its policy need not be here any more)
        return out
    config = benchmark_config(load_env_config(env_spec(env, ROOT), {"target": target}), str(policy))
    task = load_task(config, None)
    settings = BenchmarkSettings(
        methods=methods,
        evals=args.evals,
        seeds=args.seeds,
        finetune_epochs=1 if args.finetune_images else 0,
        finetune_images=args.finetune_images or None,
        policy=str(policy),
        adapt_episodes=args.adapt_episodes if set(ADAPTED) & set(methods) else 0,
        trust=trust or args.trust,
    )
    if rerun and args.resume and args.rerun:
        adopt_settings(out, settings)
    run_kept(task, config, settings, out, args.data, ROOT, key, resume=args.resume)
    return out


def _renamed(results: list[MethodSeedResult], method: str) -> list[MethodSeedResult]:
    return [dataclasses.replace(r, method=method) for r in results]


def _seed_row(results: list[MethodSeedResult], seed: int, method: str) -> list[MethodSeedResult]:
    """One policy's seed-0 ``transfer`` result as ``method``'s ``seed``: a row whose seeds are
    policies (a kept folder may hold more seeds of its one policy)."""
    return [
        dataclasses.replace(r, method=method, seed=seed)
        for r in results
        if r.seed == 0 and r.method == "transfer"
    ]


def _recipe(meta: dict[str, Any]) -> str:
    """How the policy was trained, for the page: one run, or an ensemble of runs and the
    command that bundled them."""
    span = f"at targets {min(meta['targets'])}-{max(meta['targets'])}"
    family = ", ".join(meta["family"])
    if meta.get("members", 1) == 1:
        return (
            f"{meta['training_episodes']} episodes of PPO across {family} {span} "
            f"(`{meta['command']}`)"
        )
    commands = "; ".join(f"`{c}`" for c in meta["member_commands"])
    selection = meta["scale_selection"]
    gains = ", ".join(f"{s} {g:+.2f}" for s, g in selection["gain_over_prior"].items())
    return (
        f"an ensemble of {meta['members']} PPO runs ({meta['training_episodes']} episodes in "
        f"all) across {family} {span} ({commands}), bundled by "
        f"`{_current(selection['command'])}`, which played it at each strength on "
        f"{', '.join(selection['select_on'])} (mean gain over the prior, points: {gains}) and "
        f"kept {float(meta['outside_scale']):g} as its off-family strength"
    )


def _bundled(policy: Path, meta: dict[str, Any] | None) -> str:
    """How a bundled policy was made and the off-family strength it kept, from its metadata
    (its path alone without any)."""
    if meta is None:
        return f"`{_shown(policy)}`"
    made = _current(meta.get("scale_selection", {}).get("command", _shown(policy)))
    return f"`{made}`, kept strength {float(meta.get('outside_scale', 0)):g}"


def _mean(results: list[MethodSeedResult], method: str) -> float | None:
    values = [r.val_accuracy for r in results if r.method == method]
    return sum(values) / len(values) if values else None


def _verdict(ours: float, theirs: float) -> str:
    """won / tied / lost, to the 0.01 points the table shows."""
    diff = round(100 * (ours - theirs), 2)
    return "won" if diff > 0 else "lost" if diff < 0 else "tied"


def _setting_results(
    key: str,
    env: str,
    target: float,
    args: Args,
    singles: dict[float, list[Path]],
    ensembles: dict[float, Path],
) -> tuple[list[MethodSeedResult], float]:
    """Every row of one (network, target) table, and the seconds its own folder searched."""
    single_run = dataclasses.replace(args, seeds=1)  # one seed per policy
    methods: tuple[str, ...] = ("transfer", *HEURISTICS)
    if target == 0.5:
        methods = ("transfer", *ADAPTED, *HEURISTICS, *SEARCHES)
    folder = _run(key, env, target, methods, args.policy, args)
    results = folder_results(folder)
    own_run = results  # the policy's own corrections, everywhere
    if args.trust != "always":
        raw = _run(f"{key}-always", env, target, ("transfer",), args.policy, args, "always")
        own_run = folder_results(raw)
        results += _renamed(own_run, "transfer-always")
    if args.budget_policy:  # its corrections and other training seeds', once each
        results += _seed_row(own_run, 0, "budget-conditioned")
        for k, policy in enumerate(args.budget_policy, 1):
            other = _run(
                f"{key}-always-{k}",
                env,
                target,
                ("transfer",),
                policy,
                single_run,
                "always",
                rerun=False,
            )
            results += _seed_row(folder_results(other), k, "budget-conditioned")
    policies = singles.get(target, [])
    # one folder per single-target policy; with several, each plays once (seed 0)
    once = args if len(policies) < 2 else single_run
    for k, policy in enumerate(policies):
        single = _run(
            f"{key}-single" + (f"-{k}" if k else ""),
            env,
            target,
            ("transfer",),
            policy,
            once,
            "always",
            rerun=False,
        )
        if len(policies) > 1:  # the row's seeds are the policies
            results += _seed_row(folder_results(single), k, "single-target")
        else:
            results += _renamed(folder_results(single), "single-target")
    if target in ensembles:  # the like-for-like reference, in full and as applied
        for trust, method in ENSEMBLE_ROWS.items():
            ensemble = _run(
                f"{key}-single-ensemble-{trust}",
                env,
                target,
                ("transfer",),
                ensembles[target],
                args,
                trust,
                rerun=False,
            )
            results += _renamed(folder_results(ensemble), method)
    return results, elapsed(folder)


def _verdict_line(label: str, target: float, results: list[MethodSeedResult], args: Args) -> str:
    """One line: the zero-shot policy's mean validation accuracy against every other row's."""
    zero = _mean(results, "transfer")
    assert zero is not None
    parts = [
        f"{m} {_verdict(zero, v)} ({100 * zero:.2f} vs {100 * v:.2f})"
        for m in HEURISTICS
        if (v := _mean(results, m)) is not None
    ]
    own = _mean(results, "transfer-always")
    if own is not None and own != zero:
        parts.append(f"the policy's own corrections {100 * own:.2f}")
    single = _mean(results, "single-target")
    if single is not None:  # both policies' own corrections, budget vs single target
        mine = _mean(results, "budget-conditioned")
        if mine is None:
            mine = zero if own is None else own
        parts.append(
            f"budget-conditioned vs single-target {_verdict(mine, single)} "
            f"({100 * mine:.2f} vs {100 * single:.2f})"
        )
    ens_full = _mean(results, "single-target-ensemble")
    ens_applied = _mean(results, "single-target-ensemble-applied")
    if ens_full is not None and ens_applied is not None:
        full = zero if own is None else own
        parts += [
            f"general vs single-target ensemble, in full {_verdict(full, ens_full)} "
            f"({100 * full:.2f} vs {100 * ens_full:.2f})",
            f"as applied {_verdict(zero, ens_applied)} "
            f"({100 * zero:.2f} vs {100 * ens_applied:.2f})",
        ]
    for method, name in ADAPTED.items():
        adapted = _mean(results, method)
        if adapted is not None:
            parts += [
                f"{name} vs {m}@{args.evals} {_verdict(adapted, v)} "
                f"({100 * adapted:.2f} vs {100 * v:.2f})"
                for m in SEARCHES
                if (v := _mean(results, m)) is not None
            ]
    return f"- **{label} @ {target}**: zero-shot vs " + "; ".join(parts) + "."


def _regenerate(args: Args, searched: float, default: bool) -> str:
    """How to rebuild the section from the kept data, and what running it again needs
    (the policies compared, which a clone does not have: named, not their paths)."""
    counts = (
        ("--single-target T=PATH", "single-target policy", len(args.single_target)),
        ("--budget-policy PATH", "other training seed of the policy", len(args.budget_policy)),
        ("--single-ensemble T=PATH", "single-target ensemble", len(args.single_ensemble)),
    )
    needs = [
        *(["`--policy PATH` for the policy below"] if not default else []),
        *(f"`{flag}` once per {what} ({n})" for flag, what, n in counts if n),
    ]
    return (
        "Regenerate with `python experiments/transfer_suite.py --page-only` (seconds: it "
        "rebuilds this section and BENCHMARKS.md from the results and settings kept in "
        f"docs/benchmarks/data/ and runs nothing). The searches took {searched / 60:.0f} min "
        "for the held-out rows (fine-tuning and timing not counted, on a 2-core CPU); "
        "`python experiments/transfer_suite.py"
        + (f" --trust {args.trust}" if args.trust != "family" else "")
        + "` runs them again"
        + (f" given the policies compared below: {', '.join(needs)}" if needs else "")
        + "; `--resume` finishes an interrupted run."
    )


def _header(
    args: Args,
    meta: dict[str, Any],
    searched: float,
    singles: dict[float, list[Path]],
    ensembles: dict[float, Path],
    policies: Policies,
) -> str:
    """The paragraph above the verdicts: how to rebuild, the policy and every row."""
    default = args.policy.resolve() == GENERAL_POLICY.resolve()
    return (
        _regenerate(args, searched, default)
        + f" Policy: `{_shown(args.policy)}`"
        + (" (the one `rlprune apply` uses without `--policy`)" if default else "")
        + f", {_recipe(meta)}. None of the networks below was in its training family. "
        "`transfer` is the policy zero-shot (its probes + 1 evaluation), as `rlprune apply "
        f"--trust {args.trust}` plays it"
        + (
            " (on a network outside the policy's training ranges, its corrections damped to "
            f"{float(meta.get('outside_scale', 0)):g} of their strength; 0 plays the prior "
            "alone); `transfer-always` plays its corrections in full everywhere "
            "(`--trust always`), and the budget-conditioned vs single-target verdicts compare "
            "both policies' own corrections"
            if args.trust != "always"
            else ""
        )
        + "; `transfer-adapt` "
        f"adds {args.adapt_episodes} PPO episodes on the new network, `transfer-refine` "
        f"{args.adapt_episodes} evaluations of a TPE search within 0.25 keep-ratio of the "
        "zero-shot configuration (`rlprune apply --refine`: three quarters screen trials on "
        "a quarter of the validation set, the rest score the best-screened in full); random "
        "and TPE get "
        f"{args.evals} evaluations; `single-target` is a policy trained on the same family "
        "at that target alone (`python experiments/train_general_policy.py --target T "
        "--episodes 400 --seed S --out runs/single-T-sS`, not bundled: 400 episodes each, a "
        "third of the general policy's, so the three targets together cost what it cost)"
        + (
            f"; {max(len(ps) for ps in singles.values())} such policies per target (training "
            "seeds), each played once: that row's seeds are the policies, so its spread is "
            "the training seed's"
            if any(len(ps) > 1 for ps in singles.values())
            else ""
        )
        + (
            f"; `budget-conditioned` is the policy's own corrections and those of "
            f"{len(args.budget_policy)} more "
            + ("policy" if len(args.budget_policy) == 1 else "policies")
            + " trained as it was but for the training "
            "seed (`--seed 1`, ... of the command above), each played once: that row's seeds "
            "are the policies, and the budget-conditioned vs single-target verdicts use its "
            "mean"
            if args.budget_policy
            else ""
        )
        + (
            "; `single-target-ensemble` is the three single-target policies of that target "
            "bundled as the general policy was, selecting its strength at that target alone ("
            + "; ".join(
                f"{t}: {_bundled(p, policies.get(p))}" for t, p in sorted(ensembles.items())
            )
            + "): as many networks and training episodes as the general policy, for one "
            "target. It is played in full (`--trust always`) and, as "
            "`single-target-ensemble-applied`, as `rlprune apply` plays it"
            if ensembles
            else ""
        )
        + ". Every cost is in full-evaluation equivalents, probes charged. "
        "Losses are shown as losses."
    )


def main(argv: list[str] | None = None) -> int:
    """Run (or restore) every held-out setting, keep the results, write the section."""
    args = parse(Args, argv, description=__doc__.splitlines()[0], check=check)
    record = _kept(args.data)
    if args.page_only:
        if record is None:
            raise RunError(
                f"no {RECORD} in {args.data}: nothing kept to rebuild the page from; run the "
                "suite without --page-only first"
            )
        args = _with_kept_settings(args, record)
    policies = Policies(record["policies"] if record else {}, kept_first=args.page_only)
    meta = policies.get(args.policy)
    if meta is None:
        raise RunError(f"no policy at {args.policy}: give a policy folder with --policy")
    singles: dict[float, list[Path]] = {}
    for t, p in args.single_target:
        singles.setdefault(t, []).append(p)
    ensembles = dict(args.single_ensemble)
    args.out.mkdir(parents=True, exist_ok=True)
    searched = 0.0  # seconds of search in the held-out rows' folders (as the page says)
    tables: list[str] = []
    verdicts: list[str] = []
    for env in args.envs:
        label = _label(env)
        for target in args.targets:
            key = f"transfer-{label}-t{target}"
            print(f"transfer: {label} at {target}", flush=True)
            results, seconds = _setting_results(key, env, target, args, singles, ensembles)
            searched += seconds
            tables += [
                render_markdown(
                    summarise(results), title=f"{label} (held out), MACs target {target}"
                ).replace("# ", "### ", 1),
                "",
            ]
            verdicts.append(_verdict_line(label, target, results, args))
    header = _header(args, meta, searched, singles, ensembles, policies)
    if not args.page_only:
        args.data.mkdir(parents=True, exist_ok=True)
        text = json.dumps(_record(args, policies), indent=2, sort_keys=True)
        (args.data / RECORD).write_text(text + "\n")
    lines = [
        "## Transfer: the general policy on networks it never saw",
        "",
        header,
        "",
        "### Verdicts (mean validation accuracy over seeds)",
        "",
        *verdicts,
        "",
        *tables,
    ]
    args.markdown.write_text("\n".join(lines))
    print(f"wrote {args.markdown}")
    if not args.no_page:
        subprocess.run(
            [sys.executable, str(ROOT / "experiments" / "benchmark_suite.py"), "--page-only"],
            check=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
