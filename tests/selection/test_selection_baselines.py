# ruff: noqa: N803
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from pickwise.exceptions import InvalidParameterError, ShapeError
from pickwise.selection import (
    LEEP,
    NCE,
    HScore,
    gbc,
    get_metric,
    h_score,
    knn_accuracy,
    leep,
    linear_probe_accuracy,
    nce,
    nleep,
    parc,
    sfda,
    shrinkage_h_score,
    transrate,
)
from pickwise.selection.hscore import ledoit_wolf

FEATURE_METRICS = [
    "h_score",
    "shrinkage_h_score",
    "transrate",
    "gbc",
    "sfda",
    "parc",
    "knn_accuracy",
    "linear_probe_accuracy",
    "logme",
    "nleep",
]


def task(seed=0, n=120, d=6, c=3, quality=1.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    f = quality * np.eye(c)[y] @ rng.normal(size=(c, d)) * 2 + rng.normal(size=(n, d))
    return f, y


def probs_task(seed=0, n=150, z=7, c=3):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    logits = rng.normal(size=(n, z))
    logits[:, :c] += 2 * np.eye(c)[y]
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), y


# ----------------------------------------------------------------------------------------- reference ports
def leep_reference(p, y):
    n, z = p.shape
    c = y.max() + 1
    joint = np.zeros((c, z))
    for i in range(n):
        joint[y[i]] += p[i] / n
    cond = joint / joint.sum(0)
    return np.mean([np.log(sum(cond[y[i], k] * p[i, k] for k in range(z))) for i in range(n)])


def nce_reference(src, tgt):
    total = 0.0
    for a in set(src):
        pz = np.mean(src == a)
        for b in set(tgt):
            pyz = np.mean((src == a) & (tgt == b))
            if pyz > 0:
                total += pyz * np.log(pyz / pz)
    return total


def hscore_reference(f, y):  # tllib/ranking/hscore.py
    covf = np.cov(f, rowvar=False)
    g = np.zeros_like(f)
    for i in range(int(y.max() + 1)):
        g[y == i] = np.mean(f[y == i, :], axis=0)
    covg = np.cov(g, rowvar=False)
    return np.trace(np.dot(np.linalg.pinv(covf, rcond=1e-15), covg))


def shrinkage_reference(f, y):  # tllib regularized_h_score
    from sklearn.covariance import LedoitWolf

    f = f - np.mean(f, axis=0, keepdims=True)
    g = np.zeros_like(f)
    cov = LedoitWolf(assume_centered=False).fit(f)
    for i in range(int(y.max() + 1)):
        g[y == i] = np.mean(f[y == i, :], axis=0)
    covg = np.cov(g, rowvar=False)
    return np.trace(np.dot(np.linalg.pinv(cov.covariance_, rcond=1e-15), (1 - cov.shrinkage_) * covg))


def transrate_reference(f, y, eps=1e-4):  # tllib/ranking/transrate.py
    def coding_rate(z):
        n, d = z.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + 1 / (n * eps) * z.T @ z)[1]

    f = f - np.mean(f, axis=0, keepdims=True)
    c = int(y.max() + 1)
    return coding_rate(f) - sum(coding_rate(f[y == i]) for i in range(c)) / c


def gbc_reference(f, y, diagonal, form="paper"):
    """Naive float64 GBC. ``form="authors"`` ports google-research stable_transfer gbc.py (spherical: scalar
    variances, so the log term enters once); ``form="paper"`` is the Bhattacharyya distance of N(mu, s I_D)."""
    c = y.max() + 1
    mus = [f[y == i].mean(0) for i in range(c)]
    vs = [np.maximum(f[y == i].var(0), 1e-4) for i in range(c)]
    if not diagonal:
        vs = [v.mean() for v in vs] if form == "authors" else [np.full(f.shape[1], v.mean()) for v in vs]
    total = 0.0
    for i in range(c):
        for j in range(c):
            if i == j:
                continue
            avg = (vs[i] + vs[j]) / 2
            first = np.sum((mus[i] - mus[j]) ** 2 / avg) / 8
            second = np.sum(np.log(avg)) - 0.5 * np.sum(np.log(vs[i])) - 0.5 * np.sum(np.log(vs[j]))
            total += np.exp(-(first + 0.5 * second))
    return -total


