"""pickwise.metrics.classification against scikit-learn and naive loops; accumulators merged and synced on gloo."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import balanced_accuracy_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from pickwise.exceptions import ShapeError
from pickwise.metrics import (
    ConfusionMatrix,
    MeanMetric,
    TopKAccuracy,
    balanced_accuracy,
    confusion_matrix,
    topk_correct,
)


def _naive_topk(logits: np.ndarray, targets: np.ndarray, k: int) -> int:
    hits = 0
    for row, t in zip(logits, targets):
        order = sorted(range(len(row)), key=lambda j: -row[j])  # distinct values: no ties
        hits += int(t in order[:k])
    return hits


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topk_matches_naive_loop(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(57, 7))
    targets = rng.integers(0, 7, size=57)
    got = topk_correct(torch.from_numpy(logits), torch.from_numpy(targets), topk=(1, 3, 5, 9))
    for k in (1, 3, 5):
        assert got[k] == _naive_topk(logits, targets, k)
    assert got[9] == 57  # k above C: every sample counts


@pytest.mark.parametrize("seed", [0, 1])
def test_confusion_matrix_and_balanced_accuracy_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, size=200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 5, size=200))
    m = confusion_matrix(torch.from_numpy(p), torch.from_numpy(y), 5)
    np.testing.assert_array_equal(m.numpy(), sk_confusion_matrix(y, p, labels=range(5)))
    assert balanced_accuracy(m) == pytest.approx(balanced_accuracy_score(y, p), abs=1e-12)


def test_confusion_matrix_ignores_out_of_range_targets_and_takes_logits():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, 0.0]])
    targets = torch.tensor([0, 255, -1])
    assert confusion_matrix(logits, targets, 2).tolist() == [[1, 0], [0, 0]]


def test_accumulators_streamed_equal_whole():
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(size=(100, 6)))
    targets = torch.from_numpy(rng.integers(0, 6, size=100))
    whole = TopKAccuracy((1, 5))
    whole.update(logits, targets)
    a, b = TopKAccuracy((1, 5)), TopKAccuracy((1, 5))
    a.update(logits[:37], targets[:37])
    b.update(logits[37:], targets[37:])
    assert a.merge(b).compute() == whole.compute()
    cm = ConfusionMatrix(6)
    for chunk in range(0, 100, 30):
        cm.update(logits[chunk : chunk + 30], targets[chunk : chunk + 30])
    assert torch.equal(cm.compute(), confusion_matrix(logits, targets, 6))
    mean = MeanMetric()
    mean.update(torch.tensor(2.0), weight=3)
    mean.update(torch.tensor([1.0, 1.0]))
    assert mean.compute() == pytest.approx((6 + 2) / 5)


def test_state_dict_round_trip_and_reset():
    acc = TopKAccuracy((1,))
    acc.update(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    other = TopKAccuracy((1,))
    other.load_state_dict(acc.state_dict())
    assert other.compute() == {"acc": 1.0}
    other.reset()
    assert np.isnan(other.compute()["acc"])


def test_bad_shapes_and_merges_raise():
    with pytest.raises(ShapeError, match=r"\(N, C\)"):
        topk_correct(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ShapeError, match="targets"):
        TopKAccuracy().update(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="cannot merge"):
        TopKAccuracy().merge(ConfusionMatrix(2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, logits: torch.Tensor, targets: torch.Tensor, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        acc, cm, mean = TopKAccuracy((1, 3)), ConfusionMatrix(4), MeanMetric()
        shard = slice(rank, None, world)  # uneven shards: 51 and 50 samples
        acc.update(logits[shard], targets[shard])
        cm.update(logits[shard], targets[shard])
        mean.update(logits[shard, 0])
        acc.sync(), cm.sync(), mean.sync()
        if rank == 0:
            out["acc"] = acc.compute()
            out["cm"] = cm.compute()
            out["mean"] = mean.compute()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_sync_over_two_gloo_processes_equals_single_process():
    rng = np.random.default_rng(4)
    logits = torch.from_numpy(rng.normal(size=(101, 4)))
    targets = torch.from_numpy(rng.integers(0, 4, size=101))
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), logits, targets, out), nprocs=2, join=True)
    single = TopKAccuracy((1, 3))
    single.update(logits, targets)
    assert out["acc"] == single.compute()
    assert torch.equal(out["cm"], confusion_matrix(logits, targets, 4))
    assert out["mean"] == pytest.approx(float(logits[:, 0].mean()), abs=1e-12)
