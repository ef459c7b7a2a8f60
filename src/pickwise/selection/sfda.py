"""SFDA: self-challenging Fisher discriminant analysis (``shao2022not``).

Shao et al., "Not All Models Are Equal: Predicting Model Transferability in a Self-challenging Fisher Space",
ECCV 2022, https://arxiv.org/abs/2207.03036.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import DataFormatError
from ._common import class_sums, softmax, unit_rms
from ._spec import register_metric
from ._validation import check_classification_labels, check_features, check_min_per_class, check_random_state

__all__ = ["sfda"]


def _largest_eig(a: np.ndarray, rng: np.random.Generator, iterations: int = 3) -> float:
    """Three power iterations, as SFDA's ``iterative_A`` (Rayleigh quotient of the last iterate)."""
    v = rng.random((a.shape[0],))
    for _ in range(iterations):
        v = a @ v
        v /= max(float(np.linalg.norm(v)), 1e-300)
    return float(v @ a @ v)


def _lda(
    x: np.ndarray,
    y: np.ndarray,
    counts: np.ndarray,
    shrinkage: float | None,
    rng: np.random.Generator,
    log_scale: float = 0.0,
):
    n, d = x.shape
    c = counts.size
    priors = counts / n
    means = class_sums(x, y, c) / counts[:, None]
    xc = x - means[y]
    sw = (xc.T * (priors / counts)[y]) @ xc  # sum_c prior_c * Cov_c (biased)
    if shrinkage is None:
        # lambda_max of the scatter of the original features: exp(2 log_scale) times that of the rescaled ones
        lam = _largest_eig(sw, rng)
        with np.errstate(over="ignore"):
            lam_orig = lam * float(np.exp(2.0 * log_scale)) if lam > 0 else 0.0
        shrinkage = max(float(np.exp(-5.0 * lam_orig)), 1e-10)
    xt = x - x.mean(axis=0)
    st = xt.T @ xt / n
    mu_t = np.trace(st) / d
    st = (1.0 - shrinkage) * st
    st.flat[:: d + 1] += shrinkage * mu_t
    mu_w = np.trace(sw) / d
    sw_s = (1.0 - shrinkage) * sw
    sw_s.flat[:: d + 1] += shrinkage * mu_w
    sb = st - sw_s
    jitter = 0.0
    # relative to the total scatter: when the classes are points (zero within-class scatter) mu_w is 0 too
    floor = 1e-10 * max(mu_w, mu_t, np.finfo(np.float64).tiny)
    for _ in range(6):
        try:
            chol = np.linalg.cholesky(sw_s + jitter * np.eye(d))
            if np.all(np.diagonal(chol) ** 2 > floor * 1e-6):
                break
        except np.linalg.LinAlgError:
            pass
        jitter = max(jitter * 100, floor)
    else:  # pragma: no cover - pathological input
        chol = np.linalg.cholesky(sw_s + np.eye(d) * max(mu_w, mu_t, 1.0))
    linv = np.linalg.inv(chol)
    evals, u = np.linalg.eigh(linv @ sb @ linv.T)
    evecs = linv.T @ u[:, np.argsort(evals)[::-1]]
    coef = means @ evecs @ evecs.T
    intercept = -0.5 * np.einsum("cd,cd->c", means, coef) + np.log(priors)
    return softmax(x @ coef.T + intercept), means, shrinkage


@register_metric("sfda")
def sfda(features: Any, labels: Any, *, random_state: int | None = 0) -> float:
    r"""SFDA: mean true-class posterior of a regularized Fisher LDA after self-challenging ConfMix.

    Shao et al., "Not All Models Are Equal: Predicting Model Transferability in a Self-challenging Fisher Space",
    ECCV 2022 (TencentARC/SFDA ``SFDA_Score``). Shrinkage ``lambda = max(exp(-5 lambda_max(S_w)), 1e-10)`` from
    three power iterations (seeded by ``random_state``); LDA posteriors are softened by a second softmax; each
    sample is mixed towards the mean of the other classes' means by ``1 - p(y_i | x_i)``; LDA is refitted with the
    same shrinkage and the score is the mean true-class posterior (no log, as in the reference). Note: the score
    saturates at 1 when N is small relative to D (SFDA issue #5); reduce the features with PCA in that case.

    Args:
        features: Candidate-model features.
        labels: Target class labels of any hashable type.
        random_state: Seed of the power iteration's start vector.

    Shape:
        - features: ``(N, D)``
        - labels: ``(N,)``

    Returns:
        SFDA in ``[0, 1]`` (higher is better).

    Raises:
        InvalidParameterError: NaN/inf, a single class, a class with fewer than 2 samples.
    """
    x = check_features(features, where="sfda")
    classes, y = check_classification_labels(labels, x.shape[0], where="sfda")
    counts = check_min_per_class(y, len(classes), where="sfda", minimum=2).astype(np.float64)
    rng = check_random_state(random_state)
    n, c = x.shape[0], len(classes)
    # Given the shrinkage the LDA posteriors are scale-invariant; only the shrinkage exp(-5 lambda_max(S_w))
    # depends on the scale, and it is computed for the original features from the rescaled ones.
    x, log_c = unit_rms(x)
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            prob, means, shrinkage = _lda(x, y, counts, None, rng, log_c)
            prob = softmax(prob.copy())
            outer = (means.sum(axis=0) - means) / (c - 1)
            p = prob[np.arange(n), y][:, None]
            x = p * x + (1.0 - p) * outer[y]
            prob, _, _ = _lda(x, y, counts, shrinkage, rng)
        value = float(np.mean(prob[np.arange(n), y]))
    except np.linalg.LinAlgError as err:
        value, why = float("nan"), f" ({err})"
    else:
        why = ""
    if not np.isfinite(value):
        raise DataFormatError(
            f"sfda: the Fisher discriminant of these {x.shape[1]} features is numerically singular{why}; "
            "the features are (nearly) degenerate. Reduce them with PCA or use another metric."
        )
    return value
