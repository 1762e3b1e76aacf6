"""The benchmark report: tables and plots comparing search methods over seeds.

A benchmark runs every search method (PPO, random search, heuristics) with several
seeds at one MACs target and the same evaluation budget. Each (method, seed) pair
gives one :class:`MethodSeedResult`; :func:`summarise` turns them into a
:class:`MethodSummary` per method (mean and sample std over seeds).

Files, all written atomically into one folder:

- :func:`write_tables`: ``results.csv`` (one row per method × seed), ``summary.csv``
  and ``summary.json`` (mean/std per method) and ``summary.md`` (the table a person
  reads, best accuracy per column in bold).
- :func:`plot_all`: ``accuracy_vs_macs.png``, ``sample_efficiency.png`` and
  ``keep_ratios.png``.

:func:`comparison_lines` says in plain words whether the reference method (PPO by
default) beats or loses to each other method, in percentage points and in units of
the pooled seed-to-seed std. It is an effect size, not a significance test: with
three seeds a difference of one std is weak evidence either way.

Everything here is pure (inputs → files): nothing reads the command line or a config.
Accuracies are fractions in [0, 1]; tables and plots show them in percent.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError
from .files import atomic_path, atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .search import SearchResult

__all__ = [
    "METRICS",
    "PLOT_FILES",
    "TABLE_FILES",
    "MethodSeedResult",
    "MethodSummary",
    "Stat",
    "comparison_lines",
    "method_colors",
    "plot_all",
    "read_summary",
    "render_markdown",
    "summarise",
    "write_tables",
]

METRICS = (
    "val_accuracy",
    "test_accuracy",
    "test_accuracy_finetuned",
    "macs_ratio",
    "params_ratio",
    "latency_speedup",
    "wall_time_s",
)
"""The numeric fields of :class:`MethodSeedResult` that :func:`summarise` averages."""

TABLE_FILES = ("results.csv", "summary.csv", "summary.json", "summary.md")
PLOT_FILES = ("accuracy_vs_macs.png", "sample_efficiency.png", "keep_ratios.png")

_ACCURACY_METRICS = (
    ("val_accuracy", "val accuracy"),
    ("test_accuracy", "test accuracy"),
    ("test_accuracy_finetuned", "fine-tuned test accuracy"),
)


@dataclass(frozen=True)
class MethodSeedResult:
    """What one search method achieved with one seed. Accuracies are fractions in [0, 1]."""

    method: str
    seed: int
    evaluations: int
    """Candidate evaluations the method used (its search cost)."""
    val_accuracy: float
    """Best candidate's validation top-1 after BatchNorm recalibration, no fine-tuning."""
    test_accuracy: float
    """The same network on the test split (reported only, never used to choose)."""
    test_accuracy_finetuned: float | None
    """Test top-1 after fine-tuning the best candidate; ``None`` when not fine-tuned."""
    macs_ratio: float
    params_ratio: float
    latency_speedup: float
    """Original ÷ pruned median CPU latency at batch size 64."""
    wall_time_s: float
    keep_ratios: tuple[float, ...]
    """Per-unit keep ratio of the best candidate, in network order."""
    units: tuple[str, ...]
    """Unit names, one per keep ratio."""

    def __post_init__(self) -> None:
        if len(self.keep_ratios) != len(self.units):
            raise ConfigError(
                f"{self.method} seed {self.seed}: {len(self.keep_ratios)} keep ratios for "
                f"{len(self.units)} units; give one keep ratio per unit"
            )
        if self.evaluations < 0:
            raise ConfigError(
                f"{self.method} seed {self.seed}: evaluations must be >= 0, got {self.evaluations}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples become lists), as JSON stores it."""
        data = dataclasses.asdict(self)
        data["keep_ratios"] = list(self.keep_ratios)
        data["units"] = list(self.units)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MethodSeedResult:
        """Inverse of :meth:`to_dict`, also for dicts read back from JSON.

        Raises:
            ConfigError: keys are missing or unknown.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(names - set(data) - {"test_accuracy_finetuned"})
        if unknown or missing:
            raise ConfigError(
                f"not a benchmark result: unknown field(s) {unknown}, missing field(s) {missing}"
            )
        values = dict(data)
        values["keep_ratios"] = tuple(float(k) for k in data["keep_ratios"])
        values["units"] = tuple(str(u) for u in data["units"])
        values.setdefault("test_accuracy_finetuned", None)
        return cls(**values)


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of ``n`` values."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        """The statistics of a non-empty sequence."""
        if not values:
            raise ValueError("Stat.of needs at least one value")
        array = np.asarray(values, dtype=np.float64)
        # Equal values have exactly no spread; numpy's rounding residue (~1e-16) would
        # otherwise turn a deterministic method's std into a huge "std multiple".
        spread = len(array) > 1 and array.min() != array.max()
        std = float(array.std(ddof=1)) if spread else 0.0
        return cls(mean=float(array.mean()), std=std, n=len(array))

    def to_dict(self) -> dict[str, float | int]:
        """``{"mean", "std", "n"}``."""
        return {"mean": self.mean, "std": self.std, "n": self.n}


@dataclass(frozen=True)
class MethodSummary:
    """One method's results over its seeds."""

    method: str
    seeds: int
    evaluations_mean: float
    evaluations_min: int
    evaluations_max: int
    val_accuracy: Stat
    test_accuracy: Stat
    test_accuracy_finetuned: Stat | None
    """Over the seeds that were fine-tuned (``n`` says how many); ``None`` if none was."""
    macs_ratio: Stat
    params_ratio: Stat
    latency_speedup: Stat
    wall_time_s: Stat

    def stat(self, metric: str) -> Stat | None:
        """The statistics of one of :data:`METRICS`."""
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}; choose one of {list(METRICS)}")
        return getattr(self, metric)

    @property
    def evaluations_label(self) -> str:
        """``"300"``, or ``"295 (290–300)"`` when seeds used different numbers."""
        if self.evaluations_min == self.evaluations_max:
            return str(self.evaluations_min)
        return f"{self.evaluations_mean:.0f} ({self.evaluations_min}–{self.evaluations_max})"

    def to_dict(self) -> dict[str, Any]:
        """Plain data: metrics become ``{"mean", "std", "n"}`` dicts (or ``None``)."""
        data: dict[str, Any] = {
            "method": self.method,
            "seeds": self.seeds,
            "evaluations": {
                "mean": self.evaluations_mean,
                "min": self.evaluations_min,
                "max": self.evaluations_max,
            },
        }
        for metric in METRICS:
            stat = self.stat(metric)
            data[metric] = None if stat is None else stat.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MethodSummary:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: keys are missing.
        """
        try:
            evaluations = data["evaluations"]
            metrics = {
                m: None
                if data[m] is None
                else Stat(**{k: data[m][k] for k in ("mean", "std", "n")})
                for m in METRICS
            }
            return cls(
                method=str(data["method"]),
                seeds=int(data["seeds"]),
                evaluations_mean=float(evaluations["mean"]),
                evaluations_min=int(evaluations["min"]),
                evaluations_max=int(evaluations["max"]),
                **metrics,
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"not a benchmark method summary: missing {exc}") from exc


# ---------------------------------------------------------------------- summaries


def summarise(results: Sequence[MethodSeedResult]) -> list[MethodSummary]:
    """Mean and sample std of every metric per method, methods in first-seen order.

    Raises:
        ConfigError: one (method, seed) pair appears twice (it would count double).
    """
    groups: dict[str, list[MethodSeedResult]] = {}
    seen: set[tuple[str, int]] = set()
    for result in results:
        key = (result.method, result.seed)
        if key in seen:
            raise ConfigError(
                f"{result.method} seed {result.seed} appears twice; give each seed once"
            )
        seen.add(key)
        groups.setdefault(result.method, []).append(result)

    summaries = []
    for method, group in groups.items():
        evaluations = [r.evaluations for r in group]
        finetuned = [
            r.test_accuracy_finetuned for r in group if r.test_accuracy_finetuned is not None
        ]
        summaries.append(
            MethodSummary(
                method=method,
                seeds=len(group),
                evaluations_mean=float(np.mean(evaluations)),
                evaluations_min=min(evaluations),
                evaluations_max=max(evaluations),
                val_accuracy=Stat.of([r.val_accuracy for r in group]),
                test_accuracy=Stat.of([r.test_accuracy for r in group]),
                test_accuracy_finetuned=Stat.of(finetuned) if finetuned else None,
                macs_ratio=Stat.of([r.macs_ratio for r in group]),
                params_ratio=Stat.of([r.params_ratio for r in group]),
                latency_speedup=Stat.of([r.latency_speedup for r in group]),
                wall_time_s=Stat.of([r.wall_time_s for r in group]),
            )
        )
    return summaries


def comparison_lines(summaries: Sequence[MethodSummary], reference: str = "ppo") -> list[str]:
    """Plain-English verdicts of ``reference`` against every other method.

    One line per other method and accuracy (validation, test, and fine-tuned test when
    both were fine-tuned), e.g. ``"ppo beats random on val accuracy by +0.31 pp
    (1.2 std)"`` or ``"ppo loses to magnitude on test accuracy by -0.50 pp (0.8 std,
    within noise)"``. A loss is always called a loss, however small; "within noise"
    is added when the difference is under one pooled seed-to-seed std. When neither
    side has seed-to-seed spread (single seeds, or deterministic methods) the line
    says so instead of giving a std multiple.

    Raises:
        ConfigError: ``reference`` is not among the summaries.
    """
    by_method = {s.method: s for s in summaries}
    if reference not in by_method:
        raise ConfigError(
            f"reference method {reference!r} has no results; choose one of {list(by_method)}"
        )
    ref = by_method[reference]
    lines = []
    for other in summaries:
        if other.method == reference:
            continue
        for metric, label in _ACCURACY_METRICS:
            a, b = ref.stat(metric), other.stat(metric)
            if a is None or b is None:
                continue
            lines.append(_verdict(reference, other.method, label, a, b))
    return lines


def _verdict(reference: str, other: str, label: str, a: Stat, b: Stat) -> str:
    diff = a.mean - b.mean
    if math.isclose(diff, 0.0, abs_tol=1e-12):  # equal up to float rounding of the means
        return f"{reference} ties with {other} on {label} (+0.00 pp)"
    verb = "beats" if diff > 0 else "loses to"
    pooled = _pooled_std(a, b)
    if pooled > 0:
        sigmas = abs(diff) / pooled
        noise = f"{sigmas:.1f} std, within noise" if sigmas < 1 else f"{sigmas:.1f} std"
    elif a.n + b.n <= 2:
        noise = "one seed each, noise unknown"
    else:
        noise = "no seed-to-seed spread, pooled std 0"
    return f"{reference} {verb} {other} on {label} by {100 * diff:+.2f} pp ({noise})"


def _pooled_std(a: Stat, b: Stat) -> float:
    """Pooled sample std of two groups; 0 when neither has a degree of freedom."""
    dof = a.n + b.n - 2
    if dof <= 0:
        return 0.0
    return math.sqrt(((a.n - 1) * a.std**2 + (b.n - 1) * b.std**2) / dof)


# ---------------------------------------------------------------------- tables


def write_tables(
    results: Sequence[MethodSeedResult],
    out_dir: str | os.PathLike[str],
    *,
    title: str,
    notes: Sequence[str] = (),
) -> dict[str, Path]:
    """Write ``results.csv``, ``summary.csv``, ``summary.json`` and ``summary.md``.

    ``notes`` become bullet lines under the Markdown table (for example the output of
    :func:`comparison_lines`, or the MACs target and dataset).

    Returns:
        ``{file name: path}`` for the four files.

    Raises:
        ConfigError: ``results`` is empty, or a (method, seed) pair appears twice.
    """
    if not results:
        raise ConfigError("no benchmark results to write; run at least one method and seed")
    out = Path(out_dir)
    summaries = summarise(results)
    paths = {name: out / name for name in TABLE_FILES}
    atomic_write_text(paths["results.csv"], _results_csv(results))
    atomic_write_text(paths["summary.csv"], _summary_csv(summaries))
    atomic_write_json(
        paths["summary.json"],
        {"title": title, "notes": list(notes), "methods": [s.to_dict() for s in summaries]},
    )
    atomic_write_text(paths["summary.md"], render_markdown(summaries, title=title, notes=notes))
    return paths


def read_summary(path: str | os.PathLike[str]) -> list[MethodSummary]:
    """The per-method summaries of a ``summary.json`` written by :func:`write_tables`.

    Raises:
        ConfigError: the file is missing, not JSON, or not a benchmark summary.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"benchmark summary {str(path)!r} not found; check the path") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"benchmark summary {str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("methods"), list):
        raise ConfigError(f"{str(path)!r} is not a benchmark summary (no 'methods' list)")
    return [MethodSummary.from_dict(m) for m in data["methods"]]


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _results_csv(results: Sequence[MethodSeedResult]) -> str:
    # Lists go into one cell each, ";"-separated, so one row stays one method × seed.
    names = [f.name for f in dataclasses.fields(MethodSeedResult)]
    rows = []
    for result in results:
        row = []
        for name in names:
            value = getattr(result, name)
            if isinstance(value, tuple):
                value = ";".join(str(v) for v in value)
            row.append("" if value is None else value)
        rows.append(row)
    return _csv_text(names, rows)


