"""Ranking candidate models and judging rankings: weighted tau, Kendall tau, Pearson, Rel@k, regret, bootstrap.

``weighted_tau`` reproduces ``scipy.stats.weightedtau`` with its defaults (Vigna, "A Weighted Correlation Index for
Rankings with Ties", WWW 2015): hyperbolic weigher ``1 / (r + 1)``, additive pair weights, and the average of the
two lexicographic rankings by (x, y) and by (y, x).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..exceptions import DataFormatError, InvalidParameterError, PickwiseUserError, ShapeError
from ._spec import get_metric
from ._validation import _to_numpy, check_positive_int, check_random_state

__all__ = [
    "FailedCandidate",
    "PickStability",
    "RankedCandidate",
    "Ranking",
    "bootstrap_ci",
    "evaluate_ranking",
    "kendall_tau",
    "pearson",
    "pick_stability",
    "rank_models",
    "rank_scores",
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


# --------------------------------------------------------------------------------------------------------------
# Ranking candidates: ties, failures, stability
# --------------------------------------------------------------------------------------------------------------

#: Exceptions a metric may raise for one candidate without stopping the ranking of the others.
_CANDIDATE_ERRORS = (PickwiseUserError, np.linalg.LinAlgError, FloatingPointError)


@dataclass(frozen=True)
class RankedCandidate:
    """One ranked candidate.

    Attributes:
        name: Candidate name.
        score: Its finite score.
        rank: 1-based rank; candidates tied with each other share the rank of the first of the tie
            ("competition" ranking: 1, 1, 3).
        tied_with: The other candidates whose score is within tolerance of this one (empty if none).
        tie_break: Value of the tie-break metric used to order inside the tie (``None`` when not tied or when no
            finite tie-break value was given).
    """

    name: str
    score: float
    rank: int
    tied_with: tuple[str, ...] = ()
    tie_break: float | None = None


@dataclass(frozen=True)
class FailedCandidate:
    """A candidate that could not be ranked, with a one-line reason."""

    name: str
    reason: str


class Ranking(list):
    """Ranked candidates, best first, as a list of ``(name, score)`` tuples, plus ties and failures.

    It is a ``list`` so code written for the old ``rank_models`` return value (``ranking[0][0]``,
    ``[n for n, _ in ranking]``, ``ranking == [("a", 1.0), ...]``) keeps working. Candidates whose score is
    missing or non-finite are never in the list: they are in :attr:`failed`.

    Attributes:
        entries: One :class:`RankedCandidate` per ranked candidate, in ranked order.
        failed: :class:`FailedCandidate` records, sorted by name.
        metric: Name of the ranking metric.
        higher_is_better: Its direction.
        tie_break_metric: Name of the metric that ordered candidates inside ties, or ``None``.
        ties: Each group of two or more tied names, in ranked order.
        rtol: Relative tie tolerance used.
        atol: Absolute tie tolerance used.
    """

    def __init__(
        self,
        entries: Sequence[RankedCandidate] = (),
        *,
        failed: Sequence[FailedCandidate] = (),
        metric: str = "score",
        higher_is_better: bool = True,
        tie_break_metric: str | None = None,
        rtol: float = 1e-6,
        atol: float = 1e-12,
    ) -> None:
        super().__init__((e.name, e.score) for e in entries)
        self.entries: list[RankedCandidate] = list(entries)
        self.failed: list[FailedCandidate] = list(failed)
        self.metric = metric
        self.higher_is_better = bool(higher_is_better)
        self.tie_break_metric = tie_break_metric
        self.rtol = float(rtol)
        self.atol = float(atol)
        ties: list[tuple[str, ...]] = []
        seen: set[str] = set()
        for e in self.entries:
            if e.tied_with and e.name not in seen:
                group = tuple(x.name for x in self.entries if x.name == e.name or x.name in e.tied_with)
                seen.update(group)
                ties.append(group)
        self.ties: list[tuple[str, ...]] = ties

    @property
    def pick(self) -> str | None:
        """Name of the best ranked candidate (``None`` when every candidate failed)."""
        return self.entries[0].name if self.entries else None

    @property
    def names(self) -> list[str]:
        """Ranked names, best first."""
        return [e.name for e in self.entries]

    def describe(self) -> str:
        """One human sentence about ties and failures; the empty string when there are neither.

        Example:
            >>> rank_scores({"a": 1.0, "b": 1.0, "c": None}, metric="logme").describe()
            "'a' and 'b' tie on logme (within rtol=1e-06), ordered by name; 1 candidate failed: 'c' (no score)."
        """
        parts = []
        for group in self.ties:
            names = _join_names(group)
            if self.tie_break_metric is not None and any(
                e.tie_break is not None for e in self.entries if e.name in group
            ):
                how = f"ordered by {self.tie_break_metric}"
            else:
                how = "ordered by name"
            parts.append(f"{names} tie on {self.metric} (within rtol={self.rtol:g}), {how}")
        if self.failed:
            n = len(self.failed)
            listed = "; ".join(f"{f.name!r} ({f.reason})" for f in self.failed)
            parts.append(f"{n} candidate{'s' if n != 1 else ''} failed: {listed}")
        return ("; ".join(parts) + ".") if parts else ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (names, scores, ranks, ties, failures)."""
        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "tie_break_metric": self.tie_break_metric,
            "ranking": [
                {
                    "name": e.name,
                    "score": e.score,
                    "rank": e.rank,
                    "tied_with": list(e.tied_with),
                    "tie_break": e.tie_break,
                }
                for e in self.entries
            ],
            "ties": [list(t) for t in self.ties],
            "failed": [{"name": f.name, "score": None, "reason": f.reason} for f in self.failed],
        }

    def __repr__(self) -> str:
        return f"Ranking({list.__repr__(self)}, metric={self.metric!r}, failed={[f.name for f in self.failed]!r})"


