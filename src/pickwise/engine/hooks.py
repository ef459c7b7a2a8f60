"""Per-step hooks: callables ``hook(trainer)`` run before every optimizer step (e.g. the SSN radius ramp).

A hook reads the loop position from the trainer (``global_step``, ``total_steps``, ``epoch``, ``step_in_epoch``) and
must depend only on it, so resumed runs get the same schedule. Extra optimizer groups are not hooks: pass
:class:`~pickwise.engine.ParamGroup` objects to the trainer. ``training_extras`` (the hooks a classification config
implies) moved to :mod:`pickwise.tasks.classification.extras` and is still importable from here.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["Hook", "SparsestmaxRadiusSchedule"]

Hook = Callable[["Trainer"], None]


class SparsestmaxRadiusSchedule:
    """Linear sparsestmax radius ramp of Sparse Switchable Normalization: ``r = final * step / total_steps``.

    The official trainer pushes ``r = (epoch * iters + i) / (epochs * iters)`` into every SSN layer each iteration
    (a ramp from 0 to 1). The radius depends only on the step, so resumed runs get the same schedule. Layers are found
    by duck typing (a ``set_radius`` method), so the engine needs no import of the layers.

    Args:
        model: The model whose layers with a ``set_radius`` method are driven.
        final_radius: Radius reached at the last step.
    """

    def __init__(self, model: nn.Module, final_radius: float = 1.0) -> None:
        self.layers: list[Any] = [m for m in model.modules() if callable(getattr(m, "set_radius", None))]
        self.final_radius = final_radius

    def __call__(self, trainer: Trainer) -> None:
        """Set the radius for the step the trainer is about to take."""
        radius = self.final_radius * trainer.global_step / max(1, trainer.total_steps)
        for layer in self.layers:
            layer.set_radius(radius)


def __getattr__(name: str) -> Any:
    """``training_extras`` moved to the classification task (resolved lazily: the engine imports no task)."""
    if name == "training_extras":  # no caller in the library uses the old place, so it warns
        warnings.warn(
            "pickwise.engine.hooks.training_extras moved to pickwise.tasks.classification.training_extras",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module("pickwise.tasks.classification.extras").training_extras
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