def _summary_csv(summaries: Sequence[MethodSummary]) -> str:
    header = ["method", "seeds", "evaluations_mean", "evaluations_min", "evaluations_max"]
    for metric in METRICS:
        header += [f"{metric}_mean", f"{metric}_std", f"{metric}_n"]
    rows = []
    for s in summaries:
        row: list[Any] = [
            s.method,
            s.seeds,
            s.evaluations_mean,
            s.evaluations_min,
            s.evaluations_max,
        ]
        for metric in METRICS:
            stat = s.stat(metric)
            row += ["", "", 0] if stat is None else [stat.mean, stat.std, stat.n]
        rows.append(row)
    return _csv_text(header, rows)


_MD_COLUMNS = (
    # (header, metric, scale, decimals, unit)
    ("val acc", "val_accuracy", 100.0, 2, "%"),
    ("test acc", "test_accuracy", 100.0, 2, "%"),
    ("test acc (fine-tuned)", "test_accuracy_finetuned", 100.0, 2, "%"),
    ("MACs ratio", "macs_ratio", 1.0, 3, ""),
    ("params ratio", "params_ratio", 1.0, 3, ""),
    ("speedup b64", "latency_speedup", 1.0, 2, "×"),
    ("wall time", "wall_time_s", 1.0, 1, " s"),
)
_BOLD_BEST = {"val_accuracy", "test_accuracy", "test_accuracy_finetuned"}


