import json

import numpy as np
import pytest
import scipy.stats

from pickwise.exceptions import DataFormatError, InvalidParameterError, ShapeError, UnknownNameError
from pickwise.selection import (
    bootstrap_ci,
    evaluate_ranking,
    get_metric,
    kendall_tau,
    list_metrics,
    pearson,
    pick_stability,
    rank_models,
    rank_scores,
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


class TestRankScores:
    def test_ties_shared_rank_and_alphabetical_order(self):
        r = rank_scores({"b": 0.5, "c": 0.9, "a": 0.5 + 1e-9, "d": 0.1})
        assert r == [("c", 0.9), ("a", 0.5 + 1e-9), ("b", 0.5), ("d", 0.1)]  # still a list of tuples
        assert [e.rank for e in r.entries] == [1, 2, 2, 4]
        assert r.entries[1].tied_with == ("b",) and r.entries[2].tied_with == ("a",)
        assert r.entries[0].tied_with == () and r.entries[0].tie_break is None
        assert r.ties == [("a", "b")]
        assert "'a' and 'b' tie on score" in r.describe() and "ordered by name" in r.describe()

    @pytest.mark.parametrize("seed", range(10))
    def test_independent_of_mapping_order(self, seed):
        rng = np.random.default_rng(seed)
        names = [f"m{i}" for i in range(8)]
        vals = rng.integers(0, 3, 8).astype(float)  # many exact ties
        tb = dict(zip(names, rng.integers(0, 2, 8).astype(float), strict=True))
        fwd = dict(zip(names, vals, strict=True))
        rev = dict(reversed(list(fwd.items())))
        for kw in ({}, {"tie_break": tb, "tie_break_metric": "knn"}, {"higher_is_better": False}):
            a, b = rank_scores(fwd, **kw), rank_scores(dict(rev), **kw)
            assert a.entries == b.entries and a.ties == b.ties

    def test_transitive_grouping_and_tolerance(self):
        r = rank_scores({"x": 1.0, "y": 1.0 + 0.9e-6, "z": 1.0 + 1.8e-6, "w": 1.1})
        assert r.ties == [("x", "y", "z")]
        assert rank_scores({"x": 1.0, "y": 1.0 + 0.9e-6}, rtol=0, atol=0).ties == []
        with pytest.raises(InvalidParameterError, match="rtol"):
            rank_scores({"x": 1.0}, rtol=-1)

    def test_tie_break_direction_and_missing_values(self):
        scores = {"a": 0.0, "b": 0.0, "c": 0.0}
        tb = {"a": 0.2, "b": 0.9, "c": float("nan")}
        r = rank_scores(scores, tie_break=tb, tie_break_metric="knn_accuracy")
        assert r.names == ["b", "a", "c"]  # finite tie-breaks first (higher better), NaN then by name
        assert [e.tie_break for e in r.entries] == [0.9, 0.2, None]
        assert "ordered by knn_accuracy" in r.describe()
        r = rank_scores(scores, tie_break=tb, tie_break_metric="loss", tie_break_higher_is_better=False)
        assert r.names == ["a", "b", "c"]

    def test_lower_is_better(self):
        assert rank_scores({"a": 2.0, "b": 1.0}, higher_is_better=False).names == ["b", "a"]

    def test_failures_never_ranked(self):
        r = rank_scores(
            {"a": 1.0, "b": float("nan"), "c": None, "d": float("inf"), "e": 2.0},
            metric="logme",
            failures={"e": "logme: boom", "f": "not scored"},
        )
        assert r == [("a", 1.0)]
        reasons = {f.name: f.reason for f in r.failed}
        assert [f.name for f in r.failed] == ["b", "c", "d", "e", "f"]
        assert reasons["b"] == "logme returned NaN" and reasons["c"] == "no score"
        assert reasons["d"] == "logme returned inf" and reasons["e"] == "logme: boom"
        assert "5 candidates failed" in r.describe()
        assert rank_scores({"a": 1.0, "b": 2.0}).describe() == ""
        assert rank_scores({"a": None}).pick is None

    def test_as_dict_is_strict_json(self):
        from pickwise.utils.io import strict_json_dumps

        r = rank_scores({"a": 1.0, "b": 1.0, "c": float("nan")})
        text = strict_json_dumps(r.as_dict())
        loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
        assert loaded["failed"] == [{"name": "c", "score": None, "reason": "score returned NaN"}]
        assert loaded["ties"] == [["a", "b"]]


class TestRankModelsFailures:
    def _feats(self):
        rng = np.random.default_rng(0)
        y = np.arange(120) % 3
        good = np.eye(3)[y] + 0.2 * rng.normal(size=(120, 3))
        return y, {"good": good, "dead": np.zeros((120, 3)), "noise": rng.normal(size=(120, 3))}

    @pytest.mark.parametrize("metric", ["logme", "h_score", "gbc", "transrate", "sfda", "parc", "knn_accuracy"])
    def test_dead_model_is_failed_not_ranked(self, metric):
        y, feats = self._feats()
        r = rank_models(feats, y, metric=metric)
        assert "dead" not in r.names and r.pick == "good", (metric, r, r.failed)
        (failed,) = r.failed
        assert failed.name == "dead" and "\n" not in failed.reason
        assert "zero" in failed.reason or "constant" in failed.reason, failed.reason

    def test_score_models_records_errors(self):
        y, feats = self._feats()
        table = score_models(feats, y, metrics=["logme", "h_score"])
        for metric in ("logme", "h_score"):
            assert table[metric]["dead"]["score"] is None and table[metric]["dead"]["error"]
            assert np.isfinite(table[metric]["good"]["score"]) and "error" not in table[metric]["good"]

    def test_shared_parameter_error_still_raises(self):
        _, feats = self._feats()
        with pytest.raises(InvalidParameterError, match="at least 2 classes"):
            rank_models(feats, np.zeros(120), metric="logme")

    def test_tie_break_metric(self):
        rng = np.random.default_rng(0)
        y = np.arange(200) % 2
        weak = np.eye(2)[y] + 2.0 * rng.normal(size=(200, 2))
        strong = np.eye(2)[y] + 0.1 * rng.normal(size=(200, 2))
        # a constant metric makes every candidate tie; knn accuracy then orders them
        r = rank_models({"weak": weak, "strong": strong}, y, metric="logme", rtol=10.0, tie_break_metric="knn")
        assert r.ties == [("strong", "weak")] and r.names == ["strong", "weak"]
        assert r.tie_break_metric == "knn_accuracy" and r.entries[0].tie_break > r.entries[1].tie_break
        assert r.entries[0].rank == r.entries[1].rank == 1


class TestPickStability:
    def test_clear_pick_is_stable_and_deterministic(self):
        rng = np.random.default_rng(0)
        y = np.arange(150) % 3
        feats = {"good": np.eye(3)[y] + 0.3 * rng.normal(size=(150, 3)), "noise": rng.normal(size=(150, 3))}
        calls = []
        a = pick_stability(feats, y, metric="logme", n_resamples=15, seed=3, progress=lambda i, n: calls.append((i, n)))
        b = pick_stability(feats, y, metric="logme", n_resamples=15, seed=3)
        assert a.pick == "good" and a.share == 1.0 and not a.uncertain and a.n_resamples == 15
        assert a.first_shares == b.first_shares and a.stratified
        assert calls == [(i, 15) for i in range(1, 16)]
        assert "stays first in 100% of 15" in a.describe()

    def test_near_tie_is_uncertain(self):
        rng = np.random.default_rng(1)
        y = np.arange(200) % 2
        base = np.eye(2)[y]
        feats = {k: base + 1.5 * rng.normal(size=(200, 2)) for k in ("a", "b", "c")}
        st = pick_stability(feats, y, metric="h_score", n_resamples=30, seed=0)
        assert 0 < st.share < 1 and sum(st.first_shares.values()) == pytest.approx(1.0)
        assert st.runner_up is not None and st.runner_up_share > 0
        assert st.uncertain == (st.share < 0.8)
        # reference: the same resampling by hand
        full = rank_models(feats, y, metric="h_score").pick
        assert st.pick == full

    def test_per_sample_embeddings_resampled_with_features(self):
        rng = np.random.default_rng(2)
        y = np.arange(120) % 4
        emb = rng.normal(size=(4, 6))[y] + 0.05 * rng.normal(size=(120, 6))
        feats = {
            "good": emb @ rng.normal(size=(6, 5)) + 0.1 * rng.normal(size=(120, 5)),
            "bad": rng.normal(size=(120, 5)),
        }
        st = pick_stability(feats, None, metric="emms", label_embeddings=emb, n_resamples=5)
        assert st.pick == "good" and st.share == 1.0 and not st.stratified
        with pytest.raises(ShapeError, match="label_embeddings"):
            pick_stability(feats, None, metric="emms", label_embeddings=emb[:100], n_resamples=2)

    def test_max_seconds_and_errors(self):
        rng = np.random.default_rng(0)
        y = np.arange(60) % 2
        feats = {"a": rng.normal(size=(60, 3)), "b": rng.normal(size=(60, 3))}
        st = pick_stability(feats, y, metric="h_score", n_resamples=1000, max_seconds=1e-9)
        assert st.n_resamples == 1 and st.n_requested == 1000
        with pytest.raises(DataFormatError, match="no candidate"):
            pick_stability({"dead": np.zeros((60, 3))}, y, metric="logme", n_resamples=2)
        with pytest.raises(InvalidParameterError, match="threshold"):
            pick_stability(feats, y, metric="logme", threshold=2)


class TestPickStabilityResampling:
    def test_subsample_has_no_duplicates_and_keeps_class_shares(self, monkeypatch):
        from pickwise.selection._spec import METRICS, MetricSpec

        seen = []

        def spy(features, labels):
            seen.append((features.copy(), np.asarray(labels).copy()))
            return float(features[:, 0].mean())

        monkeypatch.setitem(METRICS._items, "spy", MetricSpec("spy", spy, True, "features", ("classification",)))
        y = np.repeat([0, 1, 2], [10, 20, 30])
        x = np.arange(60, dtype=float).reshape(60, 1) + np.zeros((60, 2))
        st = pick_stability({"a": x, "b": -x}, y, metric="spy", n_resamples=3, fraction=0.5)
        assert st.resample == "subsample" and st.fraction == 0.5 and st.stratified
        for feats, labels in seen[2:]:  # the first two calls score the full data
            rows = feats[:, 0]
            assert np.unique(rows).size == rows.size == 30  # no duplicated image
            assert np.bincount(labels).tolist() == [5, 10, 15]

    def test_bootstrap_duplicates_flatter_wide_noise(self):
        # two pure-noise candidates: subsampling reports an uncertain pick; the bootstrap's duplicated rows
        # inflate LogME's fit of the wider one (N=300, about 190 distinct rows per resample, D=192)
        rng = np.random.default_rng(0)
        y = np.arange(300) % 5
        cands = {"wide": rng.normal(size=(300, 192)), "narrow": rng.normal(size=(300, 64))}
        sub = pick_stability(cands, y, metric="logme", n_resamples=10)
        boot = pick_stability(cands, y, metric="logme", n_resamples=10, resample="bootstrap")
        assert sub.uncertain and boot.resample == "bootstrap" and boot.fraction == 1.0
        assert boot.first_shares["wide"] > sub.first_shares["wide"]
        with pytest.raises(InvalidParameterError, match="resample"):
            pick_stability(cands, y, metric="logme", resample="jackknife")
        with pytest.raises(InvalidParameterError, match="fraction"):
            pick_stability(cands, y, metric="logme", fraction=0)
