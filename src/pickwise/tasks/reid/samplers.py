"""PK identity sampling for re-ID training: every batch holds P identities with K tracklets each.

The batch-hard triplet loss needs positives and negatives inside every batch, so re-ID trains on PK batches
(Hermans et al. 2017; torchreid ``RandomIdentitySampler``, fast-reid ``NaiveIdentitySampler``). This sampler follows
torchreid's construction, made deterministic, of fixed length and distributed-aware:

1. per identity, its tracklet indices are shuffled and padded to a multiple of K by drawing more of its own
   tracklets (never one already in the last chunk when it has at least K; an identity with fewer than K tracklets
   repeats some, as torchreid's ``replace=True``), then cut into chunks of K;
2. each global batch draws P distinct identities uniformly among those with chunks left, and takes one chunk of each
   (an identity whose chunks run out is refilled with a fresh shuffle);
3. an epoch has ``max(1, Σ_pid ⌈n_pid / K⌉ // P)`` batches, a number that depends only on the data (so every epoch,
   and every process, has the same number of steps);
4. with ``num_replicas`` processes, process ``r`` takes identities ``r·P/W … (r+1)·P/W - 1`` of every global batch
   (P must be divisible by W): the shards are disjoint, each local batch is itself a (P/W)×K batch, and their
   union is the single-process batch.

The order depends only on ``(seed, epoch)``: the trainer rebuilds the sampler every epoch through
:func:`pk_sampler_factory`, and a resumed run skips the batches already seen.

Example:
    >>> pids = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]
    >>> s = PKSampler(pids, num_identities=2, num_instances=2, seed=0)
    >>> idx = list(s)
    >>> len(idx) == len(s), len(idx) % 4
    (True, 0)
    >>> all(len({pids[i] for i in idx[b : b + 4]}) == 2 for b in range(0, len(idx), 4))
    True
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from torch.utils.data import Sampler

from ...exceptions import ConfigError

__all__ = ["PKSampler", "pk_sampler_factory"]


class PKSampler(Sampler[int]):
    """Deterministic P×K identity sampler (see the module docstring for the construction).

    Args:
        pids: Identity label of every training item (index ``i`` of the dataset has ``pids[i]``).
        num_identities: P, identities per global batch.
        num_instances: K, tracklets per identity per batch.
        seed: Base seed; the order of an epoch depends only on ``(seed, epoch)``.
        epoch: The epoch this sampler yields.
        num_replicas: Number of processes W (P must be divisible by W).
        rank: This process's rank.

    Raises:
        ConfigError: Fewer than P identities, P or K < 1, or P not divisible by W.
    """

    def __init__(
        self,
        pids: Sequence[int],
        num_identities: int,
        num_instances: int,
        seed: int = 0,
        epoch: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if num_identities < 1 or num_instances < 1:
            raise ConfigError(
                f"sampler: P (identities per batch) and K (tracklets per identity) must be >= 1; got "
                f"P={num_identities}, K={num_instances}"
            )
        if num_identities % num_replicas:
            raise ConfigError(
                f"sampler: P={num_identities} identities per batch must be divisible by the number of processes "
                f"({num_replicas}) so that every process gets whole identities"
            )
        self.index_of: dict[int, list[int]] = defaultdict(list)
        for i, pid in enumerate(pids):
            self.index_of[int(pid)].append(i)
        self.identities = sorted(self.index_of)
        if len(self.identities) < num_identities:
            raise ConfigError(
                f"sampler: the training set has {len(self.identities)} identities, fewer than P={num_identities} "
                "per batch; lower sampler.num_identities"
            )
        self.P, self.K = num_identities, num_instances
        self.seed, self.epoch = int(seed), int(epoch)
        self.num_replicas, self.rank = num_replicas, rank
        chunks = sum(-(-len(v) // self.K) for v in self.index_of.values())
        self.num_batches = max(1, chunks // self.P)

    def _chunks(self, rng: random.Random, pid: int) -> list[list[int]]:
        items = list(self.index_of[pid])
        rng.shuffle(items)
        short = -len(items) % self.K
        if short and len(items) >= self.K:  # fill the last chunk with tracklets it does not hold yet
            tail = set(items[len(items) - (self.K - short) :])
            items += rng.sample([i for i in items if i not in tail], short)
        elif short:  # fewer than K tracklets: repeat some (with replacement, as torchreid)
            items += [rng.choice(self.index_of[pid]) for _ in range(short)]
        return [items[i : i + self.K] for i in range(0, len(items), self.K)]

    def global_batches(self) -> list[list[int]]:
        """Every global batch of this epoch (P·K indices each, identity-major: K items of one identity in a row)."""
        rng = random.Random(f"pk:{self.seed}:{self.epoch}")
        pool = {pid: self._chunks(rng, pid) for pid in self.identities}
        batches = []
        for _ in range(self.num_batches):
            available = [pid for pid in self.identities if pool[pid]]
            if len(available) < self.P:  # refill the exhausted identities with a fresh shuffle
                for pid in self.identities:
                    if not pool[pid]:
                        pool[pid] = self._chunks(rng, pid)
                available = list(self.identities)
            chosen = rng.sample(available, self.P)
            batches.append([i for pid in chosen for i in pool[pid].pop()])
        return batches

    def __iter__(self) -> Iterator[int]:
        per_rank = self.P // self.num_replicas * self.K
        lo = self.rank * per_rank
        for batch in self.global_batches():
            yield from batch[lo : lo + per_rank]

    def __len__(self) -> int:
        return self.num_batches * (self.P // self.num_replicas) * self.K


def pk_sampler_factory(pids: Sequence[int], num_identities: int, num_instances: int) -> Callable[..., PKSampler]:
    """A :class:`~pickwise.engine.SamplerFactory` that builds each epoch's :class:`PKSampler` over ``pids``.

    The engine's global batch size must be ``P × K`` (the reid config sets it so); each process's DataLoader batch
    of ``P·K / W`` indices is then one local PK batch.
    """
    labels = [int(p) for p in pids]

    def factory(dataset: Any, *, epoch: int, num_replicas: int, rank: int, seed: int) -> PKSampler:
        if len(dataset) != len(labels):
            raise ConfigError(
                f"sampler: the training set has {len(dataset)} items but {len(labels)} identity labels were given"
            )
        return PKSampler(labels, num_identities, num_instances, seed, epoch, num_replicas, rank)

    return factory
