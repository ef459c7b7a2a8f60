"""PARC: pairwise annotation representation comparison (``bolya2021scalable``).

Bolya et al., "Scalable Diverse Model Selection for Accessible Transfer Learning", NeurIPS 2021,
https://arxiv.org/abs/2111.06977.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError
from ._common import one_hot, pca, rankdata, standardize, unit_rms
from ._spec import register_metric
from ._validation import _to_numpy, check_classification_labels, check_features, check_random_state, check_targets

__all__ = ["parc"]


def _corr_rows(a: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    a = np.divide(a, norm, out=np.zeros_like(a), where=norm > 0)
    return a @ a.T


@register_metric("parc", tasks=("classification", "multilabel"))
def parc(
    features: Any, labels: Any, *, n_dims: int = 32, max_samples: int | None = 2000, random_state: int | None = 0
) -> float:
    r"""PARC: Spearman correlation (x100) between the feature and label representational dissimilarity matrices.

    Bolya et al., "Scalable Diverse Model Selection for Accessible Transfer Learning", NeurIPS 2021.
    Features are PCA-reduced to ``n_dims`` (deterministic SVD instead of the reference's randomized PCA with seed
    1919) and standardized; ``RDM = 1 - corrcoef`` over samples (rounded to 1e-10 so that equal
    dissimilarities tie exactly); the score is ``100 * spearman`` of the upper
    triangles. Memory is O(N^2), so at most ``max_samples`` samples (drawn with ``random_state``) are used.

    Args:
        features: Candidate-model features.
        labels: Class labels of any hashable type, or a 0/1 multi-label indicator matrix.
        n_dims: PCA dimension (only applied when the features are wider).
        max_samples: Subsample size bound; ``None`` uses every sample.
        random_state: Seed of the subsample.

    Shape:
        - features: ``(N, D)``
        - labels: ``(N,)`` or ``(N, C)``

    Returns:
        PARC in ``[-100, 100]`` (higher is better).

    Raises:
        InvalidParameterError: NaN/inf, a single class, bad options.
    """
    x = check_features(features, where="parc")
    x, _ = unit_rms(x)  # PARC is scale-invariant (correlations); this keeps the squares finite
    n = x.shape[0]
    arr = _to_numpy(labels)
    if arr.ndim == 2:
        target = check_targets(arr, n, where="parc", name="labels")
    else:
        classes, y = check_classification_labels(labels, n, where="parc")
        target = one_hot(y, len(classes))
    if max_samples is not None:
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 3:
            raise InvalidParameterError(f"parc: max_samples must be an int >= 3 or None; got {max_samples!r}.")
        if n > max_samples:
            idx = np.sort(check_random_state(random_state).choice(n, max_samples, replace=False))
            x, target = x[idx], target[idx]
    if x.shape[1] > n_dims:
        x = pca(x, int(n_dims))
    x = standardize(x)
    iu = np.triu_indices(x.shape[0], 1)
    rdm_f = (1.0 - _corr_rows(x))[iu]
    rdm_y = (1.0 - _corr_rows(target))[iu]
    # round away floating-point noise so that equal dissimilarities tie (one-hot RDMs take only 2 values)
    rf, ry = rankdata(np.round(rdm_f, 10)), rankdata(np.round(rdm_y, 10))
    rf -= rf.mean()
    ry -= ry.mean()
    denom = np.sqrt((rf @ rf) * (ry @ ry))
    return float(100.0 * (rf @ ry) / denom) if denom > 0 else 0.0
