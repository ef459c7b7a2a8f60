"""pickwise.metrics.retrieval.RetrievalAccumulator: equals evaluate_rank on naive float64 distances (and the
torchreid ports with re-ranking), independent of batching, order, merging and of two gloo processes."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from _helpers.torchreid_port import eval_market1501
from _helpers.torchreid_port import re_ranking as port_re_ranking
from pickwise.exceptions import DataFormatError, InvalidParameterError, ShapeError
from pickwise.metrics import Accumulator
from pickwise.metrics.retrieval import RankResult, RetrievalAccumulator, evaluate_rank

KEYS = {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP", "num_valid_queries", "num_skipped_queries"}


def _data(seed: int = 0, n: int = 160, ids: int = 15, dim: int = 12, cams: int = 3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    pids = rng.integers(0, ids + 3, n)  # a few identities without centre neighbours
    feats = centres[pids % ids] + 0.8 * rng.normal(size=(n, dim))
    camids = rng.integers(0, cams, n)
    is_query = rng.random(n) < 0.25
    return (
        torch.from_numpy(feats),
        torch.from_numpy(pids),
        torch.from_numpy(camids),
        torch.from_numpy(is_query),
    )


def _naive_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _reference(feats, pids, camids, is_query, max_rank=50):
    f, p, c, q = (x.numpy() for x in (feats, pids, camids, is_query))
    return evaluate_rank(_naive_sq(f[q], f[~q]), p[q], p[~q], c[q], c[~q], max_rank=max_rank)


def test_is_an_accumulator_and_matches_evaluate_rank_on_naive_distances():
    feats, pids, camids, isq = _data()
    acc = RetrievalAccumulator(dtype=torch.float64)
    assert isinstance(acc, Accumulator)
    acc.update(feats, pids, camids, isq)
    got, ref = acc.compute(), _reference(feats, pids, camids, isq)
    assert set(got) == KEYS and all(isinstance(v, float) for v in got.values())
    for k in (1, 5, 10, 20):
        assert got[f"rank{k}"] == pytest.approx(ref.rank(k), abs=1e-12)
    assert got["mAP"] == pytest.approx(ref.mAP, abs=1e-12)
    assert got["mINP"] == pytest.approx(ref.mINP, abs=1e-12)
    assert got["num_valid_queries"] == ref.num_valid_queries
    assert got["num_skipped_queries"] == ref.num_skipped_queries
    result = acc.result()
    assert isinstance(result, RankResult) and np.allclose(result.cmc, ref.cmc)
    assert acc.distmat().shape == (int(isq.sum()), int((~isq).sum()))
    ids = acc.ids()
    assert torch.equal(ids["q_pids"], pids[isq]) and torch.equal(ids["g_index"], torch.nonzero(~isq)[:, 0])


def test_float32_storage_is_close_to_float64():
    feats, pids, camids, isq = _data(1)
    a, b = RetrievalAccumulator(), RetrievalAccumulator(dtype=torch.float64)
    a.update(feats.float(), pids, camids, isq)
    b.update(feats, pids, camids, isq)
    assert a.compute()["mAP"] == pytest.approx(b.compute()["mAP"], abs=1e-4)


def test_batches_order_merge_and_duplicates_do_not_change_the_result():
    feats, pids, camids, isq = _data(2)
    whole = RetrievalAccumulator(dtype=torch.float64)
    whole.update(feats, pids, camids, isq, index=torch.arange(len(pids)))
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(pids)))
    a, b = RetrievalAccumulator(dtype=torch.float64), RetrievalAccumulator(dtype=torch.float64)
    for i, part in enumerate(perm.split(23)):
        target = a if i % 2 else b
        target.update(feats[part], pids[part], camids[part], isq[part], index=part)
    b.update(feats[perm[:7]], pids[perm[:7]], camids[perm[:7]], isq[perm[:7]], index=perm[:7])  # padded duplicates
    merged = a.merge(b)
    assert merged.compute() == whole.compute()
    assert torch.equal(merged.distmat(), whole.distmat())


def test_query_and_gallery_may_share_indices():
    feats, pids, camids, isq = _data(10)
    acc = RetrievalAccumulator(dtype=torch.float64)
    q, g = torch.nonzero(isq)[:, 0], torch.nonzero(~isq)[:, 0]
    acc.update(feats[g], pids[g], camids[g], False, index=torch.arange(len(g)))  # gallery first, indices from 0
    acc.update(feats[q], pids[q], camids[q], True, index=torch.arange(len(q)))  # queries, indices from 0 again
    acc.update(feats[q[:3]], pids[q[:3]], camids[q[:3]], True, index=torch.arange(3))  # duplicates: dropped
    ref = _reference(feats, pids, camids, isq)
    got = acc.compute()
    assert got["mAP"] == pytest.approx(ref.mAP, abs=1e-12)
    assert got["num_valid_queries"] + got["num_skipped_queries"] == len(q)
    assert torch.equal(acc.ids()["q_pids"], pids[q]) and torch.equal(acc.ids()["g_pids"], pids[g])


def test_is_query_may_be_one_bool_per_batch_and_index_may_be_omitted():
    feats, pids, camids, isq = _data(3)
    acc = RetrievalAccumulator(dtype=torch.float64)
    acc.update(feats[isq], pids[isq], camids[isq], True)
    acc.update(feats[~isq], pids[~isq], camids[~isq], False)
    ref = _reference(feats, pids, camids, isq)
    assert acc.compute()["mAP"] == pytest.approx(ref.mAP, abs=1e-12)


def test_rerank_equals_the_torchreid_pipeline():
    feats, pids, camids, isq = _data(4, n=200)
    acc = RetrievalAccumulator(rerank=True, max_rank=20, dtype=torch.float64)
    acc.update(feats, pids, camids, isq)
    f, p, c, q = (x.numpy() for x in (feats, pids, camids, isq))
    d = port_re_ranking(_naive_sq(f[q], f[~q]), _naive_sq(f[q], f[q]), _naive_sq(f[~q], f[~q]))
    cmc, mAP, mINP, _ = eval_market1501(d, p[q], p[~q], c[q], c[~q], 20)
    got = acc.compute()
    assert got["rank1"] == pytest.approx(float(cmc[0]), abs=1e-6)
    assert got["rank10"] == pytest.approx(float(cmc[9]), abs=1e-6)
    assert got["mAP"] == pytest.approx(mAP, abs=1e-6)
    assert got["mINP"] == pytest.approx(mINP, abs=1e-6)
    assert acc.result().cmc.shape == (20,)


def test_cosine_metric_differs_from_euclidean_on_unnormalized_features():
    feats, pids, camids, isq = _data(5)
    scaled = feats * torch.rand(len(feats), 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 5
    e, c = RetrievalAccumulator(dtype=torch.float64), RetrievalAccumulator("cosine", dtype=torch.float64)
    e.update(scaled, pids, camids, isq)
    c.update(scaled, pids, camids, isq)
    f, p, cam, q = (x.numpy() for x in (scaled, pids, camids, isq))
    fn = f / np.linalg.norm(f, axis=1, keepdims=True)
    ref = evaluate_rank(1 - fn[q] @ fn[~q].T, p[q], p[~q], cam[q], cam[~q])
    assert c.compute()["mAP"] == pytest.approx(ref.mAP, abs=1e-12)
    assert e.compute()["mAP"] != c.compute()["mAP"]


def test_state_dict_round_trip_and_reset():
    feats, pids, camids, isq = _data(6)
    acc = RetrievalAccumulator(dtype=torch.float64)
    acc.update(feats, pids, camids, isq, index=torch.arange(len(pids)))
    other = RetrievalAccumulator(dtype=torch.float64)
    other.load_state_dict(acc.state_dict())
    assert other.compute() == acc.compute()
    other.reset()
    with pytest.raises(DataFormatError, match="need queries"):
        other.compute()


def test_bad_input_is_one_clear_error():
    feats, pids, camids, isq = _data(7)
    acc = RetrievalAccumulator()
    with pytest.raises(ShapeError, match="pids"):
        acc.update(feats, pids[:-1], camids, isq)
    with pytest.raises(ShapeError, match=r"\(B, D\)"):
        acc.update(feats[0], pids, camids, isq)
    bad = feats.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(DataFormatError, match="NaN"):
        acc.update(bad, pids, camids, isq)
    acc.update(feats, pids, camids, isq)
    with pytest.raises(InvalidParameterError, match="index"):
        acc.update(feats, pids, camids, isq, index=torch.arange(len(pids)))
    with pytest.raises(ShapeError, match="width"):
        acc.update(feats[:, :3], pids, camids, isq)
    only_queries = RetrievalAccumulator()
    only_queries.update(feats, pids, camids, torch.ones_like(isq))
    with pytest.raises(DataFormatError, match="0 gallery"):
        only_queries.compute()
    no_match = RetrievalAccumulator()
    no_match.update(feats, pids + 1000 * isq.long(), camids, isq)  # query identities absent from the gallery
    with pytest.raises(DataFormatError, match="no query"):
        no_match.compute()
    with pytest.raises(InvalidParameterError, match="metric"):
        RetrievalAccumulator("l1")
    with pytest.raises(TypeError, match="cannot merge"):
        RetrievalAccumulator().merge(RetrievalAccumulator(rerank=True))


def test_absent_query_identities_are_skipped_and_counted():
    feats, pids, camids, isq = _data(8)
    pids = pids.clone()
    first_queries = torch.nonzero(isq)[:4, 0]
    pids[first_queries] = 999
    acc = RetrievalAccumulator(dtype=torch.float64)
    acc.update(feats, pids, camids, isq)
    ref = _reference(feats, pids, camids, isq)
    assert acc.compute()["num_skipped_queries"] == ref.num_skipped_queries >= 4


# --- two gloo processes --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIGS = [(False, True), (True, True), (False, False)]  # (rerank, with_index)


def _worker(rank: int, world: int, port: int, data: tuple, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        feats, pids, camids, isq = data
        n = len(pids)
        # uneven, interleaved shards in a process-specific order; rank 1 gets more samples than rank 0
        shard = torch.arange(n)[(torch.arange(n) % 3 == 0) == (rank == 0)]
        shard = shard.flip(0) if rank else shard
        for rerank, with_index in CONFIGS:
            acc = RetrievalAccumulator(rerank=rerank, dtype=torch.float64)
            for part in shard.split(17):
                acc.update(feats[part], pids[part], camids[part], isq[part], index=part if with_index else None)
            acc.sync()
            out[(rank, rerank, with_index)] = (acc.compute(), acc.distmat().clone())
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_sync_over_two_gloo_processes_equals_single_process():
    data = _data(9, n=150)
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), data, out), nprocs=2, join=True)
    for rerank, with_index in CONFIGS:
        single = RetrievalAccumulator(rerank=rerank, dtype=torch.float64)
        single.update(*data, index=torch.arange(len(data[1])))
        expected = single.compute()
        for rank in (0, 1):
            got, distmat = out[(rank, rerank, with_index)]
            assert got.keys() == expected.keys()
            for key, value in expected.items():
                assert got[key] == pytest.approx(value, abs=1e-12), (key, rerank, with_index)
            if with_index:  # rows and columns in dataset-index order: the same matrix
                torch.testing.assert_close(distmat, single.distmat(), rtol=0, atol=1e-10)
            else:  # arrival order: same size, metrics equal above (tie-free distances)
                assert distmat.shape == single.distmat().shape
