"""The dataset registry: each built-in dataset module adds a :class:`DatasetSpec` to :data:`DATASETS` on import."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._registry import Registry
from ._base import DatasetInfo, LoadedSplit

__all__ = ["DATASETS", "DatasetSpec", "normalize_dataset_name"]


def normalize_dataset_name(name: str) -> str:
    """Lowercase and use hyphens, so ``"Fashion_MNIST"`` finds ``"fashion-mnist"``."""
    return name.strip().lower().replace("_", "-")


@dataclass(frozen=True)
class DatasetSpec:
    """How to describe and load one built-in dataset.

    Args:
        name: Registered name.
        summary: One-line description for listings.
        info: ``info(root) -> DatasetInfo``; cheap, reads at most file headers.
        load: ``load(split, root) -> LoadedSplit`` with ``split`` in ``{"train", "test"}``.
        available: ``available(root) -> None``; cheap (imports, file lookups, no decoding); raises
            :class:`~pickwise.exceptions.DataNotFoundError` when ``load`` could not find its data or packages. ``info``
            need not raise then (it may report static metadata), so "is it there?" is asked here.
    """

    name: str
    summary: str
    info: Callable[[Path | None], DatasetInfo]
    load: Callable[[str, Path | None], LoadedSplit]
    available: Callable[[Path | None], None] | None = None


DATASETS: Registry[DatasetSpec] = Registry(
    "dataset",
    normalize=normalize_dataset_name,
    list_hint="run `pickwise datasets` to list them, or pass an image folder path.",
)
