"""Datasets: digits splits, fashion-mnist IDX loading (synthetic and system), loaders."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from rlprune.data import datasets as data
from rlprune.data.datasets import load_dataset
from rlprune.errors import ConfigError, DatasetError
from rlprune.evaluation.splits import DataSplits, from_tensors, make_loader

N_TRAIN, N_TEST, SIDE = 60, 20, 28


def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> Path:
    """Write ``array`` (uint8) as an IDX file, gzipped when ``gz``."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def write_fashion_mnist(folder: Path, *, gz: bool, n_train: int = N_TRAIN) -> Path:
    """Write a tiny fashion-mnist look-alike: labels cycle 0..9, images are random bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for part, n in (("train", n_train), ("t10k", N_TEST)):
        images = rng.integers(0, 256, size=(n, SIDE, SIDE), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{part}-images-idx3-ubyte", images, gz=gz)
        write_idx(folder / f"{part}-labels-idx1-ubyte", labels, gz=gz)
    return folder


@pytest.fixture(params=[False, True], ids=["raw", "gz"])
def fmnist_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return write_fashion_mnist(tmp_path / "fmnist", gz=request.param)


@pytest.fixture
def no_system_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Hide $RLPRUNE_DATA and the system folder; return the stand-in system path."""
    missing = tmp_path / "no-system-data"
    monkeypatch.delenv("RLPRUNE_DATA", raising=False)
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST_DIR", missing)
    return missing


def index_sets(splits: DataSplits) -> dict[str, set[int]]:
    return {name: set(idx.tolist()) for name, idx in splits.source_indices.items()}


# ------------------------------------------------------------------------- digits


def test_digits_splits_are_disjoint_with_expected_shapes() -> None:
    splits = load_dataset("digits", seed=0)
    sets = index_sets(splits)
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert len(sets["train"] | sets["val"] | sets["test"]) == 1797
    assert splits.input_shape == (1, 8, 8)
    assert splits.num_classes == 10
    assert splits.name == "digits"
    for part in (splits.train, splits.val, splits.test):
        x, y = part.tensors
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8)
        assert y.dtype == torch.int64 and len(y) == len(x)
        assert set(y.unique().tolist()) == set(range(10))  # stratified: every class present
    x_train = splits.train.tensors[0]
    assert abs(float(x_train.mean())) < 1e-4
    assert abs(float(x_train.std()) - 1.0) < 1e-2


def test_digits_is_deterministic_by_seed() -> None:
    a, b, c = (load_dataset("digits", seed=s) for s in (3, 3, 4))
    for part in ("train", "val", "test"):
        for ta, tb in zip(getattr(a, part).tensors, getattr(b, part).tensors, strict=True):
            assert torch.equal(ta, tb)
    assert not np.array_equal(a.source_indices["train"], c.source_indices["train"])
    assert not np.array_equal(a.source_indices["val"], c.source_indices["val"])
    # The test split is fixed across seeds, so no seed's training data leaks into another's test.
    assert np.array_equal(a.source_indices["test"], c.source_indices["test"])


@pytest.mark.parametrize(("val_size", "expected"), [(100, 100), (0.25, 360)])
def test_digits_val_size_count_or_fraction(val_size: int | float, expected: int) -> None:
    splits = load_dataset("digits", val_size=val_size)
    assert len(splits.val) == expected
    assert len(splits.train) + len(splits.val) == 1797 - len(splits.test)


@pytest.mark.parametrize("val_size", [0.0, 1.0, -0.5, 0, 5000, True, "0.2"])
def test_bad_val_size_is_rejected(val_size: object) -> None:
    with pytest.raises(ConfigError, match="val_size="):
        load_dataset("digits", val_size=val_size)  # type: ignore[arg-type]


def test_train_limit_subsamples_stratified() -> None:
    splits = load_dataset("digits", train_limit=50)
    assert len(splits.train) == 50
    assert torch.bincount(splits.train.tensors[1]).tolist() == [5] * 10
    assert len(splits.val) == len(load_dataset("digits").val)


