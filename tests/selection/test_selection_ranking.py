import numpy as np
import pytest
import scipy.stats

from pickwise.exceptions import InvalidParameterError, ShapeError, UnknownNameError
from pickwise.selection import (
    bootstrap_ci,
    evaluate_ranking,
    get_metric,
    kendall_tau,
    list_metrics,
    pearson,
    rank_models,
    rel_at_k,
    score_models,
    top1_regret,
    weighted_tau,
)

# TLlib examples/model_selection/README.md (selection.md 4.5): FT acc, HScore, LEEP, NCE per model, and the
# published weighted tau of each score column. Order: GoogleNet, InceptionV3, ResNet50, ResNet101, ResNet152,
# DenseNet121, DenseNet169, DenseNet201, MobileNetV2, MNasNet.
GOLDEN = {
    "cifar10": (
        [96.2, 97.5, 96.8, 97.7, 97.9, 97.2, 97.4, 97.4, 95.7, 96.8],
        {
            "hscore": ([5.911, 6.363, 6.567, 6.901, 6.945, 6.210, 6.547, 6.706, 5.928, 6.018], 0.800),
            "leep": ([-1.385, -1.259, -1.010, -0.829, -0.838, -1.035, -0.934, -0.888, -1.100, -1.066], 0.638),
            "nce": ([-1.139, -1.060, -1.007, -0.838, -0.851, -1.006, -0.946, -0.866, -1.089, -1.086], 0.714),
        },
    ),
    "cifar100": (
        [83.2, 86.6, 84.5, 87.0, 87.6, 84.8, 85.0, 86.0, 80.8, 83.9],
        {
            "hscore": ([29.33, 36.47, 40.20, 43.80, 44.19, 32.13, 37.51, 39.75, 30.36, 32.05], 0.775),
            "leep": ([-3.234, -2.995, -2.612, -2.365, -2.410, -2.665, -2.494, -2.470, -2.800, -2.732], 0.659),
            "nce": ([-2.751, -2.615, -2.516, -2.285, -2.369, -2.504, -2.418, -2.305, -2.653, -2.643], 0.654),
        },
    ),
    "caltech101": (
        [91.7, 94.3, 91.8, 93.1, 93.2, 91.9, 92.5, 93.4, 89.1, 91.5],
        {
            "hscore": ([75.88, 93.73, 91.65, 92.54, 92.91, 75.02, 86.37, 89.90, 75.82, 77.00], 0.721),
            "leep": ([-1.462, -1.119, -1.020, -0.899, -0.875, -0.979, -0.864, -0.914, -1.115, -1.043], 0.127),
            "nce": ([-0.665, -0.560, -0.616, -0.603, -0.605, -0.609, -0.580, -0.590, -0.693, -0.690], 0.810),
        },
    ),
    "stanfordcars": (
        [91.0, 92.3, 91.7, 91.7, 92.0, 91.5, 91.5, 91.0, 91.0, 88.5],
        {
            "hscore": ([41.47, 73.68, 72.94, 73.98, 76.17, 45.82, 63.40, 70.50, 51.12, 51.91], 0.638),
            "leep": ([-4.612, -4.268, -4.366, -4.281, -4.215, -4.437, -4.286, -4.319, -4.463, -4.423], 0.703),
            "nce": ([-4.312, -4.110, -4.221, -4.218, -4.142, -4.271, -4.175, -4.151, -4.306, -4.338], 0.750),
        },
    ),
    "sun397": (
        [62.0, 65.7, 64.7, 64.8, 66.0, 62.3, 63.0, 64.7, 60.5, 60.7],
        {
            "hscore": ([71.35, 114.21, 110.39, 113.63, 116.51, 72.16, 95.80, 103.09, 75.90, 80.91], 0.918),
            "leep": ([-3.744, -3.372, -3.198, -3.103, -3.056, -3.311, -3.165, -3.205, -3.338, -3.234], 0.581),
            "nce": ([-3.055, -2.844, -2.894, -2.837, -2.822, -2.945, -2.903, -2.896, -2.968, -2.933], 0.873),
        },
    ),
}


class TestWeightedTau:
    @pytest.mark.parametrize("dataset", sorted(GOLDEN))
    def test_golden_published_values(self, dataset):
        acc, columns = GOLDEN[dataset]
        for metric, (scores, published) in columns.items():
            assert round(weighted_tau(scores, acc), 3) == pytest.approx(published, abs=1e-9), (dataset, metric)

    @pytest.mark.parametrize("seed", range(30))
    def test_matches_scipy_with_ties(self, seed):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2, 25))
        x = rng.integers(0, 5, n).astype(float) if seed % 2 else rng.normal(size=n)
        y = rng.integers(0, 4, n).astype(float) if seed % 3 == 0 else rng.normal(size=n)
        ref = scipy.stats.weightedtau(x, y)[0]
        got = weighted_tau(x, y)
        if np.isnan(ref):
            assert np.isnan(got)
        else:
            assert got == pytest.approx(ref, abs=1e-12)

    def test_mapping_input_and_perfect_orders(self):
        assert weighted_tau({"a": 1, "b": 2, "c": 3}, {"c": 0.9, "a": 0.1, "b": 0.5}) == pytest.approx(1.0)
        assert weighted_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)

    def test_exception(self):
        with pytest.raises(ShapeError, match="inconsistent numbers of samples"):
            weighted_tau([1, 2, 3], [1, 2])
        with pytest.raises(ShapeError, match="at least 2 models"):
            weighted_tau([1], [1])
        with pytest.raises(InvalidParameterError, match="finite"):
            weighted_tau([1, np.nan], [1, 2])
        with pytest.raises(InvalidParameterError, match="different models"):
            weighted_tau({"a": 1, "b": 2}, {"a": 1, "c": 2})
        with pytest.raises(InvalidParameterError, match="two mappings"):
            weighted_tau({"a": 1, "b": 2}, [1, 2])


