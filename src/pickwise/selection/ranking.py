"""Ranking candidate models and judging rankings: weighted tau, Kendall tau, Pearson, Rel@k, regret, bootstrap.

``weighted_tau`` reproduces ``scipy.stats.weightedtau`` with its defaults (Vigna, "A Weighted Correlation Index for
Rankings with Ties", WWW 2015): hyperbolic weigher ``1 / (r + 1)``, additive pair weights, and the average of the
two lexicographic rankings by (x, y) and by (y, x).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError, ShapeError
from ._spec import get_metric
from ._validation import check_positive_int, check_random_state

__all__ = [
    "bootstrap_ci",
    "evaluate_ranking",
    "kendall_tau",
    "pearson",
    "rank_models",
    "rel_at_k",
    "score_models",
    "top1_regret",
    "weighted_tau",
]


def _pair(x: Any, y: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(x, Mapping) or isinstance(y, Mapping):
        if not (isinstance(x, Mapping) and isinstance(y, Mapping)):
            raise InvalidParameterError(f"{where}: pass two mappings {{model: value}} or two sequences.")
        if set(x) != set(y):
            missing = sorted(set(x) ^ set(y), key=str)
            raise InvalidParameterError(f"{where}: the two mappings name different models: {missing[:5]!r}.")
        keys = list(x)
        x, y = [x[k] for k in keys], [y[k] for k in keys]
    xa = np.asarray(x, dtype=np.float64).reshape(-1) if np.ndim(x) <= 1 else None
    ya = np.asarray(y, dtype=np.float64).reshape(-1) if np.ndim(y) <= 1 else None
    if xa is None or ya is None:
        raise ShapeError(f"{where}: scores and accuracies must be 1-D.")
    if xa.shape != ya.shape:
        raise ShapeError(
            f"{where}: Found input variables with inconsistent numbers of samples: [{xa.size}, {ya.size}]."
        )
    if xa.size < 2:
        raise ShapeError(f"{where}: need at least 2 models; got {xa.size}.")
    if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
        raise InvalidParameterError(f"{where}: scores and accuracies must be finite.")
    return xa, ya


def _tau(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    wij = w[:, None] + w[None, :]
    iu = np.triu_indices(x.size, 1)
    wij, sx, sy = wij[iu], sx[iu], sy[iu]
    num = float(np.sum(wij * sx * sy))
    den = float(np.sum(wij * (sx != 0))) * float(np.sum(wij * (sy != 0)))
    return num / math.sqrt(den) if den > 0 else float("nan")


def _lex_rank(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    perm = np.lexsort((y, x))[::-1]  # decreasing by x, then by y
    rank = np.empty(x.size)
    rank[perm] = np.arange(x.size)
    return rank


def weighted_tau(x: Any, y: Any) -> float:
    """Weighted Kendall tau, identical to ``scipy.stats.weightedtau(x, y)[0]`` (defaults).

    Args:
        x: Scores of the models (or a mapping ``{model: score}``).
        y: Ground-truth accuracies (or a mapping with the same keys).

    Returns:
        tau_w in [-1, 1]; ``nan`` when either side is constant.

    Example:
        >>> weighted_tau([1, 2, 3, 4], [10, 20, 30, 40])
        1.0
    """
    xa, ya = _pair(x, y, "weighted_tau")
    t1 = _tau(xa, ya, 1.0 / (_lex_rank(xa, ya) + 1.0))
    t2 = _tau(ya, xa, 1.0 / (_lex_rank(ya, xa) + 1.0))
    return (t1 + t2) / 2.0


def kendall_tau(x: Any, y: Any) -> float:
    """Kendall tau-b (as ``scipy.stats.kendalltau`` defaults)."""
    xa, ya = _pair(x, y, "kendall_tau")
    return _tau(xa, ya, np.full(xa.size, 0.5))


def pearson(x: Any, y: Any) -> float:
    """Pearson correlation coefficient (``nan`` when either side is constant)."""
    xa, ya = _pair(x, y, "pearson")
    xa, ya = xa - xa.mean(), ya - ya.mean()
    den = math.sqrt(float(xa @ xa) * float(ya @ ya))
    return float(xa @ ya) / den if den > 0 else float("nan")


def rel_at_k(scores: Any, accuracies: Any, k: int = 1) -> float:
    """Rel@k: best accuracy among the k top-scored models divided by the best accuracy overall.

    Ties in the scores are broken by input order. Accuracies must be positive.
    """
    xa, ya = _pair(scores, accuracies, "rel_at_k")
    k = check_positive_int(k, where="rel_at_k", name="k")
    if ya.max() <= 0:
        raise InvalidParameterError("rel_at_k: accuracies must be positive.")
    top = np.argsort(-xa, kind="stable")[:k]
    return float(ya[top].max() / ya.max())


def top1_regret(scores: Any, accuracies: Any) -> float:
    """Accuracy lost by fine-tuning the top-scored model instead of the best one (``>= 0``)."""
    xa, ya = _pair(scores, accuracies, "top1_regret")
    return float(ya.max() - ya[int(np.argsort(-xa, kind="stable")[0])])


def bootstrap_ci(
    scores: Any,
    accuracies: Any,
    *,
    statistic: Callable[[np.ndarray, np.ndarray], float] = weighted_tau,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    random_state: int | np.random.Generator | None = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a ranking statistic, resampling models with replacement.

    Resamples on which the statistic is undefined (fewer than two distinct models, constant side) are skipped.

    Returns:
        ``(low, high)``.
    """
    xa, ya = _pair(scores, accuracies, "bootstrap_ci")
    check_positive_int(n_resamples, where="bootstrap_ci", name="n_resamples")
    if not 0 < confidence < 1:
        raise InvalidParameterError(f"bootstrap_ci: confidence must be in (0, 1); got {confidence!r}.")
    rng = check_random_state(random_state)
    values = []
    for _ in range(n_resamples):
        idx = rng.integers(0, xa.size, xa.size)
        if np.unique(idx).size < 2:
            continue
        v = statistic(xa[idx], ya[idx])
        if np.isfinite(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)


