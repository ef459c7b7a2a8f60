import numpy as np
import pytest
import torch

from _helpers.logme_port import released_fixed_point
from pickwise.exceptions import InvalidParameterError, NotFittedError, ShapeError
from pickwise.selection import LogME, logme
from pickwise.selection.logme import _fixed_point


def icml_evidence(f, y_, max_iter=11, tol=0.01, eps_in_evidence=True):
    """Port of thuml/LogME each_evidence (ICML 2021 MacKay iteration on the full D x D eigensystem)."""
    fh = f
    f = f.T
    D, N = f.shape
    v, s, vh = np.linalg.svd(f @ fh, full_matrices=True)
    epsilon = 1e-5
    alpha = beta = 1.0
    lam = alpha / beta
    tmp = vh @ (f @ y_)
    for _ in range(max_iter):
        gamma = (s / (s + lam)).sum()
        m = v @ (tmp * beta / (alpha + beta * s))
        alpha_de = (m * m).sum()
        alpha = gamma / (alpha_de + epsilon)
        beta_de = ((y_ - fh @ m) ** 2).sum()
        beta = (N - gamma) / (beta_de + epsilon)
        new_lam = alpha / beta
        if np.abs(new_lam - lam) / lam < tol:
            break
        lam = new_lam
    if not eps_in_evidence:  # the released evidence adds (alpha + beta) * 1e-5 / 2; drop it to compare maxima
        epsilon = 0.0
    evidence = (
        D / 2.0 * np.log(alpha)
        + N / 2.0 * np.log(beta)
        - 0.5 * np.sum(np.log(alpha + beta * s))
        - beta / 2.0 * (beta_de + epsilon)
        - alpha / 2.0 * (alpha_de + epsilon)
        - N / 2.0 * np.log(2 * np.pi)
    )
    return evidence / N


