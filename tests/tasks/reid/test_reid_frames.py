"""Frame sampling policies (hand-computed cases and torchreid's 'evenly' formula) and the clip dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pickwise.exceptions import DataFormatError, InvalidParameterError
from pickwise.tasks.reid.datasets import Tracklet
from pickwise.tasks.reid.frames import VideoClipDataset, random_erase, sample_frames

Image = pytest.importorskip("PIL.Image")


def _torchreid_evenly(num_imgs: int, seq_len: int) -> list[int]:
    """torchreid ``VideoDataset.__getitem__``, ``sample_method == 'evenly'`` (float arange on purpose)."""
    if num_imgs >= seq_len:
        num_imgs -= num_imgs % seq_len
        indices = np.arange(0, num_imgs, num_imgs / seq_len)
    else:
        indices = np.arange(0, num_imgs)
        num_pads = seq_len - num_imgs
        indices = np.concatenate([indices, np.ones(num_pads).astype(np.int32) * (num_imgs - 1)])
    assert len(indices) == seq_len
    return [int(i) for i in indices]


def test_evenly_hand_cases_and_torchreid():
    assert sample_frames(20, 8, "evenly") == [0, 2, 4, 6, 8, 10, 12, 14]
    assert sample_frames(8, 8, "evenly") == list(range(8))
    assert sample_frames(9, 4, "evenly") == [0, 2, 4, 6]
    assert sample_frames(2, 5, "evenly") == [0, 1, 1, 1, 1]
    for n in range(1, 40):
        for t in (1, 4, 8, 15):
            assert sample_frames(n, t, "evenly") == _torchreid_evenly(n, t), (n, t)


def test_all_policy_ignores_seq_len():
    assert sample_frames(5, 8, "all") == [0, 1, 2, 3, 4]


def test_restricted_random_one_per_chunk():
    g = torch.Generator().manual_seed(0)
    # n = 10, T = 4: chunks [0,2) [2,5) [5,7) [7,10)
    bounds = [(0, 2), (2, 5), (5, 7), (7, 10)]
    seen = [set() for _ in bounds]
    for _ in range(300):
        idx = sample_frames(10, 4, "restricted_random", g)
        assert len(idx) == 4
        for k, (lo, hi) in enumerate(bounds):
            assert lo <= idx[k] < hi
            seen[k].add(idx[k])
    assert seen == [set(range(lo, hi)) for lo, hi in bounds]  # every frame of every chunk is reachable
    assert sample_frames(3, 6, "restricted_random", g) == [0, 0, 1, 1, 2, 2]
    assert sample_frames(3, 4, "restricted_random", g) == [0, 0, 1, 2]  # floor(k*3/4), k = 0..3


def test_random_policy():
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        idx = sample_frames(12, 5, "random", g)
        assert idx == sorted(idx) and len(set(idx)) == 5 and all(0 <= i < 12 for i in idx)
    short = sample_frames(3, 7, "random", g)  # with replacement when too short
    assert len(short) == 7 and short == sorted(short) and set(short) <= {0, 1, 2}
    a = sample_frames(30, 8, "random", torch.Generator().manual_seed(5))
    b = sample_frames(30, 8, "random", torch.Generator().manual_seed(5))
    assert a == b


@pytest.mark.parametrize(
    ("args", "match"), [((0, 4, "evenly"), "num_frames"), ((4, 0, "evenly"), "seq_len"), ((4, 4, "dense"), "policy")]
)
def test_sample_frames_rejects_bad_input(args, match):
    with pytest.raises(InvalidParameterError, match=match):
        sample_frames(*args)


def _tracklet(folder: Path, colours, pid=3, camid=2) -> Tracklet:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, colour in enumerate(colours):
        img = np.zeros((16, 8, 3), dtype=np.uint8)
        img[:, :4] = colour  # left half coloured, right half black: shows flips
        path = folder / f"{i}.png"
        Image.fromarray(img).save(path)
        paths.append(str(path))
    return Tracklet(tuple(paths), pid, camid)


def test_clip_dataset_normalization_and_order(tmp_path):
    colours = [(10, 20, 30), (100, 150, 200), (255, 0, 128)]
    track = _tracklet(tmp_path / "t", colours)
    ds = VideoClipDataset([track], 5, "evenly", None, size=(16, 8))
    clip, pid, camid = ds[0]
    assert clip.shape == (5, 3, 16, 8) and clip.dtype == torch.float32 and (pid, camid) == (3, 2)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for t, frame in enumerate([0, 1, 2, 2, 2]):
        expected = (np.array(colours[frame]) / 255.0 - mean) / std
        np.testing.assert_allclose(clip[t, :, 5, 1].numpy(), expected, atol=1e-5)
        np.testing.assert_allclose(clip[t, :, 5, 6].numpy(), -mean / std, atol=1e-5)
    assert ds.pids == [3] and ds.camids == [2] and len(ds) == 1


def test_clip_dataset_resize_flip_and_erasing(tmp_path):
    track = _tracklet(tmp_path / "t", [(200, 200, 200)] * 4)
    ds = VideoClipDataset([track], 4, "evenly", "train", size=(32, 16), hflip_p=1.0, erasing_p=0.0)
    clip, _, _ = ds[0]
    assert clip.shape == (4, 3, 32, 16)
    assert (clip[:, 0, :, -2] > 1).all() and (clip[:, 0, :, 1] < 0).all()  # the coloured half moved right
    ds = VideoClipDataset([track], 4, "evenly", "test", size=(32, 16))
    assert ds.hflip_p == 0 and ds.erasing_p == 0
    ds = VideoClipDataset(
        [track],
        4,
        "evenly",
        "train",
        size=(32, 16),
        hflip_p=0.0,
        erasing_p=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    clip, _, _ = ds[0]
    erased = (clip == 0).all(1)  # fill value 0 in every channel
    assert all(erased[t].any() for t in range(4))
    ds = VideoClipDataset([track], 2, "evenly", lambda c: c * 0 + 7, size=(8, 4))
    assert (ds[0][0] == 7).all()


def test_random_erase_area_bounds():
    g = torch.Generator().manual_seed(3)
    for _ in range(50):
        img = torch.ones(3, 64, 32)
        random_erase(img, g, area=(0.1, 0.2))
        frac = float((img == 0).all(0).float().mean())
        assert 0.07 <= frac <= 0.25


def test_clip_dataset_errors(tmp_path):
    with pytest.raises(InvalidParameterError, match="policy"):
        VideoClipDataset([], 4, "sparse", None)
    with pytest.raises(InvalidParameterError, match="transform"):
        VideoClipDataset([], 4, "evenly", "augment")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    ds = VideoClipDataset([Tracklet((str(bad),), 0, 0)], 1, "evenly", None, size=(8, 4))
    with pytest.raises(DataFormatError, match="cannot read frame"):
        ds[0]
