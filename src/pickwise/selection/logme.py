"""LogME: logarithm of maximum evidence (``you2021logme``, ``you2022ranking``), vectorized over label columns.

You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021,
http://proceedings.mlr.press/v139/you21b.html; You et al., "Ranking and Tuning Pre-trained Models: A New Paradigm
for Exploiting Model Hubs", JMLR 2022 (the fixed-point algorithm used here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError
from ._common import eigh, one_hot, unit_rms
from ._spec import register_metric
from ._validation import (
    _to_numpy,
    check_classification_labels,
    check_features,
    check_positive_int,
    check_targets,
)

__all__ = ["logme", "label_columns"]

_WHERE = "logme"


@dataclass
class _LogMEResult:
    evidence: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    weights: np.ndarray
    classes: np.ndarray | None

    @property
    def score(self) -> float:
        return float(np.mean(self.evidence))


def label_columns(labels: Any, n_samples: int, *, regression: bool, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Turn labels into target columns ``(N, T)``: one-hot classes, multi-label indicators or regression targets.

    Returns ``(columns, classes)``; ``classes`` is ``None`` for regression and multi-label targets.
    """
    if regression:
        return check_targets(labels, n_samples, where=where), None
    arr = _to_numpy(labels)
    if arr.ndim == 2:
        cols = check_targets(arr, n_samples, where=where, name="labels")
        if not np.isin(cols, (0.0, 1.0)).all():
            raise InvalidParameterError(
                f"{where}: 2-D labels are read as multi-label indicators and must be 0/1; got other values. "
                "Pass regression=True for continuous targets."
            )
        if (cols.sum(axis=0) == 0).all():
            raise InvalidParameterError(f"{where}: multi-label indicator matrix has no positive entries.")
        return cols, None
    classes, y = check_classification_labels(labels, n_samples, where=where)
    return one_hot(y, len(classes)), classes


def _fixed_point(
    f: np.ndarray,
    y: np.ndarray,
    *,
    max_iter: int = 11,
    tol: float = 1e-3,
    fix_rank: bool = True,
    weights: bool = True,
) -> _LogMEResult:
    """MacKay fixed point on (alpha, beta) after one eigendecomposition, all columns of ``y`` at once."""
    n, d = f.shape
    v: np.ndarray | None
    if n > d:
        w, v = eigh(f.T @ f)
        keep = w > max(w[-1], 0.0) * d * np.finfo(np.float64).eps * 10
        w, v = w[keep], v[:, keep]
        s = np.sqrt(w)
        x = (v.T @ (f.T @ y)) / s[:, None]
    else:
        w, u = eigh(f @ f.T)
        keep = w > max(w[-1], 0.0) * n * np.finfo(np.float64).eps * 10
        w, u = w[keep], u[:, keep]
        s = np.sqrt(w)
        v = (f.T @ u) / s if weights else None
        x = u.T @ y
    k = w.size
    sigma = w[:, None]
    x2 = x * x
    res_x2 = np.einsum("ij,ij->j", y, y) - x2.sum(axis=0)
    n_cols = y.shape[1]
    alpha, beta = np.ones(n_cols), np.ones(n_cols)
    m2, res2, t_used = np.zeros(n_cols), np.zeros(n_cols), np.ones(n_cols)
    active = np.arange(n_cols)
    sig = w
    for _ in range(max_iter):
        t = alpha[active] / beta[active]
        inv = 1.0 / (sigma + t)  # (k, T_active)
        gamma = sig @ inv
        q = x2[:, active] * inv * inv
        m2_a = sig @ q
        res2_a = t * t * q.sum(axis=0) + res_x2[active]
        alpha_a = gamma / (m2_a + 1e-5)
        beta_a = (n - gamma) / (res2_a + 1e-5)
        alpha[active], beta[active], m2[active], res2[active], t_used[active] = alpha_a, beta_a, m2_a, res2_a, t
        done = np.abs(alpha_a / beta_a - t) / t <= tol
        active = active[~done]
        if active.size == 0:
            break
    logdet = np.log(alpha[None, :] + beta[None, :] * sigma).sum(axis=0)
    if fix_rank:
        logdet = logdet + (d - k) * np.log(alpha)
    evidence = (
        d / 2.0 * np.log(alpha)
        + n / 2.0 * np.log(beta)
        - 0.5 * logdet
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - n / 2.0 * np.log(2 * np.pi)
    ) / n
    post = (v @ (s[:, None] / (t_used[None, :] + sigma) * x)).T if weights and v is not None else np.empty((n_cols, 0))
    return _LogMEResult(evidence, alpha, beta, post, None)


