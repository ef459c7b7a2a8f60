"""Compatibility module: the engine's config sections plus the classification run config that moved.

The engine's own configuration lives in :mod:`pickwise.engine.trainer_config` (:class:`TrainerConfig` and its
sections); the classification run configuration (``RunConfig``, ``ModelConfig``, ``DataConfig``, ``OptimConfig``,
``resolve_config``, ``config_from_dict``, ...) moved to :mod:`pickwise.tasks.classification.config`. Every name that
was importable from here still is: the generic ones directly, the moved ones lazily (PEP 562), so importing the engine
never imports a task.

Example:
    >>> from pickwise.engine.config import resolve_config
    >>> resolve_config(overrides=["model.name=resnet8"]).model.name
    'resnet8'
"""

from __future__ import annotations

import importlib
from typing import Any

from .trainer_config import (
    FLOAT32_MAX,
    CheckpointConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    TrainerConfig,
    check_run_name,
    diff_configs,
    load_yaml_with_bases,
    validate_trainer_config,
)

__all__ = [
    "FLOAT32_MAX",
    "CheckpointConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainerConfig",
    "check_run_name",
    "diff_configs",
    "load_yaml_with_bases",
    "validate_trainer_config",
]

#: names resolved from the classification config on first use (kept out of ``__all__``: they are not the engine's)
MOVED_NAMES = (
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "resolve_config",
    "validate_config",
)
_MOVED = "pickwise.tasks.classification.config"


def __getattr__(name: str) -> Any:
    """Resolve the classification names (and their private helpers) from their new module on first use."""
    if name.startswith("__"):
        raise AttributeError(name)
    module = importlib.import_module(_MOVED)
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
