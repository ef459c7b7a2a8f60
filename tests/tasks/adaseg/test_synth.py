"""The embedded benchmark: layout, determinism, reuse, exact labels, held-out photos, the loader, the gap helper.

Uses scikit-learn's digits as the item set (always installed with pickwise[data]) so it runs without Fashion-MNIST.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("skimage")
pytest.importorskip("PIL")

from pickwise.exceptions import InvalidParameterError
from pickwise.tasks.adaseg import synth as S
from pickwise.tasks.adaseg.datasets import load_seg_domain

TINY = {"n_source_train": 8, "n_source_test": 4, "n_target_train": 8, "n_target_test": 4, "items": "digits"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return S.make_adaseg_synth(tmp_path_factory.mktemp("synth") / "bench", seed=3, progress=False, **TINY)


def test_layout_manifest_and_held_out_photos(bench):
    manifest = json.loads((bench / "manifest.json").read_text())
    assert manifest["complete"] and manifest["params"]["items"] == "digits" and manifest["params"]["seed"] == 3
    assert manifest["class_names"] == ["background", *[str(i) for i in range(10)]]
    for domain in ("source", "target"):
        for split, n in (("train", 8), ("test", 4)):
            assert len(list((bench / domain / split / "images").glob("*.png"))) == n
            assert len(list((bench / domain / split / "labels").glob("*.png"))) == n
    assert not set(manifest["train_photos"]) & set(manifest["test_photos"])
    assert not list(bench.parent.glob(".bench.*")), "temporary folders left behind"


def test_fingerprint_hashes_each_split_in_scene_order(bench, tmp_path):
    import hashlib

    fp = S.synth_fingerprint(bench)
    assert fp["params"]["seed"] == 3 and fp["generated_with"]["torch"] == torch.__version__
    assert set(fp["content_sha256"]) == {"source/train", "source/test", "target/train", "target/test"}
    for split, hexdigest in fp["content_sha256"].items():
        folder = bench / split
        reference = hashlib.sha256()
        for image in sorted((folder / "images").glob("*.png")):
            reference.update(image.read_bytes())
            reference.update((folder / "labels" / image.name).read_bytes())
        assert hexdigest == reference.hexdigest(), split
    again = S.make_adaseg_synth(tmp_path / "same", seed=3, progress=False, **TINY)
    assert S.synth_fingerprint(again)["content_sha256"] == fp["content_sha256"]
    assert S.synth_fingerprint(tmp_path / "empty") is None


def test_deterministic_and_reused(bench, tmp_path):
    again = S.make_adaseg_synth(tmp_path / "again", seed=3, progress=False, **TINY)
    for path in sorted(bench.rglob("*.png")):
        assert path.read_bytes() == (again / path.relative_to(bench)).read_bytes(), path
    stamp = (again / "manifest.json").stat().st_mtime_ns
    assert S.make_adaseg_synth(again, seed=3, progress=False, **TINY) == again
    assert (again / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    other = S.make_adaseg_synth(again, seed=4, progress=False, **TINY)  # other params: regenerated in place
    assert json.loads((other / "manifest.json").read_text())["params"]["seed"] == 4
    differs = any(
        p.read_bytes() != (other / p.relative_to(bench)).read_bytes() for p in sorted(bench.rglob("images/*.png"))
    )
    assert differs
    assert S.synth_fingerprint(again)["content_sha256"] != S.synth_fingerprint(bench)["content_sha256"]
    with pytest.raises(InvalidParameterError, match="unknown parameter"):
        S.make_adaseg_synth(tmp_path / "x", n_scenes=3)
    with pytest.raises(InvalidParameterError, match="items"):
        S.make_adaseg_synth(tmp_path / "x", items="cifar")


def test_labels_are_exact_item_masks():
    """One item on a known background: the label is exactly the thresholded resized glyph, painted with its class."""
    glyph = np.zeros((8, 8), np.float32)
    glyph[2:6, 3:5] = 1.0
    params = S.SynthParams(size=20, source_items=(1, 1), source_scale=(8, 8), target_scale=(8, 8)).validate()
    image, label = S.make_scene(np.random.default_rng(0), "source", glyph[None], np.array([6]), params)
    ys, xs = np.nonzero(label)
    assert set(label[label > 0].tolist()) == {7}
    top, left = ys.min() - 2, xs.min() - 3  # where the 8x8 glyph was placed
    expected = np.zeros((20, 20), np.uint8)
    expected[top : top + 8, left : left + 8][glyph > S.MASK_THRESHOLD] = 7
    np.testing.assert_array_equal(label, expected)
    # item pixels (alpha 1, grey >= 0.7) are brighter than any background pixel (level <= 0.3, noise 0.02)
    assert image[label > 0].min() > image[label == 0].max()


def test_source_items_brighter_and_paint_order(bench):
    ds = load_seg_domain("synth-source", bench, "train")
    img, lbl = ds.load_pair(0)
    grey = img.mean(2)
    assert grey[lbl > 0].mean() > grey[lbl == 0].mean() + 60
    # two overlapping items: the later one owns the overlap
    glyphs = np.ones((2, 4, 4), np.float32)
    params = S.SynthParams(size=16, source_items=(2, 2), source_scale=(16, 16), target_scale=(8, 8)).validate()
    _, label = S.make_scene(np.random.default_rng(1), "source", glyphs, np.array([2, 5]), params)
    assert (label == 6).all()  # the second item covers the canvas and the first


def test_loader_items_and_errors(bench):
    for name, split in (("synth-source", "train"), ("synth-target", "test")):
        ds = load_seg_domain(name, bench, split)
        x, y, i = ds[1]
        assert ds.num_classes == 11 and x.shape == (3, 64, 64) and y.shape == (64, 64) and i == 1
        assert y.dtype == torch.int64 and int(y.max()) < 11
        assert torch.equal(ds.label(1), y)
    with pytest.raises(InvalidParameterError, match="11 classes"):
        load_seg_domain("synth-target", bench, "train", num_classes=19)
    with pytest.raises(InvalidParameterError, match="split"):
        load_seg_domain("synth-target", bench, "val")


def test_measure_domain_gap_smoke(bench):
    out = S.measure_domain_gap(bench, seeds=(0,), epochs=1, batch_size=4, log=False)
    assert set(out) == {"source_only", "target_supervised"}
    row = out["source_only"][0]
    assert 0.0 <= row["target_miou"] <= 1.0 and 0.0 <= row["source_miou"] <= 1.0


@pytest.mark.slow
def test_domain_gap_is_large(tmp_path):
    """Source-only training transfers poorly to the target; target supervision does much better (several minutes)."""
    root = S.make_adaseg_synth(tmp_path / "full", progress=False)
    out = S.measure_domain_gap(root, seeds=(0,), epochs=10, log=False)
    source_only = out["source_only"][0]["target_miou"]
    supervised = out["target_supervised"][0]["target_miou"]
    assert source_only < 0.5 * supervised, out
