"""Argument checks shared by every layer and helper of :mod:`pickwise.nn` (one place for each kind of check).

Every check raises :class:`~pickwise.exceptions.InvalidParameterError` with one message of the form
``"<where>: <name> must be <what>; got <value>"``, naming the *parameter* (``num_features``, ``eps``, ...): these are
library functions, so their messages never mention command-line flags (the CLI maps its flags to parameters).
``bool`` is rejected wherever a number is expected (``True`` is an ``int`` in Python, never a channel count), and
floats must be finite (``nan`` compares false with everything, so ``not x > 0`` alone would let it through).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, overload

from .._registry import close_matches_hint
from ..exceptions import InvalidParameterError

__all__ = [
    "check_float",
    "check_int",
    "finite_float",
    "is_int",
    "nonnegative_float",
    "nonnegative_int",
    "one_of",
    "positive_float",
    "positive_int",
    "probability",
]

T = TypeVar("T")


def _fail(where: str, name: str, expected: str, value: Any, hint: str = "") -> InvalidParameterError:
    message = f"{where}: {name} must be {expected}; got {value!r}"
    return InvalidParameterError(f"{message}. {hint}" if hint else message)


def is_int(value: Any, *, minimum: int | None = None) -> bool:
    """Whether ``value`` is an integer (``int`` or a numpy integer, not a ``bool``), at least ``minimum`` if given.

    The predicate behind :func:`check_int`, for checks that raise their own message (e.g. on every item of a list).

    Example:
        >>> is_int(3), is_int(True), is_int(2.0), is_int(1, minimum=2)
        (True, False, False, False)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return False
    return minimum is None or int(value) >= minimum


def check_int(where: str, name: str, value: Any, *, minimum: int = 1, odd: bool = False) -> int:
    """Return ``value`` as an ``int`` if it is an integer (not a bool) ``>= minimum`` (and odd when ``odd``).

    Args:
        where: Who checks (the class or function name), the message prefix.
        name: The parameter name.
        value: The value to check.
        minimum: Smallest allowed value. Default: ``1``.
        odd: Also require an odd value (e.g. a centred kernel size).

    Returns:
        ``int(value)``.

    Raises:
        InvalidParameterError: ``"<where>: <name> must be a positive int; got <value>"`` (or ``an int >= m``,
            ``a positive odd int``).

    Example:
        >>> check_int("GroupNorm", "num_groups", 8)
        8
    """
    if minimum == 1:
        expected = "a positive odd int" if odd else "a positive int"
    else:
        expected = f"an odd int >= {minimum}" if odd else f"an int >= {minimum}"
    if not is_int(value, minimum=minimum) or (odd and int(value) % 2 == 0):
        raise _fail(where, name, expected, value)
    return int(value)


def positive_int(where: str, name: str, value: Any) -> int:
    """``check_int(where, name, value, minimum=1)``: a channel count, a step count, a hidden width..."""
    return check_int(where, name, value, minimum=1)


def nonnegative_int(where: str, name: str, value: Any) -> int:
    """``check_int(where, name, value, minimum=0)``: e.g. a number of warm-up steps."""
    return check_int(where, name, value, minimum=0)


@overload
def check_float(
    where: str,
    name: str,
    value: Any,
    *,
    low: float | None = ...,
    high: float | None = ...,
    low_open: bool = ...,
    allow_none: Literal[False] = False,
    expected: str | None = ...,
    hint: str = ...,
) -> float: ...


@overload
def check_float(
    where: str,
    name: str,
    value: Any,
    *,
    low: float | None = ...,
    high: float | None = ...,
    low_open: bool = ...,
    allow_none: bool,
    expected: str | None = ...,
    hint: str = ...,
) -> float | None: ...


def check_float(
    where: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    allow_none: bool = False,
    expected: str | None = None,
    hint: str = "",
) -> float | None:
    """Return ``value`` as a ``float`` if it is a finite real number (not a bool) in the given range.

    Args:
        where: Who checks, the message prefix.
        name: The parameter name.
        value: The value to check (``int`` accepted).
        low: Lower bound (``None``: none).
        high: Upper bound, inclusive (``None``: none).
        low_open: Exclude ``low`` itself (``value > low``).
        allow_none: Accept ``None`` (returned unchanged).
        expected: What the message says is expected (default: built from the bounds, e.g. ``"a positive float"``).
        hint: A sentence appended to the message (how to fix it).

    Returns:
        ``float(value)``, or ``None`` when allowed.

    Raises:
        InvalidParameterError: If ``value`` is not such a number.

    Example:
        >>> check_float("SwitchNorm2d", "eps", 1e-5, low=0.0, low_open=True)
        1e-05
    """
    if expected is None:
        if low == 0.0 and low_open and high is None:
            expected = "a positive float"
        elif low is not None and high is not None:
            expected = f"a float in {'(' if low_open else '['}{low:g}, {high:g}]"
        elif low is not None:
            expected = f"a float {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            expected = f"a float <= {high:g}"
        else:
            expected = "a finite float"
        if allow_none:
            expected += " or None"
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise _fail(where, name, expected, value, hint)
    number = float(value)
    ok = (low is None or (number > low if low_open else number >= low)) and (high is None or number <= high)
    if not ok:
        raise _fail(where, name, expected, value, hint)
    return number


def finite_float(where: str, name: str, value: Any, *, expected: str | None = None) -> float:
    """A finite real number (no bound)."""
    return check_float(where, name, value, expected=expected)


def positive_float(where: str, name: str, value: Any, *, expected: str | None = None) -> float:
    """A finite real number ``> 0`` (``eps``, a temperature, a budget)."""
    return check_float(where, name, value, low=0.0, low_open=True, expected=expected)


def nonnegative_float(where: str, name: str, value: Any, *, expected: str | None = None) -> float:
    """A finite real number ``>= 0`` (a penalty coefficient, a radius, a logit gap)."""
    return check_float(where, name, value, low=0.0, expected=expected)


@overload
def probability(where: str, name: str, value: Any, *, allow_none: Literal[False] = False, hint: str = "") -> float: ...


@overload
def probability(where: str, name: str, value: Any, *, allow_none: bool, hint: str = "") -> float | None: ...


def probability(where: str, name: str, value: Any, *, allow_none: bool = False, hint: str = "") -> float | None:
    """A real number in ``[0, 1]`` (a momentum, a dropout rate), or ``None`` when ``allow_none``.

    Example:
        >>> probability("SwitchNorm2d", "momentum", 0.1)
        0.1
    """
    return check_float(where, name, value, low=0.0, high=1.0, allow_none=allow_none, hint=hint)


def one_of(where: str, name: str, value: Any, choices: Sequence[T]) -> T:
    """Return ``value`` if it is one of ``choices``; the message lists them and suggests the closest.

    Example:
        >>> one_of("convert_norm_layers", "init", "bn", ("bn", "uniform"))
        'bn'
    """
    if value in choices:
        return value
    listed = ", ".join(repr(c) for c in choices)
    hint = close_matches_hint(value, [str(c) for c in choices]) if isinstance(value, str) else ""
    suffix = f" ({hint})" if hint else ""
    raise InvalidParameterError(f"{where}: {name} must be one of {listed}; got {value!r}{suffix}")
