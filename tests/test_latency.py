"""CPU latency: percentile statistics, restored settings, interleaved comparisons."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rlprune.errors import ConfigError
from rlprune.reports.latency import LatencyStats, compare_latency, measure_latency

SHAPE = (1, 8, 8)
# One thread: on a loaded 2-core machine multi-threaded kernels stall waiting for a
# descheduled worker, which makes tiny timings slow and erratic.
THREADS = 1


def tiny_cnn(width: int = 4) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(width, 10),
    )


class Recorder(nn.Module):
    """Wraps a model and logs (label, input data pointer) for every forward call."""

    def __init__(self, model: nn.Module, label: str, log: list[tuple[str, int]]) -> None:
        super().__init__()
        self.model = model
        self.label = label
        self.log = log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append((self.label, x.data_ptr()))
        return self.model(x)


def check_stats(stats: LatencyStats, batch_size: int, repeats: int) -> None:
    assert stats.batch_size == batch_size
    assert stats.repeats == repeats
    assert stats.threads == THREADS
    assert 0.0 < stats.p10_ms <= stats.median_ms <= stats.p90_ms


def test_measure_latency_orders_percentiles_and_restores_settings() -> None:
    model = tiny_cnn().train()
    threads_before = torch.get_num_threads()
    stats = measure_latency(model, SHAPE, 4, repeats=7, warmup=1, threads=THREADS)
    check_stats(stats, batch_size=4, repeats=7)
    assert torch.get_num_threads() == threads_before
    assert model.training  # measured in eval mode, mode restored


def test_measure_latency_runs_warmup_plus_repeats_in_eval_mode() -> None:
    log: list[tuple[str, int]] = []
    modes: list[bool] = []
    model = Recorder(tiny_cnn(), "m", log)
    model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    measure_latency(model, SHAPE, 2, repeats=5, warmup=2, threads=THREADS)
    assert len(log) == 7
    assert not any(modes)
    assert len({ptr for _, ptr in log}) == 1  # one fixed input batch


def test_compare_latency_interleaves_runs_on_the_same_input() -> None:
    log: list[tuple[str, int]] = []
    before = Recorder(tiny_cnn(8), "before", log)
    after = Recorder(tiny_cnn(2), "after", log)
    result = compare_latency(before, after, SHAPE, (1, 3), repeats=4, warmup=1, threads=THREADS)

    assert list(result) == [1, 3]
    for batch_size, speedup in result.items():
        assert speedup.batch_size == batch_size
        check_stats(speedup.before, batch_size, repeats=4)
        check_stats(speedup.after, batch_size, repeats=4)
        assert speedup.speedup == pytest.approx(speedup.before.median_ms / speedup.after.median_ms)
        assert speedup.as_dict() == {
            "before_ms": speedup.before.median_ms,
            "after_ms": speedup.after.median_ms,
            "speedup": speedup.speedup,
        }
    # (warmup + repeats) pairs per batch size, strictly alternating, before first.
    labels = [label for label, _ in log]
    assert labels == ["before", "after"] * (2 * (1 + 4))
    # Within a pair both models get the very same tensor.
    for (_, ptr_before), (_, ptr_after) in zip(log[::2], log[1::2], strict=True):
        assert ptr_before == ptr_after


def test_compare_latency_drops_duplicate_batch_sizes() -> None:
    result = compare_latency(
        tiny_cnn(), tiny_cnn(), SHAPE, (2, 2), repeats=1, warmup=0, threads=THREADS
    )
    assert list(result) == [2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch size must be >= 1"),
        ({"repeats": 0}, "repeats must be >= 1"),
        ({"warmup": -1}, "warmup must be >= 0"),
        ({"threads": 0}, "threads must be >= 1"),
        ({"input_shape": (8, 8)}, r"input_shape must be \(channels, height, width\)"),
    ],
)
def test_measure_latency_rejects_bad_settings(kwargs: dict, match: str) -> None:
    args = {"input_shape": SHAPE, "batch_size": 1, **kwargs}
    with pytest.raises(ConfigError, match=match):
        measure_latency(tiny_cnn(), **args)


def test_compare_latency_rejects_empty_batch_sizes() -> None:
    with pytest.raises(ConfigError, match="batch_sizes is empty"):
        compare_latency(tiny_cnn(), tiny_cnn(), SHAPE, ())
