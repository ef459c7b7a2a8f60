"""Numerical robustness of the transferability metrics (issues 8 and 9): scale, degenerate features, references.

Every metric is run at feature scales 1e-30, 1, 1e30 and 1e154 (where squares overflow float64): it returns a
finite score or raises a one-line pickwise error, and the metrics documented as scale-invariant in
docs/metrics.md return the same score at every scale. Dead models (all-zero or identical feature rows) are
reported, never scored.
"""

import math
import warnings

import numpy as np
import pytest
import scipy.optimize

from pickwise.exceptions import DataFormatError, PickwiseUserError
from pickwise.selection import emms, get_metric, list_metrics, logme, parc, rank_models, sfda, transrate
from pickwise.selection._common import pca, unit_rms

SCALES = (1e-30, 1.0, 1e30, 1e154)

#: Metrics whose definition is invariant to a global feature scale (docs/metrics.md), with their tolerance.
INVARIANT = {
    "emms": 1e-9,
    "logme": 1e-9,
    "h_score": 1e-9,
    "shrinkage_h_score": 1e-9,
    "gbc": 1e-9,
    "nleep": 1e-6,
    "parc": 1e-9,
    "knn_accuracy": 0.0,
    "linear_probe_accuracy": 0.0,
}
#: Scale-dependent by definition (absolute constants): only finiteness is required.
SCALE_DEPENDENT = {"sfda", "transrate"}
FEATURE_METRICS = sorted(INVARIANT) + sorted(SCALE_DEPENDENT)


def task(seed=0, n=120, d=8, c=3):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    x = np.eye(c)[y] @ rng.normal(size=(c, d)) + 0.7 * rng.normal(size=(n, d))
    return x, y, rng.normal(size=(c, 6))


def call(name, x, y, emb):
    kwargs = {"label_embeddings": emb} if name == "emms" else {}
    if name == "nleep":
        kwargs["components_per_class"] = 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow / invalid-value warnings either
        return get_metric(name).func(x, y, **kwargs) if name != "emms" else emms(x, emb, labels=y)


def test_every_feature_metric_is_covered():
    feature_metrics = {m for m in list_metrics() if get_metric(m).input in ("features", "label_embeddings")}
    assert feature_metrics == set(FEATURE_METRICS)


@pytest.mark.parametrize("name", FEATURE_METRICS)
def test_scales_finite_and_invariant(name):
    x, y, emb = task()
    values = [call(name, x * s, y, emb) for s in SCALES]
    assert all(isinstance(v, float) and math.isfinite(v) for v in values), values
    if name in INVARIANT:
        for v in values:
            assert v == pytest.approx(values[1], rel=INVARIANT[name], abs=INVARIANT[name]), (name, values)


def test_logme_is_the_maximum_dense_evidence_at_any_scale():
    """The fixed point (11 steps, tolerance 1e-3) lands on the maximum of the dense evidence, at every scale."""
    for n, d in [(150, 12), (40, 60)]:
        rng = np.random.default_rng(n)
        y = np.arange(n) % 3
        f = np.eye(3)[y] @ rng.normal(size=(3, d)) + rng.normal(size=(n, d))

        def neg_evidence(p, yj, f=f, n=n):
            alpha, beta = np.exp(p)
            cov = np.eye(n) / beta + f @ f.T / alpha  # y ~ N(0, beta^-1 I + alpha^-1 F F^T)
            _, logdet = np.linalg.slogdet(cov)
            return (0.5 * logdet + 0.5 * yj @ np.linalg.solve(cov, yj) + n / 2 * np.log(2 * np.pi)) / n

        dense = []
        for j in range(3):
            yj = (y == j).astype(float)
            best = min(
                scipy.optimize.minimize(
                    neg_evidence,
                    [a0, 0.0],
                    args=(yj,),
                    method="Nelder-Mead",
                    options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 3000},
                ).fun
                for a0 in (-3.0, 3.0)
            )
            dense.append(-best)
        ref = float(np.mean(dense))
        for s in (1e-30, 1.0, 1e30, 1e154):
            assert logme(f * s, y) == pytest.approx(ref, rel=1e-3), (n, d, s)


def test_logme_scale_before_after():
    """Issue 9: LogME was -0.489 at scale 1 and -3.9 at 1e30 on the same features; now it is one number."""
    x, y, _ = task(1)
    values = [logme(x * s, y) for s in (1e-30, 1e-3, 1.0, 1e3, 1e30, 1e154)]
    assert max(values) - min(values) < 1e-12 * abs(values[2]) + 1e-14


def test_transrate_matches_naive_formula_through_the_scale_identity():
    """TrR(c x; eps) = TrR(x; eps / c^2); the right side is computed naively with slogdet, no overflow."""
    x, y, _ = task(2)

    def naive(z, eps):
        z = z - z.mean(axis=0)

        def rate(a):
            n, d = a.shape
            return 0.5 * np.linalg.slogdet(np.eye(d) + a.T @ a / (n * eps))[1]

        return rate(z) - np.mean([rate(z[y == c]) for c in range(3)])

    for c, eps in [(1.0, 1e-4), (1e100, 1e-4), (1e-30, 1e-70), (1e150, 1.0)]:
        assert transrate(x * c, y, eps=eps) == pytest.approx(naive(x, eps / c**2), rel=1e-9)


def test_sfda_scale_dependence_is_only_its_shrinkage():
    # beyond lambda_max ~ 4.6 the shrinkage exp(-5 lambda_max) sits at its 1e-10 floor: same score from there on
    x, y, _ = task(3)
    big = [sfda(x * s, y) for s in (1e3, 1e30, 1e154)]
    assert big == pytest.approx([big[0]] * 3, rel=1e-9)
    assert 0 <= sfda(x * 1e-30, y) <= 1