@pytest.mark.parametrize("train_limit", [0, -3, 2.5, True])
def test_bad_train_limit_is_rejected(train_limit: object) -> None:
    with pytest.raises(ConfigError, match="train_limit="):
        load_dataset("digits", train_limit=train_limit)  # type: ignore[arg-type]


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(DatasetError, match=r"unknown dataset 'cifar10'.*'digits'.*'fashion-mnist'"):
        load_dataset("cifar10")


def test_missing_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(str(tmp_path / "nowhere" / "fmnist"))


def test_digits_warns_that_data_dir_is_ignored(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="data_dir"):
        load_dataset("digits", data_dir=tmp_path)


# ------------------------------------------------------------------ fashion-mnist


def test_fashion_mnist_from_synthetic_idx(fmnist_dir: Path) -> None:
    splits = load_dataset("fashion-mnist", data_dir=fmnist_dir, val_size=10)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50, 10, N_TEST)
    assert splits.input_shape == (1, SIDE, SIDE)
    assert splits.num_classes == 10
    assert splits.name == "fashion-mnist"
    sets = index_sets(splits)
    assert not sets["train"] & sets["val"]
    # The official test file is the test split, in file order.
    assert splits.test.tensors[1].tolist() == [i % 10 for i in range(N_TEST)]
    x_train = splits.train.tensors[0]
    assert x_train.dtype == torch.float32 and x_train.shape == (50, 1, SIDE, SIDE)
    assert abs(float(x_train.mean())) < 1e-4


@pytest.mark.parametrize("name", ["fmnist", "Fashion-MNIST"])
def test_fashion_mnist_aliases(name: str, fmnist_dir: Path) -> None:
    assert len(load_dataset(name, data_dir=fmnist_dir, val_size=10).test) == N_TEST


def test_fashion_mnist_folder_as_name(fmnist_dir: Path) -> None:
    assert len(load_dataset(str(fmnist_dir), val_size=10).test) == N_TEST


@pytest.mark.parametrize("subfolder", [False, True], ids=["dir", "dir/fashion-mnist"])
def test_fashion_mnist_from_env_var(
    subfolder: bool, tmp_path: Path, no_system_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    write_fashion_mnist(root / "fashion-mnist" if subfolder else root, gz=True)
    monkeypatch.setenv("RLPRUNE_DATA", str(root))
    assert len(load_dataset("fashion-mnist", val_size=10).test) == N_TEST


def test_fashion_mnist_train_limit(fmnist_dir: Path) -> None:
    splits = load_dataset("fashion-mnist", data_dir=fmnist_dir, val_size=10, train_limit=20)
    assert len(splits.train) == 20
    assert len(splits.val) == 10


def test_fashion_mnist_cache_follows_file_changes(tmp_path: Path) -> None:
    folder = write_fashion_mnist(tmp_path / "f", gz=False)
    assert len(load_dataset("fmnist", data_dir=folder, val_size=10).train) == 50
    write_fashion_mnist(folder, gz=False, n_train=80)
    assert len(load_dataset("fmnist", data_dir=folder, val_size=10).train) == 70


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda raw: raw[:-7], r"train-images-idx3-ubyte holds .* bytes but"),
        (lambda raw: b"\x12\x34" + raw[2:], r"train-images-idx3-ubyte is not an IDX file"),
        (lambda raw: raw[:2] + b"\x0d" + raw[3:], r"train-images-idx3-ubyte has IDX data type"),
    ],
    ids=["truncated", "bad-magic", "float-type"],
)
def test_corrupt_idx_file_is_named(
    tmp_path: Path, damage: Callable[[bytes], bytes], match: str
) -> None:
    folder = write_fashion_mnist(tmp_path / "f", gz=False)
    target = folder / "train-images-idx3-ubyte"
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(DatasetError, match=match):
        load_dataset("fashion-mnist", data_dir=folder)


def test_corrupt_gzip_is_named(tmp_path: Path) -> None:
    folder = write_fashion_mnist(tmp_path / "f", gz=True)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:20])
    with pytest.raises(DatasetError, match=r"cannot read .*t10k-labels-idx1-ubyte\.gz"):
        load_dataset("fashion-mnist", data_dir=folder)