def _logme_fit(
    features: Any, labels: Any, *, regression: bool, max_iter: int = 11, tol: float = 1e-3, weights: bool = True
) -> _LogMEResult:
    f = check_features(features, where=_WHERE)
    check_positive_int(max_iter, where=_WHERE, name="max_iter")
    y, classes = label_columns(labels, f.shape[0], regression=regression, where=_WHERE)
    # The maximum evidence is invariant to F -> cF (alpha -> alpha c^2 absorbs it) but the fixed point, started at
    # alpha = beta = 1 and stopped after 11 steps, is not: run it at a canonical scale (RMS entry 1).
    f, log_c = unit_rms(f)
    res = _fixed_point(f, y, max_iter=max_iter, tol=tol, weights=weights)
    with np.errstate(over="ignore"):  # report alpha and the weights in the units of the given features
        res.alpha = res.alpha * np.exp(2.0 * log_c)
        res.weights = res.weights * np.exp(-log_c)
    res.classes = classes
    return res


@register_metric("logme", tasks=("classification", "multilabel", "regression"))
def logme(features: Any, labels: Any, *, regression: bool = False) -> float:
    r"""LogME: mean over label columns of the maximum log evidence per sample of Bayesian linear regression.

    You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021 (JMLR 2022
    fixed-point algorithm).

    .. math::

        \mathcal{L}(\alpha, \beta) = \tfrac{D}{2}\log\alpha + \tfrac{N}{2}\log\beta - \tfrac{N}{2}\log 2\pi
            - \tfrac{\beta}{2}\|Fm - y\|^2 - \tfrac{\alpha}{2} m^\top m - \tfrac{1}{2}\log|\alpha I + \beta F^\top F|,
        \qquad \mathrm{LogME} = \frac{1}{T}\sum_{j=1}^{T} \max_{\alpha,\beta} \mathcal{L}_j / N

    Features are used as given (no standardization, as in the reference). One eigendecomposition of the smaller
    Gram matrix, then MacKay's fixed point (at most 11 iterations, relative tolerance 1e-3 on alpha/beta) runs for
    all T label columns at once. Unlike the released code, ``log|A|`` includes ``(D - rank) log(alpha)``, which
    the reference omits when N < D (thuml/LogME issue #23).

    Args:
        features: Candidate-model features.
        labels: Class labels ``(N,)`` of any hashable type (one-hot columns), a 0/1 multi-label indicator matrix
            ``(N, T)``, or regression targets ``(N,)``/``(N, T)`` with ``regression=True``.
        regression: Treat ``labels`` as continuous targets.

    Shape:
        - features: ``(N, D)``
        - labels: ``(N,)`` or ``(N, T)``

    Returns:
        The LogME value (higher is better).

    Raises:
        ShapeError: wrong dimensionality or N mismatch.
        InvalidParameterError: NaN/inf, a single class, non-binary 2-D labels without ``regression=True``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat(["cat", "dog", "eel"], 50)
        >>> signal = np.eye(3)[np.unique(y, return_inverse=True)[1]]
        >>> good = np.hstack([signal, rng.normal(size=(150, 5))])
        >>> logme(good, y) > logme(rng.normal(size=(150, 8)), y)
        True
    """
    return _logme_fit(features, labels, regression=regression, weights=False).score
