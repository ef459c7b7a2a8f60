"""A small name → object registry with fnmatch listing and close-match error messages."""

from __future__ import annotations

import difflib
import fnmatch
import warnings
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .exceptions import UnknownNameError

T = TypeVar("T")

__all__ = ["Registry", "close_matches_hint"]


def close_matches_hint(name: str, choices: list[str], n: int = 3) -> str:
    """Return ``"did you mean 'a' or 'b'?"`` for the choices closest to ``name`` (empty string when none are close)."""
    matches = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not matches:
        return ""
    quoted = [f"'{m}'" for m in matches]
    joined = " or ".join(quoted) if len(quoted) <= 2 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"
    return f"did you mean {joined}?"


class Registry(Generic[T]):
    """Map lowercase names to objects (classes, factory functions, dataset builders).

    Args:
        kind: What the registry holds, used in error messages ("model", "dataset", "norm layer").
        normalize: Function applied to every name before storing or looking it up.
        list_hint: A short hint appended to "unknown name" errors, e.g. "run `pickwise models` to list them".
    """

    def __init__(self, kind: str, *, normalize: Callable[[str], str] = str.lower, list_hint: str = "") -> None:
        self.kind = kind
        self._normalize = normalize
        self._list_hint = list_hint
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str | None = None, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator registering an object under ``name`` (default: its ``__name__``) and optional aliases."""

        def decorator(obj: T) -> T:
            self.add(name or obj.__name__, obj, aliases=aliases)  # type: ignore[attr-defined]
            return obj

        return decorator

    def add(self, name: str, obj: T, *, aliases: tuple[str, ...] = ()) -> None:
        """Register ``obj`` under ``name``; re-registering a name warns and replaces the entry."""
        key = self._normalize(name)
        if key in self._items:
            warnings.warn(f"{self.kind} '{key}' was registered twice; the later one wins", UserWarning, stacklevel=3)
        self._items[key] = obj
        for alias in aliases:
            self._aliases[self._normalize(alias)] = key

    def canonical(self, name: str) -> str:
        """Return the registered name for ``name`` (resolving aliases), or raise :class:`UnknownNameError`."""
        if not isinstance(name, str):
            raise UnknownNameError(f"{self.kind} name must be a string; got {type(name).__name__}")
        key = self._normalize(name)
        key = self._aliases.get(key, key)
        if key not in self._items:
            choices = sorted(self._items) + sorted(self._aliases)
            hint = close_matches_hint(key, choices)
            parts = [f"unknown {self.kind} '{name}'"]
            if hint:
                parts.append(hint)
            msg = "; ".join(parts)
            msg += "" if msg.endswith("?") else "."
            if self._list_hint:
                msg += f" {self._list_hint}"
            else:
                msg += f" Available: {', '.join(sorted(self._items))}."
            raise UnknownNameError(msg)
        return key

    def get(self, name: str) -> T:
        """Return the object registered as ``name`` (aliases allowed)."""
        return self._items[self.canonical(name)]

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted registered names, optionally filtered with an fnmatch ``pattern`` such as ``"resnet*"``."""
        names = sorted(self._items)
        if pattern:
            names = [n for n in names if fnmatch.fnmatch(n, pattern.lower())]
        return names

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._normalize(name)
        return key in self._items or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