class TestOtherStatistics:
    @pytest.mark.parametrize("seed", range(10))
    def test_kendall_and_pearson_match_scipy(self, seed):
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 4, 12).astype(float)
        y = rng.normal(size=12)
        assert kendall_tau(x, y) == pytest.approx(scipy.stats.kendalltau(x, y)[0], abs=1e-12)
        assert pearson(x, y) == pytest.approx(scipy.stats.pearsonr(x, y)[0], abs=1e-12)

    def test_rel_at_k_and_regret(self):
        scores = [0.9, 0.8, 0.1, 0.5]
        acc = [70.0, 80.0, 90.0, 60.0]
        assert rel_at_k(scores, acc, 1) == pytest.approx(70 / 90)
        assert rel_at_k(scores, acc, 2) == pytest.approx(80 / 90)
        assert rel_at_k(scores, acc, 4) == 1.0
        assert top1_regret(scores, acc) == pytest.approx(20.0)
        with pytest.raises(InvalidParameterError, match="k must be an integer"):
            rel_at_k(scores, acc, 0)
        with pytest.raises(InvalidParameterError, match="positive"):
            rel_at_k(scores, [0.0, 0.0, 0.0, 0.0])

    def test_evaluate_ranking_direction(self):
        acc = [1.0, 2.0, 3.0]
        out = evaluate_ranking([3.0, 2.0, 1.0], acc, higher_is_better=False)
        assert out["weighted_tau"] == pytest.approx(1.0)
        assert set(out) == {"weighted_tau", "kendall_tau", "pearson", "rel_at_1", "rel_at_3", "top1_regret"}
        assert out["top1_regret"] == 0.0

    def test_bootstrap_ci(self):
        acc, columns = GOLDEN["sun397"]
        scores = columns["hscore"][0]
        lo, hi = bootstrap_ci(scores, acc, n_resamples=200, random_state=0)
        assert -1 <= lo <= weighted_tau(scores, acc) <= hi <= 1
        assert bootstrap_ci(scores, acc, n_resamples=200, random_state=0) == (lo, hi)  # deterministic
        with pytest.raises(InvalidParameterError, match="confidence"):
            bootstrap_ci(scores, acc, confidence=1.5)


class TestRankModels:
    def test_sorted_by_metric_direction(self):
        rng = np.random.default_rng(0)
        y = np.repeat(np.array(["x", "y", "z"]), 40)
        signal = np.eye(3)[np.unique(y, return_inverse=True)[1]]
        feats = {q: q * signal + rng.normal(size=(120, 3)) for q in (0.5, 3.0, 1.5)}
        feats = {f"q{q}": v for q, v in feats.items()}
        for metric in ("logme", "h_score", "knn_accuracy"):
            names = [n for n, _ in rank_models(feats, y, metric=metric)]
            assert names == ["q3.0", "q1.5", "q0.5"], metric

    def test_emms_through_rank_models_and_score_models(self):
        rng = np.random.default_rng(1)
        y = np.arange(200) % 4
        emb = rng.normal(size=(4, 12))
        feats = {
            "good": emb[y] @ rng.normal(size=(12, 6)) + 0.1 * rng.normal(size=(200, 6)),
            "bad": rng.normal(size=(200, 6)),
        }
        assert rank_models(feats, y, metric="emms", label_embeddings=emb)[0][0] == "good"
        table = score_models(feats, y, metrics=["emms", "logme"], metric_kwargs={"emms": {"label_embeddings": emb}})
        assert set(table) == {"emms", "logme"}
        assert table["emms"]["good"]["score"] > table["emms"]["bad"]["score"]
        assert table["logme"]["good"]["seconds"] >= 0
        with pytest.raises(InvalidParameterError, match="label_embeddings"):
            rank_models(feats, y, metric="emms")

    def test_registry(self):
        names = list_metrics()
        for required in (
            "emms",
            "logme",
            "leep",
            "nleep",
            "nce",
            "h_score",
            "shrinkage_h_score",
            "transrate",
            "gbc",
            "sfda",
            "parc",
            "knn_accuracy",
            "linear_probe_accuracy",
        ):
            assert required in names
            spec = get_metric(required)
            assert spec.func.name == required
            assert spec.higher_is_better is True
        assert get_metric("hscore").name == "h_score"
        with pytest.raises(UnknownNameError, match="did you mean 'logme'"):
            rank_models({"a": np.zeros((3, 2))}, [0, 1, 0], metric="logmee")
        with pytest.raises(InvalidParameterError, match="non-empty mapping"):
            rank_models({}, [0, 1], metric="logme")
