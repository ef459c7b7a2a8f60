"""pickwise.metrics.retrieval.evaluate_rank against a line-by-line port of torchreid's eval_market1501 (+ fast-reid's
mINP) on random tie-free inputs, plus hand-computed cases and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _helpers.torchreid_port import eval_market1501
from pickwise.exceptions import DataFormatError, InvalidParameterError, ShapeError
from pickwise.metrics.retrieval import evaluate_rank


def _random_case(seed: int, num_q: int = 60, num_g: int = 300, ids: int = 25, cams: int = 4):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(0, ids, num_q)
    g_pids = rng.integers(0, ids + 5, num_g)  # some gallery identities never queried (distractors)
    q_cams = rng.integers(0, cams, num_q)
    g_cams = rng.integers(0, cams, num_g)
    dist = rng.random((num_q, num_g))  # continuous: no ties
    dist -= 0.3 * (q_pids[:, None] == g_pids[None, :])  # true matches closer on average
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("chunk_size", [1, 7, 256])
def test_matches_the_torchreid_port(seed, chunk_size):
    dist, qp, gp, qc, gc = _random_case(seed)
    cmc, mAP, mINP, valid = eval_market1501(dist, qp, gp, qc, gc, 50)
    got = evaluate_rank(dist, qp, gp, qc, gc, max_rank=50, chunk_size=chunk_size)
    np.testing.assert_allclose(got.cmc, cmc, atol=1e-6)
    assert got.mAP == pytest.approx(mAP, abs=1e-6)
    assert got.mINP == pytest.approx(mINP, abs=1e-6)
    assert got.num_valid_queries == valid
    assert got.num_skipped_queries == len(qp) - valid


def test_queries_without_a_cross_camera_match_are_skipped_and_counted():
    dist, qp, gp, qc, gc = _random_case(0, ids=40)
    qp = qp.copy()
    qp[:5] = 999  # identities absent from the gallery
    result = evaluate_rank(dist, qp, gp, qc, gc)
    assert result.num_skipped_queries >= 5


def test_hand_computed_case():
    # one query (id 1, camera 0); gallery ranked: id 2, id 1 (cam 0: removed), id 1 (cam 1), id 3, id 1 (cam 2)
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    r = evaluate_rank(dist, [1], [2, 1, 1, 3, 1], [0], [1, 0, 1, 1, 2], max_rank=4)
    # after removal: [id2, id1, id3, id1] -> relevance [0, 1, 0, 1]
    assert r.cmc.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert r.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert r.mINP == pytest.approx(2 / 4)


def test_torch_inputs_and_max_rank_above_gallery():
    dist, qp, gp, qc, gc = _random_case(1, num_g=30)
    a = evaluate_rank(dist, qp, gp, qc, gc, max_rank=100)
    b = evaluate_rank(*(torch.as_tensor(x) for x in (dist, qp, gp, qc, gc)), max_rank=100)
    assert a.cmc.shape == (30,) and np.array_equal(a.cmc, b.cmc) and a.mAP == b.mAP


def test_bad_input_is_one_clear_error():
    dist, qp, gp, qc, gc = _random_case(2)
    with pytest.raises(ShapeError, match="q_pids"):
        evaluate_rank(dist, qp[:-1], gp, qc, gc)
    with pytest.raises(ShapeError, match=r"\(Q, G\)"):
        evaluate_rank(dist[0], qp, gp, qc, gc)
    bad = dist.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataFormatError, match="NaN"):
        evaluate_rank(bad, qp, gp, qc, gc)
    with pytest.raises(InvalidParameterError, match="max_rank"):
        evaluate_rank(dist, qp, gp, qc, gc, max_rank=0)
    with pytest.raises(DataFormatError, match="no query"):
        evaluate_rank(dist, qp + 1000, gp, qc, gc)


def test_more_bad_input_gallery_lengths_and_empty_sides():
    dist, qp, gp, qc, gc = _random_case(3)
    with pytest.raises(ShapeError, match="g_pids/g_camids"):
        evaluate_rank(dist, qp, gp, qc, gc[:-2])
    with pytest.raises(ShapeError, match="at least one query"):
        evaluate_rank(dist[:, :0], qp, gp[:0], qc, gc[:0])
    with pytest.raises(InvalidParameterError, match="numeric"):
        evaluate_rank(dist, np.array(["a"] * len(qp), dtype=object), gp, qc, gc)