def sfda_reference(X, y, seed=0):  # TencentARC/SFDA metrics.py (iterative_A seeded, scipy generalized eigh)
    X = X.copy()
    rng = np.random.default_rng(seed)

    def _cov(X, shrinkage=-1):
        emp_cov = np.cov(np.asarray(X).T, bias=1)
        if shrinkage < 0:
            return emp_cov
        n_features = emp_cov.shape[0]
        mu = np.trace(emp_cov) / n_features
        shrunk_cov = (1.0 - shrinkage) * emp_cov
        shrunk_cov.flat[:: n_features + 1] += shrinkage * mu
        return shrunk_cov

    def softmax(X):
        X = X - X.max(axis=1, keepdims=True)
        X = np.exp(X)
        return X / X.sum(axis=1, keepdims=True)

    def fit_predict(X, y, shrinkage):
        classes, yt = np.unique(y, return_inverse=True)
        priors = np.bincount(yt) / float(len(y))
        means = np.stack([X[y == g].mean(0) for g in classes])
        cov = sum(priors[i] * np.atleast_2d(_cov(X[y == g])) for i, g in enumerate(classes))
        Sw = cov
        if shrinkage is None:
            v = rng.random(Sw.shape[0])
            for _ in range(3):
                v = Sw @ v
                v = v / np.linalg.norm(v)
            shrinkage = max(np.exp(-5 * (v @ Sw @ v)), 1e-10)
        St = _cov(X, shrinkage=shrinkage)
        n_features = Sw.shape[0]
        mu = np.trace(Sw) / n_features
        shrunk_Sw = (1.0 - shrinkage) * Sw
        shrunk_Sw.flat[:: n_features + 1] += shrinkage * mu
        Sb = St - shrunk_Sw
        evals, evecs = scipy.linalg.eigh(Sb, shrunk_Sw)
        evecs = evecs[:, np.argsort(evals)[::-1]]
        coef = np.dot(means, evecs).dot(evecs.T)
        intercept = -0.5 * np.diag(np.dot(means, coef.T)) + np.log(priors)
        return softmax(X @ coef.T + intercept), shrinkage

    n = len(y)
    c = len(np.unique(y))
    prob, shrink = fit_predict(X, y, None)
    prob = np.exp(prob) / np.exp(prob).sum(axis=1, keepdims=True)
    means = np.stack([X[y == i].mean(0) for i in range(c)])
    means_ = np.stack([(means.sum(0) - means[i]) / (c - 1) for i in range(c)])
    for y_ in range(c):
        idx = np.where(y == y_)[0]
        p = prob[idx, y_].reshape(-1, 1)
        X[idx] = p * X[idx] + (1 - p) * means_[y_]
    prob, _ = fit_predict(X, y, shrink)
    return np.sum(prob[np.arange(n), y]) / n


def parc_reference(f, y):  # dbolya/parc get_parc_correlation without PCA (D <= n_dims)
    f = (f - f.mean(0)) / f.std(0)
    labels = np.eye(y.max() + 1)[y]
    rdm1, rdm2 = 1 - np.corrcoef(f), 1 - np.corrcoef(labels)
    iu = np.triu_indices(len(y), 1)
    # rounding: the released code ranks round-off noise (0 vs 2e-16) as distinct values
    return scipy.stats.spearmanr(np.round(rdm1[iu], 10), np.round(rdm2[iu], 10))[0] * 100


def knn_reference(f, y, k):
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    correct = 0
    for i in range(len(y)):
        d = np.sum((f - f[i]) ** 2, axis=1)
        d[i] = np.inf
        nn = np.argsort(d, kind="stable")[:k]
        votes = np.bincount(y[nn], weights=1 + 1e-6 * np.arange(k, 0, -1), minlength=y.max() + 1)
        correct += votes.argmax() == y[i]
    return correct / len(y)


