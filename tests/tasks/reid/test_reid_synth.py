"""The embedded ``reid-synth`` benchmark: MARS layout round trip, protocol invariants, determinism, reuse, errors."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from pickwise.exceptions import DataFormatError, InvalidParameterError
from pickwise.tasks.reid.datasets import load_reid_dataset
from pickwise.tasks.reid.synth import (
    DEFAULT_PARAMS,
    default_reid_synth_root,
    make_reid_synth,
    reid_synth_is_complete,
)

pytest.importorskip("skimage")
scipy_io = pytest.importorskip("scipy.io")
Image = pytest.importorskip("PIL.Image")

TINY = {
    "num_train_ids": 4,
    "num_test_ids": 5,
    "num_distractors": 3,
    "num_junk": 2,
    "num_cameras": 4,
    "tracklets_per_id": (3, 4),
    "seq_len_range": (3, 5),
    "size": (48, 24),
}


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "meta.json"  # meta.json records the generation time
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_reid_synth(tmp_path_factory.mktemp("synth") / "reid-synth", seed=3, progress=False, **TINY)


def test_mars_layout_round_trip(tiny):
    info = tiny / "info"
    for name in ("train_name.txt", "test_name.txt", "tracks_train_info.mat", "tracks_test_info.mat", "query_IDX.mat"):
        assert (info / name).is_file()
    test_table = scipy_io.loadmat(info / "tracks_test_info.mat")["track_test_info"]
    query_idx = scipy_io.loadmat(info / "query_IDX.mat")["query_IDX"]
    assert test_table.dtype == np.int32 and test_table.shape[1] == 4 and query_idx.dtype == np.uint16
    names = (info / "test_name.txt").read_text().split()
    assert len(names) == test_table[:, 1].max()
    assert (test_table[1:, 0] == test_table[:-1, 1] + 1).all()  # contiguous rows, as in MARS
    for start, end, pid, cam in test_table.tolist():
        folder = "00-1" if pid == -1 else f"{pid:04d}"
        for name in names[start - 1 : end]:
            assert name[:4] == folder and name[5] == str(cam) and name[4] == "C" and name[6] == "T"
            assert (tiny / "bbox_test" / folder / name).is_file()
    ds = load_reid_dataset("mars", tiny)
    meta = json.loads((tiny / "meta.json").read_text())
    assert ds.num_train_pids == TINY["num_train_ids"] == meta["counts"]["train"]["ids"]
    assert len(ds.train) == meta["counts"]["train"]["tracklets"]
    assert len(ds.query) == meta["counts"]["query_tracklets"] == query_idx.size
    # torchreid gallery: test rows minus queries minus junk
    assert len(ds.gallery) == meta["counts"]["test"]["tracklets"] - len(ds.query) - TINY["num_junk"]
    assert sum(t.pid == 0 for t in ds.gallery) == TINY["num_distractors"]
    with Image.open(ds.train[0].img_paths[0]) as img:
        assert img.size == (TINY["size"][1], TINY["size"][0]) and img.format == "JPEG"
    assert all(TINY["seq_len_range"][0] <= len(t) <= TINY["seq_len_range"][1] for t in ds.train + ds.gallery)
    assert load_reid_dataset("reid-synth", tiny).query == ds.query  # the reid-synth name reads it unchanged


def test_protocol_invariants(tiny):
    ds = load_reid_dataset("mars", tiny, query_in_gallery=True)
    raw_test = scipy_io.loadmat(tiny / "info/tracks_test_info.mat")["track_test_info"]
    train_pids = set(scipy_io.loadmat(tiny / "info/tracks_train_info.mat")["track_train_info"][:, 2].tolist())
    test_pids = {p for p in raw_test[:, 2].tolist() if p > 0}
    assert not train_pids & test_pids  # disjoint identities
    assert all(p % 2 == 1 for p in train_pids) and all(p % 2 == 0 for p in test_pids)
    # one query per (identity, camera) pair, none of them distractor or junk
    pairs = [(t.pid, t.camid) for t in ds.query]
    assert len(pairs) == len(set(pairs)) and all(p > 0 for p, _ in pairs)
    assert set(pairs) == {(pid, cam - 1) for pid, cam in raw_test[:, 2:].tolist() if pid > 0}
    # every identity is seen by at least two cameras, in train and in test
    for tracks in (ds.train, [t for t in ds.gallery if t.pid > 0]):
        cams: dict[int, set[int]] = {}
        for t in tracks:
            cams.setdefault(t.pid, set()).add(t.camid)
        assert all(len(c) >= 2 for c in cams.values())


def test_same_seed_identical_bytes_other_seed_differs(tmp_path, tiny):
    again = make_reid_synth(tmp_path / "again", seed=3, progress=False, **TINY)
    h_tiny = _hashes(tiny)
    assert _hashes(again) == h_tiny
    other = make_reid_synth(tmp_path / "other", seed=4, progress=False, **TINY)
    h_other = _hashes(other)
    frames = [k for k in h_other if k.endswith(".jpg") and k in h_tiny]
    assert frames and sum(h_other[k] != h_tiny[k] for k in frames) > 0.9 * len(frames)


def test_reuse_regenerate_and_refuse(tmp_path):
    root = make_reid_synth(tmp_path / "s", seed=0, progress=False, **TINY)
    stamp = (root / "manifest.json").stat().st_mtime_ns
    first = next((root / "bbox_train").rglob("*.jpg"))
    first.write_bytes(b"marker")  # a reuse must not rewrite anything
    assert make_reid_synth(root, seed=0, progress=False, **TINY) == root
    assert first.read_bytes() == b"marker" and (root / "manifest.json").stat().st_mtime_ns == stamp
    assert reid_synth_is_complete(root)
    # other parameters: the folder is replaced
    make_reid_synth(root, seed=0, progress=False, **{**TINY, "num_junk": 0})
    assert (
        not (root / "bbox_test" / "00-1").exists()
        and json.loads((root / "manifest.json").read_text())["params"]["num_junk"] == 0
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp or old folders left behind
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(DataFormatError, match="not a reid-synth folder"):
        make_reid_synth(foreign, progress=False, **TINY)
    assert (foreign / "holiday.jpg").exists()


def test_loader_never_replaces_a_folder_of_another_generator_version(tmp_path):
    import shutil

    root = tmp_path / "s"
    shutil.copytree(make_reid_synth(tmp_path / "orig", seed=0, progress=False, **TINY), root)
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "version": -1}))
    before = sorted(p.name for p in root.rglob("*"))
    with pytest.raises(DataFormatError, match="generator version"):
        load_reid_dataset("reid-synth", root)
    assert sorted(p.name for p in root.rglob("*")) == before


def test_strength_zero_is_cleaner(tmp_path):
    small = {**TINY, "num_train_ids": 2, "num_test_ids": 2, "num_distractors": 0, "num_junk": 0}
    clean = load_reid_dataset("mars", make_reid_synth(tmp_path / "a", progress=False, strength=0.0, **small))
    noisy = load_reid_dataset("mars", make_reid_synth(tmp_path / "b", progress=False, **small))

    def frame_jitter(ds):  # mean absolute difference between consecutive frames of a tracklet
        diffs = []
        for t in ds.train:
            arrs = [np.asarray(Image.open(p), dtype=np.float64) for p in t.img_paths]
            diffs += [np.abs(a - b).mean() for a, b in itertools.pairwise(arrs)]
        return float(np.mean(diffs))

    assert frame_jitter(clean) < frame_jitter(noisy)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"num_ids": 3}, "unknown parameter"),
        ({"num_cameras": 1}, "num_cameras"),
        ({"num_cameras": 10}, "num_cameras"),
        ({"tracklets_per_id": (1, 3)}, "tracklets_per_id"),
        ({"size": (8, 8)}, "size"),
        ({"strength": -1}, "strength"),
        ({"seed": -2}, "seed"),
    ],
)
def test_bad_parameters(tmp_path, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        make_reid_synth(tmp_path / "x", progress=False, **params)
    assert not (tmp_path / "x").exists()


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("PICKWISE_DATA_DIR", str(tmp_path))
    assert default_reid_synth_root() == tmp_path / "reid-synth"
    monkeypatch.delenv("PICKWISE_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_reid_synth_root() == tmp_path / "cache" / "pickwise" / "reid-synth"
    assert DEFAULT_PARAMS["num_cameras"] == 6


def test_contact_sheet(tiny, tmp_path):
    from pickwise.tasks.reid.synth_calibrate import contact_sheet

    out = contact_sheet(tiny, tmp_path / "sheet.png", frames=3)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width == 34 + 3 * TINY["size"][1]


@pytest.mark.slow
def test_default_benchmark_difficulty(tmp_path):
    """The calibration of docs/reid_data.md: ImageNet MobileNetV2 features reach 20-70 % rank-1 (minutes on CPU)."""
    from pickwise.tasks.reid.synth import calibrate_reid_synth

    root = make_reid_synth(tmp_path / "reid-synth", seed=0, progress=False)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["counts"]["test"]["ids"] == DEFAULT_PARAMS["num_test_ids"]
    result = calibrate_reid_synth(root)
    assert 20.0 <= result["rank1"] <= 70.0, result
    assert result["mAP"] > 5.0, result


def test_loader_generates_default_on_first_use(monkeypatch, tmp_path):
    import pickwise.tasks.reid.synth as synth

    for key, value in TINY.items():  # keep the "default" benchmark tiny for the test
        monkeypatch.setitem(synth.DEFAULT_PARAMS, key, value)
    monkeypatch.setenv("PICKWISE_DATA_DIR", str(tmp_path))
    ds = load_reid_dataset("reid-synth")
    assert ds.root == tmp_path / "reid-synth" and reid_synth_is_complete(ds.root)
    assert ds.num_train_pids == TINY["num_train_ids"]
    manifest = json.loads((ds.root / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["params"]["size"] == list(TINY["size"])
