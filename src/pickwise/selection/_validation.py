"""Input validation for the transferability metrics: array conversion, label encoding, consistent lengths.

Every public metric validates once, here, and then works on float64 numpy copies (inputs are never mutated).
Messages follow the template ``"{where}: {arg} must be {expected}; got {actual}. {hint}"``.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..exceptions import DataFormatError, InvalidParameterError, ShapeError

__all__ = [
    "SelectionWarning",
    "as_float_array",
    "check_classification_labels",
    "check_consistent_length",
    "check_features",
    "check_min_per_class",
    "check_option",
    "check_positive_int",
    "check_random_state",
    "check_targets",
    "warn",
]


class SelectionWarning(UserWarning):
    """A metric is defined for the input but its value is unreliable (e.g. D >= N/5 for EMMS)."""


def warn(message: str) -> None:
    """Emit a :class:`SelectionWarning` pointing at the caller of the public metric."""
    warnings.warn(message, SelectionWarning, stacklevel=4)


def _to_numpy(x: Any) -> np.ndarray:
    """Convert numpy arrays, torch tensors (any device, detached) and nested sequences to a numpy array."""
    if type(x).__module__.startswith("torch"):
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach()
            if x.dtype in (torch.bfloat16, torch.float16):
                x = x.float()
            return x.cpu().numpy()
    return np.asarray(x)


def as_float_array(x: Any, *, where: str, name: str) -> np.ndarray:
    """Return ``x`` as a new float64 numpy array (always a copy, so the caller may modify it)."""
    try:
        arr = _to_numpy(x)
    except Exception as err:  # pragma: no cover - exotic array types
        raise InvalidParameterError(
            f"{where}: {name} must be a numpy array or torch tensor; got {type(x).__name__}"
        ) from err
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InvalidParameterError(f"{where}: {name} must be numeric; got dtype {arr.dtype}.")
    if np.iscomplexobj(arr):
        raise InvalidParameterError(f"{where}: {name} must be real; got dtype {arr.dtype}.")
    return np.array(arr, dtype=np.float64, copy=True)


def _check_finite(arr: np.ndarray, *, where: str, name: str) -> None:
    if not np.isfinite(arr).all():
        what = "NaN" if np.isnan(arr).any() else "infinity"
        raise InvalidParameterError(f"{where}: {name} contains {what}; remove or impute non-finite values first.")


def check_features(
    x: Any, *, where: str, name: str = "features", min_samples: int = 2, reject_constant: bool = True
) -> np.ndarray:
    """Validate a 2-D finite feature matrix ``(N, D)`` with ``N >= min_samples``; returns a float64 copy.

    With ``reject_constant`` (the default) a matrix whose rows are all identical (every feature constant over the
    samples, e.g. all zero from a dead model) raises :class:`DataFormatError`: it carries no information about
    the samples, and a metric that returned a number for it would be ranking nothing.
    """
    arr = as_float_array(x, where=where, name=name)
    if arr.ndim != 2:
        hint = " Use features.reshape(-1, 1) for a single feature." if arr.ndim == 1 else ""
        raise ShapeError(f"{where}: {name} must be 2-D (n_samples, n_features); got shape {arr.shape}.{hint}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ShapeError(f"{where}: {name} is empty; got shape {arr.shape}.")
    if arr.shape[0] < min_samples:
        raise ShapeError(f"{where}: {name} needs at least {min_samples} samples; got {arr.shape[0]}.")
    _check_finite(arr, where=where, name=name)
    if reject_constant and (arr == arr[:1]).all():
        what = "zero" if not arr.any() else "identical"
        raise DataFormatError(
            f"{where}: all {arr.shape[0]} rows of {name} are {what} (every one of the {arr.shape[1]} columns is "
            "constant: a dead model?); they carry no information to score. Check the feature extractor."
        )
    return arr


def check_consistent_length(*lengths: int, where: str) -> None:
    """Raise when arrays that describe the same samples have different lengths (sklearn phrasing)."""
    if len(set(lengths)) > 1:
        raise ShapeError(f"{where}: Found input variables with inconsistent numbers of samples: {list(lengths)}.")


def check_classification_labels(
    labels: Any, n_samples: int, *, where: str, min_classes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Encode arbitrary hashable class labels; returns ``(classes, y)`` with ``y`` in ``[0, n_classes)``.

    Raises:
        ShapeError: labels are not 1-D, or their length differs from ``n_samples``.
        InvalidParameterError: fewer than ``min_classes`` distinct classes, or non-finite float labels.
    """
    if isinstance(labels, (list, tuple)) and labels and isinstance(labels[0], str):
        arr = np.asarray(labels, dtype=object)
    else:
        arr = _to_numpy(labels)
    if arr.ndim != 1:
        raise ShapeError(
            f"{where}: labels must be 1-D (n_samples,) class labels; got shape {arr.shape}. "
            "Pass multi-label indicator matrices or regression targets where the metric supports them."
        )
    check_consistent_length(n_samples, arr.shape[0], where=where)
    if arr.shape[0] == 0:
        raise ShapeError(f"{where}: labels are empty.")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InvalidParameterError(f"{where}: labels contain NaN or infinity.")
    try:
        classes, y = np.unique(arr, return_inverse=True)
    except TypeError as err:
        raise InvalidParameterError(f"{where}: labels must be mutually comparable hashable values ({err}).") from err
    if len(classes) < min_classes:
        raise InvalidParameterError(
            f"{where}: labels must contain at least {min_classes} classes; got {len(classes)} "
            f"({', '.join(repr(c) for c in classes[:3])}). A ranking needs a task with more than one class."
        )
    return classes, y.reshape(-1).astype(np.int64)


def check_min_per_class(y: np.ndarray, n_classes: int, *, where: str, minimum: int = 2) -> np.ndarray:
    """Return class counts; raise when a class has fewer than ``minimum`` samples."""
    counts = np.bincount(y, minlength=n_classes)
    if counts.min() < minimum:
        bad = int(np.argmin(counts))
        raise InvalidParameterError(
            f"{where}: every class needs at least {minimum} samples; class index {bad} has {int(counts[bad])}."
        )
    return counts


def check_targets(targets: Any, n_samples: int, *, where: str, name: str = "targets") -> np.ndarray:
    """Validate regression targets or multi-label indicators; returns float64 ``(n_samples, n_targets)``."""
    arr = as_float_array(targets, where=where, name=name)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ShapeError(f"{where}: {name} must be 1-D or 2-D (n_samples, n_targets); got shape {arr.shape}.")
    check_consistent_length(n_samples, arr.shape[0], where=where)
    if arr.shape[1] == 0:
        raise ShapeError(f"{where}: {name} has no columns; got shape {arr.shape}.")
    _check_finite(arr, where=where, name=name)
    return arr


def check_option(value: Any, options: Sequence[str], *, where: str, name: str) -> str:
    """Check that ``value`` is one of ``options`` (strings)."""
    if not isinstance(value, str) or value not in options:
        raise InvalidParameterError(f"{where}: {name} must be one of {list(options)}; got {value!r}.")
    return value


def check_positive_int(value: Any, *, where: str, name: str, minimum: int = 1) -> int:
    """Check an integer parameter ``>= minimum`` (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InvalidParameterError(f"{where}: {name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def check_random_state(random_state: Any) -> np.random.Generator:
    """Turn ``None``/int/``Generator`` into a ``numpy.random.Generator`` (``None`` means seed 0: deterministic)."""
    if random_state is None:
        return np.random.default_rng(0)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return np.random.default_rng(int(random_state))
    raise InvalidParameterError(f"random_state must be None, an int or a numpy Generator; got {random_state!r}.")
