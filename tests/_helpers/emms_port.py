"""Port of OpenGVLab/Multitask-Model-Selector ``metrics.py::EMMS`` (Meng et al., "Foundation Model is Efficient
Multimodal Multitask Model Selector", NeurIPS 2023), with its standardization and its single alternation.
"""
# ruff: noqa: N803  (upstream names)

from __future__ import annotations

import numpy as np

__all__ = ["released_emms"]


def released_emms(Z: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
    """EMMS score and label-embedding weights as the released code computes them.

    Args:
        Z: Features ``(N, D)``.
        Y: F-labels ``(N, L, K)``: each sample's label embedded by K foundation models.

    Returns:
        ``(score, weights)``; the score keeps upstream's ``/ N * D2`` (a multiplication by the label width, as
        released), the weights are the sparsemax-projected least-squares coefficients after one alternation.
    """

    def sparsemax(z):
        z_sorted = np.sort(z, axis=1)[:, ::-1]
        z_cumsum = np.cumsum(z_sorted, axis=1)
        k = np.arange(1, z.shape[1] + 1)
        z_check = 1 + k * z_sorted > z_cumsum
        k_z = z.shape[1] - np.argmax(z_check[:, ::-1], axis=1)
        tau_sum = z_cumsum[np.arange(0, z.shape[0]), k_z - 1]
        tau_z = ((tau_sum - 1) / k_z).reshape(-1, 1)
        return np.maximum(0, z - tau_z)

    x = Z.copy()
    y = Y.copy()
    N, D2, K = y.shape
    for i in range(K):
        y_mean = np.mean(y[:, :, i], axis=0)
        y_std = np.std(y[:, :, i], axis=0)
        y[:, :, i] = (y[:, :, i] - y_mean) / (y_std + 1e-8)
    x = (x - np.mean(x, axis=0)) / (np.std(x, axis=0) + 1e-8)
    lam = np.array([1 / K] * K)
    b = np.dot(y, lam)
    for _ in range(1):
        w = np.linalg.lstsq(x, b, rcond=None)[0]
        w1 = w
        a = y.reshape(N * D2, K)
        b = np.dot(x, w).reshape(N * D2)
        lam = np.linalg.lstsq(a, b, rcond=None)[0]
        lam = sparsemax(lam.reshape(1, K)).reshape(K, 1)
        T = np.dot(y, lam).reshape(N, D2)
    y_pred = np.dot(x, w1)
    return -(np.sum((y_pred - T) ** 2) / N * D2), lam.reshape(-1)
