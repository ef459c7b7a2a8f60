"""Honest simple baselines: leave-one-out k-NN accuracy and cross-validated linear-probe accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError
from ._common import column_stats, one_hot, standardize, unit_rms
from ._spec import register_metric
from ._validation import (
    check_classification_labels,
    check_features,
    check_option,
    check_positive_int,
    check_random_state,
)

__all__ = ["knn_accuracy", "linear_probe_accuracy"]


@register_metric("knn_accuracy", aliases=("knn",))
def knn_accuracy(
    features: Any, labels: Any, *, n_neighbors: int = 5, metric: str = "cosine", chunk_size: int = 1024
) -> float:
    """Leave-one-out k-nearest-neighbour accuracy of the features.

    Each sample is classified by a majority vote of its ``n_neighbors`` nearest other samples (ties go to the
    class of the nearer neighbours). Distances are computed in chunks, so memory is ``O(chunk_size * N)``.

    Args:
        features: Candidate-model features.
        labels: Target class labels of any hashable type.
        n_neighbors: Number of neighbours.
        metric: ``"cosine"`` (L2-normalized features) or ``"euclidean"``.
        chunk_size: Rows per distance block.

    Shape:
        - features: ``(N, D)``
        - labels: ``(N,)``

    Returns:
        Accuracy in ``[0, 1]`` (higher is better).

    Raises:
        InvalidParameterError: NaN/inf, a single class, ``n_neighbors >= N``, bad options.
    """
    x = check_features(features, where="knn_accuracy")
    classes, y = check_classification_labels(labels, x.shape[0], where="knn_accuracy")
    x, _ = unit_rms(x)  # neighbours do not depend on a global scale; squared distances must not overflow
    check_option(metric, ("cosine", "euclidean"), where="knn_accuracy", name="metric")
    k = check_positive_int(n_neighbors, where="knn_accuracy", name="n_neighbors")
    n = x.shape[0]
    if k >= n:
        raise InvalidParameterError(f"knn_accuracy: n_neighbors must be < n_samples={n}; got {k}.")
    if metric == "cosine":
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    sq = np.einsum("ij,ij->i", x, x)
    weights = 1.0 + 1e-6 * np.arange(k, 0, -1)  # nearer neighbours break ties
    correct = 0
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        dist = sq[start:stop, None] - 2.0 * x[start:stop] @ x.T + sq[None, :]
        dist[np.arange(stop - start), np.arange(start, stop)] = np.inf
        nn = np.argpartition(dist, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(dist, nn, axis=1), axis=1, kind="stable")
        nn = np.take_along_axis(nn, order, axis=1)
        votes = np.zeros((stop - start, len(classes)))
        np.add.at(votes, (np.repeat(np.arange(stop - start), k), y[nn].reshape(-1)), np.tile(weights, stop - start))
        correct += int(np.sum(votes.argmax(axis=1) == y[start:stop]))
    return correct / n


def _stratified_folds(y: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    fold = np.empty(y.shape[0], dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        fold[idx] = np.arange(idx.size) % n_folds
    return fold


@register_metric("linear_probe_accuracy", aliases=("linear_probe",))
def linear_probe_accuracy(
    features: Any, labels: Any, *, n_folds: int = 5, l2: float = 1e-2, random_state: int | None = 0
) -> float:
    r"""Stratified k-fold accuracy of a ridge-regression linear probe on one-hot targets.

    Features are standardized on each training fold; the probe solves
    ``(X^T X + l2 * N_train * I) W = X^T Y`` in closed form (a ridge classifier: fast, deterministic, no
    optimizer settings) and predicts the arg-max.

    Args:
        features: Candidate-model features.
        labels: Target class labels of any hashable type.
        n_folds: Number of stratified folds.
        l2: Ridge strength relative to the number of training samples.
        random_state: Seed of the fold assignment.

    Shape:
        - features: ``(N, D)``
        - labels: ``(N,)``

    Returns:
        Mean held-out accuracy in ``[0, 1]`` (higher is better).

    Raises:
        InvalidParameterError: NaN/inf, a single class, ``n_folds < 2`` or larger than N, ``l2 < 0``.
    """
    x = check_features(features, where="linear_probe_accuracy")
    classes, y = check_classification_labels(labels, x.shape[0], where="linear_probe_accuracy")
    x, _ = unit_rms(x)  # folds are standardized anyway; this keeps the squares finite for huge features
    n_folds = check_positive_int(n_folds, where="linear_probe_accuracy", name="n_folds", minimum=2)
    if n_folds > x.shape[0]:
        raise InvalidParameterError(f"linear_probe_accuracy: n_folds={n_folds} exceeds n_samples={x.shape[0]}.")
    if not l2 >= 0:
        raise InvalidParameterError(f"linear_probe_accuracy: l2 must be >= 0; got {l2!r}.")
    fold = _stratified_folds(y, n_folds, check_random_state(random_state))
    targets = one_hot(y, len(classes))
    correct = 0
    for f in range(n_folds):
        tr, te = fold != f, fold == f
        if not te.any():
            continue
        xtr = x[tr]
        mean, std = column_stats(xtr)
        xtr = standardize(xtr.copy())
        xte = np.where(std > 0, (x[te] - mean) / np.where(std > 0, std, 1.0), 0.0)
        ymean = targets[tr].mean(axis=0)
        d = x.shape[1]
        if xtr.shape[0] >= d:
            a = xtr.T @ xtr
            a.flat[:: d + 1] += l2 * xtr.shape[0] + 1e-10
            w = np.linalg.solve(a, xtr.T @ (targets[tr] - ymean))
            pred = xte @ w + ymean
        else:  # dual form
            kmat = xtr @ xtr.T
            kmat.flat[:: xtr.shape[0] + 1] += l2 * xtr.shape[0] + 1e-10
            pred = xte @ (xtr.T @ np.linalg.solve(kmat, targets[tr] - ymean)) + ymean
        correct += int(np.sum(pred.argmax(axis=1) == y[te]))
    return correct / x.shape[0]
