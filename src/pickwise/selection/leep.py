"""LEEP: log expected empirical prediction (``nguyen2020leep``).

Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of Learned Representations", ICML 2020,
https://arxiv.org/abs/2002.12462.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError
from ._common import class_sums
from ._spec import register_metric
from ._validation import check_classification_labels, check_features

__all__ = ["leep", "eep_matrix"]


def eep_matrix(probs: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Expected empirical prediction ``p(y | x_i)`` for every sample and target class, ``(N, C)``."""
    joint = class_sums(probs, y, n_classes) / probs.shape[0]  # P(y, z), (C, Z)
    marginal = joint.sum(axis=0)  # P(z)
    cond = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)  # P(y | z)
    return probs @ cond.T


def _check_probs(probs: Any, where: str) -> np.ndarray:
    p = check_features(probs, where=where, name="probs", reject_constant=False)
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise InvalidParameterError(
            f"{where}: probs must be rows of source-class probabilities (non-negative, summing to 1); "
            "apply a softmax to the source head's logits first."
        )
    return p


@register_metric("leep", input="probs")
def leep(probs: Any, labels: Any, *, log: bool = True) -> float:
    r"""LEEP score from the source classifier's softmax outputs.

    Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of Learned Representations", ICML 2020.

    .. math::

        \hat P(y, z) = \frac{1}{N}\sum_{i: y_i = y} \theta(x_i)_z,\quad
        \mathrm{LEEP} = \frac{1}{N}\sum_i \log \sum_z \hat P(y_i \mid z)\, \theta(x_i)_z

    Args:
        probs: Source-head probabilities (each row sums to 1).
        labels: Target class labels of any hashable type.
        log: ``False`` returns the mean probability without the log, as the SFDA/EMMS code does (not LEEP).

    Shape:
        - probs: ``(N, Z)`` with Z source classes
        - labels: ``(N,)``

    Returns:
        LEEP (``<= 0``; higher is better).

    Raises:
        ShapeError: wrong dimensionality or N mismatch.
        InvalidParameterError: rows that are not probabilities, NaN/inf, a single class.
    """
    p = _check_probs(probs, "leep")
    classes, y = check_classification_labels(labels, p.shape[0], where="leep")
    eep = eep_matrix(p, y, len(classes))[np.arange(p.shape[0]), y]
    if not log:
        return float(np.mean(eep))
    return float(np.mean(np.log(np.maximum(eep, np.finfo(np.float64).tiny))))
