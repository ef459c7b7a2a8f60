"""fashion-mnist: synthetic IDX directories in tmp_path, plus one realdata test on the Debian install."""

import numpy as np
import pytest
import torch

from pickwise.data import create_dataset, get_dataset_info
from pickwise.data import fashion_mnist as fm
from pickwise.data._base import channel_mean_std
from pickwise.data.idx import write_idx
from pickwise.exceptions import DataFormatError, DataNotFoundError

REAL_FILES = [fm.DEFAULT_DIR / f"{p}-{k}-ubyte.gz" for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]


def make_fashion_dir(directory, *, gz=True, n_train=30, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        data[prefix] = (images, labels)
    return data


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("PICKWISE_FASHION_MNIST", raising=False)
    monkeypatch.delenv("PICKWISE_DATA_DIR", raising=False)
    monkeypatch.setattr(fm, "DEFAULT_DIR", tmp_path / "no-default")


@pytest.mark.parametrize("gz", [True, False])
def test_synthetic_root(tmp_path, gz):
    data = make_fashion_dir(tmp_path, gz=gz)
    train = create_dataset("fashion-mnist", "train", root=tmp_path)
    test = create_dataset("fashion_mnist", "test", root=str(tmp_path))
    assert len(train) == 30
    assert len(test) == 20
    assert tuple(train.images.shape) == (30, 1, 28, 28)
    np.testing.assert_array_equal(train.images[:, 0].numpy(), data["train"][0])
    np.testing.assert_array_equal(test.targets.numpy(), data["t10k"][1])
    assert train.info.class_names[0] == "T-shirt/top"
    assert train.info.class_names[-1] == "Ankle boot"
    assert (train.info.num_train, train.info.num_test) == (30, 20)
    info = get_dataset_info("fashion-mnist", root=tmp_path)
    assert (info.num_train, info.num_test) == (30, 20)
    assert "MIT" in info.license
    assert "1708.07747" in info.source
    again = create_dataset("fashion-mnist", "train", root=tmp_path)
    assert torch.equal(again.images, train.images)


def test_root_with_subfolder_and_env(tmp_path, monkeypatch, no_env):
    data = make_fashion_dir(tmp_path / "data" / "fashion-mnist", n_train=10)
    assert len(create_dataset("fashion-mnist", root=tmp_path / "data")) == 10
    monkeypatch.setenv("PICKWISE_DATA_DIR", str(tmp_path / "data"))
    assert len(create_dataset("fashion-mnist")) == 10
    make_fashion_dir(tmp_path / "env", n_train=20)
    monkeypatch.setenv("PICKWISE_FASHION_MNIST", str(tmp_path / "env"))
    ds = create_dataset("fashion-mnist", subset=10, seed=0)
    assert len(ds) == 10
    assert np.bincount(ds.targets.numpy()).tolist() == [1] * 10
    assert data["train"][0].shape[0] == 10


def test_missing(tmp_path, no_env):
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
        create_dataset("fashion-mnist", root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "--data-dir" in msg
    assert str(tmp_path / "nowhere") in msg
    assert "train-images-idx3-ubyte.gz" in msg
    assert "\n" not in msg
    with pytest.raises(DataNotFoundError, match=r"no-default.*--data-dir"):
        create_dataset("fashion-mnist", "test")
    # info falls back to the official counts
    assert get_dataset_info("fashion-mnist").num_train == 60000


def test_missing_test_files_only(tmp_path):
    make_fashion_dir(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    assert len(create_dataset("fashion-mnist", "train", root=tmp_path)) == 30
    with pytest.raises(DataNotFoundError, match="fashion-mnist: test IDX files not found"):
        create_dataset("fashion-mnist", "test", root=tmp_path)


def test_bad_files(tmp_path):
    make_fashion_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(29, dtype=np.uint8))
    with pytest.raises(DataFormatError, match=r"train-labels-idx1-ubyte\.gz holds uint8 data of shape \(29,\)"):
        create_dataset("fashion-mnist", root=tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(30, 12, dtype=np.uint8))
    with pytest.raises(DataFormatError, match="label 12"):
        create_dataset("fashion-mnist", root=tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((30, 14, 14), dtype=np.uint8))
    with pytest.raises(DataFormatError, match=r"expected uint8 \(N, 28, 28\)"):
        create_dataset("fashion-mnist", root=tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz is corrupt or truncated"):
        create_dataset("fashion-mnist", root=tmp_path)


@pytest.mark.realdata
@pytest.mark.skipif(not all(p.is_file() for p in REAL_FILES), reason="dataset-fashion-mnist is not installed")
def test_real_install(monkeypatch):
    monkeypatch.delenv("PICKWISE_FASHION_MNIST", raising=False)
    monkeypatch.delenv("PICKWISE_DATA_DIR", raising=False)
    train = create_dataset("fashion-mnist", "train")
    test = create_dataset("fashion-mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert np.bincount(train.targets.numpy()).tolist() == [6000] * 10
    assert np.bincount(test.targets.numpy()).tolist() == [1000] * 10
    mean, std = channel_mean_std(train.images.numpy())
    np.testing.assert_allclose(train.info.mean, mean, atol=6e-5)
    np.testing.assert_allclose(train.info.std, std, atol=6e-5)
    info = get_dataset_info("fashion-mnist")
    assert (info.num_train, info.num_test) == (60000, 10000)
