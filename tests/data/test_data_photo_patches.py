"""The photo-patches dataset: real photo crops with disjoint train/test regions."""

import numpy as np
import pytest
import torch

from pickwise.data import create_dataset, get_dataset_info, list_datasets
from pickwise.data import photo_patches as pp

pytest.importorskip("skimage.data")
pytest.importorskip("sklearn.datasets")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def splits():
    return create_dataset("photo-patches", "train"), create_dataset("photo-patches", "test")


def test_info_shapes_and_names(splits):
    train, test = splits
    info = get_dataset_info("photo-patches")
    assert "photo-patches" in list_datasets()
    assert train.info == info == pp.PHOTO_PATCHES_INFO
    assert info.num_classes == len(info.class_names) == 11
    assert len(set(info.class_names)) == 11
    assert {"cat", "coffee cup", "temple", "flower", "galaxies", "retina", "coins"} <= set(info.class_names)
    assert tuple(train.images.shape) == (1980, 3, 32, 32)
    assert tuple(test.images.shape) == (660, 3, 32, 32)
    assert train.images.dtype == torch.uint8
    assert (len(train), len(test)) == (info.num_train, info.num_test)
    assert "CC BY 2.0" in info.license
    assert "china.jpg" in info.source
    assert get_dataset_info("photos") == info


def test_class_balance(splits):
    train, test = splits
    assert np.bincount(train.targets.numpy()).tolist() == [pp.TRAIN_PER_CLASS] * 11
    assert np.bincount(test.targets.numpy()).tolist() == [pp.TEST_PER_CLASS] * 11
    assert torch.equal(train.source_indices, torch.arange(len(train)))


def test_deterministic(splits):
    train, test = splits
    pp._build.cache_clear()
    again_train, again_test = create_dataset("photo-patches", "train", seed=7), create_dataset("photo-patches", "test")
    assert torch.equal(train.images, again_train.images)
    assert torch.equal(test.images, again_test.images)
    assert torch.equal(train.targets, again_train.targets)


def _mask(shape, boxes, idx):
    mask = np.zeros(shape, dtype=bool)
    for i in idx:
        t, left, s = int(boxes.top[i]), int(boxes.left[i]), int(boxes.side[i])
        mask[t : t + s, left : left + s] = True
    return mask


def test_train_and_test_regions_disjoint(splits):
    train_boxes, test_boxes = pp.crop_boxes("train"), pp.crop_boxes("test")
    for k, photo in enumerate(pp.PHOTOS):
        shape = photo.shape[:2]
        tr = np.flatnonzero(train_boxes.photo == k)
        te = np.flatnonzero(test_boxes.photo == k)
        assert len(tr) == pp.TRAIN_PER_CLASS and len(te) == pp.TEST_PER_CLASS
        train_pixels, test_pixels = _mask(shape, train_boxes, tr), _mask(shape, test_boxes, te)
        assert not (train_pixels & test_pixels).any(), photo.class_name
        for split, boxes, idx in (("train", train_boxes, tr), ("test", test_boxes, te)):
            r0, r1, c0, c1 = pp.split_region(photo, split)
            assert np.all(boxes.top[idx] >= r0) and np.all(boxes.top[idx] + boxes.side[idx] <= r1)
            assert np.all(boxes.left[idx] >= c0) and np.all(boxes.left[idx] + boxes.side[idx] <= c1)
            assert boxes.side[idx].min() >= pp.PATCH
        # the two regions tile the content box: 70 % / 30 % of its longer side
        a, b = pp.split_region(photo, "train"), pp.split_region(photo, "test")
        area = lambda r: (r[1] - r[0]) * (r[3] - r[2])  # noqa: E731
        assert abs(area(a) / (area(a) + area(b)) - pp.TRAIN_FRACTION) < 0.01


def test_pixels_match_the_photo_up_to_jitter(splits):
    """Each crop is the photo region resized (Pillow as the independent reference) up to a brightness/contrast map."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    sample = {
        name.rsplit("/", 1)[-1]: im for name, im in zip(load_sample_images().filenames, load_sample_images().images)
    }
    train, test = splits
    for ds, split in ((train, "train"), (test, "test")):
        boxes = pp.crop_boxes(split)
        for i in range(0, len(ds), 97):
            photo = pp.PHOTOS[int(boxes.photo[i])]
            assert int(ds.targets[i]) == int(boxes.photo[i])
            source = getattr(data, photo.loader)() if photo.package == "skimage" else sample[photo.loader]
            t, left, s = int(boxes.top[i]), int(boxes.left[i]), int(boxes.side[i])
            crop = Image.fromarray(np.asarray(source)[t : t + s, left : left + s]).convert("RGB")
            ref = np.asarray(crop.resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float64)
            if boxes.flip[i]:
                ref = ref[:, ::-1]
            got = ds.images[i].permute(1, 2, 0).numpy().astype(np.float64)
            keep = (got.ravel() > 0) & (got.ravel() < 255)  # clipped pixels do not follow the affine map
            assert keep.mean() > 0.5
            design = np.stack([ref.ravel(), np.ones(ref.size)], axis=1)[keep]
            coef, *_ = np.linalg.lstsq(design, got.ravel()[keep], rcond=None)
            rms = np.sqrt(np.mean((design @ coef - got.ravel()[keep]) ** 2))
            assert 0.7 <= coef[0] <= 1.3, (split, i, coef)
            assert rms < 4.0, (split, i, rms)


def test_not_trivial_for_raw_pixels(splits):
    """1-NN on raw pixels is far from perfect (measured 0.462) but well above chance (1/11)."""
    train, test = splits
    x = train.images.reshape(len(train), -1).double()
    y = test.images.reshape(len(test), -1).double()
    nearest = torch.cdist(y, x).argmin(dim=1)
    acc = float((train.targets[nearest] == test.targets).double().mean())
    assert 0.3 < acc < 0.7
