"""Regenerate the transfer section of BENCHMARKS.md: the general policy on networks it never saw.

    python scripts/transfer_suite.py            # about an hour on a 2-core CPU
    python scripts/transfer_suite.py --resume   # finish an interrupted run

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
  single-target policies of T bundled as the general policy was (``scripts/bundle_policy.py``
  with ``--targets T``), played in full (``--trust always``) and as ``rlprune apply`` plays it
  (``single-target-ensemble-applied``): the like-for-like reference, the same number of
  networks and of training episodes as the general policy.

Writes docs/transfer.md (BENCHMARKS.md includes it; this script rewrites BENCHMARKS.md from
the suite's finished results at the end) and keeps every setting's results, compressed, in
docs/benchmarks/data/ (as the suite does), so ``--resume`` continues from a fresh clone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark_suite import (  # noqa: E402
    DATA,
    add_rerun_argument,
    check_rerun,
    elapsed,
    finished,
    forget,
    restore,
    run_kept,
)

from rlprune.cli import add_trust_argument  # noqa: E402
from rlprune.errors import run_script  # noqa: E402
from rlprune.presets.loader import GENERAL_POLICY, env_spec, load_env_config  # noqa: E402
from rlprune.reports.tables import (  # noqa: E402
    MethodSeedResult,
    comparison_lines,
    render_markdown,
    summarise,
)
from rlprune.search.benchmark import (  # noqa: E402
    BenchmarkSettings,
    benchmark_config,
    load_task,
    manifest_settings,
)

HELD_OUT = ("fmnist-vgg", "fmnist-mobilenetv2", "examples/fmnist-custom.yaml")
TARGETS = (0.3, 0.5, 0.7)
HEURISTICS = ("uniform", "magnitude", "sensitivity")
SEARCHES = ("random", "tpe")
ADAPTED = {"transfer-adapt": "adapted", "transfer-refine": "refined"}
"""The ways a policy spends --adapt-episodes more evaluations, and their verdicts' names."""


def _label(env: str) -> str:
    return Path(env).stem if env.endswith(".yaml") else env


def _env_path(env: str) -> str:
    return env_spec(env, ROOT)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT.resolve()))
    except ValueError:
        return str(path)


def _run(
    key: str,
    env: str,
    target: float,
    methods: tuple[str, ...],
    policy: Path,
    args: argparse.Namespace,
    trust: str | None = None,
    rerun: bool = True,
) -> Path:
    """One benchmark folder, kept in --data; ``rerun`` lets --rerun drop its kept results
    (the single-target folders' policies are not the one --rerun is about)."""
    out = args.out / key
    if args.resume:
        restore(args.data, out)
        if rerun:
            forget(out, [m for m in args.rerun if m in methods])
        if finished(out, methods):  # nothing to run (its policy need not be here any more)
            return out
    config = benchmark_config(load_env_config(_env_path(env), {"target": target}), str(policy))
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
    if rerun and args.resume and args.rerun and (out / "benchmark.json").is_file():
        # the methods run again under these settings; the others' results stand
        manifest = json.loads((out / "benchmark.json").read_text())
        manifest["settings"] = json.loads(json.dumps(manifest_settings(settings), default=list))
        (out / "benchmark.json").write_text(json.dumps(manifest, indent=2))
    run_kept(task, config, settings, out, args.data, key, resume=args.resume)
    return out


def _results(folder: Path, rename: str | None = None) -> list[MethodSeedResult]:
    results = [
        MethodSeedResult.from_dict(json.loads(p.read_text())["result"])
        for p in sorted((folder / "results").glob("*.json"))
    ]
    if rename is not None:
        results = [dataclasses.replace(r, method=rename) for r in results]
    return results


def _seed_row(results: list[MethodSeedResult], seed: int, method: str) -> list[MethodSeedResult]:
    """One policy's seed-0 ``transfer`` result as ``method``'s ``seed``: a row whose seeds are
    policies (a kept folder may hold more seeds of its one policy)."""
    return [
        dataclasses.replace(r, method=method, seed=seed)
        for r in results
        if r.seed == 0 and r.method == "transfer"
    ]


def _recipe(meta: dict) -> str:
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
        f"all) across {family} {span} ({commands}), bundled by `{selection['command']}`, which "
        f"played it at each strength on {', '.join(selection['select_on'])} (mean gain over "
        f"the prior, points: {gains}) and kept {float(meta['outside_scale']):g} as its "
        "off-family strength"
    )


ENSEMBLE_ROWS = {
    "always": "single-target-ensemble",
    "family": "single-target-ensemble-applied",
}
"""How a --single-ensemble policy is played (--trust), and its rows' names."""


def _bundled(policy: Path) -> str:
    """How a bundled policy was made and the off-family strength it kept, from its metadata
    (its path alone once it is gone)."""
    path = policy / "policy.json"
    if not path.is_file():
        return f"`{_shown(policy)}`"
    meta = json.loads(path.read_text())
    made = meta.get("scale_selection", {}).get("command", _shown(policy))
    return f"`{made}`, kept strength {float(meta.get('outside_scale', 0)):g}"


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


def _mean(results: list[MethodSeedResult], method: str) -> float | None:
    values = [r.val_accuracy for r in results if r.method == method]
    return sum(values) / len(values) if values else None