def _join_names(names: Sequence[str]) -> str:
    quoted = [repr(n) for n in names]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _as_score(value: Any) -> float | None:
    """``float(value)``, or ``None`` for ``None``/non-numeric values."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _nonfinite_reason(metric: str, value: float | None) -> str:
    if value is None:
        return "no score"
    return f"{metric} returned {'NaN' if math.isnan(value) else str(value)}"


def rank_scores(
    scores: Mapping[str, float | None],
    *,
    metric: str = "score",
    higher_is_better: bool = True,
    tie_break: Mapping[str, float | None] | None = None,
    tie_break_metric: str | None = None,
    tie_break_higher_is_better: bool = True,
    rtol: float = 1e-6,
    atol: float = 1e-12,
    failures: Mapping[str, str] | None = None,
) -> Ranking:
    """Rank precomputed scores: best first, ties detected within tolerance, failures listed apart.

    Rules:

    - A ``None``, NaN or infinite score is never ranked: the candidate goes to ``failed`` with a reason. A name
      in ``failures`` is failed with that reason whatever its score (``failures`` may also name candidates that
      are absent from ``scores``).
    - Scores ``a`` and ``b`` tie when ``|a - b| <= atol + rtol * max(|a|, |b|)``; ties are grouped transitively
      over adjacent sorted scores (1.0, 1.0 + 0.9e-6, 1.0 + 1.8e-6 form one group at ``rtol=1e-6``).
    - Inside a tie, candidates are ordered by their finite ``tie_break`` value (in its own direction), then by
      name. Without a tie-break, or for equal or non-finite tie-break values, the order is alphabetical by
      name: never the order of the input mapping, so the result does not depend on how it was built.
    - Tied candidates share the rank of the first of the tie (1, 1, 3).

    Args:
        scores: ``{name: score}``.
        metric: Name of the score, used in messages.
        higher_is_better: Direction of the score.
        tie_break: ``{name: value}`` of a second metric that orders candidates inside a tie.
        tie_break_metric: Name of that metric (messages and :attr:`Ranking.tie_break_metric`).
        tie_break_higher_is_better: Direction of the tie-break metric.
        rtol: Relative tie tolerance (``rtol=atol=0`` means exact equality).
        atol: Absolute tie tolerance.
        failures: ``{name: reason}`` for candidates whose scoring failed.

    Returns:
        A :class:`Ranking`.

    Raises:
        InvalidParameterError: negative tolerances or a non-mapping ``scores``.

    Example:
        >>> r = rank_scores({"b": 0.5, "a": 0.5, "c": 0.9, "d": float("nan")})
        >>> r
        Ranking([('c', 0.9), ('a', 0.5), ('b', 0.5)], metric='score', failed=['d'])
        >>> [(e.name, e.rank, e.tied_with) for e in r.entries]
        [('c', 1, ()), ('a', 2, ('b',)), ('b', 2, ('a',))]
        >>> rank_scores({"b": 0.5, "a": 0.5}, tie_break={"a": 0.1, "b": 0.7}, tie_break_metric="knn").names
        ['b', 'a']
    """
    if not isinstance(scores, Mapping):
        raise InvalidParameterError(
            f"rank_scores: scores must be a mapping {{name: score}}; got {type(scores).__name__}."
        )
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and math.isfinite(tol) and tol >= 0):
            raise InvalidParameterError(f"rank_scores: {name} must be a finite number >= 0; got {tol!r}.")
    failures = dict(failures or {})
    failed: dict[str, str] = {}
    good: list[tuple[str, float]] = []
    for name, raw in scores.items():
        value = _as_score(raw)
        if name in failures:
            failed[name] = str(failures[name])
        elif value is None or not math.isfinite(value):
            failed[name] = _nonfinite_reason(metric, value)
        else:
            good.append((name, value))
    for name, reason in failures.items():
        failed.setdefault(name, str(reason))
    sign = 1.0 if higher_is_better else -1.0
    # sort best first; the name makes the order of exactly equal scores independent of the mapping's order
    good.sort(key=lambda item: (-sign * item[1], str(item[0])))
    groups: list[list[tuple[str, float]]] = []
    for item in good:
        if groups:
            prev = groups[-1][-1][1]
            if abs(item[1] - prev) <= atol + rtol * max(abs(item[1]), abs(prev)):
                groups[-1].append(item)
                continue
        groups.append([item])
    tb_sign = 1.0 if tie_break_higher_is_better else -1.0

    def tb_value(name: str) -> float | None:
        if tie_break is None:
            return None
        v = _as_score(tie_break.get(name))
        return v if v is not None and math.isfinite(v) else None

    entries: list[RankedCandidate] = []
    for group in groups:
        rank = len(entries) + 1
        if len(group) == 1:
            name, value = group[0]
            entries.append(RankedCandidate(name, value, rank))
            continue

        def key(item: tuple[str, float]) -> tuple[int, float, str]:
            v = tb_value(item[0])
            return (0, -tb_sign * v, str(item[0])) if v is not None else (1, 0.0, str(item[0]))

        members = sorted(group, key=key)
        names = [n for n, _ in members]
        for name, value in members:
            others = tuple(n for n in names if n != name)
            entries.append(RankedCandidate(name, value, rank, others, tb_value(name)))
    failed_list = [FailedCandidate(n, failed[n]) for n in sorted(failed, key=str)]
    return Ranking(
        entries,
        failed=failed_list,
        metric=metric,
        higher_is_better=higher_is_better,
        tie_break_metric=tie_break_metric,
        rtol=rtol,
        atol=atol,
    )


def _call_metric(spec: Any, inputs: Any, labels: Any, kwargs: Mapping[str, Any]) -> float:
    if spec.input == "label_embeddings":
        kw = dict(kwargs)
        if "label_embeddings" not in kw:
            raise InvalidParameterError(f"{spec.name}: pass label_embeddings=... (F-Label embeddings).")
        emb = kw.pop("label_embeddings")
        return spec.func(inputs, emb, labels=labels, **kw)
    return spec.func(inputs, labels, **kwargs)


def _diagnose(spec: Any, inputs: Any) -> str:
    """A short guess at why a candidate's features gave no score ("" when nothing stands out)."""
    if spec.input not in ("features", "label_embeddings"):
        return ""
    try:
        x = np.asarray(_to_numpy(inputs), dtype=np.float64)
    except Exception:  # diagnosis is best effort
        return ""
    if x.ndim != 2 or x.size == 0:
        return ""
    n = x.shape[0]
    if not np.isfinite(x).all():
        return f"the features contain {'NaN' if np.isnan(x).any() else 'infinity'}"
    if not x.any():
        return f"all {n} feature rows are zero: a dead model?"
    if (x == x[:1]).all():
        return f"all {n} feature rows are identical: a dead model?"
    return ""