def render_markdown(
    summaries: Sequence[MethodSummary], *, title: str, notes: Sequence[str] = ()
) -> str:
    """The text of ``summary.md``: one row per method, values as "mean ± std"."""
    best = {}
    for _, metric, scale, decimals, _ in _MD_COLUMNS:
        if metric in _BOLD_BEST:
            # Compare the values as shown, so two methods that print alike are both bold.
            shown = [
                round(scale * s.mean, decimals)
                for s in (x.stat(metric) for x in summaries)
                if s is not None and not math.isnan(s.mean)
            ]
            best[metric] = max(shown) if shown else None

    header = ["method", "evals used", *(c[0] for c in _MD_COLUMNS)]
    lines = [
        f"# {title}",
        "",
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 1),
    ]
    for s in summaries:
        cells = [s.method, s.evaluations_label]
        for _, metric, scale, decimals, unit in _MD_COLUMNS:
            stat = s.stat(metric)
            cell = _format_stat(stat, s.seeds, scale, decimals, unit)
            if (
                stat is not None
                and best.get(metric) is not None
                and round(scale * stat.mean, decimals) == best[metric]
            ):
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")

    seed_counts = {s.seeds for s in summaries}
    if len(seed_counts) == 1:
        n = seed_counts.pop()
        seeds = f"{n} seed{'s' if n != 1 else ''}"
    else:
        seeds = "seeds per method: " + ", ".join(f"{s.method} {s.seeds}" for s in summaries)
    evaluations = ", ".join(f"{s.method} {s.evaluations_label}" for s in summaries)
    lines += [
        "",
        f"{seeds}; evaluations per method: {evaluations}.",
        "",
        "Values are mean ± sample std over seeds (a single seed shows the mean only); the "
        "best mean of each accuracy column is in bold. Accuracies are top-1 in percent; "
        "val and test acc are the best candidate after BatchNorm recalibration, before "
        "fine-tuning; the candidate is chosen on val, never on test. Speedup is the "
        "original's median CPU latency at batch 64 divided by the pruned model's.",
    ]
    if notes:
        lines.append("")
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _format_stat(stat: Stat | None, seeds: int, scale: float, decimals: int, unit: str) -> str:
    if stat is None or math.isnan(stat.mean):
        return "n/a"
    text = f"{scale * stat.mean:.{decimals}f}"
    if stat.n > 1:
        text += f" ± {scale * stat.std:.{decimals}f}"
    text += unit
    if stat.n < seeds:
        text += f" (n={stat.n})"
    return text


