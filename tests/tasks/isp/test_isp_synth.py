"""isp-synth: ZRR layout read by ZRRDataset, by-photo split, determinism, reuse, and a physically consistent input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pickwise.exceptions import ConfigError, InvalidParameterError
from pickwise.metrics.image import psnr
from pickwise.tasks.isp.raw import ZRRDataset, read_raw_png
from pickwise.tasks.isp.synth import (
    PHOTOS,
    _shading,
    available_photos,
    default_isp_synth_root,
    evaluate_classical_baseline,
    isp_synth_is_complete,
    make_isp_synth,
    read_isp_synth_meta,
    synth_classical_isp,
)
from pickwise.tasks.isp.unprocess import CameraParams, process, unprocess

pytest.importorskip("skimage.data")
pytest.importorskip("sklearn.datasets")
pytest.importorskip("matplotlib")

TINY = {
    "photos": "bundled",
    "crop": 32,
    "train_density": 0.0,
    "test_density": 0.0,
    "min_crops_per_photo": 2,
    "max_side": 160,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_isp_synth(tmp_path_factory.mktemp("isp") / "s0", seed=0, progress=False, **TINY)


def test_layout_is_read_by_zrr_dataset(tiny):
    meta = read_isp_synth_meta(tiny)
    assert meta["counts"] == {"train": 8, "test": 6, "full": 3}
    assert isp_synth_is_complete(tiny)
    for split, n in (("train", 8), ("test", 6), ("full", 3)):
        ds = ZRRDataset(tiny, split)
        assert len(ds) == n
        raw, rgb, name = ds[0]
        assert raw.dtype == torch.float32 and rgb.dtype == torch.float32 and name == "0"
        assert rgb.shape[-2:] == (2 * raw.shape[-2], 2 * raw.shape[-1]) and raw.shape[0] == 4
        if split != "full":
            assert rgb.shape == (3, 32, 32)
        else:
            assert rgb.shape[-2] % 32 == 0 and rgb.shape[-1] % 32 == 0
        assert raw.min() >= 0 and raw.max() <= 1.0 and rgb.min() >= 0 and rgb.max() <= 1
    dn = read_raw_png(tiny / "train" / "huawei_raw" / "0.png")
    assert dn.min() >= 0 and dn.max() <= 1020 and dn.dtype == np.uint16


def test_split_is_by_photo(tiny):
    captures = json.loads((tiny / "captures.json").read_text())
    train = {c["photo"] for c in captures["train"]}
    test = {c["photo"] for c in captures["test"]} | {c["photo"] for c in captures["full"]}
    assert train and test and not train & test
    fixed = {p.key: p.split for p in PHOTOS}
    assert all(fixed[k] == "train" for k in train) and all(fixed[k] == "test" for k in test)
    meta = read_isp_synth_meta(tiny)
    assert {p["key"] for p in meta["photos"]} == train | test
    assert all(abs(s) <= 1.5 for c in captures["train"] for s in c["shift"])


def test_deterministic_reused_and_conflicts(tiny, tmp_path):
    again = make_isp_synth(tmp_path / "a", seed=0, progress=False, **TINY)
    for sub in ("train/huawei_raw/3.png", "test/canon/1.png", "full_resolution/huawei_raw/0.png"):
        assert (again / sub).read_bytes() == (tiny / sub).read_bytes()
    from pickwise.tasks.isp.datasets import split_checksum

    meta = read_isp_synth_meta(again)
    assert meta["sha256"] == read_isp_synth_meta(tiny)["sha256"] and set(meta["sha256"]) == {"train", "test", "full"}
    assert meta["sha256"]["test"] == split_checksum(tiny, "test") != split_checksum(tiny, "train")
    stamp = (again / "meta.json").stat().st_mtime_ns
    assert make_isp_synth(again, seed=0, progress=False, **TINY) == again
    assert (again / "meta.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    with pytest.raises(ConfigError, match="another seed"):
        make_isp_synth(again, seed=1, progress=False, **TINY)
    other = make_isp_synth(tmp_path / "b", seed=1, progress=False, **TINY)
    assert (other / "train/huawei_raw/0.png").read_bytes() != (tiny / "train/huawei_raw/0.png").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    with pytest.raises(InvalidParameterError, match="unknown parameter"):
        make_isp_synth(tmp_path / "c", crops=3)
    with pytest.raises(InvalidParameterError, match="even"):
        make_isp_synth(tmp_path / "c", crop=33)


def _process_scores(root):
    meta = read_isp_synth_meta(root)
    captures = json.loads((root / "captures.json").read_text())["full"]
    cam = meta["camera"]
    ds = ZRRDataset(root, "full")
    scores, wrong, dn_err = [], [], []
    for i, cap in enumerate(captures):
        dn = torch.from_numpy(read_raw_png(ds.raw_paths[i]).astype(np.float64))
        rgb = ds[i][1].double()
        params = CameraParams(
            rgb2cam=tuple(map(tuple, cam["rgb2cam"])),
            red_gain=cap["red_gain"],
            blue_gain=cap["blue_gain"],
            rgb_gain=cap["rgb_gain"],
        )
        dn_err.append((dn - unprocess(rgb, params)).abs().mean().item())  # re-simulate without shift/shading/noise
        scores.append(psnr(process(dn, params), rgb).item())
        wrong.append(psnr(process(dn, CameraParams(rgb_gain=cap["rgb_gain"])), rgb).item())
    return np.array(scores), np.array(wrong), np.array(dn_err)


def test_input_is_the_documented_camera_pipeline(tiny, tmp_path):
    """With shading, shift and (almost all) noise off, processing a RAW with its recorded gains gives the target."""
    clean = make_isp_synth(
        tmp_path / "clean", seed=0, progress=False, **{**TINY, "vignetting": 0.0, "max_shift": 0.0, "iso_range": (1, 1)}
    )
    scores, wrong, dn_err = _process_scores(clean)
    assert dn_err.max() < 1.5  # mean absolute difference in digital numbers (ISO 1 noise and rounding)
    assert scores.min() > 21.0  # Malvar demosaicing of heavily downscaled photos (grace_hopper: 22.5 dB) remains
    assert scores.mean() > wrong.mean() + 1.0  # the phone's own colour matrix and gains matter
    degraded, _, degraded_err = _process_scores(tiny)
    assert degraded_err.min() > 5.0  # default shading, misalignment and ISO noise cost fidelity
    assert degraded.mean() < scores.mean() - 1.0


def test_classical_baseline_runs(tiny):
    isp = synth_classical_isp(tiny)
    raw, _, _ = ZRRDataset(tiny, "test")[0]
    assert isp(raw[None]).shape == (1, 3, 32, 32)
    scores = evaluate_classical_baseline(tiny, "test")
    assert scores["count"] == 6 and 10 < scores["psnr"] < 40 and 0 < scores["ssim"] < 1
    assert scores["color_invariant_psnr"] >= scores["psnr"] - 1e-6


def test_shading_and_roots(monkeypatch, tmp_path):
    s = _shading(100, 200, 0.3)
    assert s.max() == pytest.approx(1.0, abs=1e-3) and s.min() == pytest.approx(0.7, abs=0.01)
    monkeypatch.setenv("PICKWISE_DATA_DIR", str(tmp_path))
    assert default_isp_synth_root() == tmp_path / "isp-synth"
    assert all(p.package != "opencv-doc" for p in available_photos("bundled"))
    assert len(available_photos("auto", opencv_dir=tmp_path)) == 7
    with pytest.raises(InvalidParameterError):
        available_photos("some")


def test_load_isp_dataset(tiny, tmp_path, monkeypatch):
    from pickwise.exceptions import DataNotFoundError, UnknownNameError
    from pickwise.tasks.isp.datasets import isp_synth_root_for_seed, load_isp_dataset

    ds = load_isp_dataset("isp-synth", tiny, "test", crop=16, synth_params=TINY, progress=False)
    assert len(ds) == 6 and ds[0][1].shape == (3, 16, 16)
    monkeypatch.delenv("PICKWISE_ZRR_DIR", raising=False)
    with pytest.raises(DataNotFoundError, match="PICKWISE_ZRR_DIR"):
        load_isp_dataset("zrr")
    monkeypatch.setenv("PICKWISE_ZRR_DIR", str(tiny))  # any folder in ZRR layout
    assert len(load_isp_dataset("zrr", split="test", exclude=["0", "1"])) == 4
    with pytest.raises(UnknownNameError):
        load_isp_dataset("sidd")
    assert isp_synth_root_for_seed(1, tmp_path / "isp-synth") == tmp_path / "isp-synth-seed1"


def test_example_figure(tiny, tmp_path):
    from pickwise.tasks.isp.synth import plot_isp_synth_examples

    path = plot_isp_synth_examples(tiny, tmp_path / "fig.png", indices=(0,), full=0)
    assert path.is_file() and 1000 < path.stat().st_size < 300_000
