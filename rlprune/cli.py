"""The ``rlprune`` command line. Only this module reads argv and YAML for the user."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .env.rollout import TRUST_MODES
from .errors import RLPruneError, RunError, one_line
from .files import check_output_dir
from .mdp.rewards import get_reward
from .mdp.settings import EnvConfig, setting_help
from .presets.loader import load_env_config
from .search.methods import DEFAULT_METHODS, TRANSFER_METHODS, methods_help
from .version import __version__

__all__ = ["add_trust_argument", "build_parser", "fraction_list", "main"]

if TYPE_CHECKING:
    from .rl.family import FamilyResult
    from .rl.recorder import RunRecorder

# markup off: paths and messages may hold brackets ("[/x]", "[low, high]") that rich
# would read as tags
console = Console(markup=False, highlight=False)
err_console = Console(stderr=True, markup=False, highlight=False)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _target(text: str) -> float | tuple[float, float]:
    """An argparse type: a MACs target (``0.5``) or a range (``0.3:0.7``)."""
    try:
        if ":" in text:
            low, high = (float(part) for part in text.split(":"))
            return (low, high)
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction such as 0.5 or a range such as 0.3:0.7, got {text!r}"
        ) from None


def fraction_list(text: str) -> list[float]:
    """An argparse type: fractions in (0, 1], comma-separated (MACs targets such as
    ``0.3,0.3,0.5``; scripts take keep-ratio widths and validation shares the same way)."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0.0 < v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected fractions in (0, 1] separated by commas, such as 0.3,0.3,0.5, got {text!r}"
        )
    return values


_POSITIVE = _count(1)
_NON_NEGATIVE = _count(0)


def add_env_arguments(parser: argparse.ArgumentParser) -> None:
    """``--env`` plus the overrides every env-taking command accepts."""
    group = parser.add_argument_group("environment")
    group.add_argument(
        "--env", default="digits-cnn", help="bundled preset name or YAML path (default: digits-cnn)"
    )
    group.add_argument("--model", help=setting_help("model"))
    group.add_argument("--weights", help=setting_help("weights"))
    group.add_argument("--dataset", help=setting_help("dataset"))
    group.add_argument(
        "--normalize",
        choices=("standard", "none"),
        help="input normalisation (per-channel mean/std: the preset's normalize key); "
        + setting_help("normalize").split(";", 1)[1].strip(),
    )
    group.add_argument("--device", help=setting_help("device") + " (default: auto)")
    group.add_argument(
        "--amp", action="store_true", default=None, help=setting_help("amp") + " (default: off)"
    )
    group.add_argument(
        "--target",
        type=_target,
        help=setting_help("target") + "; LOW:HIGH for a range (train: a family's targets)",
    )
    group.add_argument("--reward", help=setting_help("reward"))