# ---------------------------------------------------------------------- plots

# matplotlib's tab10, then the light halves of tab20: distinct and colour-blind friendly
# enough for the handful of methods a benchmark compares.
_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_DPI = 120


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """A colour per method, in the given order, so every plot draws a method alike.

    Colours repeat after 20 methods (markers still tell them apart).
    """
    unique = list(dict.fromkeys(methods))
    return {m: _PALETTE[i % len(_PALETTE)] for i, m in enumerate(unique)}


def _method_markers(methods: Sequence[str]) -> dict[str, str]:
    unique = list(dict.fromkeys(methods))
    return {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(unique)}


def plot_all(
    histories: Mapping[str, Sequence[SearchResult]],
    results: Sequence[MethodSeedResult],
    out_dir: str | os.PathLike[str],
    *,
    target: float | None,
) -> dict[str, Path]:
    """Write ``accuracy_vs_macs.png``, ``sample_efficiency.png`` and ``keep_ratios.png``.

    Args:
        histories: per method, one :class:`~rlprune.search.SearchResult` per seed.
        results: the per-seed results (the keep-ratio plot shows, per method, the seed
            with the best validation accuracy).
        out_dir: folder for the PNGs (created if missing).
        target: the MACs target as a fraction of the original, drawn as a dashed line;
            ``None`` draws none.

    Returns:
        ``{file name: path}`` for the three plots.

    Raises:
        ConfigError: nothing to plot, or methods' best models have different units.
        ModuleNotFoundError: matplotlib is not installed (``pip install 'rlprune[plots]'``).
    """
    if not results and not any(histories.values()):
        raise ConfigError("no benchmark results to plot; run at least one method and seed")
    methods = list(dict.fromkeys([*histories, *(r.method for r in results)]))
    colors = method_colors(methods)
    markers = _method_markers(methods)
    out = Path(out_dir)
    figures = {
        "accuracy_vs_macs.png": _accuracy_vs_macs(histories, colors, markers, target),
        "sample_efficiency.png": _sample_efficiency(histories, colors, markers),
        "keep_ratios.png": _keep_ratios(results, colors),
    }
    paths = {}
    for name, figure in figures.items():
        paths[name] = out / name
        with atomic_path(paths[name]) as tmp:
            figure.savefig(tmp, format="png", dpi=_DPI)
    return paths


