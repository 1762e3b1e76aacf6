"""How a speedup reads in a report; the timing itself is :mod:`rlprune.evaluation.timing`'s."""

from ..evaluation.timing import LatencySpeedup, LatencyStats, compare_latency, measure_latency

__all__ = ["LatencySpeedup", "LatencyStats", "compare_latency", "measure_latency", "speed_words"]


def speed_words(speedup: float) -> str:
    """``"1.45× faster"``, or ``"1.09× slower"`` when the pruned model lost time (a speedup
    below 1 printed as "0.92× faster" reads as a gain)."""
    if speedup >= 1:
        return f"{speedup:.2f}× faster"
    return f"{1 / speedup:.2f}× slower"
