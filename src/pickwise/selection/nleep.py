"""NLEEP: Gaussian-mixture LEEP (``li2021ranking``).

Li et al., "Ranking Neural Checkpoints", CVPR 2021, https://arxiv.org/abs/2011.11200.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import DataFormatError, InvalidParameterError
from ._common import pca, unit_rms
from ._spec import register_metric
from ._validation import check_classification_labels, check_features, check_positive_int
from .leep import eep_matrix

__all__ = ["nleep"]


@register_metric("nleep", needs=("scikit-learn",))
def nleep(
    features: Any,
    labels: Any,
    *,
    components_per_class: int = 5,
    variance: float = 0.8,
    log: bool = True,
    random_state: int | None = 0,
) -> float:
    r"""NLEEP: LEEP with the posteriors of a Gaussian mixture fitted on PCA-reduced features.

    Li et al., "Ranking Neural Checkpoints", CVPR 2021. PCA keeps ``variance`` of the variance (deterministic SVD),
    a full-covariance GMM (scikit-learn) with ``components_per_class * C`` components gives ``p(v | x)``, and the
    LEEP formula is applied to those posteriors.

    Args:
        features: Candidate-model features.
        labels: Target class labels of any hashable type.
        components_per_class: GMM components per target class (5 in the SFDA/EMMS code).
        variance: Fraction of variance kept by PCA.
        log: ``False`` returns the no-log variant of the SFDA/EMMS code.
        random_state: Seed of the GMM initialization.

    Shape:
        - features: ``(N, D)``
        - labels: ``(N,)``

    Returns:
        NLEEP (higher is better).

    Raises:
        ImportError: scikit-learn is not installed.
        InvalidParameterError: bad options, NaN/inf, a single class, fewer samples than components.
    """
    x = check_features(features, where="nleep")
    classes, y = check_classification_labels(labels, x.shape[0], where="nleep")
    check_positive_int(components_per_class, where="nleep", name="components_per_class")
    if not 0 < variance < 1:
        raise InvalidParameterError(f"nleep: variance must be in (0, 1); got {variance!r}.")
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("nleep needs scikit-learn: pip install 'pickwise[select]'") from err
    n_comp = components_per_class * len(classes)
    if n_comp > x.shape[0]:
        raise InvalidParameterError(
            f"nleep: {n_comp} mixture components need at least as many samples; got {x.shape[0]}."
        )
    # the mixture's covariance floor reg_covar=1e-6 is absolute: at RMS 1 it is relative to the feature scale,
    # which makes NLEEP scale-invariant (and finite for features near 1e-300 or 1e300)
    x, _ = unit_rms(x, center=True)
    z = pca(x, float(variance))
    try:
        gmm = GaussianMixture(n_components=n_comp, random_state=random_state, reg_covar=1e-6).fit(z)
        probs = gmm.predict_proba(z)
    except ValueError as err:
        raise DataFormatError(
            f"nleep: the {n_comp}-component Gaussian mixture could not be fitted on the {z.shape[1]}-D PCA features "
            f"({' '.join(str(err).split())[:160]}); the features have too few distinct values for it. "
            "Use fewer components_per_class or another metric."
        ) from err
    eep = eep_matrix(probs, y, len(classes))[np.arange(x.shape[0]), y]
    if not log:
        return float(np.mean(eep))
    return float(np.mean(np.log(np.maximum(eep, np.finfo(np.float64).tiny))))