def _new_figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure on its own Agg canvas: no pyplot, no global backend, no display."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "the benchmark plots need matplotlib; install it with pip install 'rlprune[plots]'"
        ) from exc
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="tight")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.grid(True, alpha=0.3)
    return figure, axes


def _accuracy_vs_macs(
    histories: Mapping[str, Sequence[SearchResult]],
    colors: Mapping[str, str],
    markers: Mapping[str, str],
    target: float | None,
) -> Figure:
    figure, ax = _new_figure(7.5, 5.0)
    from matplotlib.lines import Line2D  # importable now: _new_figure checked matplotlib

    if not any(run.history for runs in histories.values() for run in runs):
        _no_data(ax, "no search histories")
        return figure
    for method, runs in histories.items():
        candidates = [c for run in runs for c in run.history]
        if not candidates:
            continue
        ax.scatter(
            [c.macs_ratio for c in candidates],
            [100 * c.accuracy for c in candidates],
            s=14,
            alpha=0.35,
            color=colors[method],
            marker=markers[method],
            linewidths=0,
            label=f"{method} ({len(candidates)} candidates)",
        )
    # Best candidates on top of every cloud, so no method's cloud hides another's best.
    for method, runs in histories.items():
        if not runs:
            continue
        ax.scatter(
            [run.best.macs_ratio for run in runs],
            [100 * run.best.accuracy for run in runs],
            s=90,
            color=colors[method],
            marker=markers[method],
            edgecolors="black",
            linewidths=1.2,
            zorder=3,
        )
    if target is not None:
        ax.axvline(target, color="0.25", linestyle="--", linewidth=1.2, label=f"target {target:g}")
    ax.set_title("Validation accuracy vs MACs of every evaluated candidate")
    ax.set_xlabel("MACs ratio (pruned / original)")
    ax.set_ylabel("validation top-1 after BN recalibration (%)")
    # One legend entry per method, plus one that explains the outlined markers.
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="o", markersize=6, color="white", markeredgecolor="black"))
    labels.append("outlined: best of each seed")
    legend = ax.legend(
        handles, labels, fontsize="small", loc="best", framealpha=0.9, markerscale=1.5
    )
    for handle in legend.legend_handles:
        if handle is not None:
            handle.set_alpha(1.0)
    return figure


