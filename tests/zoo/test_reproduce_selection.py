"""``pickwise reproduce selection`` end to end on a tiny zoo, and its statistics against independent references."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from itertools import product

import numpy as np
import pytest
from scipy.stats import weightedtau

from pickwise.reproduce import selection as rs
from pickwise.zoo import ZooEntry, build_zoo
from pickwise.zoo import build as zoo_build

TINY = (
    ZooEntry("tiny-a", "resnet8", "bn", None, {"width": 4}, untrained=True, seed=0),
    ZooEntry("tiny-b", "resnet8", "gn", None, {"width": 8}, untrained=True, seed=1),
    ZooEntry("tiny-c", "resnet8", "bn", None, {"width": 4}, untrained=True, seed=2),
)


def _args(zoo_root, out, **over):
    p = argparse.ArgumentParser()
    rs.add_arguments(p)
    argv = [
        "--zoo-root", str(zoo_root), "--no-build", "--targets", "digits", "--encoder", "hashing:16",
        "--score-subset", "100", "--finetune-subset", "64", "--test-subset", "64", "--seeds", "2",
        "--bootstrap", "6", "--metrics", "emms,logme,gbc", "--output-dir", str(out), "--no-progress",
    ]  # fmt: skip
    args = p.parse_args(argv)
    for k, v in over.items():
        setattr(args, k, v)
    return args


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    build_zoo(root, TINY, progress=False)
    # a candidate "trained on digits" (stubbed training): it must be left out of the digits target
    orig = zoo_build._train_entry

    def fake(entry, root, **kwargs):
        model = zoo_build._static_entry(replace(entry, untrained=True))[0]
        return model, {"source_test_acc": 0.9, "num_classes": 10, "in_chans": 1, "chance": 0.1}

    zoo_build._train_entry = fake
    try:
        build_zoo(root, (ZooEntry("tiny-on-digits", "resnet8", "bn", "digits", {"width": 4}),), progress=False)
    finally:
        zoo_build._train_entry = orig
    return root


@pytest.fixture(scope="module")
def tiny_run(tiny_zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert rs.run(_args(tiny_zoo, out)) == 0
    return out, json.loads((out / "results.json").read_text())


def test_outputs_structure(tiny_run):
    out, res = tiny_run
    assert (out / "results.md").is_file() and (out / "selection.png").is_file()
    cands = ["zoo:tiny-a", "zoo:tiny-b", "zoo:tiny-c"]
    assert res["candidates_per_target"] == {"digits": cands}
    assert res["excluded_trained_on_target"] == {"digits": ["zoo:tiny-on-digits"]}
    for c in cands:
        assert len(res["accuracy_by_seed"]["digits"][c]) == 2
        assert res["accuracy"]["digits"][c] == pytest.approx(np.mean(res["accuracy_by_seed"]["digits"][c]))
    for m in ("emms", "logme", "gbc", "emms_shuffled_names", "emms_one_hot"):
        assert set(res["weighted_tau"][m]) == {"digits"}
        assert res["interval_kind"][m] == ("seeds" if m == "gbc" else "images+seeds")
    # N >= 5 k: 100 scored images -> at most 20 dims after PCA
    for c in cands:
        full, reduced = res["dims"]["digits"][c]
        assert reduced == min(full, 20)
    assert len(res["ceiling"]["digits"]["pairs"]) == 1
    d = res["emms_minus_logme"]
    assert set(d) == {"mean", "interval", "p_positive", "per_target"}
    assert set(res["ablation"]) == {"emms", "emms_shuffled_names", "emms_one_hot"}
    names = res["shuffled_names"]["digits"]
    assert sorted(names) == [str(i) for i in range(10)] and all(n != str(i) for i, n in enumerate(names))
    md = (out / "results.md").read_text()
    assert "seed-to-seed ceiling" in md and "τw(EMMS) − τw(LogME)" in md and "emms_one_hot" in md


def test_point_tau_matches_scipy(tiny_run):
    _, res = tiny_run
    acc = res["accuracy"]["digits"]
    for m in ("emms", "logme"):
        sc = res["scores"]["digits"][m]
        names = sorted(sc)
        ref = weightedtau([sc[c] for c in names], [acc[c] for c in names])[0]
        assert res["weighted_tau"][m]["digits"] == pytest.approx(ref, abs=1e-12)


def test_resume_does_not_recompute(tiny_zoo, tiny_run, monkeypatch):
    out, res = tiny_run

    def boom(*a, **k):
        raise AssertionError("recomputed a finished piece")

    monkeypatch.setattr("pickwise.selection.finetune.finetune", boom)
    monkeypatch.setattr("pickwise.selection.features.extract_features", boom)
    monkeypatch.setattr(rs, "paired_bootstrap", boom)
    assert rs.run(_args(tiny_zoo, out)) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["weighted_tau"] == res["weighted_tau"] and again["accuracy_by_seed"] == res["accuracy_by_seed"]


def test_paired_bootstrap_hand_made():
    """Perfect vs reversed metric: τw +1 and -1 in every replicate, so the paired difference is exactly 2."""
    rng = np.random.default_rng(0)
    feats = {c: rng.normal(size=(30, 4)) + i for i, c in enumerate("abcd")}  # candidate i has feature mean ~ i
    acc = {"a": [0.1, 0.12, 0.11], "b": [0.3, 0.31, 0.29], "c": [0.5, 0.52, 0.5], "d": [0.9, 0.88, 0.91]}
    y = np.arange(30) % 3
    fns = {"good": lambda x, y: x.mean(), "bad": lambda x, y: -x.mean()}
    reps = rs.paired_bootstrap(feats, y, acc, fns, replicates=25, seed=3)
    assert np.allclose(reps["good"], 1.0) and np.allclose(reps["bad"], -1.0)
    assert np.allclose(np.array(reps["good"]) - np.array(reps["bad"]), 2.0)


def test_paired_bootstrap_resamples_seeds_consistently():
    """Constant scores: each replicate's τw must be one of the τw values of a seed multiset (scipy reference)."""
    feats = {c: np.full((10, 2), float(i)) for i, c in enumerate("xyz")}
    acc = {"x": [0.1, 0.9], "y": [0.5, 0.5], "z": [0.9, 0.1]}  # the two seeds disagree completely
    scores = [0.0, 1.0, 2.0]
    allowed = set()
    for draw in product(range(2), repeat=2):
        mean = [np.mean([acc[c][s] for s in draw]) for c in "xyz"]
        if np.ptp(mean) > 0:
            allowed.add(round(weightedtau(scores, mean)[0], 9))
    reps = rs.paired_bootstrap(feats, np.zeros(10), acc, {"m": lambda x, y: x[0, 0]}, replicates=40, seed=1)
    got = {round(v, 9) for v in reps["m"] if np.isfinite(v)}
    assert got <= allowed and len(got) == 2  # both seed orders were drawn
    assert any(np.isnan(reps["m"]))  # the (0, 1) draws tie every accuracy: τw undefined, reported as NaN