@pytest.mark.parametrize("name", FEATURE_METRICS)
@pytest.mark.parametrize("dead", ["zero", "constant"])
def test_dead_model_is_a_clear_error(name, dead):
    x, y, emb = task()
    feats = np.zeros_like(x) if dead == "zero" else np.full_like(x, 3.25)
    with pytest.raises(DataFormatError, match="dead model") as info:
        call(name, feats, y, emb)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", FEATURE_METRICS)
def test_constant_columns_are_harmless(name):
    x, y, emb = task()
    with_const = np.hstack([x, np.full((x.shape[0], 2), 5.0), np.zeros((x.shape[0], 1))])
    value = call(name, with_const, y, emb)
    assert math.isfinite(value)
    if name in ("emms", "h_score", "knn_accuracy", "linear_probe_accuracy"):
        # standardized / pseudo-inverted / centred: constant columns carry nothing. (LogME has no intercept, so a
        # constant column is a bias feature for it; GBC, SFDA and TransRate average over dimensions; PARC
        # correlates rows across dimensions, so a zero dimension shifts every row mean.)
        assert value == pytest.approx(call(name, x, y, emb), rel=1e-7, abs=1e-9), name


def test_dead_model_is_never_recommended():
    x, y, _ = task()
    cands = {"alive": x, "dead": np.zeros_like(x)}
    for metric in ("logme", "emms"):
        kw = {"label_embeddings": np.random.default_rng(0).normal(size=(3, 6))} if metric == "emms" else {}
        ranking = rank_models(cands, y, metric=metric, **kw)
        assert ranking.names == ["alive"] and ranking.failed[0].name == "dead"
        assert "dead model" in ranking.failed[0].reason and "'dead'" in ranking.describe()


class TestParcDeterminism:
    def test_pca_sign_rule(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(50, 12)) @ rng.normal(size=(12, 12))
        ref = pca(x.copy(), 5)
        # feature sign flips and column order leave the component scores unchanged (largest |score| positive)
        flipped = x * np.where(rng.random(12) < 0.5, -1.0, 1.0)
        np.testing.assert_allclose(pca(flipped, 5), ref, atol=1e-9)
        np.testing.assert_allclose(pca(x[:, ::-1].copy(), 5), ref, atol=1e-9)
        perm = rng.permutation(50)
        np.testing.assert_allclose(pca(x[perm], 5), ref[perm], atol=1e-9)

    def test_score_invariant_to_feature_signs_and_row_order(self):
        rng = np.random.default_rng(1)
        y = np.arange(80) % 4
        x = np.eye(4)[y] @ rng.normal(size=(4, 48)) + rng.normal(size=(80, 48))  # D > n_dims: PCA applies
        ref = parc(x, y)
        signs = np.where(rng.random(48) < 0.5, -1.0, 1.0)
        assert parc(x * signs, y) == pytest.approx(ref, rel=1e-9)
        perm = rng.permutation(80)
        assert parc(x[perm], y[perm]) == pytest.approx(ref, rel=1e-9)
        assert parc(x * 1e154, y) == pytest.approx(ref, rel=1e-9)


def test_unit_rms_is_exact_and_overflow_free():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    for s in (1e-300, 1e-30, 1.0, 1e30, 1e300):
        z, log_c = unit_rms(x * s)
        assert np.isfinite(z).all() and np.sqrt(np.mean(z * z)) == pytest.approx(1.0, rel=1e-12)
        np.testing.assert_allclose(z, unit_rms(x.copy())[0], rtol=1e-12, atol=1e-15)
        assert log_c == pytest.approx(np.log(s) + unit_rms(x.copy())[1], rel=1e-12, abs=1e-12)
    zeros, log_c = unit_rms(np.zeros((3, 2)))
    assert log_c == 0.0 and not zeros.any()


@pytest.mark.parametrize("name", [m for m in list_metrics() if get_metric(m).input in ("probs", "source_labels")])
def test_probability_and_label_metrics_reject_bad_inputs_clearly(name):
    y = np.arange(30) % 3
    bad = np.full((30, 4), np.nan) if get_metric(name).input == "probs" else np.full(30, np.nan)
    with pytest.raises(PickwiseUserError):
        get_metric(name).func(bad, y)


class TestFuzzRegressions:
    """Inputs found by the Hypothesis suite (PICKWISE_FUZZ_EXAMPLES=400..600) before the fixes."""

    def test_sfda_classes_that_are_points(self):
        x = np.array([[0.0], [0.0], [0.0], [1e-300], [1e-300]])
        assert sfda(x, [1, 1, 1, 0, 0]) == pytest.approx(1.0)  # perfectly separated: was NaN
        rng = np.random.default_rng(0)
        y = np.arange(60) % 3
        assert sfda(np.eye(3)[y] @ rng.normal(size=(3, 5)), y) == pytest.approx(1.0)

    def test_ledoit_wolf_single_feature(self):
        from sklearn.covariance import ledoit_wolf_shrinkage

        from pickwise.selection import shrinkage_h_score
        from pickwise.selection.hscore import ledoit_wolf

        x = np.random.default_rng(0).normal(size=(20, 1))
        x -= x.mean(axis=0)
        assert ledoit_wolf(x.copy())[1] == ledoit_wolf_shrinkage(x, assume_centered=True) == 0.0
        assert math.isfinite(shrinkage_h_score(np.array([[8.2e-295], [3.3e-301]]), [0, 1]))  # was LinAlgError
