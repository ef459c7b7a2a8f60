"""GBC: Gaussian Bhattacharyya coefficient (``pandy2022transferability``).

Pándy et al., "Transferability Estimation using Bhattacharyya Class Separability", CVPR 2022,
https://arxiv.org/abs/2111.12780.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError
from ._common import class_sums, pca
from ._spec import register_metric
from ._validation import check_classification_labels, check_features, check_min_per_class, check_option

__all__ = ["gbc"]


@register_metric("gbc")
def gbc(features: Any, labels: Any, *, gaussian_type: str = "spherical", n_components: int | None = None) -> float:
    r"""GBC: minus the summed Bhattacharyya coefficients between per-class Gaussians.

    Pándy et al., "Transferability Estimation using Bhattacharyya Class Separability", CVPR 2022.

    .. math::

        D_B(i, j) = \tfrac18 \sum_d \frac{(\mu_{i,d} - \mu_{j,d})^2}{\bar\sigma_d}
            + \tfrac12 \sum_d \log\bar\sigma_d - \tfrac14 \sum_d \log\sigma_{i,d} - \tfrac14\sum_d\log\sigma_{j,d},
        \qquad \mathrm{GBC} = -\sum_{i \ne j} e^{-D_B(i, j)}

    with ``bar sigma = (sigma_i + sigma_j) / 2``. Variances are population variances floored at 1e-4; with
    ``gaussian_type="spherical"`` each class uses the mean variance over dimensions.

    Args:
        features: Candidate-model features.
        labels: Target class labels of any hashable type.
        gaussian_type: ``"spherical"`` or ``"diagonal"``.
        n_components: Optional PCA dimension applied first (the paper uses 64); ``None`` keeps the features.

    Shape:
        - features: ``(N, D)``
        - labels: ``(N,)``

    Returns:
        GBC (``<= 0``; higher is better).

    Raises:
        InvalidParameterError: NaN/inf, a single class, a class with fewer than 2 samples, bad options.
    """
    check_option(gaussian_type, ("spherical", "diagonal"), where="gbc", name="gaussian_type")
    x = check_features(features, where="gbc")
    classes, y = check_classification_labels(labels, x.shape[0], where="gbc")
    counts = check_min_per_class(y, len(classes), where="gbc", minimum=2).astype(np.float64)
    if n_components is not None:
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise InvalidParameterError(f"gbc: n_components must be a positive int or None; got {n_components!r}.")
        x = pca(x, n_components)
    means = class_sums(x, y, len(classes)) / counts[:, None]
    xc = x - means[y]
    var = class_sums(xc * xc, y, len(classes)) / counts[:, None]
    var = np.maximum(var, 1e-4)
    if gaussian_type == "spherical":
        var = np.repeat(var.mean(axis=1, keepdims=True), x.shape[1], axis=1)
    logv = np.log(var)
    total = 0.0
    for i in range(len(classes)):
        avg = 0.5 * (var[i] + var)  # (C, D)
        db = (
            0.125 * np.sum((means[i] - means) ** 2 / avg, axis=1)
            + 0.5 * np.sum(np.log(avg), axis=1)
            - 0.25 * logv[i].sum()
            - 0.25 * logv.sum(axis=1)
        )
        bc = np.exp(-db)
        bc[i] = 0.0
        total += float(bc.sum())
    return -total
