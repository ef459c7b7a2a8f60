import functools

import numpy as np
import pytest
import scipy.optimize
import torch

from _helpers.emms_port import released_emms
from pickwise.exceptions import InvalidParameterError, NotFittedError, ShapeError
from pickwise.selection import EMMS, SelectionWarning, emms
from pickwise.selection import emms as emms_fn
from pickwise.selection._common import simplex_qp


def _zscore(a):
    a = a - a.mean(axis=0)
    sd = a.std(axis=0)
    return np.where(sd > 0, a / np.where(sd > 0, sd, 1), 0.0)


def brute_force_emms(x, ys):
    """Independent solver: minimise ||X W - sum t_k Y_k||^2 over the simplex with SLSQP, W by lstsq."""
    xs = _zscore(x)
    ys = [_zscore(y) for y in ys]
    n, width = ys[0].shape

    def f(t):
        target = sum(tk * yk for tk, yk in zip(t, ys))
        w = np.linalg.lstsq(xs, target, rcond=None)[0]
        return float(np.sum((xs @ w - target) ** 2))

    k = len(ys)
    best = np.inf
    starts = [np.full(k, 1 / k)] + [np.eye(k)[i] for i in range(k)]
    for t0 in starts:
        res = scipy.optimize.minimize(
            f,
            t0,
            method="SLSQP",
            bounds=[(0, 1)] * k,
            constraints=[{"type": "eq", "fun": lambda t: t.sum() - 1}],
            options={"ftol": 1e-14, "maxiter": 500},
        )
        best = min(best, f(np.clip(res.x, 0, None) / np.clip(res.x, 0, None).sum()))
    return -best / (n * width)


def make_task(seed=0, n=240, d=10, width=8, k=3, c=6, noise=(0.5, 1.0, 2.0)):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    base = rng.normal(size=(c, width))
    class_emb = np.stack([base + noise[i % len(noise)] * rng.normal(size=(c, width)) for i in range(k)], axis=2)
    x = base[y] @ rng.normal(size=(width, d)) + rng.normal(size=(n, d))
    return x, y, class_emb


