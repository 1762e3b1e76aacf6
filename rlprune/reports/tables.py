"""The benchmark tables: per-seed results, summaries over seeds, verdicts, CSV/JSON/Markdown.

A benchmark runs every search method (PPO, random search, heuristics) with several
seeds at one MACs target and the same evaluation budget. Each (method, seed) pair
gives one :class:`MethodSeedResult`; :func:`summarise` turns them into a
:class:`MethodSummary` per method (mean and sample std over seeds).

Files, all written atomically into one folder:

- :func:`write_tables`: ``results.csv`` (one row per method × seed), ``summary.csv``
  and ``summary.json`` (mean/std per method) and ``summary.md`` (the table a person
  reads, best accuracy per column in bold).
- :func:`rlprune.reports.plots.plot_all` draws the plots from the same results.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..evaluation.candidates import Candidate
from ..files import atomic_write_json, atomic_write_text
from .latency import NOISY_SPREAD

__all__ = [
    "METRICS",
    "TABLE_FILES",
    "MethodSeedResult",
    "MethodSummary",
    "Stat",
    "comparison_lines",
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
    "speedup_b1",
    "latency_ratio",
)
"""The numeric fields of :class:`MethodSeedResult` that :func:`summarise` averages."""

_NULLABLE = {"test_accuracy_finetuned", "speedup_b1", "latency_ratio"}
"""Metrics a summary may lack (not fine-tuned, not timed at batch 1, a MACs budget)."""

TABLE_FILES = ("results.csv", "summary.csv", "summary.json", "summary.md")

RESULT_COLUMNS = ("method", "seed", "evaluations", *METRICS, "keep_ratios", "units", "channels")
"""Columns of ``results.csv``, one row per method × seed (lists ``;``-separated in one cell)."""

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
    evaluations: float
    """Full-evaluation equivalents the method was charged (its search cost)."""
    best: Candidate
    """The best candidate by validation accuracy (after BatchNorm recalibration, no fine-tuning)."""
    test_accuracy: float
    """The same network on the test split (reported only, never used to choose)."""
    test_accuracy_finetuned: float | None
    """Test top-1 after fine-tuning the best candidate; ``None`` when not fine-tuned."""
    latency_speedup: float
    """Original ÷ pruned median latency at batch size 64, timed interleaved."""
    wall_time_s: float
    units: tuple[str, ...]
    """Unit names, one per keep ratio of :attr:`best`."""
    speedup_b1: float | None = None
    """The same at batch size 1 (``None`` in results kept from before it was measured)."""
    speedup_spread: dict[str, list[float]] | None = None
    """Per batch size (``"1"``, ``"64"``): the 10th and 90th percentile of the speedups of
    the interleaved pairs of passes."""

    def __post_init__(self) -> None:
        if len(self.best.keep_ratios) != len(self.units):
            raise ConfigError(
                f"{self.method} seed {self.seed}: {len(self.best.keep_ratios)} keep ratios for "
                f"{len(self.units)} units; give one keep ratio per unit"
            )
        if self.evaluations < 0:
            raise ConfigError(
                f"{self.method} seed {self.seed}: evaluations must be >= 0, got {self.evaluations}"
            )

    @property
    def val_accuracy(self) -> float:
        """The best candidate's validation accuracy."""
        return self.best.accuracy

    @property
    def macs_ratio(self) -> float:
        """The best candidate's MACs ratio."""
        return self.best.macs_ratio

    @property
    def params_ratio(self) -> float:
        """The best candidate's parameter ratio."""
        return self.best.params_ratio

    @property
    def latency_ratio(self) -> float | None:
        """The best candidate's predicted latency ratio (``None`` under a MACs budget)."""
        return self.best.latency_ratio

    @property
    def keep_ratios(self) -> tuple[float, ...]:
        """The best candidate's per-unit keep ratios, in network order."""
        return self.best.keep_ratios

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples become lists), as JSON stores it; the best candidate nested."""
        return {
            "method": self.method,
            "seed": self.seed,
            "evaluations": self.evaluations,
            "best": self.best.to_dict(),
            "test_accuracy": self.test_accuracy,
            "test_accuracy_finetuned": self.test_accuracy_finetuned,
            "latency_speedup": self.latency_speedup,
            "wall_time_s": self.wall_time_s,
            "units": list(self.units),
            **({} if self.speedup_b1 is None else {"speedup_b1": self.speedup_b1}),
            **({} if self.speedup_spread is None else {"speedup_spread": self.speedup_spread}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MethodSeedResult:
        """Inverse of :meth:`to_dict`, also for dicts read back from JSON.

        Raises:
            ConfigError: keys are missing or unknown.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        optional = {"test_accuracy_finetuned", "speedup_b1", "speedup_spread"}
        missing = sorted(names - set(data) - optional)
        if unknown or missing:
            raise ConfigError(
                f"not a benchmark result: unknown field(s) {unknown}, missing field(s) {missing}"
            )
        values = dict(data)
        values["best"] = Candidate.from_dict(data["best"])
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
    evaluations_min: float
    evaluations_max: float
    val_accuracy: Stat
    test_accuracy: Stat
    test_accuracy_finetuned: Stat | None
    """Over the seeds that were fine-tuned (``n`` says how many); ``None`` if none was."""
    macs_ratio: Stat
    params_ratio: Stat
    latency_speedup: Stat
    wall_time_s: Stat
    speedup_b1: Stat | None = None
    """Over the seeds timed at batch 1; ``None`` if none was."""
    latency_ratio: Stat | None = None
    """Predicted latency ratio, under a latency budget; ``None`` under MACs."""
    noisy_speedups: int = 0
    """Seeds whose paired speedups (at any batch size) spread more than
    :data:`~rlprune.reports.latency.NOISY_SPREAD`: their speedup cells are marked."""

    def stat(self, metric: str) -> Stat | None:
        """The statistics of one of :data:`METRICS`."""
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}; choose one of {list(METRICS)}")
        stat: Stat | None = getattr(self, metric)
        return stat

    @property
    def evaluations_label(self) -> str:
        """``"300"``, or ``"295 (290–300)"`` when seeds used different numbers."""
        if self.evaluations_min == self.evaluations_max:
            return _cost(self.evaluations_min)
        return (
            f"{_cost(self.evaluations_mean)} ({_cost(self.evaluations_min)}–"
            f"{_cost(self.evaluations_max)})"
        )

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
            **({"noisy_speedups": self.noisy_speedups} if self.noisy_speedups else {}),
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
                if data.get(m) is None and m in _NULLABLE
                else Stat(**{k: data[m][k] for k in ("mean", "std", "n")})
                for m in METRICS
            }
            summary = cls(
                method=str(data["method"]),
                seeds=int(data["seeds"]),
                evaluations_mean=float(evaluations["mean"]),
                evaluations_min=float(evaluations["min"]),
                evaluations_max=float(evaluations["max"]),
                noisy_speedups=int(data.get("noisy_speedups", 0)),
                **metrics,  # type: ignore[arg-type]  # only the fine-tuned stat may be None
            )
            return summary
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
                speedup_b1=_stat_of_known([r.speedup_b1 for r in group]),
                latency_ratio=_stat_of_known([r.latency_ratio for r in group]),
                noisy_speedups=sum(_noisy(r) for r in group),
            )
        )
    return summaries


