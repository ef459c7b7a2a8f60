"""fashion-mnist: synthetic IDX directories in tmp_path, the search order, plus realdata tests wherever it is found."""

import sys

import numpy as np
import pytest
import torch

from pickwise.data import create_dataset, get_dataset_info
from pickwise.data import fashion_mnist as fm
from pickwise.data._base import channel_mean_std
from pickwise.data.idx import write_idx
from pickwise.exceptions import DataFormatError, DataNotFoundError


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
    for var in ("PICKWISE_FASHION_MNIST_DIR", "PICKWISE_FASHION_MNIST", "PICKWISE_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(fm, "DEFAULT_DIR", tmp_path / "no-default")
    monkeypatch.setattr(fm, "cache_dirs", lambda: [tmp_path / "no-cache"])


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


def test_search_order(tmp_path, monkeypatch, no_env):
    """--data-dir, then $PICKWISE_FASHION_MNIST_DIR (exclusive), $PICKWISE_DATA_DIR, the system path, the caches."""
    system, cache, user = tmp_path / "system", tmp_path / "cache", tmp_path / "user"
    make_fashion_dir(system, n_train=11)
    make_fashion_dir(cache, n_train=12)
    monkeypatch.setattr(fm, "DEFAULT_DIR", system)
    monkeypatch.setattr(fm, "cache_dirs", lambda: [cache])
    assert len(create_dataset("fashion-mnist")) == 11
    monkeypatch.setattr(fm, "DEFAULT_DIR", tmp_path / "no-system")
    assert len(create_dataset("fashion-mnist")) == 12  # found in the cache
    make_fashion_dir(user, n_train=13)
    assert len(create_dataset("fashion-mnist", root=user)) == 13
    monkeypatch.setattr(fm, "DEFAULT_DIR", system)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PICKWISE_FASHION_MNIST_DIR", str(empty))  # the location: nothing else is searched
    with pytest.raises(DataNotFoundError, match=r"not found in .*empty \(\$PICKWISE_FASHION_MNIST_DIR, the only place"):
        create_dataset("fashion-mnist")
    assert len(create_dataset("fashion-mnist", root=user)) == 13  # an explicit --data-dir still wins
    monkeypatch.setenv("PICKWISE_FASHION_MNIST_DIR", str(user))
    assert len(create_dataset("fashion-mnist")) == 13
    monkeypatch.delenv("PICKWISE_FASHION_MNIST_DIR")
    monkeypatch.setenv("PICKWISE_FASHION_MNIST", str(empty))  # the older name behaves the same
    with pytest.raises(DataNotFoundError, match=r"\$PICKWISE_FASHION_MNIST, the only place"):
        create_dataset("fashion-mnist", "test")


def test_cache_dirs(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    dirs = fm.cache_dirs()
    assert dirs[0] == fm.Path(sys.prefix) / "share" / "pickwise" / "fashion-mnist"
    assert dirs[1] == tmp_path / "pickwise" / "fashion-mnist"


def test_marker_skips_when_the_location_is_empty(tmp_path, monkeypatch, request):
    """The shared ``requires_fashion_mnist`` marker (tests/conftest.py) skips with the reason, it does not fail."""
    conftest = next(
        p
        for p in request.config.pluginmanager.get_plugins()
        if str(getattr(p, "__file__", "")).endswith("tests/conftest.py")
    )
    item = request.node
    item.add_marker(pytest.mark.requires_fashion_mnist)
    monkeypatch.setenv("PICKWISE_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match=r"Fashion-MNIST not found: fashion-mnist: train IDX files") as err:
        conftest.pytest_runtest_setup(item)
    assert str(tmp_path) in str(err.value)
    make_fashion_dir(tmp_path)
    conftest.pytest_runtest_setup(item)  # found: no skip
    assert conftest.fashion_mnist_missing() is None


@pytest.mark.realdata
@pytest.mark.requires_fashion_mnist
def test_real_install():
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
