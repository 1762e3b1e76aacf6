"""--device and --amp: the device code paths, run on the CPU (CI has no GPU)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from rlprune.cli import main
from rlprune.errors import ConfigError, ModelError
from rlprune.evaluation.devices import autocast, resolve_device
from rlprune.evaluation.finetune import deliver, train_classifier
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import make_config
from rlprune.reports.latency import compare_latency

CUDA = torch.cuda.is_available()


def test_device_names() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if CUDA else "cpu")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        make_config({"device": "gpu"})
    if CUDA:  # a machine with GPUs: one past the last is refused
        with pytest.raises(ConfigError, match="does not exist"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(ConfigError, match="sees no CUDA device"):
            resolve_device("cuda:0")


def test_a_missing_device_is_a_one_line_cli_error(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["info", "--env", "digits-cnn", "--device", "cuda:7"])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith("error:") and "cuda:7" in err and "\n" not in err


def test_task_scores_on_its_device_and_keeps_its_model_on_the_cpu(
    digits_task: PruningTask,
) -> None:
    config = dataclasses.replace(digits_task.config, device="cpu")
    task = PruningTask.from_model(digits_task.model, digits_task.data, config)
    assert task.device == torch.device("cpu") and task.evaluator.device == task.device
    assert task.base_accuracy() == pytest.approx(digits_task.base_accuracy())
    assert next(task.model.parameters()).device.type == "cpu"
    candidate = task.evaluate(task.max_channels // 2)
    delivered = deliver(task, candidate, finetune_epochs=1, lr=0.01, seed=0)
    assert next(delivered.final.parameters()).device.type == "cpu"
    assert delivered.val_accuracy == pytest.approx(candidate.accuracy)


def test_mixed_precision_scores_close_to_full_precision(digits_task: PruningTask) -> None:
    config = dataclasses.replace(digits_task.config, amp=True)
    amp_task = PruningTask.from_model(digits_task.model, digits_task.data, config)
    for channels in (digits_task.max_channels, digits_task.max_channels // 2):
        full = digits_task.evaluate(channels).accuracy
        mixed = amp_task.evaluate(channels).accuracy
        assert abs(full - mixed) <= 0.02, (full, mixed)
    with autocast(torch.device("cpu"), True):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_training_and_latency_take_a_device(digits_task: PruningTask) -> None:
    model = copy.deepcopy(digits_task.model)
    result = train_classifier(
        model, digits_task.data, epochs=1, max_images=128, device=torch.device("cpu")
    )
    assert 0 <= result.val_accuracy <= 1
    speed = compare_latency(model, model, (1, 8, 8), batch_sizes=(2,), repeats=2, device="cpu")
    assert speed[2].speedup > 0
    elsewhere = copy.deepcopy(model).to("meta")  # parameters off the timed device
    with pytest.raises(ModelError, match="parameters on meta"):
        compare_latency(model, elsewhere, (1, 8, 8), batch_sizes=(2,), repeats=1, device="cpu")