def test_mismatched_image_and_label_counts(tmp_path: Path) -> None:
    folder = write_fashion_mnist(tmp_path / "f", gz=False)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8), gz=False)
    with pytest.raises(DatasetError, match=f"has {N_TEST} images but .* has 5 labels"):
        load_dataset("fashion-mnist", data_dir=folder)


def test_missing_fashion_mnist_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"not found in .*apt-get install dataset-fashion-mnist.*RLPRUNE_DATA"
    ):
        load_dataset("fashion-mnist", data_dir=tmp_path / "empty")


def test_missing_fashion_mnist_lists_searched_paths(no_system_data: Path) -> None:
    with pytest.raises(DatasetError, match="no-system-data") as info:
        load_dataset("fashion-mnist")
    assert "apt-get install dataset-fashion-mnist" in str(info.value)


@pytest.mark.skipif(
    not (data.SYSTEM_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="system fashion-mnist not installed (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_from_system_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLPRUNE_DATA", raising=False)
    splits = load_dataset("fashion-mnist", train_limit=1000)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1000, 12000, 10000)
    assert splits.input_shape == (1, 28, 28)
    assert splits.num_classes == 10
    assert torch.bincount(splits.test.tensors[1]).tolist() == [1000] * 10


# ------------------------------------------------------------------------ loaders


def test_make_loader_is_seeded() -> None:
    dataset = load_dataset("digits").train

    def first_labels(seed: int) -> list[int]:
        return next(iter(make_loader(dataset, 32, shuffle=True, seed=seed)))[1].tolist()

    assert first_labels(1) == first_labels(1)
    assert first_labels(1) != first_labels(2)
    unshuffled = next(iter(make_loader(dataset, 8, shuffle=False, seed=0)))[1]
    assert torch.equal(unshuffled, dataset.tensors[1][:8])


@pytest.mark.parametrize("batch_size", [0, -1, 1.5])
def test_make_loader_rejects_bad_batch_size(batch_size: object) -> None:
    with pytest.raises(ConfigError, match="batch_size="):
        make_loader(load_dataset("digits").val, batch_size, shuffle=False, seed=0)  # type: ignore[arg-type]


# -------------------------------------------------------------------- from_tensors


def _tensors(n: int = 6, shape: tuple[int, ...] = (3, 5, 5)) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(n, *shape), torch.arange(n) % 4


def test_from_tensors_infers_classes_and_shape() -> None:
    x_val, y_val = _tensors()
    splits = from_tensors(*_tensors(), x_val.numpy(), y_val.numpy(), *_tensors(), name="mine")
    assert splits.input_shape == (3, 5, 5)
    assert splits.num_classes == 4
    assert splits.name == "mine"
    assert splits.val.tensors[1].dtype == torch.int64


@pytest.mark.parametrize(
    ("bad_split", "match"),
    [
        ((torch.rand(6, 5, 5), torch.zeros(6, dtype=torch.long)), r"x_val has .*\(N, C, H, W\)"),
        ((torch.rand(6, 3, 5, 5), torch.zeros(5, dtype=torch.long)), r"y_val has shape \(5,\)"),
        ((torch.rand(6, 3, 5, 5), torch.zeros(6)), "y_val has dtype torch.float32"),
        ((torch.rand(6, 3, 5, 5), -torch.ones(6, dtype=torch.long)), "y_val holds label -1"),
        ((torch.rand(6, 3, 4, 4), torch.zeros(6, dtype=torch.long)), "image shapes .* differ"),
        ((torch.rand(0, 3, 5, 5), torch.zeros(0, dtype=torch.long)), "the val split is empty"),
    ],
    ids=["3d-images", "label-count", "float-labels", "negative", "shape-mismatch", "empty"],
)
def test_from_tensors_validates(bad_split: tuple[torch.Tensor, torch.Tensor], match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        from_tensors(*_tensors(), *bad_split, *_tensors())
