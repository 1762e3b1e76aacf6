"""Datasets by spec (factories), explicit normalisation, streamed evaluation (issue 12)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset

from rlprune.data.datasets import load_dataset
from rlprune.errors import ConfigError, DatasetError
from rlprune.evaluation.finetune import train_classifier
from rlprune.evaluation.scoring import split_accuracy
from rlprune.mdp.settings import make_config
from rlprune.presets.loader import load_env_config
from rlprune.presets.tasks import load_task

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _write_factory(tmp_path: Path, body: str, name: str = "data.py") -> str:
    path = tmp_path / name
    path.write_text(
        "import torch\nfrom torch.utils.data import TensorDataset, Dataset\n"
        + textwrap.dedent(body)
    )
    return f"{path}:make"


def _tensors(n: int, classes: int = 3, shape: tuple[int, ...] = (1, 8, 8), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.arange(n) % classes


# --- factories ----------------------------------------------------------------------


def test_factory_with_three_splits(tmp_path: Path) -> None:
    spec = _write_factory(
        tmp_path,
        """
        def make(n=30):
            g = torch.Generator().manual_seed(0)
            def split(k):
                return TensorDataset(torch.randn(k, 1, 8, 8, generator=g), torch.arange(k) % 4)
            return {"train": split(n), "val": split(20), "test": split(10)}
        """,
    )
    splits = load_dataset(spec, kwargs={"n": 40}, seed=3)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 20, 10)
    assert splits.num_classes == 4 and splits.input_shape == (1, 8, 8)
    assert not splits.in_memory  # read through DataLoaders
    # validation is read in a seeded random order (probes take its first images)
    again = load_dataset(spec, kwargs={"n": 40}, seed=3)
    other = load_dataset(spec, kwargs={"n": 40}, seed=4)
    assert splits.val.indices == again.val.indices != other.val.indices
    assert sorted(splits.val.indices) == list(range(20))


def test_heldout_split_is_disjoint_seeded_and_sized_by_val_size() -> None:
    spec = f"{EXAMPLES / 'tensor_dataset.py'}:digits"
    a = load_dataset(spec, val_size=300, seed=0)
    b = load_dataset(spec, val_size=300, seed=0)
    c = load_dataset(spec, val_size=300, seed=1)
    heldout = len(a.val) + len(a.test)
    assert len(a.val) == 300 and heldout == 719
    assert not set(a.val.indices) & set(a.test.indices)
    assert set(a.val.indices) | set(a.test.indices) == set(range(heldout))
    assert a.val.indices == b.val.indices and a.val.indices != c.val.indices
    assert a.num_classes == 10


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def make():\n    return [1, 2, 3, 4]", "returned a list"),
        ("def make():\n    return {'train': 1, 'val': 2}", "returned keys"),
        (
            "def make():\n    d = TensorDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4).long())\n"
            "    return d, [1, 2]",
            "gave a list as heldout, not a torch Dataset",
        ),
        (
            "def make():\n    d = TensorDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4).long())\n"
            "    e = TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0).long())\n"
            "    return d, d, e",
            "the test split of dataset .* is empty",
        ),
        (
            "def make():\n    d = TensorDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4).long())\n"
            "    e = TensorDataset(torch.zeros(4, 1, 9, 9), torch.zeros(4).long())\n"
            "    return d, d, e",
            "images of different shapes across splits",
        ),
        (
            "def make():\n    d = TensorDataset(torch.zeros(4, 8, 8), torch.zeros(4).long())\n"
            "    return d, d, d",
            r"yields a \(8, 8\) torch.float32 tensor as image",
        ),
        (
            "def make():\n    d = TensorDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4))\n"
            "    return d, d, d",
            "labels must be integer class ids",
        ),
        (
            "def make():\n    d = TensorDataset(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 2, 7]))\n"
            "    return {'train': d, 'val': d, 'test': d, 'num_classes': 3}",
            "holds label 7, outside 0..2",
        ),
        ("def make():\n    raise OSError('disk on fire')", "failed with .*disk on fire"),
    ],
)
def test_bad_factories_get_one_line_errors(tmp_path: Path, body: str, message: str) -> None:
    spec = _write_factory(tmp_path, body)
    with pytest.raises(DatasetError, match=message) as caught:
        load_dataset(spec)
    assert "\n" not in str(caught.value)


def test_missing_factory_file_and_attribute(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset file .* not found"):
        load_dataset(f"{tmp_path / 'nope.py'}:make")
    spec = _write_factory(tmp_path, "def other():\n    pass\n")
    with pytest.raises(DatasetError, match="has no attribute 'make'"):
        load_dataset(spec)


# --- normalisation -------------------------------------------------------------------


def test_bundled_normalisation_is_explicit() -> None:
    standard = load_dataset("digits").train.tensors[0]
    assert abs(float(standard.mean())) < 1e-4 and abs(float(standard.std()) - 1) < 1e-3
    raw = load_dataset("digits", normalize="none").train.tensors[0]
    assert float(raw.min()) == 0.0 and float(raw.max()) == 1.0
    custom = load_dataset("digits", normalize={"mean": [0.5], "std": [0.25]}).train.tensors[0]
    assert torch.allclose(custom, (raw - 0.5) / 0.25)


def test_factory_normalisation(tmp_path: Path) -> None:
    spec = f"{EXAMPLES / 'tensor_dataset.py'}:digits"
    plain = load_dataset(spec, val_size=300)
    shifted = load_dataset(spec, val_size=300, normalize={"mean": 0.5, "std": 0.25})
    x, _ = plain.train[0]
    y, _ = shifted.train[0]
    assert torch.allclose(y, (x - 0.5) / 0.25)
    with pytest.raises(ConfigError, match="normalize: standard needs"):
        load_dataset(spec, val_size=300, normalize="standard")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("zscore", "normalize 'zscore' is invalid"),
        ({"mean": [0.5]}, "exactly the keys mean and std"),
        ({"mean": [0.5, 0.5], "std": [0.2]}, "mean has 2 values and std 1"),
        ({"mean": [0.5], "std": [0.0]}, "std must be positive"),
        ({"mean": ["a"], "std": [1]}, "must be a list of numbers"),
    ],
)
def test_bad_normalize_values(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config({"normalize": value})


def test_mismatched_preprocessing_is_warned_about() -> None:
    """The digits base model on digits scaled to [0, 1] without its standardisation."""
    spec = f"{EXAMPLES / 'tensor_dataset.py'}"
    with pytest.warns(UserWarning, match="near chance.*model and data disagree"):
        load_task(load_env_config("digits-cnn", {"dataset": f"{spec}:digits", "normalize": "none"}))
    task = load_task(load_env_config("digits-cnn", {"dataset": f"{spec}:standardised"}))
    assert task.base_accuracy() > 0.95


# --- streamed evaluation -------------------------------------------------------------


def _png_tree(root: Path, n: int, classes: int = 4, size: int = 16) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        label = i % classes
        folder = root / ("train" if (i // classes) % 2 == 0 else "heldout") / f"c{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
        pixels[..., label % 3] //= 4  # a learnable colour cue
        Image.fromarray(pixels).save(folder / f"{i}.png")


def test_png_folder_streams_through_search_and_finetuning(tmp_path: Path) -> None:
    _png_tree(tmp_path / "images", 160)
    config = make_config(
        {
            "model": "digits-cnn",
            "dataset": f"{EXAMPLES / 'image_folder.py'}:folders",
            "dataset_kwargs": {"root": str(tmp_path / "images"), "size": 16},
            "normalize": "none",
            "val_size": 0.5,
            "calibration_batches": 2,
            "batch_size": 16,
        }
    )
    with pytest.warns(UserWarning, match="no weights"):
        task = load_task(config)
    assert not task.data.in_memory and task.data.num_classes == 4
    assert task.evaluator.val_dataset is not None and task.val_size == 40
    assert task.data.input_shape == (3, 16, 16)
    candidate = task.evaluate(task.max_channels)
    assert 0.0 <= candidate.accuracy <= 1.0
    # the streamed score equals an in-memory score of the same images
    model = task.model
    task.evaluator.calibrate(model)
    images = torch.stack([task.data.val[i][0] for i in range(len(task.data.val))])
    labels = torch.tensor([task.data.val[i][1] for i in range(len(task.data.val))])
    in_memory = split_accuracy(model, TensorDataset(images, labels))
    assert task.evaluator.score(model) == pytest.approx(in_memory)
    result = train_classifier(model, task.data, epochs=2, lr=0.05, batch_size=16)
    assert result.val_accuracy > 0.5  # it learns the colour cue from streamed batches


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_dataset(tmp_path: Path) -> None:
    """tools/profile_env.py --memory on 2,000 and 6,000 PNGs (64x64): in memory, the
    extra 4,000 images would take 4,000 x 3 x 64 x 64 x 4 bytes = 188 MiB."""
    peaks = {}
    for n in (2000, 6000):
        _png_tree(tmp_path / str(n), n, size=64)
        preset = tmp_path / f"p{n}.yaml"
        preset.write_text(
            "model: digits-cnn\n"
            f"dataset: {EXAMPLES / 'image_folder.py'}:folders\n"
            f"dataset_kwargs: {{root: {tmp_path / str(n)}}}\n"
            "normalize: none\nval_size: 0.5\ncalibration_batches: 2\nbatch_size: 32\n"
        )
        run = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "profile_env.py"), "--env", str(preset)]
            + ["--memory", "--episodes", "1"],
            capture_output=True,
            text=True,
            timeout=600,
            # the rlprune under test (PYTHONPATH, when set, names its tree), nothing else
            env={"OMP_NUM_THREADS": "1", "PATH": str(Path(sys.executable).parent)}
            | {k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
        )
        assert run.returncode == 0, run.stderr[-2000:]
        found = re.search(r"peak RSS ([\d.]+) MB", run.stdout)
        assert found is not None, run.stdout
        peaks[n] = float(found.group(1))
    print(f"peak RSS by dataset size (MB): {peaks}")
    assert peaks[6000] - peaks[2000] < 94, peaks  # under half of what holding them would add


def test_dataset_subclass_without_targets_has_its_labels_scanned(tmp_path: Path) -> None:
    spec = _write_factory(
        tmp_path,
        """
        class Plain(Dataset):
            def __init__(self, n):
                self.n = n
            def __len__(self):
                return self.n
            def __getitem__(self, i):
                return torch.zeros(1, 4, 4), i % 5
        def make():
            return Plain(20), Plain(10)
        """,
    )
    splits = load_dataset(spec, val_size=5)
    assert splits.num_classes == 5
    assert isinstance(splits.train, Dataset) and len(splits.test) == 5


def test_resume_imports_dataset_code_only_if_unchanged(tmp_path: Path) -> None:
    from rlprune.rl.agents import load_agent_config
    from rlprune.rl.training import TrainSettings, resume, train

    code = tmp_path / "mydata.py"
    code.write_text((EXAMPLES / "tensor_dataset.py").read_text())
    spec = f"{code}:standardised"
    config = load_env_config("digits-cnn", {"dataset": spec})
    run = train(
        config,
        load_agent_config("ppo-v1", "digits-cnn"),
        TrainSettings(episodes=8, seed=0, checkpoint_every=8),
        runs_root=tmp_path / "runs",
    )
    resume(run.run_dir, episodes=10)  # same file: resumes
    code.write_text(code.read_text() + "\n# changed\n")
    with pytest.raises(DatasetError, match="whose file changed since training.*--dataset"):
        resume(run.run_dir, episodes=12)
    with pytest.raises(Exception, match="conflicts with the run"):
        resume(run.run_dir, episodes=12, trust_dataset="digits")
    assert resume(run.run_dir, episodes=12, trust_dataset=spec).episodes == 12


# --- an image folder from the command line (issue 38) -----------------------------------


def test_an_image_folder_given_as_a_path_is_read_as_images(tmp_path: Path) -> None:
    """`--dataset /path/to/folder` was read as Fashion-MNIST ("fashion-mnist not found")."""
    _png_tree(tmp_path / "images", 48, size=12)
    data = load_dataset(str(tmp_path / "images"), val_size=0.5, kwargs={"size": 8})
    assert data.input_shape == (3, 8, 8) and data.num_classes == 4
    assert not data.in_memory and len(data.train) == 24 and len(data.val) == 12
    image, label = data.val[0]
    assert image.dtype == torch.float32 and 0.0 <= float(image.min()) <= float(image.max()) <= 1.0
    assert 0 <= label < 4
    gray = load_dataset(str(tmp_path / "images"), val_size=0.5, kwargs={"channels": 1})
    assert gray.input_shape == (1, 12, 12)  # the first image's size by default


def test_a_folder_of_neither_images_nor_idx_files_says_what_it_needs(tmp_path: Path) -> None:
    (tmp_path / "pictures" / "cats").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"neither images in ImageFolder's layout .*train/"):
        load_dataset(str(tmp_path / "pictures"))


def test_factory_kwargs_parse_from_the_command_line() -> None:
    from rlprune.cli import build_parser
    from rlprune.cli.common import env_config_from_args, factory_arguments

    assert factory_arguments("root=/data/x,size=32,mean=[0.5, 0.5, 0.5]") == {
        "root": "/data/x",
        "size": 32,
        "mean": [0.5, 0.5, 0.5],
    }
    parser = build_parser()
    args = parser.parse_args(
        ["info", "--dataset-kwargs", "root=/x,size=32", "--dataset-kwargs", "size=16"]
        + ["--model-kwargs", "width=8"]
    )
    config = env_config_from_args(args)
    assert config.task.dataset_kwargs == {"root": "/x", "size": 16}  # later pairs win
    assert config.task.model_kwargs == {"width": 8}
    # another model than the preset's does not inherit the preset's model_kwargs
    spec = f"{EXAMPLES / 'custom_model.py'}:build"
    args = parser.parse_args(["info", "--env", "fmnist-resnet20", "--model", spec])
    assert env_config_from_args(args).task.model_kwargs == {}
    args = parser.parse_args(["info", "--env", "fmnist-resnet20", "--model-kwargs", "depth=14"])
    assert env_config_from_args(args).task.model_kwargs == {"width": 16, "depth": 14}
    with pytest.raises(SystemExit):
        parser.parse_args(["info", "--dataset-kwargs", "no-pairs-here"])


def test_image_folder_example_runs_as_its_docstring_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`examples/image_folder.py:folders` failed from the CLI: missing `root`."""
    import ast
    import shlex

    from rlprune.cli import main

    # the digits-cnn preset validates on 360 images
    _png_tree(tmp_path / "images", 1440, size=8)
    doc = ast.get_docstring(ast.parse((EXAMPLES / "image_folder.py").read_text()))
    text = re.sub(r"\\\n\s*", " ", str(doc))  # join continued lines
    commands = [line.strip() for line in text.splitlines() if line.startswith("    rlprune ")]
    assert [c.split()[1] for c in commands] == ["pretrain", "info"]
    monkeypatch.chdir(ROOT)
    for command in commands:
        argv = shlex.split(
            command.replace("ROOT", str(tmp_path / "images")).replace(
                "w.pt", str(tmp_path / "w.pt")
            )
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(argv[1:]) == 0, command
    assert (tmp_path / "w.pt").is_file()
