"""EMMS: Efficient Multi-task Model Selector (``meng2023emms``), solved exactly, plus the released one-step variant.

Meng et al., "Foundation Model is Efficient Multimodal Multitask Model Selector", NeurIPS 2023,
https://arxiv.org/abs/2308.06262.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError, ShapeError
from ._common import cholesky_whiten, class_sums, eigh, simplex_qp, sparsemax, standardize
from ._spec import register_metric
from ._validation import (
    as_float_array,
    check_classification_labels,
    check_consistent_length,
    check_features,
    check_option,
    warn,
)

__all__ = ["emms"]

_WHERE = "emms"


@dataclass
class _EMMSResult:
    score: float
    weights: np.ndarray
    gram: np.ndarray | None
    classes: np.ndarray | None


def _finite(arr: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise InvalidParameterError(f"{_WHERE}: {name} contains NaN or infinity; remove or impute them first.")
    return arr


def _embedding_blocks(label_embeddings: Any, n_rows: int, *, row_name: str) -> list[np.ndarray]:
    """Split ``label_embeddings`` into K float64 blocks of shape ``(n_rows, L)`` (one per encoder)."""
    if isinstance(label_embeddings, (list, tuple)) and label_embeddings and not np.isscalar(label_embeddings[0]):
        first = as_float_array(label_embeddings[0], where=_WHERE, name="label_embeddings[0]")
        if first.ndim == 2:
            blocks = [first] + [
                as_float_array(e, where=_WHERE, name=f"label_embeddings[{i}]")
                for i, e in enumerate(label_embeddings[1:], start=1)
            ]
        else:
            blocks = [as_float_array(label_embeddings, where=_WHERE, name="label_embeddings")]
    else:
        blocks = [as_float_array(label_embeddings, where=_WHERE, name="label_embeddings")]
    if len(blocks) == 1:
        arr = blocks[0]
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim == 3:
            blocks = [np.ascontiguousarray(arr[:, :, k]) for k in range(arr.shape[2])]
        elif arr.ndim == 2:
            blocks = [arr]
        else:
            raise ShapeError(
                f"{_WHERE}: label_embeddings must be ({row_name}, L), ({row_name}, L, K) or a sequence of K "
                f"({row_name}, L) arrays; got shape {arr.shape}."
            )
    for i, b in enumerate(blocks):
        if b.ndim != 2:
            raise ShapeError(f"{_WHERE}: label_embeddings[{i}] must be 2-D ({row_name}, L); got shape {b.shape}.")
        if b.shape[1] == 0:
            raise ShapeError(f"{_WHERE}: label_embeddings[{i}] has width 0.")
        _finite(b, f"label_embeddings[{i}]")
    widths = [b.shape[1] for b in blocks]
    if len(set(widths)) > 1:
        raise ShapeError(
            f"{_WHERE}: all label-embedding encoders must have the same width L (the oracle weights mix them); "
            f"got widths {widths}. Project them to a common width first, e.g. LabelEmbedder(..., combine='project')."
        )
    rows = [b.shape[0] for b in blocks]
    if len(set(rows)) > 1:
        raise ShapeError(f"{_WHERE}: label-embedding encoders disagree on the number of {row_name}: {rows}.")
    if row_name == "n_samples":
        check_consistent_length(n_rows, rows[0], where=_WHERE)
    elif rows[0] != n_rows:
        raise ShapeError(
            f"{_WHERE}: class-level label_embeddings must have one row per class in np.unique(labels) order "
            f"({n_rows} classes); got {rows[0]} rows. Pass a mapping {{class: embedding}} to select rows by class."
        )
    return blocks


def _class_blocks(label_embeddings: Any, classes: np.ndarray) -> list[np.ndarray]:
    if isinstance(label_embeddings, Mapping):
        missing = [c for c in classes.tolist() if c not in label_embeddings]
        if missing:
            raise InvalidParameterError(f"{_WHERE}: label_embeddings has no entry for class(es) {missing[:5]!r}.")
        stacked = np.stack(
            [
                as_float_array(label_embeddings[c], where=_WHERE, name=f"label_embeddings[{c!r}]")
                for c in classes.tolist()
            ]
        )
        return _embedding_blocks(stacked, len(classes), row_name="n_classes")
    return _embedding_blocks(label_embeddings, len(classes), row_name="n_classes")


def _standardize_class_level(e: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Standardize class embeddings with the statistics of the per-sample matrix they expand to."""
    n = counts.sum()
    mean = counts @ e / n
    ec = e - mean
    std = np.sqrt(counts @ (ec * ec) / n)
    out = np.where(std > 0, ec / np.where(std > 0, std, 1.0), 0.0)
    return out