def add_trust_argument(parser: argparse.ArgumentParser) -> None:
    """``--trust``: how a policy's zero-shot episode treats a network outside its family."""
    parser.add_argument(
        "--trust",
        choices=TRUST_MODES,
        default="family",
        help="family (default): on a network outside the policy's training ranges, play its "
        "corrections to the prior damped to the policy's off-family strength (the prior alone "
        "when that is 0, as for a single policy); always: play the corrections in full "
        "everywhere",
    )


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers``, ``--backend`` and ``--ray-address``: where candidates are scored."""
    group = parser.add_argument_group("scale-out")
    group.add_argument(
        "--workers",
        type=_POSITIVE,
        default=1,
        help="candidates scored at once, one worker each with one torch thread (default: 1)",
    )
    group.add_argument(
        "--backend",
        choices=("local", "process", "ray"),
        help="where they run: local (in this process), process (worker processes on this "
        "machine) or ray (Ray actors; pip install 'rlprune[ray]') "
        "(default: local for 1 worker, process for more, ray with --ray-address)",
    )
    group.add_argument(
        "--ray-address",
        help="join a running Ray cluster (e.g. auto, or ray://head:10001 after "
        "`ray start --head` there) instead of starting a local one",
    )


def use_workers(args: argparse.Namespace) -> None:
    """Apply ``--workers/--backend/--ray-address`` to every task this command builds."""
    from .evaluation.backends import set_default_backend

    set_default_backend(args.backend, args.workers, ray_address=args.ray_address)


def env_config_from_args(args: argparse.Namespace) -> EnvConfig:
    """Load the preset named by ``--env`` with the command-line overrides applied."""
    if isinstance(args.target, tuple) and args.command != "train":
        raise RunError(
            f"--target {args.target[0]}:{args.target[1]} is a range, which only `rlprune "
            f"train` takes; give `rlprune {args.command}` one target, e.g. --target 0.5"
        )
    config = load_env_config(
        args.env,
        {
            "model": args.model,
            "weights": args.weights,
            "dataset": args.dataset,
            "normalize": args.normalize,
            "device": args.device,
            "amp": args.amp,
            "target": args.target,
            "reward": args.reward,
        },
    )
    get_reward(config.env.reward)  # an unknown reward fails here, before any loading
    return config


def cmd_info(args: argparse.Namespace) -> int:
    """Print the prunable units of a preset's model."""
    from .presets.tasks import load_task
    from .reports.apply_report import format_count

    config = env_config_from_args(args)
    task = load_task(config)
    analysis = task.analysis
    table = Table(title=f"{config.name}: {config.task.model} on {config.task.dataset}")
    for column in ("#", "unit", "kind", "channels", "kernel", "stride", "input", "MACs share"):
        table.add_column(column, justify="right" if column not in ("unit", "kind") else "left")
    for u in analysis.units:
        layers = u.name if len(u.modules) == 1 else f"{u.name} (+{len(u.modules) - 1} tied)"
        table.add_row(
            str(u.index),
            layers,
            u.kind,
            f"{u.in_channels} → {u.out_channels}",
            str(u.kernel),
            str(u.stride),
            f"{u.input_hw[0]}×{u.input_hw[1]}",
            f"{u.macs / analysis.macs:.1%}",
        )
    console.print(table)
    for name, why in analysis.frozen:
        console.print(f"frozen: {name}: keeps all its channels ({why})", markup=False)
    console.print(
        f"MACs: {format_count(analysis.macs)}   params: {format_count(analysis.params)}   "
        f"units: {len(analysis.units)}"
        + (f" (+{len(analysis.frozen)} frozen)" if analysis.frozen else "")
        + f"   smallest reachable target: {task.min_macs_ratio:.3f} "
        f"(min_keep={config.task.min_keep})   MACs model: "
        f"{'exact' if analysis.mac_model.exact else 'approximate (measured and repaired)'}"
    )
    console.print(f"validation accuracy (unpruned): {task.base_accuracy():.4f}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Train and save the base model of a preset."""
    from .pretrain import check_weights_target, pretrain

    config = env_config_from_args(args)
    out = Path(args.out) if args.out else Path("pretrained") / f"{config.name}.pt"
    check_weights_target(out, overwrite=args.overwrite)  # before any training
    epochs = args.epochs if args.epochs is not None else int(config.task.pretrain.get("epochs", 10))
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"pretrain {config.name}", total=epochs)

        def on_epoch(epoch: int, loss: float) -> None:
            progress.update(
                bar, completed=epoch, description=f"pretrain {config.name} loss {loss:.3f}"
            )

        path, result = pretrain(
            config.task,
            epochs=args.epochs,
            out=out,
            overwrite=args.overwrite,
            command=_command_line(),
            on_epoch=on_epoch,
        )
    console.print(
        f"saved {path}  val acc {result.val_accuracy:.4f}  test acc {result.test_accuracy:.4f}  "
        f"({result.epochs} epochs, {result.seconds:.0f}s); use it with --weights {path}"
    )
    return 0


def _command_line() -> str:
    return shlex.join(["rlprune", *sys.argv[1:]])


def _status_progress(total: int, label: str) -> tuple[Progress, Callable[[int, str], None]]:
    """A progress bar of ``total`` episodes with a status text; the callable sets both."""
    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}", markup=False),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    bar = progress.add_task(label, total=total, status="")

    def set_status(completed: int, text: str) -> None:
        progress.update(bar, completed=completed, status=text)

    return progress, set_status


