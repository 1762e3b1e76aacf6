"""What every command shares: the consoles, argument types and common flags, progress, errors."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import yaml
from rich.console import Console, ConsoleDimensions, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..env.rollout import TRUST_MODES
from ..errors import RunError
from ..evaluation.config import METRICS
from ..evaluation.latency import grid_words
from ..mdp.rewards import get_reward
from ..mdp.settings import EnvConfig, setting_help
from ..presets.loader import available_presets, load_env_config

if TYPE_CHECKING:
    from ..evaluation.latency import LatencyModel
    from ..rl.recorder import RunRecorder


UNWRAPPED_WIDTH = 100_000
"""A console's width when it writes to a file or a pipe: wide enough that no line wraps."""


class OutputConsole(Console):
    """A rich console that wraps nothing when its output is not a terminal: a table or a
    line piped to a file keeps its rows whole (rich would wrap them at 80 columns, or at
    the width of whatever terminal the pipe started from). ``COLUMNS`` still sets a width."""

    @property
    def size(self) -> ConsoleDimensions:
        """The terminal's size; :data:`UNWRAPPED_WIDTH` wide when writing elsewhere."""
        size = super().size
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(UNWRAPPED_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


# markup off: paths and messages may hold brackets ("[/x]", "[low, high]") that rich
# would read as tags
console = OutputConsole(markup=False, highlight=False)


err_console = OutputConsole(stderr=True, markup=False, highlight=False)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help layout, wrapped only at spaces: method and preset names such as
    ``transfer-adapt`` or ``ppo,random,tpe`` are never split mid-name."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        text = " ".join(text.split())
        return textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False)


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit 2), and whose help
    never splits a name (:class:`HelpFormatter`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def count(minimum: int) -> Callable[[str], int]:
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


_PAIR_START = re.compile(r",(?=\s*[A-Za-z_]\w*\s*=)")


def factory_arguments(text: str) -> dict[str, Any]:
    """An argparse type: ``KEY=VALUE`` pairs separated by commas (``root=/x,size=32``), each
    value read as YAML (``32`` a number, ``[0.5, 0.5]`` a list, ``/x`` a string)."""
    pairs: dict[str, Any] = {}
    for part in _PAIR_START.split(text):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise argparse.ArgumentTypeError(
                f"expected KEY=VALUE pairs such as root=/data/images,size=32, got {text!r}"
            )
        try:
            pairs[key] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            pairs[key] = value
    return pairs


def target_value(text: str) -> float | tuple[float, float]:
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


POSITIVE = count(1)


MAX_SEED = 2**32 - 1
"""The largest seed numpy and Stable-Baselines3 accept."""


def seed_value(text: str) -> int:
    """An argparse type: a seed, 0 to 2**32 - 1."""
    value = count(0)(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be at most 2**32 - 1 = {MAX_SEED}, got {value}")
    return value


NON_NEGATIVE = count(0)


def add_env_arguments(parser: argparse.ArgumentParser, *, search: bool = True) -> None:
    """``--env`` plus the overrides every env-taking command accepts; ``search=False``
    leaves out the budget and reward, which only a search uses (``pretrain``)."""
    group = parser.add_argument_group("environment")
    group.add_argument(
        "--env",
        default="digits-cnn",
        help=f"bundled preset ({', '.join(available_presets())}) or a YAML path "
        "(default: digits-cnn)",
    )
    group.add_argument("--model", help=setting_help("model"))
    group.add_argument(
        "--model-kwargs",
        type=factory_arguments,
        action="append",
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="arguments for the model factory (repeatable; each VALUE read as YAML), over "
        "the preset's model_kwargs, which a --model of another name drops",
    )
    group.add_argument("--weights", help=setting_help("weights"))
    group.add_argument("--dataset", help=setting_help("dataset"))
    group.add_argument(
        "--dataset-kwargs",
        type=factory_arguments,
        action="append",
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="arguments for the dataset factory or image folder (e.g. root=/data/x,size=32; "
        "repeatable; each VALUE read as YAML), over the preset's dataset_kwargs, which a "
        "--dataset of another name drops",
    )
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
    group.add_argument("--threads", type=POSITIVE, help=setting_help("threads"))
    if not search:
        return
    group.add_argument(
        "--target",
        type=target_value,
        help=setting_help("target") + "; LOW:HIGH for a range (train: a family's targets)",
    )
    group.add_argument("--reward", help=setting_help("reward"))
    group.add_argument(
        "--metric",
        choices=METRICS,
        help="what --target budgets: macs (default) or latency, measured on --device at "
        "--latency-batch by a latency model fitted once and cached",
    )
    group.add_argument(
        "--latency-batch", type=POSITIVE, help=setting_help("latency_batch") + " (default: 1)"
    )


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
        type=POSITIVE,
        default=1,
        help="candidates scored at once, one worker each with one torch thread; this process "
        "then keeps the cores left (at least 1) unless --threads says otherwise (default: 1)",
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


WORKERS_PER_CORE = 4
"""The most ``--workers`` per CPU core on this machine (each is a process with a model copy)."""
MAX_RAY_WORKERS = 4096
"""The most ``--workers`` on a Ray cluster."""


def use_workers(args: argparse.Namespace) -> None:
    """Apply ``--workers/--backend/--ray-address`` to every task this command builds.

    Raises:
        RunError: more workers than this machine (or any cluster) can hold.
    """
    from ..evaluation.backends import set_default_backend

    ray = args.backend == "ray" or (args.backend is None and args.ray_address)
    cores = os.cpu_count() or 1
    limit = MAX_RAY_WORKERS if ray else WORKERS_PER_CORE * cores
    if args.workers > limit:
        where = "on Ray" if ray else f"here ({cores} CPU cores, {WORKERS_PER_CORE} per core)"
        raise RunError(
            f"--workers {args.workers} is more than the {limit} workers {where}; each is a "
            f"process with its own model copy: give --workers {limit} or fewer (one per core is best)"
        )
    choice = set_default_backend(args.backend, args.workers, ray_address=args.ray_address)
    local = choice.name == "process" or (choice.name == "ray" and not choice.ray_address)
    if local and choice.workers > 1 and getattr(args, "threads", None) is None:
        import torch

        from ..evaluation.backends import threads_beside

        # the workers take one core each; --threads overrides (env_config_from_args)
        torch.set_num_threads(threads_beside(choice.workers, cores))


def env_config_from_args(args: argparse.Namespace) -> EnvConfig:
    """Load the preset named by ``--env`` with the command-line overrides applied."""
    if isinstance(getattr(args, "target", None), tuple) and args.command != "train":
        raise RunError(
            f"--target {args.target[0]}:{args.target[1]} is a range, which only `rlprune "
            f"train` takes; give `rlprune {args.command}` one target, e.g. --target 0.5"
        )
    overrides = env_overrides(args)
    kwargs = {key: overrides.pop(key) for key in FACTORY_KWARGS}
    config = _with_factory_kwargs(args.env, load_env_config(args.env, overrides), kwargs)
    from ..presets.tasks import remember_preset

    remember_preset(config.name, args.env)
    if args.command != "pretrain":  # pretrain makes the weights
        from ..presets.tasks import check_weights

        # the hint names the preset as given: a YAML preset's name alone is no preset
        check_weights(config.task, args.env)
    import torch

    if config.task.threads is not None:
        torch.set_num_threads(config.task.threads)
    elif getattr(args, "workers", 1) <= 1:  # workers: use_workers leaves them a core each
        from ..evaluation.devices import threads_for_load

        torch.set_num_threads(threads_for_load())
    get_reward(config.env.reward)  # an unknown reward fails here, before any loading
    return config


FACTORY_KWARGS = ("model_kwargs", "dataset_kwargs")
"""The preset keys ``--model-kwargs`` and ``--dataset-kwargs`` set."""


def _with_factory_kwargs(
    env: str, config: EnvConfig, given: dict[str, dict[str, Any] | None]
) -> EnvConfig:
    """``config`` with the factory arguments of the command line merged over the preset's;
    a model or dataset other than the preset's starts from none (the preset's were for its
    own)."""
    preset = load_env_config(env)
    changes: dict[str, dict[str, Any]] = {}
    for key in FACTORY_KWARGS:
        kind = key.removesuffix("_kwargs")
        replaced = getattr(config.task, kind) != getattr(preset.task, kind)
        current = dict(getattr(config.task, key))
        merged = {**({} if replaced else current), **(given.get(key) or {})}
        if merged != current:
            changes[key] = merged
    return config.derive(changes) if changes else config


def env_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The env settings the flags of :func:`add_env_arguments` give (``None``: not given),
    keyed by setting name (``--n-envs`` would be ``n_envs``)."""
    return {
        "model": args.model,
        "model_kwargs": _merged(getattr(args, "model_kwargs", None)),
        "weights": args.weights,
        "dataset": args.dataset,
        "dataset_kwargs": _merged(getattr(args, "dataset_kwargs", None)),
        "normalize": args.normalize,
        "device": args.device,
        "amp": args.amp,
        "target": getattr(args, "target", None),
        "reward": getattr(args, "reward", None),
        "metric": getattr(args, "metric", None),
        "latency_batch": getattr(args, "latency_batch", None),
        "threads": getattr(args, "threads", None),
    }


def _merged(groups: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The pairs of a repeated ``--*-kwargs`` flag as one mapping (later ones win)."""
    if not groups:
        return None
    return {key: value for group in groups for key, value in group.items()}


def command_line() -> str:
    return shlex.join(["rlprune", *sys.argv[1:]])


class LogLines:
    """Plain progress lines for a log file: rich draws no bar when the console is not a
    terminal, so a long run says ``label: done/total status`` at each tenth of the way."""

    def __init__(self, label: str, out: Console | None = None) -> None:
        self.label = label
        self.out = out or console  # the console the run draws its bar on
        self.tenth = -1

    def __call__(self, done: int, total: int | None, status: str = "") -> None:
        """Print a line when ``done`` enters a new tenth of ``total`` (nothing on a terminal)."""
        if self.out.is_terminal or not total:
            return
        tenth = min(10, done * 10 // total)
        if tenth > self.tenth:
            self.tenth = tenth
            self.out.print(f"{self.label}: {done}/{total} {status}".rstrip(), soft_wrap=True)


def status_progress(total: int, label: str) -> tuple[Progress, Callable[[int, str], None]]:
    """A progress bar of ``total`` episodes with a status text; the callable sets both (and,
    writing to a file, prints a :class:`LogLines` line at each tenth)."""
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
    log = LogLines(label)

    def set_status(completed: int, text: str) -> None:
        progress.update(bar, completed=completed, status=text)
        log(completed, total, text)

    return progress, set_status


class _OptionalBar(ProgressColumn):
    """A bar only for the tasks added with ``bar=True`` (a stage line has none)."""

    def __init__(self) -> None:
        super().__init__()
        self.bar = BarColumn()

    def render(self, task: Task) -> RenderableType:
        return self.bar.render(task) if task.fields.get("bar") else Text("")


class _OptionalCount(MofNCompleteColumn):
    """``done/total`` only for the tasks added with ``bar=True``."""

    def render(self, task: Task) -> Text:
        return super().render(task) if task.fields.get("bar") else Text("")


def stage_progress() -> Progress:
    """A transient progress display: tasks added with ``bar=False`` are a line of text (a
    stage), those with ``bar=True`` a bar with a count and a ``status`` field. Nothing of it
    stays on the screen, or reaches a file or a pipe, once it stops."""
    return Progress(
        TextColumn("{task.description}", markup=False),
        _OptionalBar(),
        _OptionalCount(),
        TextColumn("{task.fields[status]}", markup=False),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def episode_progress(total: int, label: str) -> tuple[Progress, Callable[[RunRecorder], None]]:
    """A progress bar showing episodes, best accuracy and its MACs ratio."""
    progress, set_status = status_progress(total, label)

    def update(recorder: RunRecorder) -> None:
        best = recorder.best
        text = (
            f"best acc {best.candidate.accuracy:.4f} @ MACs {best.candidate.macs_ratio:.3f}"
            if best
            else ""
        )
        set_status(recorder.episodes, text)

    return progress, update


class LatencyReporter:
    """Shows a latency model's build as a progress bar on stderr, then one line saying what
    it is (:func:`rlprune.evaluation.latency.reporting`)."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.bar: TaskID | None = None

    def __call__(self, done: int, total: int, model: LatencyModel | None) -> None:
        if model is None:
            if self.progress is None:
                self.progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=err_console,
                    transient=True,
                )
                self.progress.start()
                self.bar = self.progress.add_task("timing latency probes", total=total)
            assert self.bar is not None
            self.progress.update(self.bar, completed=done, total=total)
            return
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        key = model.key
        how = (
            f"built in {model.seconds:.1f} s from {model.probes} probes"
            if total
            else "loaded from the cache"
        )
        err_console.print(
            f"latency model ({key.device}, batch {key.batch}, {key.threads} thread"
            f"{'s' if key.threads != 1 else ''}, torch {key.torch}): {how}; original "
            f"{model.full_ms:.2f} ms, stated error {model.error:.1%}, timing noise "
            f"{model.noise:.1%}, {grid_words(model)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def seconds(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def print_error(message: str) -> None:
    """``error: message`` on one line of stderr, brackets and all."""
    err_console.print(
        Text.assemble(("error:", "bold red"), " ", " ".join(message.split())), soft_wrap=True
    )
