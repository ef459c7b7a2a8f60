"""EMMS: Efficient Multi-task Model Selector (``meng2023emms``): out-of-sample (GCV) default, exact, released.

Meng et al., "Foundation Model is Efficient Multimodal Multitask Model Selector", NeurIPS 2023,
https://arxiv.org/abs/2308.06262.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import DataFormatError, InvalidParameterError, ShapeError
from ._common import cholesky_whiten, class_sums, column_stats, eigh, simplex_qp, sparsemax, standardize, unit_rms
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

#: ``"gcv"`` (default): out-of-sample fit by generalized cross-validation of a ridge regression;
#: ``"exact"``: the paper's in-sample objective solved exactly; ``"official"``: the released code's one step.
MODES = ("gcv", "exact", "official")


@dataclass
class _EMMSResult:
    score: float
    weights: np.ndarray
    gram: np.ndarray | None
    classes: np.ndarray | None
    ridge: float | None = None  # gcv mode: the chosen ridge penalty lambda (on standardized features)
    df: float | None = None  # gcv mode: effective degrees of freedom of the ridge fit at that lambda


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
    mean, std = column_stats(e, counts)
    return np.where(std > 0, (e - mean) / np.where(std > 0, std, 1.0), 0.0)


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


def _targets(blocks: list[np.ndarray], y: np.ndarray | None, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardized, concatenated embeddings ``(rows, L K)`` and their Gram ``YY_kj = <Y_k, Y_j>_F`` (K x K).

    Per-sample blocks give N rows; class-level blocks give C rows (expanded to samples through ``y``).
    """
    if y is None:
        ys = [standardize(b) for b in blocks]
        yy = np.array([[np.vdot(a, b) for b in ys] for a in ys])
        return np.concatenate(ys, axis=1), yy
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    es = [_standardize_class_level(b, counts) for b in blocks]
    yy = np.array([[float(np.sum(counts[:, None] * a * b)) for b in es] for a in es])
    return np.concatenate(es, axis=1), yy


