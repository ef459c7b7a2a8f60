"""Learning-rate schedules as pure functions of the optimizer step.

The rate is recomputed from the step count alone, so resuming only needs the step (no scheduler object to pickle).
"""

from __future__ import annotations

import math

from .trainer_config import ScheduleConfig

__all__ = ["lr_at_step"]


def lr_at_step(step: int, *, base_lr: float, steps_per_epoch: int, total_steps: int, cfg: ScheduleConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based).

    Args:
        step: Optimizer steps already taken.
        base_lr: Peak rate.
        steps_per_epoch: Optimizer steps per epoch (converts epoch-valued settings to steps).
        total_steps: Length of the run in optimizer steps.
        cfg: Schedule settings.

    Returns:
        The rate: linear warm-up from ``base_lr / warmup_steps`` to ``base_lr``, then ``constant``, ``step`` (times
        ``gamma`` at each milestone epoch) or ``cosine`` (half cosine down to ``min_lr_ratio * base_lr`` at
        ``total_steps``).
    """
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if cfg.name == "constant":
        return base_lr
    if cfg.name == "step":
        passed = sum(step >= round(m * steps_per_epoch) for m in cfg.milestones)
        return base_lr * cfg.gamma**passed
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    floor = cfg.min_lr_ratio * base_lr
    return floor + (base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