def _check_candidates(candidates: Any, where: str) -> None:
    if not isinstance(candidates, Mapping) or not candidates:
        raise InvalidParameterError(f"{where}: candidates must be a non-empty mapping {{model_name: features}}.")


def _score_all(
    spec: Any, candidates: Mapping[str, Any], labels: Any, kwargs: Mapping[str, Any]
) -> tuple[dict[str, float | None], dict[str, str], dict[str, float]]:
    if spec.input == "label_embeddings" and "label_embeddings" not in kwargs:
        raise InvalidParameterError(f"{spec.name}: pass label_embeddings=... (F-Label embeddings).")
    scores: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    seconds: dict[str, float] = {}
    errors: list[BaseException] = []
    for name, inputs in candidates.items():
        t0 = time.perf_counter()
        try:
            value = float(_call_metric(spec, inputs, labels, kwargs))
        except _CANDIDATE_ERRORS as err:
            errors.append(err)
            value = None
        seconds[name] = time.perf_counter() - t0
        if value is None or not math.isfinite(value):
            reasons[name] = _reason_from(spec, inputs, errors[-1] if value is None else None, value)
            scores[name] = None
        else:
            scores[name] = value
    # A problem shared by every candidate (bad labels, an unknown option, labels of the wrong length) is the
    # caller's error: raise it. DataFormatError (dead features...) stays a per-candidate failure.
    if errors and len(errors) == len(candidates):
        shared = [e for e in errors if not isinstance(e, DataFormatError)]
        if shared and all(type(e) is type(shared[0]) and str(e) == str(shared[0]) for e in shared):
            raise shared[0]
    return scores, reasons, seconds


