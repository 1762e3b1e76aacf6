"""``rlprune train``: one network, or a family of networks and targets; resume."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RunError
from ..files import check_output_dir
from ..mdp.settings import resolve_spec
from ..presets.loader import available_agents
from .common import (
    NON_NEGATIVE,
    POSITIVE,
    add_env_arguments,
    add_worker_arguments,
    command_line,
    console,
    env_config_from_args,
    env_overrides,
    episode_progress,
    err_console,
    fraction_list,
    seconds,
    seed_value,
    status_progress,
    use_workers,
)

if TYPE_CHECKING:
    from ..rl.family import FamilyResult
    from ..rl.training import TrainResult

DEFAULT_RUNS = "runs"
"""Where run folders go without ``--out`` (``None`` there: ``--resume`` refuses one given)."""


def cmd_train(args: argparse.Namespace) -> int:
    """Train a pruning agent and save its run folder."""
    use_workers(args)
    if args.resume and (Path(args.resume) / "family.json").is_file():
        return _resume_family(args)
    if args.resume:
        result = _resume_one(args)
    elif args.env is not None and "," in args.env:
        return _train_family(args)
    elif args.targets is not None:
        raise RunError(
            "--targets lists the targets a family's episodes draw from; one network takes "
            "--target (a value, or LOW:HIGH), or give several envs: --env a,b,..."
        )
    else:
        result = _train_one(args)
    return _report_train(result)


def _resume_one(args: argparse.Namespace) -> TrainResult:
    """``rlprune train --resume RUN`` for one network: refuse changed settings, then resume."""
    from ..rl.training import check_resume_overrides, load_run, resume

    # --model/--dataset trust the run's code, --target must be the run's (checked below)
    _refuse_resume_flags(args, {}, keep=("model", "dataset", "target"), run="run")
    # the run keeps its own settings: a flag that asks for others is an error
    check_resume_overrides(
        args.resume,
        env=args.env,
        target=args.target,
        agent=args.agent,
        seed=args.seed,
        n_envs=args.n_envs,
        episodes=args.episodes,
    )
    _, _, settings = load_run(args.resume)
    total = args.episodes or settings.episodes
    # relative as given, absolute as the run recorded them (and as the refusal asks)
    model, dataset = (
        None if spec is None else resolve_spec(spec, Path.cwd())
        for spec in (args.model, args.dataset)
    )
    progress, update = episode_progress(total, f"resume {Path(args.resume).name}")
    with progress:
        return resume(
            args.resume,
            episodes=args.episodes,
            on_episode=update,
            checkpoint_every=args.checkpoint_every,
            checkpoint_seconds=args.checkpoint_seconds,
            trust_model=model,
            trust_dataset=dataset,
        )


def _train_one(args: argparse.Namespace) -> TrainResult:
    """``rlprune train`` for one network: settings from the flags, then a new run."""
    from ..rl.agents import ON_POLICY, load_agent_config
    from ..rl.training import TrainSettings, train

    if args.env is None:  # None only so that --resume can tell a flag given
        args.env = "digits-cnn"
    config = env_config_from_args(args)
    agent = load_agent_config(args.agent or "ppo", config.name)
    out = args.out or DEFAULT_RUNS
    check_output_dir(out)
    given = {
        "episodes": args.episodes,
        "seed": args.seed,
        "n_envs": args.n_envs,
        "checkpoint_every": args.checkpoint_every,
        "checkpoint_seconds": args.checkpoint_seconds,
    }
    if args.workers > 1 and args.n_envs is None and agent.algo in ON_POLICY:
        # one episode per worker ends at each update step; no more envs than episodes
        given["n_envs"] = min(args.workers, args.episodes or TrainSettings.episodes)
    settings = TrainSettings(**{k: v for k, v in given.items() if v is not None})
    progress, update = episode_progress(settings.episodes, f"{agent.name} on {config.name}")
    with progress:
        return train(
            config,
            agent,
            settings,
            runs_root=Path(out),
            command=command_line(),
            on_episode=update,
        )


def _refuse_resume_flags(
    args: argparse.Namespace, given: dict[str, Any], *, keep: tuple[str, ...], run: str
) -> None:
    """Refuse every flag that would change a resumed ``run`` (a flag parsed and then
    ignored would be a lie): the env settings (all but ``keep``), ``--targets``, ``--out``
    and the flags in ``given``.

    Raises:
        RunError: naming the first such flag given.
    """
    record = "family.json" if run == "family run" else "config.yaml"
    flags = {
        f"--{key.replace('_', '-')}": value
        for key, value in env_overrides(args).items()
        if key not in keep
    }
    for flag, value in {**flags, "--targets": args.targets, **given}.items():
        if value is not None:
            raise RunError(
                f"{flag} cannot change a resumed {run} (it keeps the settings in "
                f"{args.resume}/{record}); drop {flag}, or start a new run"
            )
    if args.out is not None:
        raise RunError(
            f"--out cannot move a resumed {run}: it continues in {args.resume}; drop --out"
        )


def _report_train(result: TrainResult) -> int:
    """Print a finished (or interrupted) run's best and totals; return the exit code."""
    best = result.best
    if best is not None:
        console.print(
            f"best: val acc {best.candidate.accuracy:.4f} at MACs ratio "
            f"{best.candidate.macs_ratio:.3f} (episode {best.episode}; keep-ratios "
            + ", ".join(f"{k:.2f}" for k in best.candidate.keep_ratios)
            + ")",
            highlight=False,
        )
    console.print(
        f"{result.episodes} episodes ({result.evaluations} new evaluations) in "
        f"{result.seconds:.0f}s; run folder: {result.run_dir}",
        highlight=False,
    )
    if result.interrupted:
        err_console.print(
            f"interrupted: checkpoint, best.json and policy saved; continue with "
            f"`rlprune train --resume {result.run_dir}`",
            highlight=False,
            soft_wrap=True,
        )
        return 128 + result.stop_signal  # 130 for Ctrl-C, 143 for SIGTERM
    return 0


