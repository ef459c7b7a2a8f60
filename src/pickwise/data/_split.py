"""Deterministic stratified train/test splits and class-balanced random subsets.

Both functions use only ``numpy.random.default_rng(seed)``, never a global RNG, so the same inputs always give the
same indices on every platform.

* :func:`stratified_split`: within each class (in increasing label order) the class's indices are permuted and the
  first ``floor(test_fraction * n_c + 0.5)`` go to the test split, the rest to train. Built-in datasets and image
  folders without ``train/``/``test/`` subfolders use it with ``test_fraction=0.2`` and the fixed
  :data:`SPLIT_SEED` ``= 0``, independent of the ``seed`` given to ``create_dataset`` (which only drives
  ``subset``), so changing the training seed never moves samples between train and test.
* :func:`stratified_subset`: ``k`` samples allocated to classes proportionally to their frequency (largest-remainder
  rounding, ties to the lower label), drawn at random within each class.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = ["SPLIT_SEED", "TEST_FRACTION", "stratified_split", "stratified_subset"]

SPLIT_SEED = 0
"""Seed of every built-in train/test split."""

TEST_FRACTION = 0.2
"""Fraction of each class that goes to the test split when a dataset has no official split."""


def stratified_split(
    targets: np.ndarray, *, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into train and test, class by class.

    Args:
        targets: Integer labels ``(N,)``.
        test_fraction: Fraction of each class sent to test, rounded half up per class.
        seed: Seed of ``numpy.random.default_rng``.

    Returns:
        ``(train_indices, test_indices)``: sorted int64 arrays that partition ``range(N)``.
    """
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        n_test = int(np.floor(test_fraction * members.size + 0.5))
        test.append(members[:n_test])
        train.append(members[n_test:])
    empty = np.zeros(0, dtype=np.int64)
    return (
        np.sort(np.concatenate(train or [empty])).astype(np.int64),
        np.sort(np.concatenate(test or [empty])).astype(np.int64),
    )


def stratified_subset(targets: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """Pick ``k`` sample indices at random, keeping class proportions (largest-remainder allocation).

    Class ``c`` with ``n_c`` of ``N`` samples first gets ``floor(k * n_c / N)`` samples; the remaining ones go to the
    classes with the largest fractional parts. Within a class the samples are the first ones of a random permutation
    from ``numpy.random.default_rng(seed)``. The same ``targets``, ``k`` and ``seed`` always give the same indices.

    Args:
        targets: Integer labels ``(N,)``.
        k: Number of samples, ``1 <= k <= N``.
        seed: Seed of ``numpy.random.default_rng``.

    Returns:
        Sorted int64 array of ``k`` distinct indices into ``targets``.

    Raises:
        InvalidParameterError: If ``k`` is not an int in ``[1, N]``.
    """
    targets = np.asarray(targets)
    n = int(targets.size)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= n:
        raise InvalidParameterError(
            f"subset: subset must be an int between 1 and {n} (the number of samples in the split); got {k!r}."
        )
    labels, counts = np.unique(targets, return_counts=True)
    quota = int(k) * counts / n
    alloc = np.floor(quota).astype(np.int64)
    remaining = int(k) - int(alloc.sum())
    if remaining > 0:
        order = np.argsort(-(quota - alloc), kind="stable")
        alloc[order[:remaining]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(targets == label))[:m] for label, m in zip(labels, alloc)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)