def _sample_efficiency(
    histories: Mapping[str, Sequence[SearchResult]],
    colors: Mapping[str, str],
    markers: Mapping[str, str],
) -> Figure:
    figure, ax = _new_figure(7.5, 5.0)
    for method, runs in histories.items():
        curves = [run.best_so_far() for run in runs if run.history]
        if not curves:
            continue
        color = colors[method]
        if max(len(c) for c in curves) == 1:
            # One-shot heuristics: a point at the cost they were charged, with a faint
            # level line so the curves can be read against it.
            finals = np.array([100 * c[-1] for c in curves])
            cost = float(np.mean([run.evaluations for run in runs if run.history]))
            mean = float(finals.mean())
            ax.axhline(mean, color=color, linestyle=":", linewidth=1.2, alpha=0.8)
            ax.errorbar(
                [cost],
                [mean],
                # max(0, ...): float rounding makes mean - min slightly negative for equal values
                yerr=[[max(0.0, mean - finals.min())], [max(0.0, finals.max() - mean)]],
                color=color,
                marker=markers[method],
                markersize=8,
                capsize=4,
                linestyle="none",
                zorder=3,
                label=f"{method} ({cost:g} evaluation{'s' if cost != 1 else ''})",
            )
            continue
        length = max(len(c) for c in curves)
        padded = np.full((len(curves), length), np.nan)
        for i, curve in enumerate(curves):
            padded[i, : len(curve)] = 100 * np.asarray(curve)
        x = np.arange(1, length + 1)
        with warnings.catch_warnings():
            # a column is all-NaN before any seed has an in-budget candidate: left blank
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(padded, axis=0)
            low, high = np.nanmin(padded, axis=0), np.nanmax(padded, axis=0)
        ax.plot(
            x,
            mean,
            color=color,
            linewidth=1.8,
            label=f"{method} (mean of {len(curves)} seed{'s' if len(curves) != 1 else ''})",
        )
        finite = np.flatnonzero(np.isfinite(mean))
        if finite.size:
            # mark where each curve ends: a heuristic whose probes are all over budget
            # has a single in-budget point, which a line alone would not show
            ax.plot(
                x[finite[-1]],
                mean[finite[-1]],
                color=color,
                marker=markers[method],
                markersize=7,
                linestyle="none",
            )
        if len(curves) > 1:
            ax.fill_between(
                x,
                low,
                high,
                color=color,
                alpha=0.18,
                linewidth=0,
            )
    ax.set_title("Sample efficiency: best validation accuracy so far (band: min–max over seeds)")
    ax.set_xlabel("candidate evaluations")
    ax.set_ylabel("best validation top-1 so far (%)")
    ax.set_xlim(left=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="lower right", framealpha=0.9)
    else:
        _no_data(ax, "no search histories")
    return figure


def _keep_ratios(results: Sequence[MethodSeedResult], colors: Mapping[str, str]) -> Figure:
    best: dict[str, MethodSeedResult] = {}
    for result in results:
        current = best.get(result.method)
        if current is None or result.val_accuracy > current.val_accuracy:
            best[result.method] = result
    units = next(iter(best.values())).units if best else ()
    for method, result in best.items():
        if result.units != units:
            raise ConfigError(
                f"{method}'s best model has units {list(result.units)}, another method's has "
                f"{list(units)}; a benchmark compares methods on one model"
            )

    n_methods = max(len(best), 1)
    width = max(7.0, 1.0 + len(units) * (0.25 + 0.12 * n_methods))
    figure, ax = _new_figure(min(width, 24.0), 5.0)
    bar = 0.8 / n_methods
    x = np.arange(len(units))
    for i, (method, result) in enumerate(best.items()):
        ax.bar(
            x + (i - (n_methods - 1) / 2) * bar,
            result.keep_ratios,
            width=bar,
            color=colors[method],
            label=f"{method} (seed {result.seed}, val {100 * result.val_accuracy:.2f}%)",
        )
    ax.set_xticks(x, [f"{i}: {name}" for i, name in enumerate(units)])
    ax.tick_params(axis="x", labelrotation=45, labelsize="small")
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    ax.set_ylim(0, 1.05)
    ax.set_title("Keep ratio per unit of each method's best model (best-val seed)")
    ax.set_xlabel("prunable unit (network order)")
    ax.set_ylabel("keep ratio (kept / original channels)")
    if not best:
        _no_data(ax, "no per-seed results")
        return figure
    # Outside the axes: bars reach 1.0, where a legend inside would cover them.
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.9)
    return figure


def _no_data(ax: Axes, what: str) -> None:
    """Say so in an empty plot, rather than leave a blank frame."""
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", color="0.4")