def _train_family(args: argparse.Namespace) -> int:
    """``rlprune train --env a,b,...``: one policy across a family of networks and targets."""
    from ..rl.agents import load_agent_config
    from ..rl.family import DEFAULT_TARGETS, FamilySettings, target_grid, train_family
    from ..rl.run import run_folder_name

    for flag, value in (("--model", args.model), ("--weights", args.weights)):
        if value is not None:
            raise RunError(
                f"{flag} names one network; a family (--env a,b,...) takes env presets that "
                "name their own models"
            )
    names = [name.strip() for name in args.env.split(",") if name.strip()]
    if args.targets is not None and args.target is not None:
        raise RunError("--targets lists a family's targets and --target gives them; drop one")
    target = args.target if args.target is not None else DEFAULT_TARGETS
    targets = target_grid(*target) if isinstance(target, tuple) else (float(target),)
    if args.targets is not None:  # drawn uniformly from the list: a repeat weighs double
        targets = tuple(args.targets)
    # each member: its own preset with this command's overrides (the range is the family's)
    configs = [
        env_config_from_args(argparse.Namespace(**{**vars(args), "env": name, "target": None}))
        for name in names
    ]
    agent = load_agent_config(args.agent or "ppo", configs[0].name)
    if args.checkpoint_seconds is not None:
        raise RunError(
            "--checkpoint-seconds: a family run checkpoints by episodes only; give "
            "--checkpoint-every N instead"
        )
    out = args.out or DEFAULT_RUNS
    check_output_dir(out)
    settings = FamilySettings(
        **{
            k: v
            for k, v in {
                "episodes": args.episodes,
                "seed": args.seed,
                "n_envs": args.n_envs,
                "save_every": args.checkpoint_every,
            }.items()
            if v is not None
        },
        targets=targets,
    )
    run_dir = Path(out) / run_folder_name("family", agent.name, settings.seed)
    return _run_family(
        f"{agent.name} on {len(names)} envs",
        settings.episodes,
        lambda update: train_family(
            configs, agent, settings, run_dir, command=command_line(), on_episode=update
        ),
    )


