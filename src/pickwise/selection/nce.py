"""NCE: negative conditional entropy (``tran2019transferability``).

Tran et al., "Transferability and Hardness of Supervised Classification Tasks", ICCV 2019,
https://arxiv.org/abs/1908.08142.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._spec import register_metric
from ._validation import _to_numpy, check_classification_labels

__all__ = ["nce"]


@register_metric("nce", input="source_labels")
def nce(source_labels: Any, target_labels: Any) -> float:
    r"""Negative conditional entropy of target labels given hard source labels.

    Tran et al., "Transferability and Hardness of Supervised Classification Tasks", ICCV 2019.

    .. math:: \mathrm{NCE} = -H(Y \mid Z) = \sum_{y, z} \hat P(y, z) \log \hat P(y \mid z)

    Args:
        source_labels: Hard source-model predictions (argmax of the source head), any hashable values.
        target_labels: Target class labels, any hashable values.

    Shape:
        - source_labels: ``(N,)``
        - target_labels: ``(N,)``

    Returns:
        NCE (``<= 0``; higher is better).

    Raises:
        ShapeError: wrong dimensionality or N mismatch.
        InvalidParameterError: a single target class.

    Example:
        >>> nce([0, 0, 1, 1], ["a", "a", "b", "b"])
        0.0
    """
    src = _to_numpy(source_labels)
    n = src.shape[0] if src.ndim >= 1 else 0
    tclasses, y = check_classification_labels(target_labels, n, where="nce")
    _, z = check_classification_labels(src, n, where="nce", min_classes=1)
    joint = np.zeros((len(tclasses), int(z.max()) + 1))
    np.add.at(joint, (y, z), 1.0)
    joint /= y.shape[0]
    pz = joint.sum(axis=0, keepdims=True)
    mask = joint > 0
    cond = np.divide(joint, pz, out=np.ones_like(joint), where=pz > 0)
    return float(np.sum(joint[mask] * np.log(cond[mask])) + 0.0)
