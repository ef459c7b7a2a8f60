"""Per-step hooks and regularizers the engine attaches from the config (SSN radius schedule, gamma decay)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from .config import RunConfig

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["SparsestmaxRadiusSchedule", "training_extras"]


class SparsestmaxRadiusSchedule:
    """Linear sparsestmax radius ramp of Sparse Switchable Normalization: ``r = final * step / total_steps``.

    The official trainer pushes ``r = (epoch * iters + i) / (epochs * iters)`` into every SSN layer each iteration
    (a ramp from 0 to 1). The radius depends only on the step, so resumed runs get the same schedule.

    Args:
        model: The model whose layers with a ``set_radius`` method are driven.
        final_radius: Radius reached at the last step.
    """

    def __init__(self, model: nn.Module, final_radius: float = 1.0) -> None:
        self.layers = [m for m in model.modules() if callable(getattr(m, "set_radius", None))]
        self.final_radius = final_radius

    def __call__(self, trainer: Trainer) -> None:
        """Set the radius for the step the trainer is about to take."""
        radius = self.final_radius * trainer.global_step / max(1, trainer.total_steps)
        for layer in self.layers:
            layer.set_radius(radius)


def training_extras(
    cfg: RunConfig, model: nn.Module
) -> tuple[list[Callable[[Trainer], None]], Callable[[nn.Module], torch.Tensor] | None]:
    """Hooks and regularizer implied by the config for ``model``."""
    hooks: list[Callable[[Trainer], None]] = []
    schedule = SparsestmaxRadiusSchedule(model, cfg.model.sparsestmax_radius)
    if schedule.layers:
        hooks.append(schedule)
    regularizer = None
    if cfg.model.gamma_decay > 0:
        from ..nn import gamma_decay_penalty

        coeff, batch = cfg.model.gamma_decay, cfg.data.batch_size

        def regularizer(m: nn.Module) -> torch.Tensor:
            return gamma_decay_penalty(m, coeff, batch_size=batch)

    return hooks, regularizer
