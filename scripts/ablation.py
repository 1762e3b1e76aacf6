"""What bought the default agent's gain? One component of ``agents/ppo.yaml`` off at a time.

    python scripts/ablation.py --env fmnist-resnet20 --target 0.5 --evals 50 --seeds 1

Variants (each an agent preset = ``ppo`` with some ``env:`` settings changed; the PPO
hyperparameters stay):

- ``full``: the default agent (feature set 2, residual corrections to the sensitivity
  prior, probes on the whole validation split);
- ``no-features``: feature set 1 (geometry only), the same prior and residual action;
- ``no-prior``: feature set 2 with absolute keep-ratios (no prior; AMC's budget clipping
  with the lower bound, as ``ppo-v1``);
- ``low-fidelity``: probes on 512 validation images instead of all of them;
- ``v1``: ``ppo-v1`` (neither features nor prior);
- ``anchor-best``: additions, not removals: corrections apply to the best configuration
  found so far instead of the fixed prior (``anchor: best``), a learned local search
  around the incumbent; ``-narrow`` / ``-wide`` with ``residual_scale`` 0.15 / 0.5
  instead of 0.3;
- ``uniform-best`` / ``-wide``: no probes at all (feature set 1, the uniform ratio as the
  prior, one evaluation), every other evaluation an episode of local search around the
  incumbent with scale 0.15 / 0.3.
- ``shaping``: potential-based shaping from the probes' additive drop model
  (``shaping: probes``: each step is charged the drop its unit's probes predict, the last
  step gets it back); ``lambda``: GAE lambda 0.9 instead of 1 (bootstrapping, so a step's
  own reward weighs more in its advantage); ``shaping-lambda``: both.

Every variant is charged like the benchmark (probes and the prior paid out of the same
``--evals`` budget). Results go to ``--out`` (one JSON per variant and seed, so an
interrupted run resumes) and a markdown table is printed (and written to ``--markdown``,
which BENCHMARKS.md includes when it is ``docs/ablation.md``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rlprune.env.pruning_env import PruningEnv
from rlprune.errors import run_script
from rlprune.presets.loader import load_agent_values, load_env_config
from rlprune.rl.agents import AgentConfig, load_agent_config, make_agent_config
from rlprune.rl.training import TrainSettings, train
from rlprune.search.benchmark import load_task

ROOT = Path(__file__).resolve().parent.parent

VARIANTS: dict[str, dict[str, object]] = {
    "full": {},
    "no-features": {"features": 1},
    "no-prior": {"action_mode": "absolute", "fill_budget": True},
    "low-fidelity": {"probe_images": 512},
    "v1": {},
    "anchor-best": {"anchor": "best"},
    "anchor-best-wide": {"anchor": "best", "residual_scale": 0.5},
    "anchor-best-narrow": {"anchor": "best", "residual_scale": 0.15},
    "uniform-best": {"features": 1, "prior": "uniform", "anchor": "best", "residual_scale": 0.15},
    "uniform-best-wide": {
        "features": 1,
        "prior": "uniform",
        "anchor": "best",
        "residual_scale": 0.3,
    },
    "shaping": {"shaping": "probes"},
    "lambda": {},
    "shaping-lambda": {"shaping": "probes"},
}
AGENT_CHANGES: dict[str, dict[str, object]] = {
    "lambda": {"gae_lambda": 0.9},
    "shaping-lambda": {"gae_lambda": 0.9},
}
"""Variants that also change a PPO setting (the rest change ``env:`` settings only)."""


def variant_agent(name: str, env_name: str) -> AgentConfig:
    """The agent of one ablation variant."""
    if name == "v1":
        return load_agent_config("ppo-v1", env_name)
    _, values = load_agent_values("ppo", env_name)
    values["env"] = {**values.get("env", {}), **VARIANTS[name]}
    values.update(AGENT_CHANGES.get(name, {}))
    return make_agent_config(f"ppo-{name}", values)


def run_variant(name: str, env: str, target: float, evals: int, seed: int, out: Path) -> dict:
    """One (variant, seed) search at ``evals`` full-evaluation equivalents."""
    config = load_env_config(env, {"target": target})
    task = load_task(config, None)
    agent = variant_agent(name, config.name)
    start = time.perf_counter()
    PruningEnv(task=task, config=agent.env_config(config))  # probes and prior, charged
    episodes = int(evals - task.charged(0) + 1e-9)
    train(
        config,
        agent,
        TrainSettings(episodes=episodes, seed=seed, checkpoint_every=0, checkpoint_seconds=0),
        run_dir=out / "runs" / f"{name}__{seed}",
        task=task,
    )
    search = task.search_result(name, 0, target, start)
    return {
        "variant": name,
        "seed": seed,
        "val_accuracy": search.best.accuracy,
        "macs_ratio": search.best.macs_ratio,
        "evaluations": search.evaluations,
        "probe_evaluations": evals - episodes,
        "seconds": search.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="fmnist-resnet20")
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--evals", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "ablation")
    parser.add_argument(
        "--markdown", type=Path, default=None, help="also write the table here (docs/ablation.md)"
    )
    args = parser.parse_args()
    out = args.out / f"{args.env}-t{args.target}-b{args.evals}"
    rows: dict[str, list[dict]] = {}
    for name in args.variants.split(","):
        for seed in range(args.seeds):
            path = out / f"{name}__{seed}.json"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                row = run_variant(name, args.env, args.target, args.evals, seed, out)
                path.write_text(json.dumps(row, indent=2))
                print(f"{name} seed {seed}: val {row['val_accuracy']:.4f}", flush=True)
            rows.setdefault(name, []).append(json.loads(path.read_text()))
    text = render(rows, args)
    print("\n" + text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


# what each variant takes away from the full agent
EFFECTS = {
    "no-features": "feature set 2 (probes + importance statistics) over feature set 1",
    "no-prior": "residual corrections to the sensitivity prior over absolute keep-ratios",
    "low-fidelity": "probes on the whole validation split over 512 images",
    "anchor-best": "the fixed prior as anchor over the best configuration so far",
    "anchor-best-narrow": "the fixed prior (scale 0.3) over the incumbent with scale 0.15",
    "anchor-best-wide": "the fixed prior (scale 0.3) over the incumbent with scale 0.5",
    "uniform-best": "the default over a probe-free local search from the uniform ratio (scale 0.15)",
    "uniform-best-wide": "the default over a probe-free local search from the uniform ratio (scale 0.3)",
    "shaping": "no shaping over potential-based shaping from the probes (GAE lambda 1)",
    "lambda": "GAE lambda 1 over 0.9 (no shaping)",
    "shaping-lambda": "no shaping, lambda 1 over shaping with GAE lambda 0.9",
}


def render(rows: dict[str, list[dict]], args: argparse.Namespace) -> str:
    """The ablation as markdown: the table, then one line per component with its effect."""
    means = {
        name: statistics.mean(100 * r["val_accuracy"] for r in group)
        for name, group in rows.items()
    }
    lines = [
        f"# Ablation: {args.env} @ {args.target}, {args.evals} evaluations, {args.seeds} seed(s)",
        "",
        f"`python scripts/ablation.py --env {args.env} --target {args.target} "
        f"--evals {args.evals} --seeds {args.seeds} --variants {','.join(rows)}` "
        "(validation accuracy after BatchNorm recalibration, before fine-tuning; every "
        "variant charged like the benchmark).",
        "",
        "| variant | val accuracy (%) | of it on probes | MACs ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, group in rows.items():
        acc = [100 * r["val_accuracy"] for r in group]
        spread = f" ± {statistics.stdev(acc):.2f}" if len(acc) > 1 else ""
        lines.append(
            f"| {name} | {statistics.mean(acc):.2f}{spread} | "
            f"{group[0]['probe_evaluations']:.1f} | "
            f"{max(r['macs_ratio'] for r in group):.3f} |"
        )
    if "full" in means:
        lines.append("")
        for name, what in EFFECTS.items():
            if name in means:
                lines.append(f"- {what}: {means['full'] - means[name]:+.2f} pp")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(run_script(main))