def dense_evidence(f, y_, alpha, beta):
    """log p(y | F, alpha, beta) / N with dense D x D matrices, straight from the definition."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y_)
    _, logdet = np.linalg.slogdet(a)
    ev = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - n / 2 * np.log(2 * np.pi)
        - beta / 2 * np.sum((f @ m - y_) ** 2)
        - alpha / 2 * m @ m
        - 0.5 * logdet
    )
    return ev / n


def task(seed=0, n=150, d=12, c=4, quality=1.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    f = quality * np.eye(c)[y] @ rng.normal(size=(c, d)) + rng.normal(size=(n, d))
    return f, y


class TestLogME:
    def test_smoke(self):
        f, y = task()
        est = LogME().fit(f, y)
        assert isinstance(logme(f, y), float)
        assert est.score_ == pytest.approx(logme(f, y))
        assert est.evidence_.shape == (4,) and est.weights_.shape == (4, 12)
        assert est.predict(f).shape == (150,)
        assert repr(LogME()) == "LogME(regression=False, max_iter=11, tol=0.001)"
        with pytest.raises(NotFittedError, match="not fitted"):
            LogME().predict(f)

    @pytest.mark.parametrize("seed", range(3))
    def test_matches_released_fixed_point_when_n_gt_d(self, seed):
        f, y = task(seed)
        f = f / np.sqrt(np.mean(f * f))  # logme runs the fixed point at this canonical scale (RMS entry 1)
        ref, ref_ev = released_fixed_point(f, y)
        est = LogME().fit(f, y)
        assert est.score_ == pytest.approx(ref, rel=1e-9)
        np.testing.assert_allclose(est.evidence_, ref_ev, rtol=1e-9)

    def test_regression_matches_released(self):
        rng = np.random.default_rng(0)
        f = rng.normal(size=(100, 6))
        t = f @ rng.normal(size=(6, 3)) + rng.normal(size=(100, 3))
        assert logme(f, t, regression=True) == pytest.approx(released_fixed_point(f, t, regression=True)[0], rel=1e-9)
        assert logme(f, t[:, 0], regression=True) == pytest.approx(
            released_fixed_point(f, t[:, :1], regression=True)[0], rel=1e-9
        )

    @pytest.mark.parametrize(("n", "d"), [(60, 8), (20, 50)])
    def test_dense_evidence_at_converged_point(self, n, d):
        rng = np.random.default_rng(1)
        f = rng.normal(size=(n, d))
        y = (f @ rng.normal(size=(d, 3)) + rng.normal(size=(n, 3))) / 3
        res = _fixed_point(f, y, max_iter=500, tol=1e-13)
        for j in range(3):
            assert res.evidence[j] == pytest.approx(dense_evidence(f, y[:, j], res.alpha[j], res.beta[j]), rel=1e-8)

    def test_n_smaller_than_d_fix(self):
        rng = np.random.default_rng(2)
        f = rng.normal(size=(20, 50))
        y = np.arange(20) % 2
        fixed = _fixed_point(f, np.eye(2)[y], max_iter=11)
        buggy = _fixed_point(f, np.eye(2)[y], max_iter=11, fix_rank=False)
        ref = released_fixed_point(f, y)[1]
        np.testing.assert_allclose(buggy.evidence, ref, rtol=1e-9)  # reproduces the released value ...
        missing = -(50 - 20) * np.log(fixed.alpha) / (2 * 20)
        np.testing.assert_allclose(fixed.evidence - buggy.evidence, missing, rtol=1e-9)  # ... minus the bug
        for j in range(2):  # and the fixed value is the true (dense) evidence
            dense = dense_evidence(f, np.eye(2)[y][:, j], fixed.alpha[j], fixed.beta[j])
            conv = _fixed_point(f, np.eye(2)[y][:, j : j + 1], max_iter=500, tol=1e-13)
            assert conv.evidence[0] == pytest.approx(
                dense_evidence(f, np.eye(2)[y][:, j], conv.alpha[0], conv.beta[0]), rel=1e-8
            )
            assert np.isfinite(dense)

    @pytest.mark.parametrize(("n", "d"), [(200, 10), (30, 60)])
    def test_agrees_with_icml_iteration(self, n, d):
        rng = np.random.default_rng(3)
        f = rng.normal(size=(n, d))
        y = np.arange(n) % 3
        ours = _fixed_point(f, np.eye(3)[y], max_iter=500, tol=1e-12).evidence
        icml = np.array(
            [icml_evidence(f, (y == c).astype(float), max_iter=500, tol=1e-12, eps_in_evidence=False) for c in range(3)]
        )
        np.testing.assert_allclose(ours, icml, rtol=1e-6, atol=1e-8)
        default = _fixed_point(f, np.eye(3)[y]).evidence  # default stopping rules agree to ~1e-3
        loose = np.array([icml_evidence(f, (y == c).astype(float)) for c in range(3)])
        np.testing.assert_allclose(default, loose, rtol=5e-3)

    def test_multilabel_columns(self):
        f, y = task(0)
        multi = np.eye(4)[y]
        assert logme(f, multi) == pytest.approx(logme(f, y), rel=1e-12)
        multi[:10, 0] = 1
        assert np.isfinite(logme(f, multi))

    def test_invariances(self):
        f, y = task(1)
        ref = logme(f, y)
        perm = np.random.default_rng(0).permutation(len(y))
        assert logme(f[perm], y[perm]) == pytest.approx(ref, rel=1e-10)
        names = np.array(["d", "a", "c", "b"])[y]
        assert logme(f, names) == pytest.approx(ref, rel=1e-10)
        assert logme(f[:, ::-1], y) == pytest.approx(ref, rel=1e-10)

    def test_monotone_in_quality(self):
        scores = [logme(*task(0, quality=q)) for q in (0.0, 0.5, 1.0, 2.0, 4.0)]
        assert np.all(np.diff(scores) > 0)

    def test_torch_and_no_mutation(self):
        f, y = task(0)
        fc = f.copy()
        ref = logme(f, y)
        np.testing.assert_array_equal(f, fc)
        assert logme(torch.from_numpy(f), torch.from_numpy(y)) == pytest.approx(ref, rel=1e-12)
        assert logme(torch.from_numpy(f).float(), y) == pytest.approx(ref, rel=1e-5)

    def test_exception(self):
        f, y = task(0)
        bad = f.copy()
        bad[3, 3] = np.inf
        with pytest.raises(InvalidParameterError, match="infinity"):
            logme(bad, y)
        with pytest.raises(ShapeError, match=r"inconsistent numbers of samples: \[150, 149\]"):
            logme(f, y[:-1])
        with pytest.raises(InvalidParameterError, match="at least 2 classes"):
            logme(f, np.zeros(150))
        with pytest.raises(InvalidParameterError, match="multi-label indicators"):
            logme(f, np.random.default_rng(0).normal(size=(150, 2)))
        with pytest.raises(ShapeError, match="reshape"):
            logme(f[:, 0], y)
        with pytest.raises(ShapeError, match="empty"):
            logme(np.zeros((0, 4)), [])
        with pytest.raises(InvalidParameterError, match="max_iter"):
            LogME(max_iter=0).fit(f, y)
        with pytest.raises(InvalidParameterError, match="unknown parameter"):
            LogME().set_params(alpha=1)
