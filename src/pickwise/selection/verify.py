"""Ground truth for ``select --verify probe``: a closed-form ridge linear probe on frozen features.

The probe is the cheap stand-in for fine-tuning used to check a transferability metric's ranking: for features
``X`` (N x D) of the target's training split, standardized per column with the training mean and std, and one-hot
targets ``T`` (N x C), it solves the ridge regression

    W = (Xs^T Xs + lambda N I)^{-1} Xs^T (T - mean(T)),    lambda = 1e-2,

and predicts ``argmax_c (Xs_test W)_c`` on the test split. The ridge term scaled by N keeps the solve well posed
when D > N (wide ImageNet features on a few hundred target images). This is the linear-probe protocol of Kornblith
et al., "Do Better ImageNet Models Transfer Better?" (CVPR 2019) with a squared loss instead of the logistic loss,
so it needs one D x D solve and no iterations.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import InvalidParameterError, ShapeError

__all__ = ["probe_accuracy"]


def probe_accuracy(
    train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], *, l2: float = 1e-2
) -> float:
    """Test accuracy of a ridge linear probe trained on ``train`` features (see the module docstring).

    Args:
        train: ``(features (N, D), labels (N,))`` of the target's training split.
        test: ``(features (M, D), labels (M,))`` of its test split.
        l2: Ridge strength ``lambda`` (scaled by N).

    Returns:
        Accuracy in [0, 1] (computed in float64).

    Raises:
        ShapeError: Mismatched feature widths or label counts.
        InvalidParameterError: A negative ``l2``.
    """
    x, y = np.asarray(train[0], dtype=np.float64), np.asarray(train[1])
    xt, yt = np.asarray(test[0], dtype=np.float64), np.asarray(test[1])
    if x.ndim != 2 or xt.ndim != 2 or x.shape[1] != xt.shape[1]:
        raise ShapeError(
            f"probe_accuracy: train and test features must be 2-D of one width; got {x.shape}, {xt.shape}."
        )
    if y.shape != (x.shape[0],) or yt.shape != (xt.shape[0],):
        raise ShapeError("probe_accuracy: one label per feature row is needed on both splits.")
    if not l2 >= 0:
        raise InvalidParameterError(f"probe_accuracy: l2 must be >= 0; got {l2!r}.")
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 0, std, 1.0)
    xs = (x - mean) / std
    classes = np.unique(y)
    targets = (y[:, None] == classes[None, :]).astype(np.float64)
    a = xs.T @ xs
    a.flat[:: a.shape[0] + 1] += l2 * x.shape[0]
    w = np.linalg.solve(a, xs.T @ (targets - targets.mean(0)))
    pred = ((xt - mean) / std) @ w
    return float(np.mean(classes[pred.argmax(1)] == yt))
