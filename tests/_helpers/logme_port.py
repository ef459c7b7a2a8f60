"""Port of thuml/LogME's ``LogME._fit_fixed_point`` (the released default solver; numba removed).

Upstream: https://github.com/thuml/LogME, ``LogME.py`` (You et al., "LogME: Practical Assessment of Pre-trained Models
for Transfer Learning", ICML 2021; the fixed-point solver from the JMLR 2022 extension, "Ranking and Tuning
Pre-trained Models"). Kept as the released code runs it, upstream names included: one SVD of ``F^T F`` (``N > D``)
or of ``F``, then a Python loop over the label columns with at most 11 MacKay fixed-point iterations each; the
evidence is evaluated in every iteration and the posterior mean ``m`` is formed at the end, as upstream does, so that
a benchmark times the released work.
"""
# ruff: noqa: N803  (upstream names)

from __future__ import annotations

import numpy as np

__all__ = ["released_fixed_point"]


def _evidence(D: int, N: int, alpha: float, beta: float, sigma: np.ndarray, res2: float, m2: float) -> float:
    return float(
        (
            D / 2.0 * np.log(alpha)
            + N / 2.0 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * sigma))
            - beta / 2.0 * res2
            - alpha / 2.0 * m2
            - N / 2.0 * np.log(2 * np.pi)
        )
        / N
    )


def released_fixed_point(f: np.ndarray, y: np.ndarray, regression: bool = False) -> tuple[float, np.ndarray]:
    """``LogME(regression).fit(f, y)`` with the fixed-point solver.

    Args:
        f: Features ``(N, D)``.
        y: Class labels ``(N,)`` in ``0..C-1`` (classification: one-hot columns), or targets ``(N, K)`` (regression).
        regression: Treat the columns of ``y`` as regression targets.

    Returns:
        ``(mean evidence over the label columns, per-column evidences)``, each evidence divided by ``N``.
    """
    f = f.astype(np.float64)
    N, D = f.shape
    if N > D:
        _u, s, vh = np.linalg.svd(f.T @ f)
        s = np.sqrt(s)
        u_times_sigma = f @ vh.T
        k = np.sum((s > 1e-10) * 1)
        s = s.reshape(-1, 1)[:k]
        vh = vh[:k]
        u = u_times_sigma[:, :k] / s.reshape(1, -1)
    else:
        u, s, vh = np.linalg.svd(f, full_matrices=False)
    s = s.reshape(-1, 1)
    sigma = s**2
    evidences = []
    num_dim = y.shape[1] if regression else int(y.max() + 1)
    for i in range(num_dim):
        y_ = y[:, i].astype(np.float64) if regression else (y == i).astype(np.float64)
        y_ = y_.reshape(-1, 1)
        x = u.T @ y_
        x2 = x**2
        res_x2 = (y_**2).sum() - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (N - gamma) / (res2 + 1e-5)
            t_ = alpha / beta
            evidence = _evidence(D, N, alpha, beta, sigma, res2, m2)
            if abs(t_ - t) / t <= 1e-3:
                break
        evidence = _evidence(D, N, alpha, beta, sigma, res2, m2)
        m = 1.0 / (t + sigma) * s * x
        m = (vh.T @ m).reshape(-1)
        evidences.append(evidence)
    return float(np.mean(evidences)), np.array(evidences)
