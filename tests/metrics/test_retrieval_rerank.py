"""pickwise.metrics.retrieval.pairwise_distance and re_ranking against line-by-line ports of torchreid's
distance functions and ``re_ranking`` (tests/_helpers/torchreid_port.py) and naive float64 formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _helpers.torchreid_port import cosine_distance, euclidean_squared_distance, eval_market1501
from _helpers.torchreid_port import re_ranking as port_re_ranking
from pickwise.exceptions import DataFormatError, InvalidParameterError, ShapeError
from pickwise.metrics.retrieval import evaluate_rank, pairwise_distance, re_ranking


def _naive_sq_euclidean(q: np.ndarray, g: np.ndarray) -> np.ndarray:
    return ((q[:, None, :].astype(np.float64) - g[None, :, :]) ** 2).sum(-1)


def _clustered(seed: int, num_q: int, num_g: int, ids: int, dim: int = 16, cams: int = 3):
    """Features around identity centres (tie-free float64 distances), several cameras."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    qp, gp = rng.integers(0, ids, num_q), rng.integers(0, ids, num_g)
    q = centres[qp] + 0.7 * rng.normal(size=(num_q, dim))
    g = centres[gp] + 0.7 * rng.normal(size=(num_g, dim))
    qc, gc = rng.integers(0, cams, num_q), rng.integers(0, cams, num_g)
    return q, g, qp, gp, qc, gc


# --- pairwise_distance -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 3, 4096])
def test_squared_euclidean_matches_naive_float64_and_the_torchreid_port(chunk_size):
    q, g, *_ = _clustered(0, 17, 40, 5)
    got = pairwise_distance(q, g, chunk_size=chunk_size)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_allclose(got, _naive_sq_euclidean(q, g), rtol=1e-10, atol=1e-10)
    qt, gt = torch.from_numpy(q).float(), torch.from_numpy(g).float()
    got32 = pairwise_distance(qt, gt, chunk_size=chunk_size)
    assert isinstance(got32, torch.Tensor) and got32.dtype == torch.float32
    torch.testing.assert_close(got32, euclidean_squared_distance(qt, gt).clamp_min(0), rtol=1e-5, atol=1e-5)


