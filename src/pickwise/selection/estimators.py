"""Estimator wrappers with the scikit-learn contract (duck-typed, no scikit-learn import).

``__init__`` only stores its keyword arguments; ``fit`` validates, computes and returns ``self``; results live in
attributes ending with ``_`` (``score_``, ``weights_``...). ``get_params``/``set_params`` work as in sklearn.
"""
# ruff: noqa: N803  (sklearn's X/E argument names)

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError, NotFittedError
from .emms import _emms_fit
from .hscore import h_score
from .leep import leep
from .logme import _logme_fit
from .nce import nce

__all__ = ["EMMS", "HScore", "LEEP", "LogME", "NCE"]


class _BaseScorer:
    """Shared ``get_params``/``set_params``/``repr`` and the fitted check."""

    name: str = ""
    higher_is_better: bool = True

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments as a dict."""
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params: Any) -> _BaseScorer:
        """Set constructor arguments; returns ``self``."""
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise InvalidParameterError(f"{type(self).__name__}: unknown parameter {key!r}; valid: {valid}.")
            setattr(self, key, value)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "score_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(X, y) first.")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class EMMS(_BaseScorer):
    """EMMS estimator: ``EMMS(mode="gcv").fit(features, label_embeddings, labels=None)``.

    Attributes:
        score_: The EMMS score (see :func:`pickwise.selection.emms`).
        weights_: Oracle weights t on the simplex, one per label-embedding encoder ``(K,)``.
        residual_gram_: The K x K matrix M of the QP (at the chosen ridge penalty in gcv mode; ``None`` in
            official mode).
        ridge_: gcv mode: the ridge penalty chosen by generalized cross-validation (``None`` otherwise).
        classes_: Sorted classes when ``labels`` were given, else ``None``.
        n_features_in_: D.
    """

    name = "emms"

    def __init__(self, mode: str = "gcv") -> None:
        self.mode = mode

    def fit(self, X: Any, E: Any, labels: Any = None) -> EMMS:
        """Score features ``X`` against label embeddings ``E`` (per sample, or per class with ``labels``)."""
        res = _emms_fit(X, E, labels, self.mode)
        self.score_ = res.score
        self.weights_ = res.weights
        self.residual_gram_ = res.gram
        self.ridge_ = res.ridge
        self.classes_ = res.classes
        self.n_features_in_ = int(np.shape(X)[1])
        return self


class LogME(_BaseScorer):
    """LogME estimator (fixed point, N < D fix, vectorized over label columns).

    Attributes:
        score_: Mean evidence per sample over label columns.
        evidence_: Evidence per sample of every label column ``(T,)``.
        alpha_, beta_: Prior and noise precisions per column ``(T,)``.
        weights_: Posterior mean weights ``(T, D)``.
        classes_: Sorted classes for classification labels, else ``None``.
    """

    name = "logme"

    def __init__(self, regression: bool = False, max_iter: int = 11, tol: float = 1e-3) -> None:
        self.regression = regression
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: Any, y: Any) -> LogME:
        """Compute the evidence of every label column of ``y`` given features ``X``."""
        res = _logme_fit(X, y, regression=self.regression, max_iter=self.max_iter, tol=self.tol)
        self.score_ = res.score
        self.evidence_ = res.evidence
        self.alpha_ = res.alpha
        self.beta_ = res.beta
        self.weights_ = res.weights
        self.classes_ = res.classes
        self.n_features_in_ = int(np.shape(X)[1])
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Linear predictions ``X @ weights_.T`` (class labels for classification)."""
        self._check_fitted()
        out = np.asarray(X, dtype=np.float64) @ self.weights_.T
        if self.classes_ is not None:
            return self.classes_[np.argmax(out, axis=1)]
        return out


class LEEP(_BaseScorer):
    """LEEP estimator: ``LEEP().fit(probs, labels).score_``."""

    name = "leep"

    def __init__(self, log: bool = True) -> None:
        self.log = log

    def fit(self, X: Any, y: Any) -> LEEP:
        """``X`` are source-head probabilities ``(N, Z)``."""
        self.score_ = leep(X, y, log=self.log)
        return self


class NCE(_BaseScorer):
    """NCE estimator: ``NCE().fit(source_labels, target_labels).score_``."""

    name = "nce"

    def __init__(self) -> None:
        pass

    def fit(self, X: Any, y: Any) -> NCE:
        """``X`` are hard source labels ``(N,)``."""
        self.score_ = nce(X, y)
        return self


class HScore(_BaseScorer):
    """H-score estimator; ``shrinkage=True`` gives the Ledoit-Wolf variant."""

    name = "h_score"

    def __init__(self, shrinkage: bool = False) -> None:
        self.shrinkage = shrinkage

    def fit(self, X: Any, y: Any) -> HScore:
        """Score features ``X`` against class labels ``y``."""
        from .hscore import shrinkage_h_score

        self.score_ = shrinkage_h_score(X, y) if self.shrinkage else h_score(X, y)
        return self
