"""The metric registry: every transferability metric declares ``name``, ``higher_is_better`` and its input kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .._registry import Registry

__all__ = ["METRICS", "MetricSpec", "get_metric", "list_metrics", "register_metric"]

F = TypeVar("F", bound=Callable[..., float])

#: What a metric consumes besides the labels.
INPUT_KINDS = ("features", "probs", "source_labels", "label_embeddings")


@dataclass(frozen=True)
class MetricSpec:
    """Metadata of a registered metric.

    Attributes:
        name: Registry name (``"logme"``).
        func: The metric function ``func(inputs, labels, **options) -> float``.
        higher_is_better: Direction of the score; ``rank_models`` never guesses it.
        input: What the per-model input is: ``"features"`` (N, D), ``"probs"`` (source-head softmax, N, Z),
            ``"source_labels"`` (hard source predictions, N) or ``"label_embeddings"`` (features plus
            F-Label embeddings passed as ``label_embeddings=``).
        tasks: Label kinds the metric defines: subset of ``{"classification", "multilabel", "regression"}``.
        needs: Optional packages needed at call time.
    """

    name: str
    func: Callable[..., float]
    higher_is_better: bool
    input: str
    tasks: tuple[str, ...]
    needs: tuple[str, ...] = ()

    def __call__(self, *args: Any, **kwargs: Any) -> float:
        return self.func(*args, **kwargs)


METRICS: Registry[MetricSpec] = Registry("metric", list_hint="Use pickwise.selection.list_metrics() to list them.")


def register_metric(
    name: str,
    *,
    higher_is_better: bool = True,
    input: str = "features",
    tasks: tuple[str, ...] = ("classification",),
    needs: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Decorator: register a metric function and attach ``name``/``higher_is_better`` attributes to it."""
    if input not in INPUT_KINDS:  # internal invariant
        raise AssertionError(f"bad input kind {input!r}")

    def decorator(func: F) -> F:
        func.name = name  # type: ignore[attr-defined]
        func.higher_is_better = higher_is_better  # type: ignore[attr-defined]
        METRICS.add(name, MetricSpec(name, func, higher_is_better, input, tasks, needs), aliases=aliases)
        return func

    return decorator


def get_metric(name: str) -> MetricSpec:
    """Return the :class:`MetricSpec` registered as ``name`` (close-match error otherwise)."""
    return METRICS.get(name)


def list_metrics(pattern: str | None = None) -> list[str]:
    """Sorted registered metric names, optionally filtered by an fnmatch pattern."""
    return METRICS.names(pattern)