def test_cosine_matches_the_torchreid_port_and_numpy():
    q, g, *_ = _clustered(1, 9, 21, 4)
    qt, gt = torch.from_numpy(q), torch.from_numpy(g)
    torch.testing.assert_close(pairwise_distance(qt, gt, "cosine", chunk_size=4), cosine_distance(qt, gt))
    naive = 1 - (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
    np.testing.assert_allclose(pairwise_distance(q, g, "cosine"), naive, atol=1e-12)


def test_distance_is_nonnegative_on_duplicates():
    x = torch.randn(50, 64) * 100
    d = pairwise_distance(x, x)
    assert bool((d >= 0).all())


def test_distance_bad_input():
    with pytest.raises(InvalidParameterError, match="metric"):
        pairwise_distance(np.ones((2, 3)), np.ones((2, 3)), "manhattan")
    with pytest.raises(ShapeError, match="same D"):
        pairwise_distance(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(InvalidParameterError, match="chunk_size"):
        pairwise_distance(np.ones((2, 3)), np.ones((2, 3)), chunk_size=0)


# --- re_ranking ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "num_q", "num_g", "ids", "k1", "k2"),
    [
        (0, 30, 150, 12, 20, 6),  # torchreid's defaults
        (1, 40, 120, 30, 7, 3),
        (2, 25, 80, 10, 5, 1),  # no local query expansion
        (3, 6, 9, 3, 20, 6),  # k1 + 1 > N: neighbour lists truncated as in numpy slicing
        (4, 20, 60, 8, 2, 9),  # k2 > k1 + 1
    ],
)
def test_re_ranking_matches_the_torchreid_port(seed, num_q, num_g, ids, k1, k2):
    q, g, *_ = _clustered(seed, num_q, num_g, ids)
    qg, qq, gg = _naive_sq_euclidean(q, g), _naive_sq_euclidean(q, q), _naive_sq_euclidean(g, g)
    ref = port_re_ranking(qg, qq, gg, k1=k1, k2=k2, lambda_value=0.3)
    got = re_ranking(qg, qq, gg, k1=k1, k2=k2, lambda_value=0.3)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (num_q, num_g)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    # small blocks exercise the chunked top-k, the densified rows and the pair-budgeted Jaccard join
    got_small = re_ranking(*(torch.from_numpy(x) for x in (qg, qq, gg)), k1=k1, k2=k2, chunk_size=4, pair_budget=50)
    assert isinstance(got_small, torch.Tensor) and got_small.dtype == torch.float32
    np.testing.assert_allclose(got_small.numpy(), ref, rtol=0, atol=1e-5)


def test_re_ranking_matches_the_port_on_asymmetric_inputs():
    # torchreid normalizes by column maxima then transposes; random non-symmetric matrices check that orientation
    rng = np.random.default_rng(5)
    qg, qq, gg = rng.random((12, 40)) + 0.01, rng.random((12, 12)) + 0.01, rng.random((40, 40)) + 0.01
    for lam in (0.0, 0.3, 1.0):
        ref = port_re_ranking(qg, qq, gg, k1=6, k2=3, lambda_value=lam)
        np.testing.assert_allclose(re_ranking(qg, qq, gg, k1=6, k2=3, lambda_value=lam), ref, rtol=0, atol=1e-5)


def test_re_ranked_evaluation_matches_the_port_with_several_cameras():
    q, g, qp, gp, qc, gc = _clustered(6, 50, 200, 20, cams=4)
    qg, qq, gg = _naive_sq_euclidean(q, g), _naive_sq_euclidean(q, q), _naive_sq_euclidean(g, g)
    ref = port_re_ranking(qg, qq, gg)
    cmc, mAP, mINP, valid = eval_market1501(ref, qp, gp, qc, gc, 20)
    got = evaluate_rank(re_ranking(qg, qq, gg), qp, gp, qc, gc, max_rank=20)
    np.testing.assert_allclose(got.cmc, cmc, atol=1e-6)
    assert got.mAP == pytest.approx(mAP, abs=1e-6)
    assert got.mINP == pytest.approx(mINP, abs=1e-6)
    assert got.num_valid_queries == valid


def test_re_ranking_lambda_one_is_the_normalized_squared_distance():
    q, g, *_ = _clustered(7, 5, 30, 4)
    qg, qq, gg = _naive_sq_euclidean(q, g), _naive_sq_euclidean(q, q), _naive_sq_euclidean(g, g)
    col_max = np.concatenate([np.concatenate([qq, qg], 1), np.concatenate([qg.T, gg], 1)]) ** 2
    expected = (qg**2) / col_max.max(0)[:5, None]
    np.testing.assert_allclose(re_ranking(qg, qq, gg, lambda_value=1.0), expected, rtol=1e-6)


def test_re_ranking_bad_input():
    qg, qq, gg = np.ones((3, 4)), np.ones((3, 3)), np.ones((4, 4))
    with pytest.raises(ShapeError, match="g_g_dist"):
        re_ranking(qg, qq, np.ones((3, 3)))
    with pytest.raises(ShapeError, match=r"\(Q, G\)"):
        re_ranking(np.ones(3), qq, gg)
    bad = qg.copy()
    bad[1, 2] = np.nan
    with pytest.raises(DataFormatError, match="NaN"):
        re_ranking(bad, qq, gg)
    with pytest.raises(InvalidParameterError, match="k1"):
        re_ranking(qg, qq, gg, k1=0)
    with pytest.raises(InvalidParameterError, match="lambda_value"):
        re_ranking(qg, qq, gg, lambda_value=1.5)
    with pytest.raises(DataFormatError, match="distance 0"):
        re_ranking(np.zeros((3, 4)), np.zeros((3, 3)), np.zeros((4, 4)))