def _fit_exact(x: np.ndarray, blocks: list[np.ndarray], y: np.ndarray | None, n_classes: int) -> _EMMSResult:
    n, d = x.shape
    k = len(blocks)
    width = blocks[0].shape[1]
    if y is None:
        ys = [standardize(b) for b in blocks]
        yy = np.array([[np.vdot(a, b) for b in ys] for a in ys])
        cat = np.concatenate(ys, axis=1)
        rhs = None if n < d else x.T @ cat  # X^T Y, (D, L K)
    else:
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        es = [_standardize_class_level(b, counts) for b in blocks]
        yy = np.array([[float(np.sum(counts[:, None] * a * b)) for b in es] for a in es])
        cat = np.concatenate(es, axis=1)
        rhs = None if n < d else class_sums(x, y, n_classes).T @ cat  # X^T Y from class sums, (D, L K)
    z = None
    if rhs is not None:  # primal: ||P_X Y||^2 = ||L^{-1} X^T Y||^2 with X^T X = L L^T
        z = cholesky_whiten(x.T @ x, rhs)
        if z is None:
            w, v = eigh(x.T @ x)
            keep = w > max(w[-1], 0.0) * max(n, d) * np.finfo(np.float64).eps * 10
            z = (v[:, keep].T @ rhs) / np.sqrt(w[keep])[:, None]
    else:  # dual (N < D): P_X = U U^T from the N x N kernel
        kern = x @ x.T
        # X is centred, so 1 spans the kernel's null space; if K + 11^T is well conditioned, X has rank N - 1 and
        # P_X is the projection onto 1-perp, which leaves the (centred) embeddings unchanged: a perfect fit.
        probe = kern + np.trace(kern) / n
        if cholesky_whiten(probe, np.zeros((n, 1)), max_cond=1e10) is not None:
            return _EMMSResult(0.0, np.full(k, 1.0 / k), np.zeros((k, k)), None)
        w, u = eigh(kern)
        keep = w > max(w[-1], 0.0) * max(n, d) * np.finfo(np.float64).eps * 10
        u = u[:, keep]
        z = u.T @ cat if y is None else class_sums(u, y, n_classes).T @ cat
    z = z.reshape(z.shape[0], k, width)
    proj = np.einsum("rkl,rjl->kj", z, z)
    gram = yy - proj
    gram = 0.5 * (gram + gram.T)
    if np.abs(gram).max() <= 1e-12 * max(float(np.max(np.diag(yy))), 1e-300):
        gram = np.zeros_like(gram)  # perfect fit up to round-off (e.g. N <= D): every t is optimal
    t = simplex_qp(gram)
    value = max(float(t @ gram @ t), 0.0)
    return _EMMSResult(-value / (n * width), t, gram, None)


def _fit_official(x: np.ndarray, blocks: list[np.ndarray], y: np.ndarray | None) -> _EMMSResult:
    """Port of ``metrics.py::EMMS`` (OpenGVLab/Multitask-Model-Selector): one LS step, sparsemax, ``-res/N*L``."""
    if y is not None:
        blocks = [b[y] for b in blocks]  # the released code works on per-sample tensors
    yt = np.stack(blocks, axis=2)
    n, width, k = yt.shape
    for i in range(k):
        yi = yt[:, :, i]
        yt[:, :, i] = (yi - yi.mean(axis=0)) / (yi.std(axis=0) + 1e-8)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)
    lam = np.full(k, 1.0 / k)
    b = yt @ lam
    w = np.linalg.lstsq(x, b, rcond=None)[0]
    pred = x @ w
    lam = np.linalg.lstsq(yt.reshape(n * width, k), pred.reshape(n * width), rcond=None)[0]
    lam = sparsemax(lam)
    target = yt @ lam
    res = np.sum((pred - target) ** 2) / n * width
    return _EMMSResult(-float(res), lam, None, None)