def _episode_progress(total: int, label: str) -> tuple[Progress, Callable[[RunRecorder], None]]:
    """A progress bar showing episodes, best accuracy and its MACs ratio."""
    progress, set_status = _status_progress(total, label)

    def update(recorder: RunRecorder) -> None:
        best = recorder.best
        text = (
            f"best acc {best.candidate.accuracy:.4f} @ MACs {best.candidate.macs_ratio:.3f}"
            if best
            else ""
        )
        set_status(recorder.episodes, text)

    return progress, update


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def cmd_train(args: argparse.Namespace) -> int:
    """Train a pruning agent and save its run folder."""
    from .rl.agents import ON_POLICY, load_agent_config
    from .rl.training import TrainSettings, check_resume_overrides, load_run, resume, train

    use_workers(args)
    if args.resume and (Path(args.resume) / "family.json").is_file():
        return _resume_family(args)
    if args.resume:
        for flag, value in (
            ("--weights", args.weights),
            ("--targets", args.targets),
            ("--reward", args.reward),
            ("--normalize", args.normalize),
        ):
            if value is not None:
                raise RunError(
                    f"{flag} cannot change a resumed run (it keeps the settings in "
                    f"{args.resume}/config.yaml); drop {flag}, or start a new run"
                )
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
        progress, update = _episode_progress(total, f"resume {Path(args.resume).name}")
        with progress:
            result = resume(
                args.resume,
                episodes=args.episodes,
                on_episode=update,
                checkpoint_every=args.checkpoint_every,
                checkpoint_seconds=args.checkpoint_seconds,
                trust_model=args.model,
                trust_dataset=args.dataset,
            )
    elif args.env is not None and "," in args.env:
        return _train_family(args)
    elif args.targets is not None:
        raise RunError(
            "--targets lists the targets a family's episodes draw from; one network takes "
            "--target (a value, or LOW:HIGH), or give several envs: --env a,b,..."
        )
    else:
        if args.env is None:  # None only so that --resume can tell a flag given
            args.env = "digits-cnn"
        config = env_config_from_args(args)
        agent = load_agent_config(args.agent or "ppo", config.name)
        check_output_dir(args.out)
        given = {
            "episodes": args.episodes,
            "seed": args.seed,
            "n_envs": args.n_envs,
            "checkpoint_every": args.checkpoint_every,
            "checkpoint_seconds": args.checkpoint_seconds,
        }
        if args.workers > 1 and args.n_envs is None and agent.algo in ON_POLICY:
            given["n_envs"] = args.workers  # one episode per worker ends at each update step
        settings = TrainSettings(**{k: v for k, v in given.items() if v is not None})
        progress, update = _episode_progress(settings.episodes, f"{agent.name} on {config.name}")
        with progress:
            result = train(
                config,
                agent,
                settings,
                runs_root=Path(args.out),
                command=_command_line(),
                on_episode=update,
            )
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
    from .rl.agents import load_agent_config
    from .rl.family import DEFAULT_TARGETS, FamilySettings, target_grid, train_family
    from .rl.run import run_folder_name

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
    check_output_dir(args.out)
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
    run_dir = Path(args.out) / run_folder_name("family", agent.name, settings.seed)
    return _run_family(
        f"{agent.name} on {len(names)} envs",
        settings.episodes,
        lambda update: train_family(
            configs, agent, settings, run_dir, command=_command_line(), on_episode=update
        ),
    )


def _resume_family(args: argparse.Namespace) -> int:
    """``rlprune train --resume RUN`` for a family run (``RUN/family.json``)."""
    from .rl.family import resume_family

    given = {
        "--env": args.env,
        "--target": args.target,
        "--targets": args.targets,
        "--agent": args.agent,
        "--seed": args.seed,
        "--n-envs": args.n_envs,
        "--model": args.model,
        "--weights": args.weights,
    }
    for flag, value in given.items():
        if value is not None:
            raise RunError(
                f"{flag} cannot change a resumed family run (it keeps the settings in "
                f"{args.resume}/family.json); drop {flag}, or start a new run"
            )
    try:
        meta = json.loads((Path(args.resume) / "family.json").read_text())
        total = args.episodes or int(meta["train"]["episodes"])
    except (OSError, ValueError, KeyError, TypeError):
        total = args.episodes or 1  # resume_family says what is wrong with the folder
    return _run_family(
        f"resume {Path(args.resume).name}",
        total,
        lambda update: resume_family(
            args.resume, episodes=args.episodes, on_episode=update, trust_dataset=args.dataset
        ),
    )


