"""Extra optimizer parameter groups, passed to the trainer instead of the engine knowing any layer.

A :class:`ParamGroup` selects parameters by name (and object) and gives them their own learning-rate multiplier,
weight decay and gradient-norm clip. The classification task supplies the SN/SSN/EN mixture logits this way
(:func:`pickwise.tasks.classification.norm_logit_group`); DGConv gates or a re-ID head fit the same mould.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from pickwise.engine import OptimizerConfig, TrainerConfig, build_optimizer
    >>> model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    >>> head = ParamGroup("head", lambda name, p: name.startswith("1."), lr_mult=0.1, weight_decay=0.0)
    >>> opt = build_optimizer(model, TrainerConfig(optim=OptimizerConfig(weight_decay=0.01)), [head])
    >>> [(len(g["params"]), g["lr_mult"]) for g in opt.param_groups]
    [(1, 1.0), (1, 1.0), (2, 0.1)]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = ["ParamGroup"]


@dataclass(frozen=True)
class ParamGroup:
    """An optimizer group of its own for the parameters ``select`` accepts.

    Attributes:
        name: Label for messages and docs.
        select: ``(qualified parameter name, parameter) -> bool``; the first group that accepts a parameter gets it,
            before the default decay / no-decay split.
        lr_mult: The group's learning rate is the schedule's rate times this.
        weight_decay: The group's weight decay (None: the optimizer's ``weight_decay``).
        clip_grad_norm: Clip this group's gradient norm to this value before the optimizer step (None: no clip);
            applied before any global clip.
    """

    name: str
    select: Callable[[str, nn.Parameter], bool]
    lr_mult: float = 1.0
    weight_decay: float | None = 0.0
    clip_grad_norm: float | None = None