class TestEMMS:
    def test_smoke(self):
        x, y, e = make_task()
        est = EMMS().fit(x, e, labels=y)
        assert isinstance(emms(x, e, labels=y), float)
        assert -1 <= est.score_ <= 0
        assert est.weights_.shape == (3,) and est.weights_.sum() == pytest.approx(1) and (est.weights_ >= 0).all()
        assert est.residual_gram_.shape == (3, 3)
        assert repr(EMMS()) == "EMMS(mode='gcv')"
        assert est.ridge_ > 0 and EMMS(mode="exact").fit(x, e, labels=y).ridge_ is None
        assert EMMS().set_params(mode="official").get_params() == {"mode": "official"}

    @pytest.mark.parametrize("seed", range(4))
    @pytest.mark.parametrize("k", [1, 2, 3])
    def test_exact_vs_brute_force_qp(self, seed, k):
        rng = np.random.default_rng(seed)
        n, d, width = 80, 6, 5
        x = rng.normal(size=(n, d))
        ys = [x @ rng.normal(size=(d, width)) * (j + 1) + (0.5 + j) * rng.normal(size=(n, width)) for j in range(k)]
        ys = [y + rng.normal(size=(n, width)) for y in ys] if seed % 2 else ys
        ref = brute_force_emms(x, ys)
        got = emms(x, ys, mode="exact")
        assert got == pytest.approx(ref, rel=1e-6, abs=1e-9)
        assert got >= ref - 1e-9  # exact is never worse than a local solver

    def test_interior_optimum(self):
        # two equally noisy independent oracles: the optimum mixes them (t ~ 1/2 each)
        rng = np.random.default_rng(3)
        x = rng.normal(size=(300, 5))
        clean = x @ rng.normal(size=(5, 4))
        ys = [clean + rng.normal(size=(300, 4)), clean + rng.normal(size=(300, 4))]
        est = EMMS(mode="exact").fit(x, ys)
        assert (est.weights_ > 0.2).all()
        assert est.score_ == pytest.approx(brute_force_emms(x, ys), rel=1e-7)

    @pytest.mark.parametrize("seed", range(3))
    def test_official_matches_released_port(self, seed):
        x, y, e = make_task(seed, n=120, d=7, width=6)
        per_sample = e[y]
        ref, lam = released_emms(x, per_sample)
        est = EMMS(mode="official").fit(x, per_sample)
        assert est.score_ == pytest.approx(ref, rel=1e-10)
        np.testing.assert_allclose(est.weights_, lam, atol=1e-10)
        assert emms(x, e, labels=y, mode="official") == pytest.approx(ref, rel=1e-10)

    def test_exact_beats_official_objective(self):
        x, y, e = make_task(5, n=200, d=8, width=6)
        n, width = 200, 6
        exact = -emms(x, e, labels=y, mode="exact") * n * width
        official = -emms(x, e, labels=y, mode="official") * n / width  # undo -res/N*L
        assert exact <= official * (1 + 1e-6)

    def test_single_oracle_is_mean_r2(self):
        x, y, e = make_task(1, k=1)
        yt = _zscore(e[:, :, 0][y])
        xs = _zscore(x)
        res = yt - xs @ np.linalg.lstsq(xs, yt, rcond=None)[0]
        r2 = 1 - (res**2).sum(0) / (yt**2).sum(0)
        assert emms(x, e[:, :, 0], labels=y, mode="exact") == pytest.approx(-(1 - r2).mean(), rel=1e-9)

    @pytest.mark.parametrize("mode", ["gcv", "exact"])
    def test_class_level_equals_per_sample(self, mode):
        x, y, e = make_task(2)
        a = emms(x, e, labels=y, mode=mode)
        b = emms(x, e[y], mode=mode)
        c = emms(x, [e[:, :, i][y] for i in range(3)], mode=mode)
        assert a == pytest.approx(b, rel=1e-10) and b == pytest.approx(c, rel=1e-10)
        names = np.array([f"c{i}" for i in range(6)])
        mapping = {f"c{i}": e[i] for i in range(6)}
        mapping["unused"] = np.zeros((8, 3))
        assert emms(x, mapping, labels=names[y], mode=mode) == pytest.approx(a, rel=1e-10)

    def test_n_smaller_than_d_uses_dual(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(20, 40))
        ys = [rng.normal(size=(20, 3)), rng.normal(size=(20, 3))]
        with pytest.warns(SelectionWarning, match="n_features=40"):
            got = emms(x, ys, mode="exact")
        assert got == pytest.approx(0.0, abs=1e-8)  # rank N-1 after centring: perfect in-sample fit

    @pytest.mark.parametrize("mode", ["gcv", "exact"])
    def test_invariances(self, mode):
        x, y, e = make_task(4)
        ref = EMMS(mode=mode).fit(x, e, labels=y)
        emms = functools.partial(emms_fn, mode=mode)
        rng = np.random.default_rng(0)
        perm = rng.permutation(len(y))
        assert emms(x[perm], e, labels=y[perm]) == pytest.approx(ref.score_, rel=1e-10)
        scaled = x * rng.uniform(0.1, 10, size=x.shape[1]) + 5.0
        assert emms(scaled, e, labels=y) == pytest.approx(ref.score_, rel=1e-9)
        assert emms(x[:, ::-1], e, labels=y) == pytest.approx(ref.score_, rel=1e-10)
        relabel = np.array([5, 3, 1, 0, 2, 4])  # class c -> new name relabel[c]
        mapping = {int(relabel[c]): e[c] for c in range(6)}
        assert emms(x, mapping, labels=relabel[y]) == pytest.approx(ref.score_, rel=1e-10)
        swapped = EMMS(mode=mode).fit(x, e[:, :, ::-1], labels=y)
        np.testing.assert_allclose(swapped.weights_, ref.weights_[::-1], atol=1e-9)

    @pytest.mark.parametrize("mode", ["gcv", "exact"])
    def test_monotone_in_quality(self, mode):
        rng = np.random.default_rng(0)
        n, c = 400, 5
        y = np.arange(n) % c
        e = rng.normal(size=(c, 16, 2))
        signal = e[:, :, 0][y] @ rng.normal(size=(16, 12))
        noise = rng.normal(size=(n, 12))
        scores = [emms(q * signal + noise, e, labels=y, mode=mode) for q in (0.05, 0.2, 0.5, 1.0, 3.0)]
        assert np.all(np.diff(scores) > 0)

    @pytest.mark.parametrize("mode", ["gcv", "exact"])
    def test_constant_columns(self, mode):
        x, y, e = make_task(0)
        x2 = np.hstack([x, np.ones((x.shape[0], 1))])
        e2 = np.concatenate([e, np.ones((6, 1, 3))], axis=1)
        assert np.isfinite(emms(x2, e2, labels=y, mode=mode))
        assert emms(x2, e, labels=y, mode=mode) == pytest.approx(emms(x, e, labels=y, mode=mode), rel=1e-10)

    def test_torch_input_and_no_mutation(self):
        x, y, e = make_task(0)
        xc, ec = x.copy(), e.copy()
        ref = emms(x, e, labels=y)
        assert x.tolist() == xc.tolist() and e.tolist() == ec.tolist()
        got = emms(torch.from_numpy(x).float(), torch.from_numpy(e), labels=torch.from_numpy(y))
        assert got == pytest.approx(ref, rel=1e-5)
        emms(x, e, labels=y, mode="official")
        np.testing.assert_array_equal(e, ec)

    def test_exception(self):
        x, y, e = make_task(0)
        bad = x.copy()
        bad[0, 0] = np.nan
        with pytest.raises(InvalidParameterError, match="features contains NaN"):
            emms(bad, e, labels=y)
        bad_e = e.copy()
        bad_e[0, 0, 0] = np.inf
        with pytest.raises(InvalidParameterError, match="label_embeddings"):
            emms(x, bad_e, labels=y)
        with pytest.raises(ShapeError, match="inconsistent numbers of samples"):
            emms(x, e, labels=y[:-1])
        with pytest.raises(ShapeError, match="inconsistent numbers of samples"):
            emms(x, e[y][:-1])
        with pytest.raises(ShapeError, match="same width"):
            emms(x, [e[:, :, 0][y], e[:, :4, 1][y]])
        with pytest.raises(ShapeError, match="one row per class"):
            emms(x, e[:5], labels=y)
        with pytest.raises(InvalidParameterError, match="at least 2 classes"):
            emms(x, e[:1], labels=np.zeros(len(y)))
        with pytest.raises(InvalidParameterError, match="mode must be one of"):
            emms(x, e, labels=y, mode="fast")
        with pytest.raises(ShapeError, match="2-D"):
            emms(x[:, 0], e, labels=y)
        with pytest.raises(ShapeError, match="empty"):
            emms(np.zeros((0, 3)), np.zeros((0, 2)))
        with pytest.raises(InvalidParameterError, match="no entry for class"):
            emms(x, {0: e[0]}, labels=y)
        with pytest.raises(NotFittedError, match="not fitted"):
            EMMS()._check_fitted()