def _resume_family(args: argparse.Namespace) -> int:
    """``rlprune train --resume RUN`` for a family run (``RUN/family.json``)."""
    from ..rl.family import resume_family

    given = {
        "--env": args.env,
        "--agent": args.agent,
        "--seed": args.seed,
        "--n-envs": args.n_envs,
        "--checkpoint-seconds": args.checkpoint_seconds,
    }
    # --dataset trusts a member's dataset code (resume_family checks it is one)
    _refuse_resume_flags(args, given, keep=("dataset",), run="family run")
    try:
        meta = json.loads((Path(args.resume) / "family.json").read_text())
        total = args.episodes or int(meta["train"]["episodes"])
    except (OSError, ValueError, KeyError, TypeError):
        total = args.episodes or 1  # resume_family says what is wrong with the folder
    return _run_family(
        f"resume {Path(args.resume).name}",
        total,
        lambda update: resume_family(
            args.resume,
            episodes=args.episodes,
            on_episode=update,
            trust_dataset=None if args.dataset is None else resolve_spec(args.dataset, Path.cwd()),
            save_every=args.checkpoint_every,
        ),
    )


def _run_family(
    description: str,
    total: int,
    run: Callable[[Callable[[int, dict[str, Any]], None]], FamilyResult],
) -> int:
    """Run a family training (``run(on_episode)``) under a progress bar and report it."""
    progress, set_status = status_progress(total, description)

    def update(episodes: int, row: dict[str, Any]) -> None:
        set_status(
            episodes, f"{row['member']} @ {row['target']:.2f}: {row['reward']:+.4f} vs prior"
        )

    with progress:
        result = run(update)
    run_dir = result.run_dir
    for name, gain in result.improvement.items():
        console.print(
            f"{name}: last quarter's episodes {gain * 100:+.2f} points over the prior",
            highlight=False,
        )
    console.print(
        f"{result.episodes} episodes ({result.evaluations} new evaluations) in "
        f"{result.seconds:.0f}s; policy: {run_dir / 'policy'}",
        highlight=False,
    )
    if result.interrupted:
        err_console.print(
            f"interrupted: the policy of the episodes so far is saved in {run_dir / 'policy'}; "
            f"continue with `rlprune train --resume {run_dir}`",
            highlight=False,
            soft_wrap=True,
        )
        return 128 + result.stop_signal
    return 0


def add_parser(sub: Any, debug: argparse.ArgumentParser) -> None:
    """Add the ``train`` command to ``sub`` (the subparsers of ``rlprune``)."""
    tr = sub.add_parser("train", parents=[debug], help="train a pruning agent (PPO by default)")
    add_env_arguments(tr)
    # no defaults here for what a run fixes: with --resume, a flag given must match the run
    tr.add_argument(
        "--agent",
        help=f"bundled agent preset ({', '.join(available_agents())}) or a YAML path "
        "(default: ppo)",
    )
    tr.add_argument("--episodes", type=POSITIVE, help="pruned networks to evaluate (default: 300)")
    tr.add_argument(
        "--seed", type=seed_value, help="seed for the agent and environments (default: 0)"
    )
    tr.add_argument(
        "--n-envs",
        type=POSITIVE,
        help="environments stepped together (default: 1, or --workers for PPO)",
    )
    add_worker_arguments(tr)
    tr.add_argument(
        "--checkpoint-every",
        type=NON_NEGATIVE,
        help="checkpoint once this many episodes have passed (default: 50; 0: not by count)",
    )
    tr.add_argument(
        "--checkpoint-seconds",
        type=seconds,
        help="...or once this many seconds have passed, whichever comes first "
        "(default: 30; 0: not by time); the end and Ctrl-C/SIGTERM always checkpoint",
    )
    tr.add_argument(
        "--targets",
        type=fraction_list,
        metavar="T1,T2,...",
        help="a family's targets, listed: each episode draws one uniformly, so a repeated "
        "target is drawn more often (e.g. 0.3,0.3,0.4,0.5,0.6,0.7; instead of --target LOW:HIGH)",
    )
    tr.add_argument("--out", help="folder for run folders (default: runs)")
    tr.add_argument("--resume", help="continue the run in this folder from its last checkpoint")
    tr.set_defaults(func=cmd_train, env=None)
