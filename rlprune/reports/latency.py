"""How a speedup reads in a report; the timing itself is :mod:`rlprune.evaluation.timing`'s."""

from collections.abc import Mapping

from ..evaluation.timing import LatencySpeedup, LatencyStats, compare_latency, measure_latency

__all__ = [
    "NOISY_SPREAD",
    "LatencySpeedup",
    "LatencyStats",
    "compare_latency",
    "is_noisy",
    "measure_latency",
    "noise_mark",
    "speed_words",
]

NOISY_SPREAD = 1.5
"""A speedup whose paired passes spread wider than this (90th over 10th percentile of the
per-pair speedups) is marked noisy: one busy moment can move its median a long way."""


def is_noisy(row: Mapping[str, float]) -> bool:
    """Whether a timed row (``{"speedup", "p10", "p90", ...}``) spreads wider than
    :data:`NOISY_SPREAD`; a row without a spread (an older report) is not marked."""
    p10, p90 = row.get("p10"), row.get("p90")
    if p10 is None or p90 is None:
        return False
    return p10 <= 0 or p90 / p10 > NOISY_SPREAD


def noise_mark(row: Mapping[str, float]) -> str:
    """``" (noisy)"`` for a row :func:`is_noisy` marks, else ``""``."""
    return " (noisy)" if is_noisy(row) else ""


def speed_words(speedup: float) -> str:
    """``"1.45× faster"``, or ``"1.09× slower"`` when the pruned model lost time (a speedup
    below 1 printed as "0.92× faster" reads as a gain)."""
    if speedup >= 1:
        return f"{speedup:.2f}× faster"
    return f"{1 / speedup:.2f}× slower"