def _reason_from(spec: Any, inputs: Any, err: BaseException | None, value: float | None) -> str:
    diag = _diagnose(spec, inputs)
    if err is None:
        return _nonfinite_reason(spec.name, value) + (f" ({diag})" if diag else "")
    msg = " ".join(str(err).split()) or type(err).__name__
    if not isinstance(err, PickwiseUserError):
        msg = f"{spec.name}: {type(err).__name__}: {msg}"
    return f"{msg} ({diag})" if diag and diag not in msg and "dead model" not in msg else msg


def rank_models(
    candidates: Mapping[str, Any],
    labels: Any,
    *,
    metric: str = "logme",
    tie_break_metric: str | None = None,
    tie_break_kwargs: Mapping[str, Any] | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-12,
    **metric_kwargs: Any,
) -> Ranking:
    """Score every candidate with one metric and rank them best first (direction from the metric's metadata).

    A candidate whose metric raises a pickwise user error (``PickwiseUserError``), a ``numpy.linalg.LinAlgError``
    or a ``FloatingPointError``, or returns NaN/inf, is listed in ``ranking.failed`` with the reason, and the
    others are still ranked. When every candidate fails and all the errors other than ``DataFormatError`` (a
    candidate's data, e.g. all-zero features from a dead model) carry the same message (bad labels, an unknown
    option, labels of the wrong length: a problem of the call, not of a candidate), that error is raised instead.
    Ties are handled by :func:`rank_scores`; the tie-break metric is computed only for candidates inside a tie.

    Args:
        candidates: ``{model_name: input}``, where the input is what the metric consumes: features ``(N, D)``
            for most metrics, source-head probabilities for ``leep``, hard source labels for ``nce``.
        labels: Target labels shared by all candidates (for ``emms``: class labels, or ``None`` with per-sample
            ``label_embeddings``).
        metric: Registered metric name (``list_metrics()``).
        tie_break_metric: Registered metric that orders candidates whose scores tie (e.g. ``"knn_accuracy"``).
        tie_break_kwargs: Options of the tie-break metric (``metric_kwargs`` are not passed to it).
        rtol: Relative tie tolerance, see :func:`rank_scores`.
        atol: Absolute tie tolerance.
        **metric_kwargs: Options of the metric (``label_embeddings=...`` for ``emms``).

    Returns:
        A :class:`Ranking`: a list ``[(model_name, score), ...]`` from most to least transferable, with
        ``.entries``, ``.ties``, ``.failed`` and ``.describe()``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = np.arange(120) % 3
        >>> feats = {"good": np.eye(3)[y] + 0.1 * rng.normal(size=(120, 3)), "noise": rng.normal(size=(120, 3)),
        ...          "dead": np.zeros((120, 3))}
        >>> ranking = rank_models(feats, y, metric="logme")
        >>> [name for name, _ in ranking]
        ['good', 'noise']
        >>> ranking.failed[0].name
        'dead'
    """
    spec = get_metric(metric)
    _check_candidates(candidates, "rank_models")
    scores, reasons, _ = _score_all(spec, candidates, labels, metric_kwargs)
    tie_values: dict[str, float | None] | None = None
    tb_spec = None
    if tie_break_metric is not None:
        tb_spec = get_metric(tie_break_metric)
        pre = rank_scores(
            scores, metric=spec.name, higher_is_better=spec.higher_is_better, rtol=rtol, atol=atol, failures=reasons
        )
        tied = [n for group in pre.ties for n in group]
        if tied:
            tb_scores, _, _ = _score_all(tb_spec, {n: candidates[n] for n in tied}, labels, tie_break_kwargs or {})
            tie_values = dict(tb_scores)
    return rank_scores(
        scores,
        metric=spec.name,
        higher_is_better=spec.higher_is_better,
        tie_break=tie_values,
        tie_break_metric=tb_spec.name if tb_spec is not None else None,
        tie_break_higher_is_better=tb_spec.higher_is_better if tb_spec is not None else True,
        rtol=rtol,
        atol=atol,
        failures=reasons,
    )


