"""The classification task's extra optimizer group: the mixture logits of SN/SSN/EN layers.

The engine knows no layer; the classification run (and a :class:`~pickwise.tasks.classification.RunConfig` given to
the trainer directly) passes this :class:`~pickwise.engine.ParamGroup`.
"""

from __future__ import annotations

from torch import nn

from ...engine.params import ParamGroup
from ...nn.norm.registry import MIXTURE_LOGIT_NAMES

__all__ = ["is_norm_logit", "norm_logit_group"]


def is_norm_logit(name: str) -> bool:
    """True for the mixture logits of SN/SSN/EN layers (``mean_weight``, ``var_weight``, ``ratio_weight``).

    Example:
        >>> is_norm_logit("layer1.0.bn1.mean_weight"), is_norm_logit("layer1.0.bn1.weight")
        (True, False)
    """
    return name.rsplit(".", 1)[-1] in MIXTURE_LOGIT_NAMES


def _select(name: str, param: nn.Parameter) -> bool:
    return is_norm_logit(name)


def norm_logit_group(lr_mult: float = 1.0, clip_grad_norm: float | None = None) -> ParamGroup:
    """The norm-logit group: no weight decay, learning rate ``optim.lr * lr_mult``, optional gradient-norm clip.

    ``lr_mult`` and ``clip_grad_norm`` are ``optim.norm_logit_lr_mult`` and ``optim.norm_logit_clip`` (SSN's recipe:
    0.1 and 1.0).
    """
    return ParamGroup("norm_logits", _select, lr_mult=lr_mult, weight_decay=0.0, clip_grad_norm=clip_grad_norm)