@pytest.mark.parametrize("k", [2, 4, 12])
def test_simplex_qp_vs_slsqp(k):
    rng = np.random.default_rng(k)
    a = rng.normal(size=(k + 3, k))
    m = a.T @ a
    t = simplex_qp(m)
    assert t.sum() == pytest.approx(1) and (t >= 0).all()
    res = scipy.optimize.minimize(
        lambda v: v @ m @ v,
        np.full(k, 1 / k),
        method="SLSQP",
        bounds=[(0, 1)] * k,
        constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1}],
        options={"ftol": 1e-15},
    )
    assert t @ m @ t <= res.fun + 1e-8


def _simplex_min(m):
    """Independent simplex QP: SLSQP from the centre and every vertex."""
    k = m.shape[0]
    if k == 1:
        return float(m[0, 0])
    best = np.inf
    for t0 in [np.full(k, 1 / k)] + [np.eye(k)[i] for i in range(k)]:
        res = scipy.optimize.minimize(
            lambda t: t @ m @ t,
            t0,
            method="SLSQP",
            bounds=[(0, 1)] * k,
            constraints=[{"type": "eq", "fun": lambda t: t.sum() - 1}],
            options={"ftol": 1e-15, "maxiter": 500},
        )
        t = np.clip(res.x, 0, None)
        best = min(best, float(t / t.sum() @ m @ (t / t.sum())))
    return best


def naive_gcv(x, ys, lam):
    """Float64 GCV of the ridge WLSR with an explicit N x N hat matrix (independent of the spectral code)."""
    xs = _zscore(x)
    ys = [_zscore(y) for y in ys]
    n, d = xs.shape
    width = ys[0].shape[1]
    hat = xs @ np.linalg.solve(xs.T @ xs + lam * np.eye(d), xs.T)
    res = [(np.eye(n) - hat) @ y for y in ys]
    m = np.array([[np.sum(a * b) for b in res] for a in res])
    df = np.trace(hat)
    return _simplex_min(m) / n / (1 - (1 + df) / n) ** 2 / width