def _run_family(
    description: str,
    total: int,
    run: Callable[[Callable[[int, dict[str, Any]], None]], FamilyResult],
) -> int:
    """Run a family training (``run(on_episode)``) under a progress bar and report it."""
    progress, set_status = _status_progress(total, description)

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


def cmd_apply(args: argparse.Namespace) -> int:
    """Apply a saved policy to a model and export the pruned model with a report."""
    from .apply import ApplySettings, apply_policy
    from .reports.apply_report import format_count
    from .reports.latency import speed_words
    from .rl.run import run_folder_name

    use_workers(args)
    config = env_config_from_args(args)
    settings = ApplySettings(
        target=args.target,
        adapt_episodes=args.adapt_episodes,
        refine=args.refine,
        finetune_epochs=args.finetune_epochs,
        seed=args.seed,
        trust=args.trust,
    )
    out = (
        Path(args.out)
        if args.out
        else Path("runs") / run_folder_name(config.name, "apply", args.seed)
    )
    progress, update = _episode_progress(max(settings.adapt_episodes, 1), "adapt")
    with progress:
        report = apply_policy(
            args.policy,
            config,
            settings,
            out,
            on_episode=update,
            on_stage=lambda msg: progress.update(progress.task_ids[0], description=msg),
            on_refine=lambda done, best: progress.update(
                progress.task_ids[0],
                total=settings.refine,
                completed=done,
                status=f"best acc {best.accuracy:.4f} @ MACs {best.macs_ratio:.3f}",
            ),
        )
    console.print(
        f"MACs {format_count(report.macs_before)} → {format_count(report.macs_after)} "
        f"({report.macs_ratio:.3f}×), params {report.params_ratio:.3f}×; "
        f"val acc {report.val_accuracy_before:.4f} → {report.val_accuracy_after:.4f}, "
        f"test acc {report.test_accuracy_before:.4f} → {report.test_accuracy_after:.4f}"
        + (
            f" (fine-tuned {report.test_accuracy_finetuned:.4f})"
            if report.test_accuracy_finetuned is not None
            else ""
        ),
        highlight=False,
    )
    timed = [("CPU", report.latency), (report.device, report.latency_gpu or {})]
    for where, rows in timed:
        for batch, row in sorted(rows.items()):
            console.print(
                f"{where} latency batch {batch}: {row['before_ms']:.2f} ms → "
                f"{row['after_ms']:.2f} ms ({speed_words(row['speedup'])})",
                highlight=False,
            )
    if report.refine_evaluations:
        console.print(
            f"refined with {report.refine_evaluations} evaluations: "
            + (
                "a better configuration was found and delivered"
                if report.refine_improved
                else "none beat the policy's configuration, which was delivered"
            ),
            highlight=False,
        )
    family = ", ".join(report.policy_family)
    console.print(f"policy: {report.policy} (trained on {family})", highlight=False, soft_wrap=True)
    if report.outside_family:
        console.print(
            "outside the policy's training ranges: "
            + "; ".join(
                f"{o['feature']} on {o['steps']}/{len(report.units)} units (up to "
                f"{o['distance']:.2f} beyond)"
                for o in report.outside_family
            )
            + ("" if report.refine_evaluations else " — consider --refine 20"),
            highlight=False,
            soft_wrap=True,
        )
        if report.deferred:
            console.print(
                f"so the zero-shot episode played {report.played()} (--trust always plays "
                "its corrections in full)",
                highlight=False,
                soft_wrap=True,
            )
    elif report.policy_ranges:
        console.print("every observation lies inside the policy's training ranges", highlight=False)
    console.print(f"report and pruned model: {out}", highlight=False)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    """Compare search methods at equal cost; write tables and plots."""
    from .presets.tasks import load_task
    from .reports.tables import MethodSeedResult
    from .search.benchmark import BenchmarkSettings, benchmark_config, run_benchmark

    use_workers(args)
    config = env_config_from_args(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise RunError(f"--methods {args.methods!r} names no method; e.g. --methods ppo,random")
    if args.policy and not set(TRANSFER_METHODS) & set(methods):
        # --policy adds the transfer methods (zero-shot; adapted and refined when asked)
        adapted = ["transfer-adapt", "transfer-refine"] if args.adapt_episodes else []
        methods += ["transfer", *adapted]
    if args.policy is None and set(TRANSFER_METHODS) & set(methods):
        from .apply import default_policy

        args.policy = str(default_policy())  # the bundled general policy
    settings = BenchmarkSettings(
        methods=tuple(methods),
        evals=args.evals,
        seeds=args.seeds,
        finetune_epochs=args.finetune_epochs,
        finetune_images=args.finetune_images,
        proxy_candidates=args.proxy_candidates,
        policy=args.policy,
        adapt_episodes=args.adapt_episodes,
        trust=args.trust,
    )
    out = Path(args.out) if args.out else Path("results") / f"benchmark-{config.name}"
    check_output_dir(out)
    config = benchmark_config(config, args.policy)
    task = load_task(config)
    total = len(settings.methods) * max(settings.seeds, 1)
    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    bar = progress.add_task("benchmark", total=total)

    def started(method: str, seed: int) -> None:
        progress.update(bar, description=f"{method} seed {seed}")

    def finished(result: MethodSeedResult, done: int, _total: int) -> None:
        progress.update(bar, completed=done)
        progress.console.print(
            f"{result.method:>15} seed {result.seed}: val {result.val_accuracy:.4f} "
            f"test {result.test_accuracy:.4f} MACs {result.macs_ratio:.3f} "
            f"evals {result.evaluations} ({result.wall_time_s:.0f}s)",
            highlight=False,
        )

    try:
        with progress:
            _, files = run_benchmark(
                task,
                settings,
                out,
                config=config,
                overwrite=args.overwrite,
                resume=args.resume,
                on_result=finished,
                on_start=started,
            )
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: finished (method, seed) results are kept in {out}/results; "
            "run the same command with --resume to compute only the missing ones",
            highlight=False,
        )
        return 130
    console.print(files["summary.md"].read_text(), highlight=False, markup=False)
    plots = [p for k, p in files.items() if str(p).endswith(".png")]
    console.print(
        f"tables and plots in {out}: " + ", ".join(p.name for p in plots), highlight=False
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rlprune`` command."""
    parser = _Parser(
        prog="rlprune", description="Learn channel-pruning policies with reinforcement learning."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"rlprune {__version__}")
    # --debug is accepted after the command too (SUPPRESS: absent there leaves the top-level value)
    debug = _Parser(add_help=False)
    debug.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", parents=[debug], help="print a model's prunable units and MACs")
    add_env_arguments(info)
    info.set_defaults(func=cmd_info)

    pre = sub.add_parser(
        "pretrain", parents=[debug], help="train and save the base model of a preset"
    )
    add_env_arguments(pre)
    pre.add_argument("--epochs", type=_NON_NEGATIVE, help="training epochs (default: the preset's)")
    pre.add_argument(
        "--out", help="where to save the weights (default: pretrained/{env}.pt in this folder)"
    )
    pre.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing weights file (e.g. regenerate the bundled weights/*.pt)",
    )
    pre.set_defaults(func=cmd_pretrain)
    tr = sub.add_parser("train", parents=[debug], help="train a pruning agent (PPO by default)")
    add_env_arguments(tr)
    # no defaults here for what a run fixes: with --resume, a flag given must match the run
    tr.add_argument("--agent", help="agent preset name or YAML (default: ppo)")
    tr.add_argument("--episodes", type=_POSITIVE, help="pruned networks to evaluate (default: 300)")
    tr.add_argument("--seed", type=int, help="seed for the agent and environments (default: 0)")
    tr.add_argument(
        "--n-envs",
        type=_POSITIVE,
        help="environments stepped together (default: 1, or --workers for PPO)",
    )
    add_worker_arguments(tr)
    tr.add_argument(
        "--checkpoint-every",
        type=_NON_NEGATIVE,
        help="checkpoint once this many episodes have passed (default: 50; 0: not by count)",
    )
    tr.add_argument(
        "--checkpoint-seconds",
        type=_seconds,
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
    tr.add_argument("--out", default="runs", help="folder for run folders (default: runs)")
    tr.add_argument("--resume", help="continue the run in this folder from its last checkpoint")
    tr.set_defaults(func=cmd_train, env=None)

    ap = sub.add_parser(
        "apply", parents=[debug], help="prune a model with a saved policy and export it"
    )
    ap.add_argument(
        "--policy",
        help="policy folder or the run folder holding it (default: the bundled general "
        "policy, trained across a family of networks and targets 0.3-0.7)",
    )
    add_env_arguments(ap)
    ap.add_argument(
        "--adapt-episodes", type=_NON_NEGATIVE, default=0, help="keep training on this model first"
    )
    ap.add_argument(
        "--refine",
        type=_NON_NEGATIVE,
        default=0,
        metavar="N",
        help="then spend N evaluations on a TPE search within 0.25 keep-ratio of the policy's "
        "configuration (e.g. 20): three quarters screen trials on a quarter of the validation "
        "set each, the rest score the best screened in full; the best one found is delivered",
    )
    ap.add_argument(
        "--finetune-epochs",
        type=_NON_NEGATIVE,
        default=0,
        help="fine-tune the pruned model on train",
    )
    ap.add_argument("--seed", type=int, default=0)
    add_trust_argument(ap)
    add_worker_arguments(ap)
    ap.add_argument("--out", help="output folder (default: runs/{env}__apply__{seed}__{time})")
    ap.set_defaults(func=cmd_apply)

    bm = sub.add_parser(
        "benchmark", parents=[debug], help="compare agents and baselines at equal search cost"
    )
    add_env_arguments(bm)
    bm.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=methods_help(),
    )
    bm.add_argument("--evals", type=_POSITIVE, default=100, help="candidate evaluations per method")
    bm.add_argument("--seeds", type=_POSITIVE, default=1, help="seeds per method")
    bm.add_argument(
        "--finetune-epochs", type=_NON_NEGATIVE, default=0, help="fine-tune every method's best"
    )
    bm.add_argument(
        "--finetune-images",
        type=_POSITIVE,
        help="fine-tune on at most this many training images (e.g. 10000: one short pass)",
    )
    bm.add_argument(
        "--proxy-candidates",
        type=_NON_NEGATIVE,
        default=0,
        help="fine-tune this many evaluated candidates and report the Spearman correlation "
        "of validation accuracy with fine-tuned test accuracy (e.g. 20)",
    )
    bm.add_argument(
        "--policy",
        help="a policy trained elsewhere: adds the transfer (and, with --adapt-episodes, "
        "transfer-adapt and transfer-refine) methods (default for those methods: the bundled "
        "general policy)",
    )
    bm.add_argument(
        "--adapt-episodes",
        type=_NON_NEGATIVE,
        default=0,
        help="episodes for transfer-adapt, evaluations for transfer-refine",
    )
    add_trust_argument(bm)
    add_worker_arguments(bm)
    bm.add_argument("--out", help="output folder (default: results/benchmark-{env})")
    bm.add_argument("--overwrite", action="store_true", help="replace an existing benchmark")
    bm.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted benchmark, or add seeds to one (the same command with "
        "a larger --seeds: the kept seeds stand)",
    )
    bm.set_defaults(func=cmd_benchmark)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlprune`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    if not args.debug:
        warnings.formatwarning = lambda message, *_args, **_kw: f"warning: {message}\n"
    try:
        return func(args)
    except RLPruneError as error:
        if args.debug:
            raise
        _print_error(str(error))
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except OSError as error:
        if args.debug:
            raise
        where = f" ({error.filename})" if error.filename else ""
        _print_error(
            f"{error.strerror or one_line(error)}{where}; check free space and permissions "
            "of the output folder (nothing was published)"
        )
        return 1
    except Exception as error:  # noqa: BLE001 - the last line of defence: no traceback
        if args.debug:
            raise
        _print_error(
            f"unexpected {one_line(error)}; rerun with --debug for the traceback and "
            "report it if the input was valid"
        )
        return 1
    finally:
        service = sys.modules.get("rlprune.evaluation.backends")
        if service is not None:
            service.close_all()  # worker processes and Ray actors end with the command


def _print_error(message: str) -> None:
    """``error: message`` on one line of stderr, brackets and all."""
    err_console.print(
        Text.assemble(("error:", "bold red"), " ", " ".join(message.split())), soft_wrap=True
    )


if __name__ == "__main__":
    sys.exit(main())
