"""PK sampler: batch composition, determinism per (seed, epoch), disjoint distributed shards, fixed length."""

from __future__ import annotations

import collections

import pytest

from pickwise.exceptions import ConfigError
from pickwise.tasks.reid.samplers import PKSampler, pk_sampler_factory

# 7 identities with 1..6 tracklets each
PIDS = [p for p, n in enumerate([1, 2, 3, 4, 5, 6, 2]) for _ in range(n)]


@pytest.mark.parametrize(("p", "k"), [(2, 2), (3, 4), (4, 1)])
def test_every_batch_has_p_identities_with_k_tracklets(p, k):
    P, K = p, k
    s = PKSampler(PIDS, P, K, seed=3)
    idx = list(s)
    assert len(idx) == len(s) == s.num_batches * P * K
    chunks = sum(-(-c // K) for c in collections.Counter(PIDS).values())
    assert s.num_batches == max(1, chunks // P)
    for b in range(0, len(idx), P * K):
        batch = idx[b : b + P * K]
        counts = collections.Counter(PIDS[i] for i in batch)
        assert len(counts) == P and set(counts.values()) == {K}
        for j in range(0, P * K, K):  # identity-major: K items of one identity in a row
            assert len({PIDS[i] for i in batch[j : j + K]}) == 1
        for pid in counts:  # an identity with >= K tracklets never repeats one inside a chunk
            chunk_items = [i for i in batch if PIDS[i] == pid]
            if PIDS.count(pid) >= K:
                assert len(set(chunk_items)) == K


def test_deterministic_per_seed_and_epoch():
    a = list(PKSampler(PIDS, 2, 2, seed=5, epoch=1))
    assert a == list(PKSampler(PIDS, 2, 2, seed=5, epoch=1))
    assert a != list(PKSampler(PIDS, 2, 2, seed=5, epoch=2))
    assert a != list(PKSampler(PIDS, 2, 2, seed=6, epoch=1))
    assert len(PKSampler(PIDS, 2, 2, epoch=0)) == len(PKSampler(PIDS, 2, 2, epoch=7))


def test_distributed_shards_are_disjoint_and_union_to_the_single_process_batches():
    single = PKSampler(PIDS, 4, 2, seed=1)
    shards = [list(PKSampler(PIDS, 4, 2, seed=1, num_replicas=2, rank=r)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(single) // 2
    for b, batch in enumerate(single.global_batches()):
        local = [shards[r][b * 4 : (b + 1) * 4] for r in range(2)]
        assert local[0] + local[1] == batch
        assert not {PIDS[i] for i in local[0]} & {PIDS[i] for i in local[1]}
        for part in local:
            assert set(collections.Counter(PIDS[i] for i in part).values()) == {2}


def test_errors_and_factory():
    with pytest.raises(ConfigError, match="fewer than P"):
        PKSampler(PIDS, 8, 2)
    with pytest.raises(ConfigError, match="divisible"):
        PKSampler(PIDS, 3, 2, num_replicas=2)
    with pytest.raises(ConfigError):
        PKSampler(PIDS, 0, 2)
    factory = pk_sampler_factory(PIDS, 2, 2)
    s = factory(list(range(len(PIDS))), epoch=3, num_replicas=1, rank=0, seed=9)
    assert list(s) == list(PKSampler(PIDS, 2, 2, seed=9, epoch=3))
    with pytest.raises(ConfigError, match="identity labels"):
        factory(list(range(5)), epoch=0, num_replicas=1, rank=0, seed=0)
