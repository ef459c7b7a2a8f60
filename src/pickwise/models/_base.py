"""Shared pieces of the image classifiers: the common interface, argument checks and weight initialization.

The interface follows timm: every model has ``num_classes``, ``num_features``, ``forward_features`` (feature map
before pooling), ``forward_head(x, pre_logits=False)``, ``get_classifier``/``reset_classifier`` and a
``pretrained_cfg`` (alias ``default_cfg``) attribute.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from ..exceptions import InvalidParameterError
from ..nn.norm import NormLayerType, get_norm_layer
from ._registry import PretrainedCfg

__all__ = ["ClassifierModel", "check_int", "init_weights", "make_linear", "resolve_norm_layer", "zero_init_norm"]


def check_int(where: str, name: str, value: Any, minimum: int) -> int:
    """Return ``value`` if it is an int ``>= minimum`` (bools rejected), else raise InvalidParameterError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidParameterError(f"{where}: {name} must be an int >= {minimum}; got {value!r}")
    return value


def resolve_norm_layer(where: str, norm_layer: Any) -> NormLayerType:
    """Resolve a model's ``norm_layer`` argument (name, class or partial; ``None`` means ``"bn"``).

    Raises:
        UnknownNameError: For an unknown name (close matches listed).
        InvalidParameterError: For ``""`` or an unsupported type.
    """
    layer = get_norm_layer("bn" if norm_layer is None else norm_layer)
    if layer is None:
        raise InvalidParameterError(f"{where}: norm_layer must name a normalization layer such as 'bn'; got ''")
    return layer


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (_NormBase, nn.GroupNorm, nn.LayerNorm))


@torch.no_grad()
def init_weights(model: nn.Module, *, linear_std: float | None = None) -> None:
    """Initialize a CNN in place: Kaiming-normal convolutions, unit-scale norms, optional small-normal linears.

    Convolutions get ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` and zero bias (He et al., "Delving
    Deep into Rectifiers", ICCV 2015, https://arxiv.org/abs/1502.01852); batch/instance/group/layer norms get
    ``weight = 1`` and ``bias = 0``; other norm layers keep their own ``reset_parameters`` initialization.
    Linear layers keep torch's default unless ``linear_std`` is given (then ``normal_(0, linear_std)``, zero bias).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif _is_norm(m):
            weight, bias = getattr(m, "weight", None), getattr(m, "bias", None)
            if weight is not None:
                nn.init.ones_(weight)
            if bias is not None:
                nn.init.zeros_(bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@torch.no_grad()
def zero_init_norm(norm: nn.Module) -> None:
    """Set a norm layer's scale to zero, so the residual branch it ends starts as the identity (Goyal et al. 2017)."""
    weight = getattr(norm, "weight", None)
    if isinstance(weight, torch.Tensor):
        nn.init.zeros_(weight)


class ClassifierModel(nn.Module, ABC):
    """Base class of pickwise image classifiers (the common timm-style interface).

    Subclasses set ``num_classes``, ``num_features`` and ``in_chans`` and implement :meth:`forward_features`,
    :meth:`forward_head`, :meth:`get_classifier` and :meth:`reset_classifier`.
    """

    num_classes: int
    num_features: int
    in_chans: int

    def __init__(self) -> None:
        super().__init__()
        self.pretrained_cfg = PretrainedCfg()

    @property
    def default_cfg(self) -> PretrainedCfg:
        """Alias of ``pretrained_cfg`` (timm's older name)."""
        return self.pretrained_cfg

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last feature map, shape ``(N, num_features, H', W')``, before pooling."""

    @abstractmethod
    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool and flatten a feature map; return ``(N, num_features)`` if ``pre_logits`` else the logits."""

    @abstractmethod
    def get_classifier(self) -> nn.Module:
        """Return the final classification layer (``nn.Identity`` when ``num_classes == 0``)."""

    @abstractmethod
    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialized one with ``num_classes`` outputs (0: identity)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits, shape ``(N, num_classes)`` (pooled features when ``num_classes == 0``)."""
        return self.forward_head(self.forward_features(x))


class FcHeadModel(ClassifierModel):
    """A :class:`ClassifierModel` whose head is ``avgpool`` → flatten → dropout(``drop_rate``) → ``fc``.

    Subclasses set ``avgpool``, ``fc`` and ``drop_rate`` (ResNets and ResNeXts share this head).
    """

    avgpool: nn.Module
    fc: nn.Module
    drop_rate: float

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global-average-pool and flatten, then (unless ``pre_logits``) dropout and ``fc``."""
        x = torch.flatten(self.avgpool(x), 1)
        if pre_logits:
            return x
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return self.fc(x)

    def get_classifier(self) -> nn.Module:
        """Return ``fc``."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` with a new ``num_classes``-way linear layer (``0``: ``nn.Identity``)."""
        self.fc = make_linear(f"{type(self).__name__}.reset_classifier", self.num_features, num_classes)
        self.num_classes = num_classes


def make_linear(where: str, in_features: int, num_classes: int) -> nn.Module:
    """A ``nn.Linear(in_features, num_classes)``, or ``nn.Identity()`` when ``num_classes == 0``."""
    num_classes = check_int(where, "num_classes", num_classes, 0)
    return nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()
