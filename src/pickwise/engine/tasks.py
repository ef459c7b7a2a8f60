"""Compatibility module: the task protocol now lives in :mod:`pickwise.engine.task`.

``ClassificationTask`` moved to :mod:`pickwise.tasks.classification.task` and is still importable from here
(resolved lazily, so the engine imports no task).
"""

from __future__ import annotations

import importlib
from typing import Any

from .task import AccumulatorTask, LegacyTask, Task

__all__ = ["AccumulatorTask", "LegacyTask", "Task"]


def __getattr__(name: str) -> Any:
    """``ClassificationTask`` from its new module."""
    if name == "ClassificationTask":
        return importlib.import_module("pickwise.tasks.classification.task").ClassificationTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
