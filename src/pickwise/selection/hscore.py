"""H-score (``bao2019information``) and shrinkage H-score (``ibrahim2022newer``).

Bao et al., "An Information-Theoretic Approach to Transferability in Task Transfer Learning", ICIP 2019;
Ibrahim et al., "Newer is not always better: Rethinking transferability metrics, their peculiarities, stability
and performance", ECML-PKDD 2022, https://arxiv.org/abs/2110.06893.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import class_sums, unit_rms
from ._spec import register_metric
from ._validation import check_classification_labels, check_features

__all__ = ["h_score", "ledoit_wolf", "shrinkage_h_score"]


def _between_class_cov(f: np.ndarray, y: np.ndarray, n_classes: int, *, ddof: int) -> np.ndarray:
    """``np.cov(g)`` where ``g_i`` is the mean feature of sample i's class, from class means and counts."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    means = class_sums(f, y, n_classes) / counts[:, None]
    centred = means - counts @ means / counts.sum()
    return (centred.T * counts) @ centred / (counts.sum() - ddof)


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance of already centred ``x``; returns ``(covariance, shrinkage)`` (sklearn formula)."""
    n, p = x.shape
    emp_cov = x.T @ x / n
    x2 = x * x
    emp_trace = x2.sum(axis=0) / n
    mu = emp_trace.sum() / p
    beta_ = float(np.sum(x2.T @ x2))
    delta_ = float(np.sum((x.T @ x) ** 2)) / n**2
    beta = 1.0 / (p * n) * (beta_ / n - delta_)
    delta = (delta_ - 2.0 * mu * emp_trace.sum() + p * mu**2) / p
    beta = min(beta, delta)
    # delta = 0 when the covariance already equals its target mu * I (one feature: sklearn returns 0 too);
    # shrinking changes nothing then, and round-off must not turn 0/0 into a shrinkage of 1 or NaN
    if p == 1 or beta <= 0 or delta <= 1e-12 * mu * mu:
        shrinkage = 0.0
    else:
        shrinkage = min(beta / delta, 1.0)
    cov = (1.0 - shrinkage) * emp_cov
    cov.flat[:: p + 1] += shrinkage * mu
    return cov, float(shrinkage)


@register_metric("h_score", aliases=("hscore",))
def h_score(features: Any, labels: Any) -> float:
    r"""H-score: ``tr(cov(f)^+ cov(E[f | y]))``.

    Bao et al., "An Information-Theoretic Approach to Transferability in Task Transfer Learning", ICIP 2019.
    Covariances use ``ddof=1`` and a pseudo-inverse with ``rcond=1e-15`` as in TLlib; the product is the matrix
    product (google-research's element-wise product is a bug).

    Args:
        features: Candidate-model features.
        labels: Target class labels of any hashable type.

    Shape:
        - features: ``(N, D)``
        - labels: ``(N,)``

    Returns:
        H-score (higher is better).

    Raises:
        ShapeError: wrong dimensionality or N mismatch.
        InvalidParameterError: NaN/inf or a single class.
    """
    f = check_features(features, where="h_score")
    classes, y = check_classification_labels(labels, f.shape[0], where="h_score")
    f, _ = unit_rms(f)  # H-score is scale-invariant; this only keeps the covariances finite for huge features
    covf = np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])
    covg = _between_class_cov(f, y, len(classes), ddof=1)
    return float(np.trace(np.linalg.pinv(covf, rcond=1e-15) @ covg))


@register_metric("shrinkage_h_score", aliases=("regularized_h_score",))
def shrinkage_h_score(features: Any, labels: Any) -> float:
    r"""Shrinkage H-score: H-score with a Ledoit-Wolf covariance, ``tr(Sigma_a^{-1} (1 - a) cov(E[f | y]))``.

    Ibrahim et al., "Newer is not always better", ECML-PKDD 2022 (TLlib ``regularized_h_score``).

    Args:
        features: Candidate-model features.
        labels: Target class labels of any hashable type.

    Shape:
        - features: ``(N, D)``
        - labels: ``(N,)``

    Returns:
        Shrinkage H-score (higher is better).

    Raises:
        ShapeError: wrong dimensionality or N mismatch.
        InvalidParameterError: NaN/inf or a single class.
    """
    f = check_features(features, where="shrinkage_h_score")
    classes, y = check_classification_labels(labels, f.shape[0], where="shrinkage_h_score")
    f, _ = unit_rms(f)  # Ledoit-Wolf is scale-equivariant, so the score is scale-invariant
    f -= f.mean(axis=0)
    cov, alpha = ledoit_wolf(f)
    covg = _between_class_cov(f, y, len(classes), ddof=1)
    return float(np.trace(np.linalg.pinv(cov, rcond=1e-15) @ ((1.0 - alpha) * covg)))
