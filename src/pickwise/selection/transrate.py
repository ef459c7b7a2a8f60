"""TransRate (``huang2022frustratingly``) as implemented in TLlib.

Huang et al., "Frustratingly Easy Transferability Estimation", ICML 2022, https://arxiv.org/abs/2106.09362.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError
from ._spec import register_metric
from ._validation import check_classification_labels, check_features

__all__ = ["coding_rate", "transrate"]


def coding_rate(z: np.ndarray, eps: float) -> float:
    """``0.5 * logdet(I + Z^T Z / (n eps))``, computed on the smaller Gram matrix (Sylvester's identity)."""
    n, d = z.shape
    gram = z.T @ z if d <= n else z @ z.T
    gram = gram / (n * eps)
    gram.flat[:: gram.shape[0] + 1] += 1.0
    _, logdet = np.linalg.slogdet(gram)
    return 0.5 * float(logdet)


@register_metric("transrate")
def transrate(features: Any, labels: Any, *, eps: float = 1e-4) -> float:
    r"""TransRate: coding rate of all features minus the mean coding rate of each class.

    Huang et al., "Frustratingly Easy Transferability Estimation", ICML 2022. This follows TLlib
    (``tllib/ranking/transrate.py``): features are centred once, ``R(Z) = 0.5 logdet(I + Z^T Z / (n eps))`` and
    ``TrR = R(Z) - (1/C) sum_c R(Z_c)`` with unweighted classes (the paper's ``d / (n eps^2)`` constant and
    class-proportion weights are not used).

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
    z -= z.mean(axis=0)
    rc = sum(coding_rate(z[y == c], eps) for c in range(len(classes)))
    return coding_rate(z, eps) - rc / len(classes)
