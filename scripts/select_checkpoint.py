"""Pick a family run's checkpoint by how it plays networks outside its family.

    python scripts/select_checkpoint.py --runs runs/skew-s0/family__ppo__0__... \\
        --select-on fmnist-cnn,fmnist-mobilenetv1 \\
        --report fmnist-vgg,fmnist-mobilenetv2,examples/fmnist-custom.yaml \\
        --targets 0.3,0.5,0.7 [--export runs/skew-s0/selected]

Every checkpoint of every run plays its own corrections once (deterministic, probes +
1 evaluation) on the ``--select-on`` networks, which should lie outside both the training
family and the networks the policy will be judged on. A checkpoint's score is its mean
validation accuracy minus the prior's there, over those networks and the run's targets
(a single-target run plays only its own target). Each run's best-scoring checkpoint is
its pick; ``--export`` writes it as a policy folder (one run only). With ``--report``, the
same is measured on the networks the policy is judged on, and the Spearman correlation
between the two scores over all checkpoints says whether the selection networks predict
them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rlprune.env.pruning_env import PruningEnv  # noqa: E402
from rlprune.env.rollout import PriorPlayer, rollout  # noqa: E402
from rlprune.errors import ConfigError, run_script  # noqa: E402
from rlprune.presets.loader import load_env_config  # noqa: E402
from rlprune.rl.family import policy_env  # noqa: E402
from rlprune.rl.policy import POLICY_ENV_KEYS, LoadedPolicy, load_policy, save_policy  # noqa: E402
from rlprune.search.benchmark import load_task  # noqa: E402


@dataclass
class Scored:
    """One checkpoint's accuracies (%) and their mean gain over the prior."""

    run: Path
    checkpoint: str
    accuracy: dict[tuple[str, float], float] = field(default_factory=dict)
    select: float = 0.0
    report: float | None = None
    targets: list[float] = field(default_factory=list)


def _checkpoints(run: Path) -> list[Path]:
    found = sorted(p for p in (run / "checkpoints").glob("ep*") if (p / "params.pt").is_file())
    if not found:
        raise ConfigError(
            f"run {str(run)!r} has no checkpoints/ep*/params.pt; give a folder made by "
            "`rlprune train` (it checkpoints every --checkpoint-every episodes)"
        )
    return found


def _load_checkpoint(policy: LoadedPolicy, checkpoint: Path) -> None:
    """Put ``checkpoint``'s policy weights into ``policy`` (weights_only; eval mode)."""
    params = torch.load(checkpoint / "params.pt", map_location="cpu", weights_only=True)
    policy.network.load_state_dict(params["policy"])
    policy.network.set_training_mode(False)


def _run_targets(run: Path, targets: list[float]) -> list[float]:
    """``targets``, or only the run's own target for a run trained on one."""
    try:
        trained = json.loads((run / "family.json").read_text())["train"]["targets"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        raise ConfigError(
            f"run {str(run)!r} has no readable family.json; give a folder made by "
            "`rlprune train --env A,B,...`"
        ) from None
    if len(set(trained)) == 1:
        return [float(trained[0])] if float(trained[0]) in targets else []
    return targets


class Boards:
    """One env (and its prior's accuracy, %) per network, target and policy settings, built
    once: the probes are the expensive part."""

    def __init__(self) -> None:
        self.envs: dict[tuple[str, float, str], tuple[PruningEnv, float]] = {}

    def get(self, policy: LoadedPolicy, name: str, target: float) -> tuple[PruningEnv, float]:
        """The env on which ``policy`` plays ``name`` at ``target``, and the prior's accuracy."""
        settings = {k: policy.metadata.get(k) for k in (*POLICY_ENV_KEYS, "feature_version")}
        key = (name, target, json.dumps(settings, sort_keys=True))
        if key not in self.envs:
            spec = str(ROOT / name) if name.endswith((".yaml", ".yml")) else name
            config = load_env_config(spec, {"target": target})
            env = policy_env(policy, load_task(config, str(policy.path)))
            self.envs[key] = (env, 100 * rollout(PriorPlayer(), env).accuracy)
        return self.envs[key]


def _score(
    boards: Boards, policy: LoadedPolicy, item: Scored, names: list[str], targets: list[float]
) -> float:
    gains = []
    for name in names:
        for target in targets:
            env, prior = boards.get(policy, name, target)
            accuracy = 100 * rollout(policy, env).accuracy
            item.accuracy[(name, target)] = accuracy
            gains.append(accuracy - prior)
    return sum(gains) / len(gains)


def main(argv: list[str] | None = None) -> int:
    """Score every checkpoint, print one line each and each run's pick."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True)
    parser.add_argument("--select-on", required=True, help="networks to select on, a,b,...")
    parser.add_argument("--report", default="", help="networks to report on, a,b,...")
    parser.add_argument("--targets", default="0.3,0.5,0.7")
    parser.add_argument("--export", type=Path, help="write the pick as a policy (one run)")
    args = parser.parse_args(argv)
    if args.export and len(args.runs) != 1:
        parser.error("--export writes one run's pick; give one --runs folder")
    select = [n for n in args.select_on.split(",") if n]
    report = [n for n in args.report.split(",") if n]
    targets = [float(t) for t in args.targets.split(",")]
    plans = [(run, _checkpoints(run), _run_targets(run, targets)) for run in args.runs]
    scored: list[Scored] = []
    picks: dict[Path, Scored] = {}
    boards = Boards()
    for run, checkpoints, run_targets in plans:
        if not run_targets:
            print(f"{run}: trained for a target not in --targets; skipped", flush=True)
            continue
        policy = load_policy(run / "policy")
        for checkpoint in checkpoints:
            _load_checkpoint(policy, checkpoint)
            item = Scored(run, checkpoint.name, targets=run_targets)
            item.select = _score(boards, policy, item, select, run_targets)
            if report:
                item.report = _score(boards, policy, item, report, run_targets)
            scored.append(item)
            if run not in picks or item.select > picks[run].select:
                picks[run] = item
            cells = " ".join(f"{n}@{t} {a:.2f}" for (n, t), a in item.accuracy.items())
            shown = f" report-prior {item.report:+.2f}" if item.report is not None else ""
            print(
                f"{run} {item.checkpoint}: select-prior {item.select:+.2f}{shown} | {cells}",
                flush=True,
            )
    for run, item in picks.items():
        shown = f", report-prior {item.report:+.2f}" if item.report is not None else ""
        print(f"pick {run}: {item.checkpoint} (select-prior {item.select:+.2f}{shown})")
    if report and len(scored) > 2:
        from scipy.stats import spearmanr

        rho = spearmanr([s.select for s in scored], [s.report for s in scored]).statistic
        print(f"spearman(select, report) over {len(scored)} checkpoints: {rho:.2f}")
    if args.export and picks:
        (item,) = picks.values()
        policy = load_policy(item.run / "policy")
        _load_checkpoint(policy, item.run / "checkpoints" / item.checkpoint)
        skip = {"format", "feature_version", "features", "rlprune_version"}
        metadata = {k: v for k, v in policy.metadata.items() if k not in skip}
        metadata["selected"] = {
            "checkpoint": item.checkpoint,
            "select_on": select,
            "targets": item.targets,
            "select_minus_prior": round(item.select, 4),
        }
        out = save_policy(policy.network, args.export, metadata, policy.metadata["feature_version"])
        print(f"policy: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