def test_seed_ceiling_matches_scipy():
    acc = {"a": [0.1, 0.2, 0.3], "b": [0.4, 0.1, 0.5], "c": [0.7, 0.6, 0.2], "d": [0.2, 0.9, 0.8]}
    names = sorted(acc)
    ref = [weightedtau([acc[c][i] for c in names], [acc[c][j] for c in names])[0] for i, j in ((0, 1), (0, 2), (1, 2))]
    got = rs.seed_ceiling(acc)
    np.testing.assert_allclose(got["pairs"], ref, atol=1e-12)
    assert got["mean"] == pytest.approx(np.mean(ref))


def test_pca_reduce_against_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8)) @ rng.normal(size=(8, 8))
    z = rs.pca_reduce(x, 3)
    xc = x - x.mean(0)
    evals = np.sort(np.linalg.eigvalsh(xc.T @ xc))[::-1][:3]
    np.testing.assert_allclose(np.sort((z**2).sum(0))[::-1], evals, rtol=1e-10)  # top principal variances
    r = rs.pca_reduce(x, 64)  # D <= dim: a rotation, distances kept
    assert r.shape == (50, 8)
    d = lambda a: np.linalg.norm(a[:, None] - a[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(d(r), d(x), atol=1e-9)


def test_derangement_has_no_fixed_point():
    for n in (2, 3, 10, 11):
        p = rs._derangement(n, 0)
        assert sorted(p) == list(range(n)) and not np.any(p == np.arange(n))
