"""Compatibility module: the classification run moved to :mod:`pickwise.tasks.classification.run`.

``run_classification``, ``preflight``, ``resolve_device``, ``default_run_name``, ``check_run_dir``, ... are resolved
from there on first use (PEP 562), so ``from pickwise.engine.run import run_classification`` keeps working and
importing the engine never imports a task.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__: list[str] = []  # every name here is resolved lazily from the classification run


def __getattr__(name: str) -> Any:
    """Resolve a moved name from :mod:`pickwise.tasks.classification.run`."""
    if name.startswith("__"):
        raise AttributeError(name)
    module = importlib.import_module("pickwise.tasks.classification.run")
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