def _spectral_projection(
    x: np.ndarray, cat: np.ndarray, y: np.ndarray | None, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues ``w`` (r,) of ``X^T X`` (above a rank threshold) and ``Z = U^T Y`` (r, L K), ``X = U S V^T``.

    ``Y`` is the per-sample target; for class-level targets ``U^T Y = (class sums of U)^T E`` (no N x L K matrix).
    Uses the D x D Gram when ``D <= N`` and the N x N kernel otherwise.
    """
    n, d = x.shape
    tiny = np.finfo(np.float64).eps * 10 * max(n, d)
    if d <= n:
        w, v = eigh(x.T @ x)
        keep = w > max(w[-1], 0.0) * tiny
        w, v = w[keep], v[:, keep]
        xty = x.T @ cat if y is None else class_sums(x, y, n_classes).T @ cat
        z = (v.T @ xty) / np.sqrt(w)[:, None]
    else:
        w, u = eigh(x @ x.T)
        keep = w > max(w[-1], 0.0) * tiny
        w, u = w[keep], u[:, keep]
        z = u.T @ cat if y is None else class_sums(u, y, n_classes).T @ cat
    return w, z


def _golden_min(f: Any, lo: float, hi: float, iters: int = 40) -> tuple[float, float]:
    """Golden-section search of a unimodal ``f`` on ``[lo, hi]``; returns ``(argmin, min)``."""
    g = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return (c, fc) if fc <= fd else (d, fd)


#: log10 grid of the ridge penalty, relative to the largest eigenvalue of X^T X (4 points per decade).
_GCV_GRID = np.linspace(-10.0, 3.0, 53)


def _fit_gcv(x: np.ndarray, blocks: list[np.ndarray], y: np.ndarray | None, n_classes: int) -> _EMMSResult:
    r"""Out-of-sample EMMS: the WLSR residual estimated by generalized cross-validation of a ridge fit.

    For a ridge penalty lambda, the hat matrix ``H = X (X^T X + lambda I)^{-1} X^T`` has eigenvalues
    ``s_j / (s_j + lambda)`` on the left singular vectors ``u_j`` of X, so with ``f_j = lambda / (s_j + lambda)``
    and ``Z_k = U^T Y_k``

    .. math::

        \|(I - H) Y t\|^2 = t^\top M(\lambda) t,\quad
        M(\lambda)_{kj} = \langle Y_k, Y_j \rangle - \sum_r (1 - f_r^2) \langle z_{rk}, z_{rj} \rangle,\qquad
        \mathrm{GCV}(\lambda, t) = \frac{t^\top M(\lambda) t / N}{(1 - (1 + \mathrm{df}(\lambda)) / N)^2}

    with ``df = sum_r s_r / (s_r + lambda)`` (+1 for the intercept removed by centring). The score is
    ``-min_{lambda, t in simplex} GCV / L``: a K x K simplex QP per lambda on a log grid, then a golden-section
    refinement of log lambda around the best grid point.
    """
    n = x.shape[0]
    k = len(blocks)
    width = blocks[0].shape[1]
    cat, yy = _targets(blocks, y, n_classes)
    w, z = _spectral_projection(x, cat, y, n_classes)
    r = w.size
    z = z.reshape(r, k, width)
    per = np.einsum("rkl,rjl->rkj", z, z)  # (r, K, K)
    outside = yy - per.sum(axis=0)
    outside = 0.5 * (outside + outside.T)
    ev, evec = np.linalg.eigh(outside)  # PSD in exact arithmetic: clip the round-off (e.g. r = N - 1)
    ev = np.where(ev > 1e-10 * max(float(np.trace(yy)), 1e-300), ev, 0.0)
    outside = (evec * ev) @ evec.T
    free = max(n - 1 - r, 0)  # residual degrees of freedom outside the span of X (the intercept costs one)
    scale = float(w[-1]) if r else 1.0

    def value(log_lam: float) -> tuple[float, np.ndarray]:
        lam = scale * 10.0**log_lam
        f = lam / (w + lam)
        m = outside + np.einsum("r,rkj->kj", f * f, per)
        m = 0.5 * (m + m.T)
        t = simplex_qp(m) if k > 1 else np.ones(1)
        resid = max(float(t @ m @ t), 0.0)
        dof = (free + float(f.sum())) / n
        return resid / (n * width) / (dof * dof), t

    if r == 0:
        t = simplex_qp(yy) if k > 1 else np.ones(1)
        return _EMMSResult(-float(t @ yy @ t) / (n * width) * (n / (n - 1)) ** 2, t, yy, None)
    grid = [value(g)[0] for g in _GCV_GRID]
    i = int(np.argmin(grid))
    lo, hi = _GCV_GRID[max(i - 1, 0)], _GCV_GRID[min(i + 1, len(_GCV_GRID) - 1)]
    best_log, best = _golden_min(lambda g: value(g)[0], float(lo), float(hi))
    if grid[i] < best:
        best_log, best = float(_GCV_GRID[i]), grid[i]
    _, t = value(best_log)
    lam = scale * 10.0**best_log
    f = lam / (w + lam)
    gram = outside + np.einsum("r,rkj->kj", f * f, per)
    res = _EMMSResult(-best, t, 0.5 * (gram + gram.T), None)
    res.ridge = lam
    res.df = float(np.sum(w / (w + lam)))
    return res


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
    check_option(mode, MODES, where=_WHERE, name="mode")
    x = check_features(features, where=_WHERE)
    n, d = x.shape
    if labels is None:
        blocks = _embedding_blocks(label_embeddings, n, row_name="n_samples")
        y, classes, n_classes = None, None, 0
    else:
        classes, y = check_classification_labels(labels, n, where=_WHERE)
        n_classes = len(classes)
        blocks = _class_blocks(label_embeddings, classes)
    if mode != "gcv" and d >= n / 5:
        warn(
            f"emms: n_features={d} >= n_samples/5={n / 5:g}; EMMS measures an in-sample R^2, which is biased "
            "towards wide features on small datasets (it reaches the maximum when n_features >= n_samples); "
            "mode='gcv' (the default) estimates the out-of-sample fit instead."
        )
    if mode == "official":
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                res = _fit_official(x, blocks, y)
        except np.linalg.LinAlgError:
            res = _EMMSResult(float("nan"), np.zeros(len(blocks)), None, None)
        if not np.isfinite(res.score):
            raise DataFormatError(
                f"{_WHERE}: mode='official' overflowed (features up to {np.max(np.abs(x)):.3g}, label embeddings up "
                f"to {max(float(np.max(np.abs(b))) for b in blocks):.3g}); the released code squares them unscaled. "
                "Use mode='gcv' or 'exact', which are scale-invariant."
            )
        res.classes = classes
        return res
    # both remaining modes standardize columns, so a global rescale changes nothing but keeps the squares finite
    x, _ = unit_rms(x)
    blocks = [unit_rms(b)[0] for b in blocks]
    if mode == "gcv":
        res = _fit_gcv(standardize(x), blocks, y, n_classes)
    else:
        res = _fit_exact(standardize(x), blocks, y, n_classes)
    res.classes = classes
    return res


@register_metric("emms", input="label_embeddings", tasks=("classification", "multilabel", "regression", "text"))
def emms(features: Any, label_embeddings: Any, *, labels: Any = None, mode: str = "gcv") -> float:
    r"""EMMS transferability score: how well features linearly explain the (mixed) label embeddings.

    Meng et al., "Foundation Model is Efficient Multimodal Multitask Model Selector", NeurIPS 2023.

    .. math::

        T = -\frac{1}{N L} \min_{W \in \mathbb{R}^{D \times L},\ t \in \Delta^{K-1}}
            \Big\| X W - \sum_k t_k Y_k \Big\|_F^2
          = -\frac{1}{N L} \min_{t \in \Delta^{K-1}} t^\top M t,\quad
        M_{kj} = \langle (I - P_X) Y_k, (I - P_X) Y_j \rangle_F

    with X the column-standardized features and Y_k the column-standardized embeddings of encoder k (population
    std; constant columns become 0). That is the paper's objective, an in-sample fit: when D >= N - 1 the
    projection P_X is the identity on centred data and every candidate scores exactly 0 (its maximum), whatever
    its features. Three modes:

    - ``mode="gcv"`` (default): the same weighted regression, scored out of sample. W is a ridge fit
      ``(X^T X + lambda I)^{-1} X^T Y t`` and the residual is replaced by its generalized cross-validation estimate
      (Golub, Heath & Wahba, 1979, a rotation-invariant form of leave-one-out), minimised jointly over lambda and
      t on the simplex:

      .. math::

          T_{gcv} = -\frac{1}{L} \min_{\lambda > 0,\ t \in \Delta^{K-1}}
              \frac{\| (I - H_\lambda) \textstyle\sum_k t_k Y_k \|_F^2 / N}{(1 - (1 + \mathrm{tr} H_\lambda)/N)^2},
          \quad H_\lambda = X (X^\top X + \lambda I)^{-1} X^\top

      (the +1 counts the intercept removed by centring). It is informative at every N/D, close to ``"exact"``
      when N >> D (``T_gcv <= T_exact`` always), about ``-min_t t^T (Y^T Y) t / (N L)`` (the label-only
      baseline, -1 for one oracle) for features that carry no signal. Cost: one eigendecomposition of the
      min(N, D)-sized Gram, then a K x K QP per lambda (53-point log grid plus a golden-section refinement).
    - ``mode="exact"``: the paper's in-sample objective, K x K simplex QP solved exactly (support enumeration).
    - ``mode="official"``: the released code (one least-squares step with equal weights, an unconstrained fit of
      t projected with sparsemax, score ``-||XW - Yt||^2 / N * L``), whose scale differs by a factor L^2.

    Args:
        features: Candidate-model features.
        label_embeddings: Per-sample embeddings ``(N, L)``, ``(N, L, K)`` or a sequence of K ``(N, L)`` arrays;
            or, when ``labels`` is given, class-level embeddings ``(C, L)``, ``(C, L, K)``, a sequence of K
            ``(C, L)`` arrays (rows in ``np.unique(labels)`` order) or a mapping ``{class: (L,) or (L, K)}``.
            The class-level form never builds the N x L x K tensor.
        labels: Class labels (any hashable values) selecting the class-level form.
        mode: ``"gcv"`` (default), ``"exact"`` or ``"official"``.

    Shape:
        - features: ``(N, D)``
        - label_embeddings: see above
        - labels: ``(N,)``

    Returns:
        The score (higher is better); ``-1 <= score <= 0`` in exact mode, ``-N^2/(N-1)^2 <= score <= 0`` in gcv
        mode.

    Raises:
        ShapeError: wrong dimensionality, N mismatch, encoders of different widths, wrong number of class rows.
        InvalidParameterError: NaN/inf, fewer than two classes, unknown ``mode``.

    Warns:
        SelectionWarning: in ``"exact"`` and ``"official"`` modes when ``D >= N / 5`` (in-sample R^2 bias
            towards wide features).

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
