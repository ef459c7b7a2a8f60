"""TransRate (``huang2022frustratingly``) as implemented in TLlib.

Huang et al., "Frustratingly Easy Transferability Estimation", ICML 2022, https://arxiv.org/abs/2106.09362.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError
from ._common import unit_rms
from ._spec import register_metric
from ._validation import check_classification_labels, check_features

__all__ = ["coding_rate", "transrate"]


def coding_rate(z: np.ndarray, eps: float, *, log_scale: float = 0.0) -> float:
    """``0.5 * logdet(I + c^2 Z^T Z / (n eps))`` with ``c = exp(log_scale)``, overflow-free.

    Computed from the eigenvalues ``w`` of the smaller Gram matrix (Sylvester's identity) as
    ``0.5 * sum log1p(c^2 w / (n eps))`` in the log domain (``logaddexp(0, .)``), so features scaled by
    ``c`` up to the float64 range give the exact value of the definition instead of an overflowed Gram matrix.
    """
    n, d = z.shape
    gram = z.T @ z if d <= n else z @ z.T
    w = np.linalg.eigvalsh(gram)
    w = w[w > 0]
    if w.size == 0:
        return 0.0
    return 0.5 * float(np.sum(np.logaddexp(0.0, np.log(w) + 2.0 * log_scale - np.log(n * eps))))


@register_metric("transrate")
def transrate(features: Any, labels: Any, *, eps: float = 1e-4) -> float:
    r"""TransRate: coding rate of all features minus the mean coding rate of each class.

    Huang et al., "Frustratingly Easy Transferability Estimation", ICML 2022. This follows TLlib
    (``tllib/ranking/transrate.py``): features are centred once, ``R(Z) = 0.5 logdet(I + Z^T Z / (n eps))`` and
    ``TrR = R(Z) - (1/C) sum_c R(Z_c)`` with unweighted classes (the paper's ``d / (n eps^2)`` constant and
    class-proportion weights are not used). TransRate is not scale-invariant by definition (``eps`` is a
    distortion in feature units: features far below ``sqrt(eps)`` score about 0); it is computed in the log
    domain from the eigenvalues of the (rescaled) Gram matrices, so it is finite for any finite input.

    Args:
        features: Candidate-model features.
        labels: Target class labels of any hashable type.
        eps: Distortion ``eps`` of the coding rate.

    Shape:
        - features: ``(N, D)``
        - labels: ``(N,)``

    Returns:
        TransRate (higher is better).

    Raises:
        ShapeError: wrong dimensionality or N mismatch.
        InvalidParameterError: NaN/inf, a single class, ``eps <= 0``.
    """
    if not eps > 0:
        raise InvalidParameterError(f"transrate: eps must be > 0; got {eps!r}.")
    z = check_features(features, where="transrate")
    classes, y = check_classification_labels(labels, z.shape[0], where="transrate")
    z, log_c = unit_rms(z)  # the value depends on the scale (eps is absolute); log_c restores it exactly
    z -= z.mean(axis=0)
    rc = sum(coding_rate(z[y == c], eps, log_scale=log_c) for c in range(len(classes)))
    return coding_rate(z, eps, log_scale=log_c) - rc / len(classes)