def _noisy(result: MethodSeedResult) -> bool:
    """Whether a seed's speedups spread too wide to trust (p90 / p10 of the paired passes)."""
    spread = result.speedup_spread or {}
    return any(p10 <= 0 or p90 / p10 > NOISY_SPREAD for p10, p90 in spread.values())


def _stat_of_known(values: Sequence[float | None]) -> Stat | None:
    known = [v for v in values if v is not None]
    return Stat.of(known) if known else None


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
    names = list(RESULT_COLUMNS)
    rows = []
    for result in results:
        row = []
        for name in names:
            value = result.best.channels if name == "channels" else getattr(result, name)
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
    ("latency ratio (predicted)", "latency_ratio", 1.0, 3, ""),
    ("speedup b1", "speedup_b1", 1.0, 2, "×"),
    ("speedup b64", "latency_speedup", 1.0, 2, "×"),
    ("wall time", "wall_time_s", 1.0, 1, " s"),
)
_OPTIONAL_COLUMNS = {"latency_ratio", "speedup_b1"}
"""Shown only when some method has them (results kept from before they existed do not)."""
_BOLD_BEST = {"val_accuracy", "test_accuracy", "test_accuracy_finetuned"}


def render_markdown(
    summaries: Sequence[MethodSummary], *, title: str, notes: Sequence[str] = ()
) -> str:
    """The text of ``summary.md``: one row per method, values as "mean ± std"."""
    columns = [
        c
        for c in _MD_COLUMNS
        if c[1] not in _OPTIONAL_COLUMNS or any(s.stat(c[1]) is not None for s in summaries)
    ]
    best = {}
    for _, metric, scale, decimals, _ in columns:
        if metric in _BOLD_BEST:
            # Compare the values as shown, so two methods that print alike are both bold.
            shown = [
                round(scale * s.mean, decimals)
                for s in (x.stat(metric) for x in summaries)
                if s is not None and not math.isnan(s.mean)
            ]
            best[metric] = max(shown) if shown else None

    header = ["method", "cost (full evals)", *(c[0] for c in columns)]
    lines = [
        f"# {title}",
        "",
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 1),
    ]
    for s in summaries:
        cells = [s.method, s.evaluations_label]
        for _, metric, scale, decimals, unit in columns:
            stat = s.stat(metric)
            cell = _format_stat(stat, s.seeds, scale, decimals, unit)
            if metric in ("speedup_b1", "latency_speedup") and s.noisy_speedups:
                cell += " (noisy)"
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
        f"{seeds}; cost per method, in full-evaluation equivalents: {evaluations}.",
        "",
        "Values are mean ± sample std over seeds (a single seed shows the mean only); the "
        "best mean of each accuracy column is in bold. Accuracies are top-1 in percent; "
        "val and test acc are the best candidate after BatchNorm recalibration, before "
        "fine-tuning; the candidate is chosen on val, never on test. "
        + (
            "Speedups are the original's median latency divided by the pruned model's at "
            "batch 1 and 64, the two timed interleaved on the same device (each seed's p10 "
            "and p90 over the paired passes are in results.json); the latency ratio is the "
            "latency model's prediction, which the budget bounds."
            if any(c[1] == "speedup_b1" for c in columns)
            else "Speedup is the original's median CPU latency at batch 64 divided by the "
            "pruned model's."
        ),
    ]
    if any(s.noisy_speedups for s in summaries):
        lines[-1] += (
            f" (noisy): some seed's paired speedups spread more than {NOISY_SPREAD}× "
            "(p90 / p10): the machine was busy, or the model runs too briefly to time steadily."
        )
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


def _cost(value: float) -> str:
    """A cost in full evaluations: ``"50"``, or ``"10.2"`` when probes made it fractional."""
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"