def _verdict(ours: float, theirs: float) -> str:
    """won / tied / lost, to the 0.01 points the table shows."""
    diff = round(100 * (ours - theirs), 2)
    return "won" if diff > 0 else "lost" if diff < 0 else "tied"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", type=Path, default=GENERAL_POLICY)
    parser.add_argument(
        "--single-target",
        action="append",
        default=[],
        type=target_path,
        metavar="T=PATH",
        help="a policy trained on the family at target T alone (repeat per target, and per "
        "training seed: with several, each plays once and the row's seeds are the policies)",
    )
    parser.add_argument(
        "--budget-policy",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="another training seed of --policy's recipe (repeat per seed): its own corrections "
        "join --policy's in the budget-conditioned row the single-target verdicts use",
    )
    parser.add_argument(
        "--single-ensemble",
        action="append",
        default=[],
        type=target_path,
        metavar="T=PATH",
        help="the single-target policies of target T bundled into one ensemble (one per "
        "target): compared with the general policy in full and as apply plays both",
    )
    parser.add_argument("--envs", type=lambda t: t.split(","), default=list(HELD_OUT))
    parser.add_argument(
        "--targets", type=lambda t: [float(x) for x in t.split(",")], default=list(TARGETS)
    )
    parser.add_argument("--evals", type=int, default=50)
    parser.add_argument("--adapt-episodes", type=int, default=20)
    add_trust_argument(parser)  # as rlprune apply and benchmark take it
    add_rerun_argument(parser, "say, transfer,transfer-adapt after a new policy or --trust")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--finetune-images", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "transfer")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "transfer.md")
    parser.add_argument(
        "--no-page", action="store_true", help="do not rewrite BENCHMARKS.md afterwards"
    )
    args = parser.parse_args()
    check_rerun(parser, args)
    singles: dict[float, list[Path]] = {}
    for t, p in args.single_target:
        singles.setdefault(t, []).append(p)
    ensembles = dict(args.single_ensemble)
    others = [
        *args.budget_policy,
        *(p for ps in singles.values() for p in ps),
        *ensembles.values(),
    ]
    missing = [str(p) for p in others if not p.exists()]
    if missing and not args.resume:  # with --resume, kept folders need no policy
        parser.error(f"no policy at {', '.join(missing)}; give run folders or their policy/")
    single_run = argparse.Namespace(**{**vars(args), "seeds": 1})  # one seed per policy
    args.out.mkdir(parents=True, exist_ok=True)
    searched = 0.0  # seconds of search in the held-out rows' folders (as the page says)
    tables: list[str] = []
    verdicts: list[str] = []
    meta = json.loads((args.policy / "policy.json").read_text())
    default = args.policy.resolve() == GENERAL_POLICY.resolve()
    for env in args.envs:
        label = _label(env)
        for target in args.targets:
            key = f"transfer-{label}-t{target}"
            methods = ("transfer", *HEURISTICS)
            if target == 0.5:
                methods = ("transfer", *ADAPTED, *HEURISTICS, *SEARCHES)
            print(f"transfer: {label} at {target}", flush=True)
            folder = _run(key, env, target, methods, args.policy, args)
            searched += elapsed(folder)
            results = _results(folder)
            own_run = results  # the policy's own corrections, everywhere
            if args.trust != "always":
                raw = _run(f"{key}-always", env, target, ("transfer",), args.policy, args, "always")
                own_run = _results(raw)
                results += [dataclasses.replace(r, method="transfer-always") for r in own_run]
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
                    results += _seed_row(_results(other), k, "budget-conditioned")
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
                    results += _seed_row(_results(single), k, "single-target")
                else:
                    results += _results(single, rename="single-target")
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
                    results += _results(ensemble, rename=method)
            summaries = summarise(results)
            tables += [
                render_markdown(
                    summaries,
                    title=f"{label} (held out), MACs target {target}",
                    notes=comparison_lines(summaries, reference="transfer"),
                ).replace("# ", "### ", 1),
                "",
            ]
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
            verdicts.append(f"- **{label} @ {target}**: zero-shot vs " + "; ".join(parts) + ".")
    lines = [
        "## Transfer: the general policy on networks it never saw",
        "",
        "Regenerate with `python scripts/transfer_suite.py"
        + (f" --trust {args.trust}" if args.trust != "family" else "")
        + "".join(f" --budget-policy {_shown(p)}" for p in args.budget_policy)
        + "".join(f" --single-target {t}={p}" for t, ps in singles.items() for p in ps)
        + "".join(f" --single-ensemble {t}={_shown(p)}" for t, p in ensembles.items())
        + f"` ({searched / 60:.0f} min of search for the held-out rows, fine-tuning and "
        f"timing not counted, on a 2-core CPU). Policy: `{_shown(args.policy)}`"
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
        "at that target alone (`python scripts/train_general_policy.py --target T --episodes "
        "400 --seed S --out runs/single-T-sS`, not bundled: 400 episodes each, a third of the "
        "general policy's, so the three targets together cost what it cost)"
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
            + "; ".join(f"{t}: {_bundled(p)}" for t, p in sorted(ensembles.items()))
            + "): as many networks and training episodes as the general policy, for one "
            "target. It is played in full (`--trust always`) and, as "
            "`single-target-ensemble-applied`, as `rlprune apply` plays it"
            if ensembles
            else ""
        )
        + ". Every cost is in full-evaluation equivalents, probes charged. "
        "Losses are shown as losses.",
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
            [sys.executable, str(ROOT / "scripts" / "benchmark_suite.py"), "--page-only"],
            check=True,
        )


if __name__ == "__main__":
    raise SystemExit(run_script(main))
