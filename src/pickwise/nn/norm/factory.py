"""Name-based factory for normalization layers (timm's ``get_norm_layer``/``create_norm_layer`` pattern).

Names are matched case-insensitively with ``_`` and ``-`` removed, so ``"BatchNorm2d"``, ``"batch_norm2d"`` and
``"bn"`` can all resolve to the same layer. An unknown name raises
:class:`~pickwise.exceptions.UnknownNameError` listing the closest registered names. Every registered layer takes
the channel count as its first positional argument, so a model can call ``norm_layer(channels)`` whatever the name.

Built-in names:

============  =====================================================  ====================================
name          layer                                                  aliases
============  =====================================================  ====================================
``bn``        :class:`torch.nn.BatchNorm2d`                          ``batchnorm``, ``batchnorm2d``
``gn``        :class:`~pickwise.nn.norm.variants.GroupNorm`          ``groupnorm``
``ln``        :class:`~pickwise.nn.norm.variants.LayerNorm2d`        ``layernorm``, ``layernorm2d``
``in``        :class:`~pickwise.nn.norm.variants.InstanceNorm2d`     ``instancenorm``, ``instancenorm2d``
============  =====================================================  ====================================

Other modules add their layers with :func:`register_norm_layer` (e.g. ``"sn"`` for Switchable Normalization),
together with their metadata (family, batch dependence, convertibility, Sync counterpart, description): the registry
and the questions it answers (:func:`list_norm_layers`, :func:`norm_layer_info`, :data:`DEFAULT_NORM`) live in
:mod:`pickwise.nn.norm.registry` and are re-exported here.
"""

from __future__ import annotations

import functools
from typing import Any, TypeAlias

from torch import nn

from ...exceptions import InvalidParameterError
from .registry import (
    _NORM_LAYERS,
    DEFAULT_NORM,
    NormLayerInfo,
    NormLayerType,
    list_norm_layers,
    norm_layer_info,
    register_norm_layer,
)
from .variants import GroupNorm, InstanceNorm2d, LayerNorm2d

__all__ = [
    "DEFAULT_NORM",
    "NormLayerInfo",
    "NormLayerLike",
    "NormLayerType",
    "create_norm_layer",
    "get_norm_layer",
    "list_norm_layers",
    "norm_layer_info",
    "register_norm_layer",
]

#: What :func:`get_norm_layer` accepts: a registered name, a class, a callable/partial, or ``None``.
NormLayerLike: TypeAlias = "str | NormLayerType | None"


def get_norm_layer(norm_layer: NormLayerLike) -> NormLayerType | None:
    """Resolve a name, class or partial to a normalization layer class (or callable).

    Args:
        norm_layer: A registered name such as ``"bn"``, ``"gn"`` or ``"GroupNorm"``; an :class:`torch.nn.Module`
            subclass; a callable or :class:`functools.partial` (returned unchanged, so bound keywords such as
            ``functools.partial(GroupNorm, num_groups=8)`` pass through); or ``None``/``""`` for "no norm".

    Returns:
        A callable ``f(num_features, **kwargs) -> nn.Module``, or ``None`` for ``None``/``""``.

    Raises:
        UnknownNameError: If a name is not registered; the message lists close matches.
        InvalidParameterError: If ``norm_layer`` has an unsupported type.

    Example:
        >>> get_norm_layer("batch_norm2d")
        <class 'torch.nn.modules.batchnorm.BatchNorm2d'>
        >>> get_norm_layer(None) is None
        True
    """
    if norm_layer is None or (isinstance(norm_layer, str) and not norm_layer.strip()):
        return None
    if isinstance(norm_layer, str):
        return _NORM_LAYERS.get(norm_layer).layer
    if isinstance(norm_layer, functools.partial):
        return norm_layer
    if isinstance(norm_layer, type):
        if issubclass(norm_layer, nn.Module):
            return norm_layer
        raise InvalidParameterError(
            f"get_norm_layer: norm_layer class must subclass torch.nn.Module; got {norm_layer.__name__}"
        )
    if callable(norm_layer) and not isinstance(norm_layer, nn.Module):
        return norm_layer
    raise InvalidParameterError(
        "get_norm_layer: norm_layer must be a name, an nn.Module class, a callable or a functools.partial; "
        f"got {type(norm_layer).__name__}. Pass the class (e.g. nn.BatchNorm2d), not an instance."
    )


def create_norm_layer(norm_layer: NormLayerLike, num_features: int, **kwargs: Any) -> nn.Module:
    """Build a normalization layer instance for ``num_features`` channels.

    Args:
        norm_layer: Anything :func:`get_norm_layer` accepts except ``None``/``""``.
        num_features: Number of channels ``C``, passed as the first positional argument.
        **kwargs: Extra constructor arguments (``eps``, ``affine``, ``num_groups``, ...).

    Returns:
        The layer instance.

    Raises:
        UnknownNameError: If a name is not registered.
        InvalidParameterError: If ``norm_layer`` is ``None``/``""`` or has an unsupported type.

    Example:
        >>> create_norm_layer("gn", 64, num_groups=8)
        GroupNorm(64, num_groups=8, eps=1e-05, affine=True)
    """
    layer = get_norm_layer(norm_layer)
    if layer is None:
        raise InvalidParameterError(
            f"create_norm_layer: norm_layer must name a layer; got {norm_layer!r}. "
            f"Known names: {', '.join(list_norm_layers())}."
        )
    return layer(num_features, **kwargs)


register_norm_layer(
    "bn",
    nn.BatchNorm2d,
    aliases=("batchnorm", "batchnorm2d"),
    description="BatchNorm (torch): per-channel batch statistics; running statistics in eval",
    family="batch",
    batch_dependent=True,
    variants={1: nn.BatchNorm1d, 3: nn.BatchNorm3d},
)
register_norm_layer(
    "gn",
    GroupNorm,
    aliases=("groupnorm",),
    description="GroupNorm: per-sample statistics over channel groups (group count adapted to the channels)",
    family="per-sample",
    batch_dependent=False,
)
register_norm_layer(
    "ln",
    LayerNorm2d,
    aliases=("layernorm", "layernorm2d"),
    description="LayerNorm over (C, H, W) per sample (GroupNorm with one group)",
    family="per-sample",
    batch_dependent=False,
)
register_norm_layer(
    "in",
    InstanceNorm2d,
    aliases=("instancenorm", "instancenorm2d"),
    description="InstanceNorm: per-sample, per-channel statistics, with affine parameters",
    family="per-sample",
    batch_dependent=False,
)
