"""The benchmark plots: accuracy vs MACs, sample efficiency, keep ratios per unit.

Pure (inputs → PNG files) and drawn on matplotlib's Agg canvas without pyplot, so
nothing here touches a display or a global backend. matplotlib is imported only when
a plot is drawn (``pip install 'rlprune[plots]'``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError
from ..evaluation.candidates import SearchResult
from ..files import atomic_path
from .tables import MethodSeedResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["PLOT_FILES", "method_colors", "plot_all"]

PLOT_FILES = ("accuracy_vs_macs.png", "sample_efficiency.png", "keep_ratios.png")


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
        histories: per method, one :class:`~rlprune.evaluation.candidates.SearchResult` per seed.
        results: the per-seed results (the keep-ratio plot shows, per method, the seed
            with the best validation accuracy).
        out_dir: folder for the PNGs (created if missing).
        target: the MACs target as a fraction of the original, drawn as a dashed line;
            ``None`` draws none.

    Returns:
        ``{file name: path}`` for the three plots.

    Raises:
        ConfigError: nothing to plot, or methods' best models have different units.
        ModuleNotFoundError: matplotlib (a dependency of rlprune) is missing.
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
            "the benchmark plots need matplotlib, a dependency of rlprune that is missing here "
            "(pip install matplotlib)"
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
        if max(len(c) for c in curves) == 1:
            _one_shot_point(ax, method, runs, curves, colors[method], markers[method])
        else:
            _best_so_far_curve(ax, method, runs, curves, colors[method], markers[method])
    ax.set_title("Sample efficiency: best validation accuracy so far (band: min–max over seeds)")
    ax.set_xlabel("cost (full evaluations; a low-fidelity probe counts its share)")
    ax.set_ylabel("best validation top-1 so far (%)")
    ax.set_xlim(left=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="lower right", framealpha=0.9)
    else:
        _no_data(ax, "no search histories")
    return figure


def _one_shot_point(
    ax: Axes,
    method: str,
    runs: Sequence[SearchResult],
    curves: Sequence[Sequence[float]],
    color: str,
    marker: str,
) -> None:
    """Draw a one-shot heuristic: a point at its cost, with a level line to read curves by."""
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
        marker=marker,
        markersize=8,
        capsize=4,
        linestyle="none",
        zorder=3,
        label=f"{method} ({cost:g} evaluation{'s' if cost != 1 else ''})",
    )


def _best_so_far_curve(
    ax: Axes,
    method: str,
    runs: Sequence[SearchResult],
    curves: Sequence[Sequence[float]],
    color: str,
    marker: str,
) -> None:
    """Draw a search's best-so-far curve: the seeds' mean, its end marker and min-max band."""
    length = max(len(c) for c in curves)
    padded = np.full((len(curves), length), np.nan)
    for i, curve in enumerate(curves):
        padded[i, : len(curve)] = 100 * np.asarray(curve)
    # x: cumulative cost of the longest run (seeds of one method charge alike)
    longest = max((run for run in runs if run.history), key=lambda run: len(run.history))
    x = np.asarray(longest.cumulative_cost())
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
            marker=marker,
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
    # over the figure, not the axes: the legend beside them narrows the axes, and a title
    # centred over them ran off the figure's left edge
    figure.suptitle("Keep ratio per unit of each method's best model (best-val seed)")
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
