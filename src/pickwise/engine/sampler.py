"""Samplers that shard data over processes and can restart in the middle of an epoch."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Protocol

from torch.utils.data import Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

__all__ = [
    "ResumableDistributedSampler",
    "SamplerFactory",
    "ShardSampler",
    "SkipSampler",
    "resumable_sampler_factory",
]


class SamplerFactory(Protocol):
    """Builds the training sampler of one epoch; the trainer calls it at the start of every epoch.

    The order must depend only on ``(dataset, epoch, num_replicas, rank, seed)`` (and on state the caller restores
    itself, such as the labelled pool of an active-learning round), so a resumed run sees the same data. Each
    process's sampler must yield the same number of indices (DDP needs equal step counts). The sampler may change
    length between epochs (a pool that grows); the trainer counts each epoch's steps from ``len(sampler)``.
    """

    def __call__(self, dataset: Dataset, *, epoch: int, num_replicas: int, rank: int, seed: int) -> Sampler[int]:
        """The sampler of ``epoch`` for process ``rank`` of ``num_replicas``."""
        ...


def resumable_sampler_factory(
    dataset: Dataset, *, epoch: int, num_replicas: int, rank: int, seed: int
) -> ResumableDistributedSampler:
    """The default: a shuffled :class:`ResumableDistributedSampler` (drop-last) set to ``epoch``.

    Example:
        >>> s = resumable_sampler_factory(list(range(10)), epoch=0, num_replicas=2, rank=1, seed=0)
        >>> len(s), sorted(s) == sorted(resumable_sampler_factory(list(range(10)), epoch=0, num_replicas=2,
        ...     rank=1, seed=0))
        (5, True)
    """
    sampler = ResumableDistributedSampler(
        dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    return sampler


class SkipSampler(Sampler[int]):
    """Skip the first ``start`` indices of ``sampler`` (a resume in the middle of an epoch, for any sampler)."""

    def __init__(self, sampler: Sampler[int], start: int) -> None:
        self.sampler, self.start = sampler, int(start)

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.sampler), self.start, None)

    def __len__(self) -> int:
        # torch's Sampler stub declares no __len__; the wrapped sampler is sized
        return max(0, len(self.sampler) - self.start)  # type: ignore[arg-type]


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` whose epoch can start at a given position.

    The order of an epoch depends only on ``(seed, epoch)``. With ``world_size`` processes each taking per-process
    batches of ``B / world_size``, the union of the step-``k`` batches equals samples ``k*B ... (k+1)*B - 1`` of the
    single-process order, so one process with batch ``B`` and several with ``B / world_size`` see the same data.

    Args:
        dataset: The dataset to index.
        num_replicas: Number of processes.
        rank: This process's rank.
        shuffle: Shuffle with a generator seeded by ``seed + epoch``.
        seed: Base seed.
        drop_last: Drop the tail so every process gets the same number of samples.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.start_index = 0

    def set_start(self, samples_done: int) -> None:
        """Skip the first ``samples_done`` samples of this process's share of the current epoch."""
        self.start_index = samples_done

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        start, self.start_index = self.start_index, 0  # only the first epoch after a resume is shortened
        return iter(indices[start:])

    def __len__(self) -> int:
        return self.num_samples - self.start_index


class ShardSampler(Sampler[int]):
    """Deterministic shard ``rank, rank + world_size, ...`` for evaluation (no padding, no duplicates)."""

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.length, self.num_replicas, self.rank = length, num_replicas, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))
