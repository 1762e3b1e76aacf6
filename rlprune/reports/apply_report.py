"""The apply report: what a learned policy did to one model, as JSON and as Markdown.

``report.json`` holds every number (it round-trips through :func:`read_report`);
``report.md`` is the page a person reads: a headline in Torch-Pruning's
"MACs: before → after" style, a before/after table and the per-unit keep ratios.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..evaluation.candidates import Candidate
from ..files import atomic_path
from ..pruning.analysis import PrunableUnit
from .latency import NOISY_SPREAD, is_noisy, noise_mark, speed_words
from .versions import software_versions

__all__ = [
    "MODES",
    "REPORT_JSON",
    "REPORT_MD",
    "ApplyReport",
    "format_count",
    "read_report",
    "render_markdown",
    "unit_rows",
    "write_report",
]

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
MODES = ("zero-shot", "adapted")
"""``zero-shot``: the policy ran as trained; ``adapted``: it was fine-tuned on this model first."""


@dataclass(frozen=True, kw_only=True)
class ApplyReport:
    """Everything one ``rlprune apply`` run measured. Accuracies are fractions in [0, 1]."""

    env: str
    """Environment preset name (or a label for a Python-API task)."""
    model: str
    """Model spec, as :func:`rlprune.models.specs.build_model` takes it."""
    policy: str
    """Path of the policy artifact that chose the keep ratios."""
    target: float
    """Budget as a fraction of the original model's MACs, or of its latency under a
    latency budget (:attr:`latency_budget`)."""
    mode: str
    """One of :data:`MODES`."""
    adapt_episodes: int
    """Episodes of policy adaptation on this model (0 for zero-shot)."""
    finetune_epochs: int
    """Epochs of weight fine-tuning after pruning (0: none)."""
    units: list[dict[str, Any]]
    """Per unit: ``name``, ``kind``, ``channels_before``, ``channels_after``, ``keep_ratio``;
    see :func:`unit_rows`."""
    candidate: Candidate
    """The delivered pruned network (its accuracy: validation, after BatchNorm
    recalibration, before any fine-tuning)."""
    macs_before: int
    params_before: int
    val_accuracy_before: float
    test_accuracy_before: float
    test_accuracy_after: float
    val_accuracy_finetuned: float | None = None
    test_accuracy_finetuned: float | None = None
    latency: dict[int, dict[str, float]] = field(default_factory=dict)
    """``{batch_size: {"before_ms", "after_ms", "speedup", "p10", "p90"}}``: medians of
    interleaved passes, and the 10th/90th percentile of the paired speedups; see
    :meth:`rlprune.evaluation.timing.PairedSpeedup.as_dict`."""
    threads: int = 0
    """Torch threads the CPU timings ran with (0: not recorded)."""
    latency_budget: dict[str, Any] | None = None
    """Under ``metric: latency``: the budget's device, batch, threads and torch version,
    the predicted and measured speedup there, and whether they agree within the latency
    model's stated error (:func:`rlprune.apply.latency_budget_check`)."""
    wall_time_s: float
    device: str = "cpu"
    """Where scoring and fine-tuning ran."""
    latency_gpu: dict[int, dict[str, float]] | None = None
    """As :attr:`latency`, timed on :attr:`device` when it is a GPU (synchronised)."""
    exported: dict[str, str] = field(default_factory=dict)
    """``{kind: file name}`` in the output folder; see :meth:`rlprune.reports.export.ExportedFiles.names`."""
    versions: dict[str, str] = field(default_factory=software_versions)
    policy_family: list[str] = field(default_factory=list)
    """The envs the policy was trained on (one for a single-network policy)."""
    outside_family: list[dict[str, Any]] = field(default_factory=list)
    """Observation features of this network outside the ranges the policy saw in training:
    ``{"feature", "steps", "distance"}`` (steps outside, largest distance), largest first;
    empty when the network lies inside them (or the policy recorded no ranges)."""
    policy_ranges: bool = False
    """Whether the policy recorded its training ranges (every policy trained since rlprune
    records them; older single-run policies did not)."""
    deferred: bool = False
    """Whether the zero-shot episode damped the policy's corrections to
    :attr:`correction_scale` (the network lies outside its training ranges; ``rlprune
    apply --trust family``)."""
    prior: str = ""
    """The prior the corrections apply to, when :attr:`deferred` (e.g. ``sensitivity``)."""
    correction_scale: float = 1.0
    """The strength at which the zero-shot episode played the corrections (0: the prior
    alone; 1: in full)."""
    refine_evaluations: int = 0
    """Evaluations of the local search around the policy's configuration (0: none;
    ``rlprune apply --refine``)."""
    refine_improved: bool = False
    """Whether that search found a more accurate configuration (then delivered instead)."""
    choice: str = "policy"
    """Which configuration was delivered (refinement, when asked, started from it): the
    policy's (``policy``), one keep-ratio for every unit (``uniform``) or the prior the
    policy corrects (``sensitivity prior``, ...): the one most accurate on validation
    among :attr:`scored`, the policy's on ties."""
    scored: dict[str, float] = field(default_factory=dict)
    """Validation accuracy of each configuration compared, by name (empty in reports
    written before apply compared them)."""
    finetune_kept: bool | None = None
    """Whether the fine-tuned model was delivered: fine-tuning that lowered the validation
    accuracy is measured and reported, and the model before it is delivered (``None``:
    no fine-tuning, or a report written before this was recorded)."""

    def played(self) -> str:
        """What a deferred zero-shot episode played, in words: the prior alone, or the
        policy's corrections to it at a strength."""
        if self.correction_scale <= 0:
            return f"the {self.prior} prior"
        return f"its corrections to the {self.prior} prior at {self.correction_scale:.0%} strength"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"report mode must be one of {list(MODES)}, got {self.mode!r}")
        for name in ("adapt_episodes", "finetune_epochs", "refine_evaluations"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def noisy_latency(self) -> list[str]:
        """The timings whose paired passes spread wider than
        :data:`~rlprune.reports.latency.NOISY_SPREAD` (``"cpu b1"``, ``"cuda b64"``): their
        speedups are marked "(noisy)"; ``report.json`` lists them as ``latency_noisy``."""
        timed = [("cpu", self.latency), (self.device, self.latency_gpu or {})]
        return [
            f"{where} b{batch}"
            for where, rows in timed
            for batch, row in sorted(rows.items())
            if is_noisy(row)
        ]

    @property
    def macs_after(self) -> int:
        """MACs of the pruned network."""
        return self.candidate.macs

    @property
    def macs_ratio(self) -> float:
        """Pruned ÷ original MACs."""
        return self.candidate.macs_ratio

    @property
    def params_after(self) -> int:
        """Parameters of the pruned network."""
        return self.candidate.params

    @property
    def params_ratio(self) -> float:
        """Pruned ÷ original parameters."""
        return self.candidate.params_ratio

    @property
    def val_accuracy_after(self) -> float:
        """Validation accuracy after pruning and BatchNorm recalibration, before fine-tuning."""
        return self.candidate.accuracy

    @property
    def finetuned(self) -> bool:
        """Whether fine-tuned accuracies were measured."""
        return self.test_accuracy_finetuned is not None or self.val_accuracy_finetuned is not None

    @property
    def finetuned_delivered(self) -> bool:
        """Whether the delivered model is the fine-tuned one."""
        return self.finetuned and self.finetune_kept is not False

    def choice_words(self) -> str:
        """Which configuration was delivered and what it beat, in one sentence."""
        if len(self.scored) < 2:
            return f"delivered the {_CHOICE_NAMES.get(self.choice, self.choice)}"
        others = ", ".join(
            f"{_CHOICE_NAMES.get(name, name)} {_percent(acc)}"
            for name, acc in self.scored.items()
            if name != self.choice
        )
        return (
            f"delivered the {_CHOICE_NAMES.get(self.choice, self.choice)} (val acc "
            f"{_percent(self.scored.get(self.choice))}), the best of those scored ({others})"
        )

    def finetune_words(self) -> str:
        """What fine-tuning did and which model was kept ("" without fine-tuning)."""
        if not self.finetuned:
            return ""
        before, after = _percent(self.val_accuracy_after), _percent(self.val_accuracy_finetuned)
        if self.finetune_kept is False:
            return (
                f"fine-tuning lowered val acc {before} → {after}: the model before "
                "fine-tuning is delivered"
            )
        return f"fine-tuning moved val acc {before} → {after}: the fine-tuned model is delivered"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON turns the integer ``latency`` keys into strings)."""
        data = dataclasses.asdict(self)
        data["candidate"] = self.candidate.to_dict()
        data["latency_noisy"] = self.noisy_latency  # derived: from_dict drops it
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApplyReport:
        """Inverse of :meth:`to_dict`, also for dicts read back from JSON.

        Raises:
            ConfigError: keys are missing or unknown.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k != "latency_noisy"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"unknown apply-report field(s) {unknown}; the report was written by another "
                "rlprune version"
            )
        values = dict(data)
        values["latency"] = {int(k): dict(v) for k, v in dict(data.get("latency", {})).items()}
        if values.get("latency_gpu") is not None:
            values["latency_gpu"] = {int(k): dict(v) for k, v in values["latency_gpu"].items()}
        if "candidate" in values:
            values["candidate"] = Candidate.from_dict(values["candidate"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"incomplete apply report: {exc}") from exc


def unit_rows(
    units: Sequence[PrunableUnit], channels_after: Sequence[int] | Mapping[str, int]
) -> list[dict[str, Any]]:
    """The report's per-unit rows from an analysis and the kept channel counts.

    ``channels_after`` is one count per unit in order, or ``{unit name: count}`` as in
    :attr:`rlprune.pruning.surgeon.PruneResult.channels` (units it omits kept every channel).
    """
    if isinstance(channels_after, Mapping):
        counts = [int(channels_after.get(u.name, u.out_channels)) for u in units]
    else:
        counts = [int(n) for n in channels_after]
        if len(counts) != len(units):
            raise ConfigError(f"need {len(units)} channel counts, one per unit, got {len(counts)}")
    return [
        {
            "name": u.name,
            "kind": u.kind,
            "channels_before": u.out_channels,
            "channels_after": n,
            "keep_ratio": n / u.out_channels,
        }
        for u, n in zip(units, counts, strict=True)
    ]


def write_report(report: ApplyReport, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir`` (each atomically).

    Returns:
        The paths of the JSON and the Markdown file.
    """
    out = Path(out_dir)
    json_path = out / REPORT_JSON
    md_path = out / REPORT_MD
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    with atomic_path(md_path) as tmp:
        tmp.write_text(render_markdown(report), encoding="utf-8")
    return json_path, md_path


def read_report(path: str | os.PathLike[str]) -> ApplyReport:
    """Load a ``report.json`` written by :func:`write_report`.

    Raises:
        ConfigError: the file is missing, is not JSON, or is not an apply report.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"report {str(path)!r} not found; check the path") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"report {str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"report {str(path)!r} holds a {type(data).__name__}, not an object")
    return ApplyReport.from_dict(data)


# ---------------------------------------------------------------------- markdown

_UNITS = ((1e9, "G"), (1e6, "M"), (1e3, "K"))


def format_count(n: float, unit: str | None = None) -> str:
    """A count with a K/M/G suffix and three significant digits: ``1820000`` → ``"1.82M"``.

    ``unit`` (``""``, ``"K"``, ``"M"`` or ``"G"``) forces the suffix, so that two numbers
    in one line read alike: ``format_count(910_000, "M")`` → ``"0.91M"``.
    """
    scales = {suffix: scale for scale, suffix in _UNITS} | {"": 1.0}
    if unit is None:
        unit = _auto_unit(n)
    elif unit not in scales:
        raise ConfigError(f"unit must be one of '', 'K', 'M', 'G', got {unit!r}")
    return _significant(n / scales[unit]) + unit


def _auto_unit(n: float) -> str:
    for scale, suffix in _UNITS:
        # Choose by the rounded value, so 999_999 reads "1M" rather than "1000K".
        if float(_significant(abs(n) / scale)) >= 1.0:
            return suffix
    return ""


def render_markdown(report: ApplyReport) -> str:
    """The text of ``report.md``."""
    r = report
    lines = [
        f"# rlprune apply: `{r.model}` on `{r.env}`",
        "",
        f"**{_headline(r)}**",
        "",
        *_setting_lines(r),
        "",
        "## Before and after",
        "",
        *_summary_table(r),
        "",
        "Accuracy after pruning is measured after BatchNorm recalibration, without "
        "fine-tuning. Latency is the median CPU forward time per batch.",
        "",
        "## Kept channels per unit",
        "",
        "| # | unit | kind | channels | keep ratio |",
        "| ---: | --- | --- | ---: | ---: |",
    ]
    for i, u in enumerate(r.units):
        lines.append(
            f"| {i} | `{u['name']}` | {u['kind']} | {u['channels_before']} → "
            f"{u['channels_after']} | {u['keep_ratio']:.2f} |"
        )
    if r.exported:
        lines += ["", "## Exported files", ""]
        lines += [f"- {kind}: `{name}`" for kind, name in r.exported.items()]
    if r.versions:
        lines += ["", "## Software", ""]
        lines.append(", ".join(f"{name} {version}" for name, version in r.versions.items()))
    return "\n".join(lines) + "\n"


def _headline(r: ApplyReport) -> str:
    """The report's bold first line: MACs and test accuracy, before → after."""
    unit = _auto_unit(r.macs_before)
    headline = (
        f"MACs {format_count(r.macs_before, unit)} → {format_count(r.macs_after, unit)} "
        f"({r.macs_ratio:.2f}×), test acc {_percent(r.test_accuracy_before)} → "
        f"{_percent(r.test_accuracy_after)}"
    )
    if r.finetuned_delivered and r.test_accuracy_finetuned is not None:
        headline += f" ({_percent(r.test_accuracy_finetuned)} after fine-tuning)"
    elif r.finetuned:
        headline += " (fine-tuning made it worse on validation and was not kept)"
    return headline


def _policy_mode(r: ApplyReport) -> str:
    """How the policy was used: zero-shot or adapted, deferred steps, and the refinement."""
    mode = r.mode if r.mode == "zero-shot" else f"adapted ({r.adapt_episodes} episodes)"
    if r.deferred:
        mode += f"; the zero-shot episode played {r.played()} (outside the family)"
    if r.refine_evaluations:
        start = _CHOICE_NAMES.get(r.choice, r.choice)
        mode += f"; refined with {r.refine_evaluations} evaluations (" + (
            "a better configuration found and delivered)"
            if r.refine_improved
            else f"none better than the {start})"
        )
    return mode


def _setting_lines(r: ApplyReport) -> list[str]:
    """The list under the headline: policy, target, mode, fine-tuning, time, GPU latency."""
    finetune = f"{r.finetune_epochs} epochs" if r.finetune_epochs else "none"
    return [
        f"- policy: `{r.policy}`",
        f"- MACs target: {r.target:.2f} of the original",
        f"- policy mode: {_policy_mode(r)}",
        *([f"- policy trained on: {', '.join(r.policy_family)}"] if r.policy_family else []),
        *(
            [
                "- outside the policy's training ranges: "
                + ", ".join(
                    f"{o['feature']} ({o['steps']} of {len(r.units)} units, up to "
                    f"{o['distance']:.2f})"
                    for o in r.outside_family
                )
            ]
            if r.outside_family
            else []
        ),
        *([f"- {r.choice_words()}"] if r.scored else []),
        f"- fine-tuning: {finetune}" + (f" ({r.finetune_words()})" if r.finetuned else ""),
        f"- wall time: {r.wall_time_s:.1f} s (scoring on {r.device})",
        *(
            [
                f"- CPU timings: original and pruned interleaved, {r.threads} torch thread(s); "
                + "; ".join(
                    f"batch {b}: speedup {v['speedup']:.2f}× (p10–p90 of paired passes "
                    f"{v['p10']:.2f}–{v['p90']:.2f}){noise_mark(v)}"
                    for b, v in sorted(r.latency.items())
                    if "p10" in v
                )
                + (
                    f"; (noisy): the paired speedups spread more than {NOISY_SPREAD}× "
                    "(p90/p10), so the median may be far off: time again on an idle "
                    "machine or with --threads 1"
                    if r.noisy_latency
                    else ""
                )
            ]
            if r.threads and r.latency
            else []
        ),
        *([f"- {latency_budget_words(r.latency_budget)}"] if r.latency_budget else []),
        *(
            [
                f"- {r.device} latency, batch {b}: {_ms(v['before_ms'])} → {_ms(v['after_ms'])} "
                f"({speed_words(v['speedup'])}){noise_mark(v)}"
                for b, v in sorted(r.latency_gpu.items())
            ]
            if r.latency_gpu
            else []
        ),
    ]


def latency_budget_words(check: Mapping[str, Any]) -> str:
    """The latency budget's check in one sentence: where it was measured, predicted against
    measured speedup, and whether they agree."""
    verdict = (
        "within the latency model's stated error"
        if check["agrees"]
        else "NOT within the latency model's stated error"
    )
    return (
        f"latency budget ({check['device']}, batch {check['batch']}, {check['threads']} "
        f"thread(s), torch {check['torch']}, round_to {check['round_to']}): predicted speedup "
        f"{check['predicted_speedup']:.2f}×, measured {check['measured_speedup']:.2f}×, "
        f"{verdict} ({check['stated_error']:.0%})"
    )


def _summary_table(r: ApplyReport) -> list[str]:
    batches = sorted(r.latency)
    # the final row is the delivered model: fine-tuned only when that was kept
    finetuned_val = r.val_accuracy_finetuned if r.finetuned_delivered else None
    finetuned_test = r.test_accuracy_finetuned if r.finetuned_delivered else None
    header = ["model", "MACs", "params", "val acc", "test acc"]
    header += [f"latency b{b}" for b in batches]
    after_latency = [_ms(r.latency[b]["after_ms"]) for b in batches]
    rows = [
        [
            "original",
            format_count(r.macs_before),
            format_count(r.params_before),
            _percent(r.val_accuracy_before),
            _percent(r.test_accuracy_before),
            *(_ms(r.latency[b]["before_ms"]) for b in batches),
        ],
        [
            "pruned",
            format_count(r.macs_after),
            format_count(r.params_after),
            _percent(r.val_accuracy_after),
            _percent(r.test_accuracy_after),
            *after_latency,
        ],
    ]
    if r.finetuned:
        rows.append(
            [
                "pruned + fine-tuned" + ("" if r.finetuned_delivered else " (not kept)"),
                format_count(r.macs_after),
                format_count(r.params_after),
                _percent(r.val_accuracy_finetuned),
                _percent(r.test_accuracy_finetuned),
                *after_latency,
            ]
        )
    rows.append(
        [
            "final vs original",
            f"{r.macs_ratio:.2f}×",
            f"{r.params_ratio:.2f}×",
            _points(r.val_accuracy_before, finetuned_val, r.val_accuracy_after),
            _points(r.test_accuracy_before, finetuned_test, r.test_accuracy_after),
            *(speed_words(r.latency[b]["speedup"]) + noise_mark(r.latency[b]) for b in batches),
        ]
    )
    return [
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 1),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _significant(value: float) -> str:
    """Three significant digits, without exponent notation or trailing zeros."""
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


_CHOICE_NAMES = {
    "policy": "policy's configuration",
    "uniform": "uniform allocation (one keep-ratio for every unit)",
}
"""How :attr:`ApplyReport.choice` reads in a sentence (a prior: as it is named)."""


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _points(before: float, finetuned: float | None, after: float) -> str:
    """Accuracy change in percentage points, of the final model (fine-tuned if measured)."""
    final = after if finetuned is None else finetuned
    return f"{100 * (final - before):+.1f} pp"


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 100 else f"{value:.3g} ms"