def _emms_fit(features: Any, label_embeddings: Any, labels: Any, mode: str) -> _EMMSResult:
    check_option(mode, ("exact", "official"), where=_WHERE, name="mode")
    x = check_features(features, where=_WHERE)
    n, d = x.shape
    if labels is None:
        blocks = _embedding_blocks(label_embeddings, n, row_name="n_samples")
        y, classes, n_classes = None, None, 0
    else:
        classes, y = check_classification_labels(labels, n, where=_WHERE)
        n_classes = len(classes)
        blocks = _class_blocks(label_embeddings, classes)
    if d >= n / 5:
        warn(
            f"emms: n_features={d} >= n_samples/5={n / 5:g}; EMMS measures an in-sample R^2, which is biased "
            "towards wide features on small datasets (it reaches the maximum when n_features >= n_samples)."
        )
    if mode == "official":
        res = _fit_official(x, blocks, y)
    else:
        res = _fit_exact(standardize(x), blocks, y, n_classes)
    res.classes = classes
    return res


@register_metric("emms", input="label_embeddings", tasks=("classification", "multilabel", "regression", "text"))
def emms(features: Any, label_embeddings: Any, *, labels: Any = None, mode: str = "exact") -> float:
    r"""EMMS transferability score: how well features linearly explain the (mixed) label embeddings.

    Meng et al., "Foundation Model is Efficient Multimodal Multitask Model Selector", NeurIPS 2023.

    .. math::

        T = -\frac{1}{N L} \min_{W \in \mathbb{R}^{D \times L},\ t \in \Delta^{K-1}}
            \Big\| X W - \sum_k t_k Y_k \Big\|_F^2
          = -\frac{1}{N L} \min_{t \in \Delta^{K-1}} t^\top M t,\quad
        M_{kj} = \langle (I - P_X) Y_k, (I - P_X) Y_j \rangle_F

    with X the column-standardized features and Y_k the column-standardized embeddings of encoder k (population
    std; constant columns become 0). ``mode="exact"`` solves the K x K simplex QP exactly (support enumeration);
    ``mode="official"`` reproduces the released code (one least-squares step with equal weights, an unconstrained
    fit of t projected with sparsemax, score ``-||XW - Yt||^2 / N * L``), whose scale differs by a factor L^2.

    Args:
        features: Candidate-model features.
        label_embeddings: Per-sample embeddings ``(N, L)``, ``(N, L, K)`` or a sequence of K ``(N, L)`` arrays;
            or, when ``labels`` is given, class-level embeddings ``(C, L)``, ``(C, L, K)``, a sequence of K
            ``(C, L)`` arrays (rows in ``np.unique(labels)`` order) or a mapping ``{class: (L,) or (L, K)}``.
            The class-level form never builds the N x L x K tensor.
        labels: Class labels (any hashable values) selecting the class-level form.
        mode: ``"exact"`` or ``"official"``.

    Shape:
        - features: ``(N, D)``
        - label_embeddings: see above
        - labels: ``(N,)``

    Returns:
        The score (higher is better); ``-1 <= score <= 0`` in exact mode.

    Raises:
        ShapeError: wrong dimensionality, N mismatch, encoders of different widths, wrong number of class rows.
        InvalidParameterError: NaN/inf, fewer than two classes, unknown ``mode``.

    Warns:
        SelectionWarning: when ``D >= N / 5`` (in-sample R^2 bias towards wide features).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = np.arange(200) % 4
        >>> class_emb = rng.normal(size=(4, 16))
        >>> good = class_emb[y] @ rng.normal(size=(16, 8)) + 0.1 * rng.normal(size=(200, 8))
        >>> bad = rng.normal(size=(200, 8))
        >>> emms(good, class_emb, labels=y) > emms(bad, class_emb, labels=y)
        True
    """
    return _emms_fit(features, label_embeddings, labels, mode).score