def evaluate_ranking(
    scores: Any, accuracies: Any, *, higher_is_better: bool = True, ks: Sequence[int] = (1, 3)
) -> dict[str, float]:
    """All ranking-quality numbers for one metric on one target.

    Returns:
        ``{"weighted_tau", "kendall_tau", "pearson", "rel_at_<k>"..., "top1_regret"}``.
    """
    xa, ya = _pair(scores, accuracies, "evaluate_ranking")
    if not higher_is_better:
        xa = -xa
    out = {"weighted_tau": weighted_tau(xa, ya), "kendall_tau": kendall_tau(xa, ya), "pearson": pearson(xa, ya)}
    for k in ks:
        out[f"rel_at_{k}"] = rel_at_k(xa, ya, k)
    out["top1_regret"] = top1_regret(xa, ya)
    return out


def _call_metric(spec: Any, inputs: Any, labels: Any, kwargs: dict[str, Any]) -> float:
    if spec.input == "label_embeddings":
        kw = dict(kwargs)
        if "label_embeddings" not in kw:
            raise InvalidParameterError(f"{spec.name}: pass label_embeddings=... (F-Label embeddings).")
        emb = kw.pop("label_embeddings")
        return spec.func(inputs, emb, labels=labels, **kw)
    return spec.func(inputs, labels, **kwargs)


def rank_models(
    candidates: Mapping[str, Any], labels: Any, *, metric: str = "logme", **metric_kwargs: Any
) -> list[tuple[str, float]]:
    """Score every candidate with one metric and sort best first (direction from the metric's metadata).

    Args:
        candidates: ``{model_name: input}``, where the input is what the metric consumes: features ``(N, D)``
            for most metrics, source-head probabilities for ``leep``, hard source labels for ``nce``.
        labels: Target labels shared by all candidates (for ``emms``: class labels, or ``None`` with per-sample
            ``label_embeddings``).
        metric: Registered metric name (``list_metrics()``).
        **metric_kwargs: Options of the metric (``label_embeddings=...`` for ``emms``).

    Returns:
        ``[(model_name, score), ...]`` sorted from most to least transferable.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = np.arange(120) % 3
        >>> feats = {"good": np.eye(3)[y] + 0.1 * rng.normal(size=(120, 3)), "noise": rng.normal(size=(120, 3))}
        >>> [name for name, _ in rank_models(feats, y, metric="logme")]
        ['good', 'noise']
    """
    spec = get_metric(metric)
    if not isinstance(candidates, Mapping) or not candidates:
        raise InvalidParameterError("rank_models: candidates must be a non-empty mapping {model_name: features}.")
    scored = [(name, _call_metric(spec, inputs, labels, metric_kwargs)) for name, inputs in candidates.items()]
    return sorted(scored, key=lambda item: item[1], reverse=spec.higher_is_better)


def score_models(
    candidates: Mapping[str, Any],
    labels: Any,
    *,
    metrics: Sequence[str] = ("logme",),
    metric_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Score every candidate with several metrics and time each call.

    Returns:
        ``{metric: {model: {"score": float, "seconds": float}}}``.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    metric_kwargs = metric_kwargs or {}
    for name in metrics:
        spec = get_metric(name)
        out[spec.name] = {}
        for model, inputs in candidates.items():
            t0 = time.perf_counter()
            value = _call_metric(spec, inputs, labels, dict(metric_kwargs.get(spec.name, {})))
            out[spec.name][model] = {"score": float(value), "seconds": time.perf_counter() - t0}
    return out
