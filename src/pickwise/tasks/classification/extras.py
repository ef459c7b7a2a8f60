"""The hooks and regularizer a classification config implies (SSN radius schedule, PN gamma decay)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from ...engine.hooks import SparsestmaxRadiusSchedule
from .config import RunConfig

if TYPE_CHECKING:
    from ...engine.trainer import Trainer

__all__ = ["training_extras"]


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
        from ...nn import gamma_decay_penalty

        coeff, batch = cfg.model.gamma_decay, cfg.data.batch_size

        def regularizer(m: nn.Module) -> torch.Tensor:
            return gamma_decay_penalty(m, coeff, batch_size=batch)

    return hooks, regularizer