def score_models(
    candidates: Mapping[str, Any],
    labels: Any,
    *,
    metrics: Sequence[str] = ("logme",),
    metric_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Score every candidate with several metrics and time each call.

    A candidate that fails a metric (see :func:`rank_models`) gets ``"score": None`` and an ``"error"`` reason
    instead of stopping the table.

    Returns:
        ``{metric: {model: {"score": float | None, "seconds": float[, "error": str]}}}``.
    """
    _check_candidates(candidates, "score_models")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    metric_kwargs = metric_kwargs or {}
    for name in metrics:
        spec = get_metric(name)
        kwargs = dict(metric_kwargs.get(spec.name, metric_kwargs.get(name, {})))
        scores, reasons, seconds = _score_all(spec, candidates, labels, kwargs)
        table: dict[str, dict[str, Any]] = {}
        for model in candidates:
            row: dict[str, Any] = {"score": scores[model], "seconds": seconds[model]}
            if model in reasons:
                row["error"] = reasons[model]
            table[model] = row
        out[spec.name] = table
    return out


@dataclass(frozen=True)
class PickStability:
    """How often the full-data pick stays first when the scored images are resampled (bootstrap).

    Attributes:
        pick: The candidate ranked first on all the images.
        share: Fraction of completed resamples in which ``pick`` is still ranked first.
        n_resamples: Resamples completed (fewer than requested when ``max_seconds`` ran out).
        threshold: ``share`` below this marks the pick as uncertain.
        uncertain: ``share < threshold``.
        runner_up: The candidate ranked first most often after ``pick`` (``None`` with one candidate).
        runner_up_share: Its share of first places (0.0 when none).
        first_shares: ``{name: share of resamples where it was first}`` for every ranked candidate.
        n_requested: Resamples asked for.
        n_failed: Resamples in which at least one candidate had no finite score (it then counts as not first).
        stratified: Whether resampling kept each class's share (class labels) or drew images freely.
        resample: ``"subsample"`` (without replacement) or ``"bootstrap"``.
        fraction: Share of the images in each subsample (1.0 for the bootstrap).
        metric: The metric used.
        seed: The seed.
        seconds: Wall time of the resampling.
    """

    pick: str
    share: float
    n_resamples: int
    threshold: float
    uncertain: bool
    runner_up: str | None = None
    runner_up_share: float = 0.0
    first_shares: Mapping[str, float] = field(default_factory=dict)
    n_requested: int = 0
    n_failed: int = 0
    stratified: bool = False
    resample: str = "subsample"
    fraction: float = 0.8
    metric: str = ""
    seed: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        """One sentence: how stable the pick is.

        Example:
            >>> PickStability("a", 0.62, 50, 0.8, True, "b", 0.38).describe()
            "'a' stays first in 62% of 50 resamples of the scored images (below 80%: uncertain; 'b' is first in 38%)."
        """
        text = f"{self.pick!r} stays first in {self.share:.0%} of {self.n_resamples} resamples of the scored images"
        if self.uncertain:
            text += f" (below {self.threshold:.0%}: uncertain"
            if self.runner_up is not None:
                text += f"; {self.runner_up!r} is first in {self.runner_up_share:.0%}"
            text += ")"
        return text + "."

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "pick": self.pick,
            "share": self.share,
            "n_resamples": self.n_resamples,
            "n_requested": self.n_requested,
            "threshold": self.threshold,
            "uncertain": self.uncertain,
            "runner_up": self.runner_up,
            "runner_up_share": self.runner_up_share,
            "first_shares": dict(self.first_shares),
            "n_failed": self.n_failed,
            "stratified": self.stratified,
            "resample": self.resample,
            "fraction": self.fraction,
            "metric": self.metric,
            "seed": self.seed,
            "seconds": self.seconds,
        }


def _rows(x: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of an array-like (numpy copy) or of every array in a list/tuple of them."""
    if isinstance(x, (list, tuple)) and x and not np.isscalar(x[0]):
        return [np.asarray(_to_numpy(e))[idx] for e in x]
    return np.asarray(_to_numpy(x))[idx]


def _n_rows(x: Any) -> int | None:
    if isinstance(x, (list, tuple)) and x and not np.isscalar(x[0]):
        x = x[0]
    shape = np.shape(_to_numpy(x))
    return int(shape[0]) if shape else None


def pick_stability(
    candidates: Mapping[str, Any],
    labels: Any,
    *,
    metric: str = "logme",
    n_resamples: int = 50,
    seed: int = 0,
    threshold: float = 0.8,
    max_seconds: float | None = None,
    stratify: bool | None = None,
    resample: str = "subsample",
    fraction: float = 0.8,
    progress: Callable[[int, int], None] | None = None,
    **metric_kwargs: Any,
) -> PickStability:
    """Resample the scored images and report how often the full-data pick stays first.

    Each resample draws image indices (the same indices for every candidate, and for per-sample
    ``label_embeddings`` when ``labels`` is ``None``), scores every candidate ranked on the full data on those
    rows, and ranks them with :func:`rank_scores` (ties ordered by name). With class labels the draw is
    stratified by default (each class keeps its share, so no class disappears from a resample and class-level
    label embeddings stay valid). A candidate with no finite score on a resample is not first in it.

    ``resample="subsample"`` (default) draws ``fraction`` of the images without replacement (m-out-of-n
    subsampling); ``resample="bootstrap"`` draws N with replacement. The default avoids duplicated rows: the
    metrics are fits on the rows, a bootstrap sample holds only about 63% distinct images, and duplicates
    inflate in-sample fits of wide features (measured, LogME, two pure-noise candidates with D=1280 and D=512 at
    N=2000: the 512-wide one is first on all the data, in 0 of 5 bootstrap resamples and in 5 of 5 subsamples).

    Cost: ``n_resamples x n_candidates`` metric calls on N rows, i.e. ``n_resamples`` times the cost of
    :func:`rank_models` (LogME or EMMS at N=2000, D=1280 take about 3 s per candidate on one busy core: the
    D x D Gram matrix and its eigendecomposition), so 50 resamples of 5 such candidates take over 10 minutes.
    Bound it with ``n_resamples`` and ``max_seconds`` (the loop stops after the resample that crosses it;
    ``n_resamples`` of the result says how many were completed). The estimate of ``share`` has a binomial
    standard error of ``sqrt(share (1 - share) / n_resamples)``: about 0.06 at 50 resamples for a share of 0.8.

    Args:
        candidates: ``{model_name: input}`` as for :func:`rank_models`.
        labels: Target labels (class labels, regression targets, or ``None`` with per-sample label embeddings).
        metric: Registered metric name.
        n_resamples: Number of resamples.
        seed: Seed of the resampling (same seed, same result).
        threshold: A share below it marks the pick ``uncertain``.
        max_seconds: Optional wall-time budget for the resampling loop.
        stratify: Keep class proportions in each resample; ``None`` means "when ``labels`` are 1-D class labels"
            (``regression=True`` in ``metric_kwargs`` turns it off).
        resample: ``"subsample"`` (without replacement) or ``"bootstrap"`` (with replacement).
        fraction: Share of the images in a subsample (per class when stratified, at least 2 per class), in
            (0, 1]; ignored by the bootstrap.
        progress: Called as ``progress(i, n_resamples)`` after each completed resample.
        **metric_kwargs: Options of the metric.

    Returns:
        A :class:`PickStability`.

    Raises:
        DataFormatError: no candidate can be scored on the full data.
        ShapeError: candidates, labels or per-sample embeddings disagree on the number of images.
        InvalidParameterError: bad ``n_resamples``, ``threshold``, ``max_seconds``, ``resample`` or ``fraction``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = np.arange(150) % 3
        >>> feats = {"good": np.eye(3)[y] + 0.3 * rng.normal(size=(150, 3)), "noise": rng.normal(size=(150, 3))}
        >>> st = pick_stability(feats, y, metric="logme", n_resamples=20)
        >>> st.pick, st.share, st.uncertain
        ('good', 1.0, False)
    """
    spec = get_metric(metric)
    _check_candidates(candidates, "pick_stability")
    n_resamples = check_positive_int(n_resamples, where="pick_stability", name="n_resamples")
    if resample not in ("subsample", "bootstrap"):
        raise InvalidParameterError(f"pick_stability: resample must be 'subsample' or 'bootstrap'; got {resample!r}.")
    if not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 < fraction <= 1):
        raise InvalidParameterError(f"pick_stability: fraction must be in (0, 1]; got {fraction!r}.")
    if not (isinstance(threshold, (int, float)) and 0 <= threshold <= 1):
        raise InvalidParameterError(f"pick_stability: threshold must be in [0, 1]; got {threshold!r}.")
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise InvalidParameterError(
            f"pick_stability: max_seconds must be a positive number or None; got {max_seconds!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidParameterError(f"pick_stability: seed must be an int; got {seed!r}.")
    if labels is None and "label_embeddings" in metric_kwargs:
        n_emb, n_x = _n_rows(metric_kwargs["label_embeddings"]), _n_rows(next(iter(candidates.values())))
        if n_emb != n_x:
            raise ShapeError(f"pick_stability: per-sample label_embeddings have {n_emb} rows; features have {n_x}.")
    full = rank_models(candidates, labels, metric=spec.name, **metric_kwargs)
    if not full.entries:
        raise DataFormatError(
            f"pick_stability: no candidate could be scored with {spec.name} on the full data ({full.describe()})"
        )
    names = full.names
    pick = names[0]
    # convert once: every resample indexes float64 numpy copies
    inputs = {n: np.asarray(_to_numpy(candidates[n])) for n in names}
    sizes = {n: x.shape[0] if x.ndim else 0 for n, x in inputs.items()}
    n = sizes[pick]
    if len(set(sizes.values())) > 1:
        raise ShapeError(f"pick_stability: candidates have different numbers of images: {sizes}.")
    kwargs = dict(metric_kwargs)
    lab = None if labels is None else np.asarray(_to_numpy(labels)) if not isinstance(labels, (list, tuple)) else None
    if labels is not None and lab is None:
        lab = np.asarray(labels, dtype=object) if labels and isinstance(labels[0], str) else np.asarray(labels)
    if lab is not None and lab.shape[:1] != (n,):
        raise ShapeError(f"pick_stability: labels have {lab.shape[0] if lab.ndim else 0} rows; features have {n}.")
    emb_per_sample = labels is None and "label_embeddings" in kwargs
    if emb_per_sample and _n_rows(kwargs["label_embeddings"]) != n:
        raise ShapeError(
            f"pick_stability: per-sample label_embeddings have {_n_rows(kwargs['label_embeddings'])} rows; "
            f"features have {n}."
        )
    if stratify is None:
        stratify = lab is not None and lab.ndim == 1 and not kwargs.get("regression", False)
    strata: list[np.ndarray] = []
    if stratify:
        if lab is None or lab.ndim != 1:
            raise InvalidParameterError("pick_stability: stratify=True needs 1-D class labels.")
        _, inv = np.unique(lab, return_inverse=True)
        strata = [np.flatnonzero(inv.reshape(-1) == c) for c in range(int(inv.max()) + 1)]
    else:
        strata = [np.arange(n)]
    rng = np.random.default_rng(int(seed))

    def draw(group: np.ndarray) -> np.ndarray:
        if resample == "bootstrap":
            return group[rng.integers(0, group.size, group.size)]
        size = min(group.size, max(2, round(fraction * group.size)))
        return np.sort(rng.choice(group, size, replace=False))

    firsts: dict[str, int] = dict.fromkeys(names, 0)
    done = failed = 0
    t0 = time.perf_counter()
    for i in range(n_resamples):
        idx = np.concatenate([draw(s) for s in strata])
        kw = dict(kwargs)
        if emb_per_sample:
            kw["label_embeddings"] = _rows(kwargs["label_embeddings"], idx)
        lab_i = None if lab is None else lab[idx]
        scores: dict[str, float | None] = {}
        for name in names:
            try:
                scores[name] = float(_call_metric(spec, inputs[name][idx], lab_i, kw))
            except _CANDIDATE_ERRORS:
                scores[name] = None
        ranking = rank_scores(scores, metric=spec.name, higher_is_better=spec.higher_is_better)
        if ranking.failed:
            failed += 1
        if ranking.entries:
            firsts[ranking.entries[0].name] += 1
        done = i + 1
        if progress is not None:
            progress(done, n_resamples)
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            break
    shares = {k: v / done for k, v in firsts.items()}
    share = shares[pick]
    others = sorted((k for k in names if k != pick), key=lambda k: (-shares[k], names.index(k)))
    runner = others[0] if others else None
    return PickStability(
        pick=pick,
        share=share,
        n_resamples=done,
        threshold=float(threshold),
        uncertain=share < threshold,
        runner_up=runner,
        runner_up_share=shares[runner] if runner is not None else 0.0,
        first_shares=shares,
        n_requested=n_resamples,
        n_failed=failed,
        stratified=bool(stratify),
        resample=resample,
        fraction=float(fraction) if resample == "subsample" else 1.0,
        metric=spec.name,
        seed=int(seed),
        seconds=time.perf_counter() - t0,
    )