# ------------------------------------------------------------------------------------------------ tests
class TestReferences:
    @pytest.mark.parametrize("seed", range(3))
    def test_leep_nce(self, seed):
        p, y = probs_task(seed)
        assert leep(p, y) == pytest.approx(leep_reference(p, y), rel=1e-12)
        assert leep(p, y, log=False) > np.exp(leep(p, y))  # Jensen: E[p] >= exp(E[log p])
        assert LEEP().fit(p, y).score_ == leep(p, y)
        src = p.argmax(1)
        assert nce(src, y) == pytest.approx(nce_reference(src, y), rel=1e-12)
        assert NCE().fit(src, y).score_ == nce(src, y)
        assert leep(p, y) <= 0 and nce(src, y) <= 0

    @pytest.mark.parametrize("seed", range(3))
    def test_hscore_shrinkage_transrate(self, seed):
        f, y = task(seed, d=5 + seed * 10)
        assert h_score(f, y) == pytest.approx(hscore_reference(f, y), rel=1e-9)
        assert shrinkage_h_score(f, y) == pytest.approx(shrinkage_reference(f, y), rel=1e-9)
        assert transrate(f, y) == pytest.approx(transrate_reference(f, y), rel=1e-9)
        assert HScore(shrinkage=True).fit(f, y).score_ == pytest.approx(shrinkage_h_score(f, y))

    def test_ledoit_wolf_matches_sklearn(self):
        from sklearn.covariance import LedoitWolf

        f, _ = task(0, d=30, n=50)
        f -= f.mean(0)
        cov, a = ledoit_wolf(f)
        ref = LedoitWolf(assume_centered=True).fit(f)
        assert a == pytest.approx(ref.shrinkage_, rel=1e-10)
        np.testing.assert_allclose(cov, ref.covariance_, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("diagonal", [True, False])
    @pytest.mark.parametrize("form", ["authors", "paper"])
    def test_gbc(self, diagonal, form):
        f, y = task(1, c=4)
        gt = "diagonal" if diagonal else "spherical"
        ref = gbc_reference(f, y, diagonal, form)
        assert gbc(f, y, gaussian_type=gt, form=form) == pytest.approx(ref, rel=1e-10)
        assert np.isfinite(gbc(f, y, n_components=3, form=form))
        if not diagonal and form == "authors":
            assert gbc(f, y) == pytest.approx(ref, rel=1e-10)  # the default

    def test_gbc_forms_differ_with_unequal_class_spreads(self):
        rng = np.random.default_rng(0)
        y = np.arange(200) % 2
        f = np.eye(2)[y] @ rng.normal(size=(2, 16)) + rng.normal(size=(200, 16)) * np.where(y == 0, 0.5, 2.0)[:, None]
        authors, paper = gbc(f, y, form="authors"), gbc(f, y, form="paper")
        assert authors == pytest.approx(gbc_reference(f, y, False, "authors"), rel=1e-10)
        assert paper == pytest.approx(gbc_reference(f, y, False, "paper"), rel=1e-10)
        assert paper > authors  # D x the log-spread term separates the classes far more
        with pytest.raises(InvalidParameterError, match="form must be one of"):
            gbc(f, y, form="code")

    @pytest.mark.parametrize("seed", range(3))
    def test_sfda(self, seed):
        f, y = task(seed, d=8, c=4)
        assert sfda(f, y, random_state=seed) == pytest.approx(sfda_reference(f, y, seed), rel=1e-8)

    def test_parc(self):
        f, y = task(2, n=90)
        assert parc(f, y) == pytest.approx(parc_reference(f, y), rel=1e-10)
        wide, yw = task(2, n=90, d=40)
        assert parc(wide, yw, max_samples=50) == parc(wide, yw, max_samples=50)  # deterministic subsample

    @pytest.mark.parametrize("k", [1, 4, 5])
    def test_knn(self, k):
        f, y = task(3, n=97)
        assert knn_accuracy(f, y, n_neighbors=k, chunk_size=16) == pytest.approx(knn_reference(f, y, k))

    def test_linear_probe(self):
        f, y = task(0, quality=5.0)
        assert linear_probe_accuracy(f, y) > 0.95
        noise = np.random.default_rng(0).normal(size=(300, 4))
        assert linear_probe_accuracy(noise, np.arange(300) % 3) < 0.5
        wide, yw = task(0, n=40, d=80, quality=3.0)
        assert 0 <= linear_probe_accuracy(wide, yw, n_folds=4) <= 1

    def test_nleep_deterministic(self):
        f, y = task(0, n=90)
        a = nleep(f, y, components_per_class=2, random_state=0)
        assert a == nleep(f, y, components_per_class=2, random_state=0)
        assert a <= 0 and 0 < nleep(f, y, components_per_class=2, log=False) <= 1


class TestProperties:
    @pytest.mark.parametrize("name", FEATURE_METRICS)
    def test_relabeling_invariance(self, name):
        f, y = task(0, n=90)
        func = get_metric(name).func
        kw = {"components_per_class": 2} if name == "nleep" else {}
        names = np.array(["zebra", "ant", "moth"])[y]
        assert func(f, names, **kw) == pytest.approx(func(f, y, **kw), rel=1e-9, abs=1e-12)

    @pytest.mark.parametrize(
        "name", ["h_score", "shrinkage_h_score", "transrate", "gbc", "sfda", "parc", "knn_accuracy", "logme"]
    )
    def test_permutation_invariance(self, name):
        f, y = task(1, n=90)
        perm = np.random.default_rng(0).permutation(90)
        func = get_metric(name).func
        assert func(f[perm], y[perm]) == pytest.approx(func(f, y), rel=1e-7, abs=1e-9)

    @pytest.mark.parametrize("name", ["h_score", "parc", "knn_accuracy", "linear_probe_accuracy"])
    def test_scale_invariance(self, name):
        # (sfda is not: its shrinkage exp(-5 lambda_max) depends on the feature scale)
        f, y = task(2, n=90)
        func = get_metric(name).func
        scaled = f * 7.5
        assert func(scaled, y) == pytest.approx(func(f, y), rel=1e-7)

    @pytest.mark.parametrize("name", FEATURE_METRICS)
    def test_monotone_in_quality(self, name):
        func = get_metric(name).func
        kw = {"components_per_class": 2} if name == "nleep" else {}
        scores = [func(*task(0, n=150, d=8, quality=q), **kw) for q in (0.0, 0.6, 3.0)]
        assert scores[0] < scores[1] < scores[2], scores

    @pytest.mark.parametrize("name", FEATURE_METRICS)
    def test_torch_input_and_no_mutation(self, name):
        f, y = task(0, n=90)
        fc = f.copy()
        func = get_metric(name).func
        kw = {"components_per_class": 2} if name == "nleep" else {}
        ref = func(f, y, **kw)
        np.testing.assert_array_equal(f, fc)
        assert isinstance(ref, float)
        assert func(torch.from_numpy(f), torch.from_numpy(y), **kw) == pytest.approx(ref, rel=1e-9, abs=1e-12)

    @pytest.mark.parametrize("name", FEATURE_METRICS)
    def test_exception(self, name):
        f, y = task(0, n=60)
        func = get_metric(name).func
        bad = f.copy()
        bad[1, 1] = np.nan
        with pytest.raises(InvalidParameterError, match="NaN"):
            func(bad, y)
        with pytest.raises(ShapeError, match="inconsistent numbers of samples"):
            func(f, y[:-2])
        with pytest.raises(InvalidParameterError, match="at least 2 classes"):
            func(f, np.ones(60))
        with pytest.raises(ShapeError, match="2-D"):
            func(f[:, 0], y)


class TestSpecificErrors:
    def test_per_class_minimum(self):
        f, y = task(0, n=60)
        y = y.copy()
        y[0] = 7  # a class with one sample
        for func in (gbc, sfda):
            with pytest.raises(InvalidParameterError, match="at least 2 samples"):
                func(f, y)

    def test_leep_requires_probabilities(self):
        p, y = probs_task()
        with pytest.raises(InvalidParameterError, match="softmax"):
            leep(np.log(p), y)
        with pytest.raises(ShapeError, match="inconsistent"):
            nce(p.argmax(1), y[:-1])

    def test_options(self):
        f, y = task(0, n=60)
        with pytest.raises(InvalidParameterError, match="gaussian_type"):
            gbc(f, y, gaussian_type="full")
        with pytest.raises(InvalidParameterError, match="eps"):
            transrate(f, y, eps=0)
        with pytest.raises(InvalidParameterError, match="n_neighbors"):
            knn_accuracy(f, y, n_neighbors=60)
        with pytest.raises(InvalidParameterError, match="metric"):
            knn_accuracy(f, y, metric="manhattan")
        with pytest.raises(InvalidParameterError, match="n_folds"):
            linear_probe_accuracy(f, y, n_folds=1)
        with pytest.raises(InvalidParameterError, match="max_samples"):
            parc(f, y, max_samples=2)
        with pytest.raises(InvalidParameterError, match="variance"):
            nleep(f, y, variance=1.5)
        with pytest.raises(InvalidParameterError, match="mixture components"):
            nleep(f, y, components_per_class=40)
