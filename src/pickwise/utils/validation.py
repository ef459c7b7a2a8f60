"""Shared checks for numeric options.

Every float a user gives must be finite: ``nan <= 0`` is False, so range checks alone let NaN through.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from ..exceptions import InvalidParameterError

__all__ = ["check_finite", "count_or_all", "iter_nonfinite"]


def count_or_all(name: str, value: int | None) -> int | None:
    """The one rule for "how many samples": ``None`` or 0 mean all of them (``None``), a positive int that many.

    Raises:
        InvalidParameterError: For a negative or non-integer count.

    Example:
        >>> count_or_all("subset", 0), count_or_all("subset", 500)
        (None, 500)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidParameterError(f"{name} must be a whole number >= 0 (0: all samples); got {value!r}")
    return value or None


def check_finite(name: str, value: Any, *, error: type[InvalidParameterError] = InvalidParameterError) -> Any:
    """Return ``value`` if it is a finite number (or not a number at all); raise ``error`` naming ``name`` otherwise.

    Integers are always finite; floats must satisfy :func:`math.isfinite`.

    Example:
        >>> check_finite("optim.lr", 0.1)
        0.1
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise error(f"{name} must be a finite number; got {value!r}")
    return value


def iter_nonfinite(obj: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Yield ``(dotted_key, value)`` for every NaN/infinite float nested in dicts and lists of ``obj``.

    Example:
        >>> list(iter_nonfinite({"a": {"b": float("inf")}, "c": [1.0, float("nan")]}))
        [('a.b', inf), ('c.1', nan)]
    """
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from iter_nonfinite(value, f"{prefix}{key}.")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from iter_nonfinite(value, f"{prefix}{i}.")
    elif isinstance(obj, float) and not math.isfinite(obj):
        yield prefix[:-1], obj