def naive_gcv_emms(x, ys):
    """-min over lambda (dense log grid, then a bounded scalar search) of naive_gcv."""
    xs = _zscore(x)
    top = np.linalg.eigvalsh(xs.T @ xs)[-1]
    grid = np.linspace(-10, 3, 66)
    vals = [naive_gcv(x, ys, top * 10**g) for g in grid]
    i = int(np.argmin(vals))
    res = scipy.optimize.minimize_scalar(
        lambda g: naive_gcv(x, ys, top * 10**g),
        bounds=(grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return -min(vals[i], res.fun)


class TestEMMSGCV:
    """The default mode: out-of-sample (generalized cross-validation) fit, informative at every N/D."""

    @pytest.mark.parametrize(("n", "d", "k"), [(60, 6, 1), (60, 6, 3), (40, 90, 2), (50, 49, 3)])
    def test_matches_naive_hat_matrix(self, n, d, k):
        rng = np.random.default_rng(n + d + k)
        x = rng.normal(size=(n, d))
        ys = [x[:, :4] @ rng.normal(size=(4, 5)) + (1 + j) * rng.normal(size=(n, 5)) for j in range(k)]
        est = EMMS().fit(x, ys)
        # at the chosen penalty the spectral formula equals the explicit hat matrix
        assert est.score_ == pytest.approx(-naive_gcv(x, ys, est.ridge_), rel=1e-7)
        # and the chosen penalty is the minimizer found by an independent search
        assert est.score_ == pytest.approx(naive_gcv_emms(x, ys), rel=1e-5)

    def test_below_in_sample_and_close_to_it_when_n_much_larger_than_d(self):
        x, y, e = make_task(0, n=240, d=10)
        assert emms(x, e, labels=y) <= emms(x, e, labels=y, mode="exact") + 1e-12
        x, y, e = make_task(1, n=6000, d=5)
        gcv, exact = emms(x, e, labels=y), emms(x, e, labels=y, mode="exact")
        assert gcv == pytest.approx(exact, rel=5e-3)

    @pytest.mark.parametrize("d", [600, 1280])
    def test_wide_informative_beats_wide_noise(self, d):
        # issue 8 section 1: with D >= N the in-sample fit is perfect and "exact" returns 0.0 for every candidate
        rng = np.random.default_rng(d)
        n, c, width = 300, 10, 32
        y = np.arange(n) % c
        base = rng.normal(size=(c, width))
        e = np.stack([base + s * rng.normal(size=(c, width)) for s in (0.5, 1.0, 2.0)], axis=2)
        signal = base[y] @ rng.normal(size=(width, d)) / np.sqrt(width)
        cands = {"good": signal + 2.0 * rng.normal(size=(n, d)), "noise": rng.normal(size=(n, d))}
        with pytest.warns(SelectionWarning):
            paper = {k: emms(v, e, labels=y, mode="exact") for k, v in cands.items()}
        assert paper == {"good": pytest.approx(0.0, abs=1e-9), "noise": pytest.approx(0.0, abs=1e-9)}
        gcv = {k: emms(v, e, labels=y) for k, v in cands.items()}
        assert gcv["good"] > gcv["noise"] + 0.2
        assert -1.1 < gcv["noise"] < gcv["good"] < 0

    def test_not_constant_across_wide_candidates(self):
        rng = np.random.default_rng(7)
        n, c, width = 320, 8, 16
        y = np.arange(n) % c
        e = rng.normal(size=(c, width, 2))
        signal = e[:, :, 0][y]
        scores = []
        for d, q in [(1280, 0.3), (1024, 0.6), (640, 1.2)]:
            x = q * signal @ rng.normal(size=(width, d)) / np.sqrt(width) + rng.normal(size=(n, d))
            scores.append(emms(x, e, labels=y))
        assert np.all(np.diff(scores) > 0.01), scores

    def test_n_smaller_than_d_is_not_saturated(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(20, 40))
        ys = [rng.normal(size=(20, 3)), rng.normal(size=(20, 3))]
        got = emms(x, ys)  # no SelectionWarning in gcv mode
        assert -1.2 < got < -0.3
