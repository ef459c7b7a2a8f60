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

Other modules add their layers with :func:`register_norm_layer` (e.g. ``"sn"`` for Switchable Normalization).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeAlias, overload

from torch import nn

from ..._registry import Registry
from ...exceptions import InvalidParameterError
from .variants import GroupNorm, InstanceNorm2d, LayerNorm2d

__all__ = [
    "NormLayerLike",
    "NormLayerType",
    "create_norm_layer",
    "get_norm_layer",
    "list_norm_layers",
    "register_norm_layer",
]

#: A norm layer class, or any callable ``f(num_features, **kwargs) -> nn.Module`` such as a ``functools.partial``.
NormLayerType: TypeAlias = Callable[..., nn.Module]
#: What :func:`get_norm_layer` accepts: a registered name, a class, a callable/partial, or ``None``.
NormLayerLike: TypeAlias = "str | NormLayerType | None"


def _normalize_name(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


_NORM_LAYERS: Registry[NormLayerType] = Registry("norm layer", normalize=_normalize_name)


@overload
def register_norm_layer(
    name: str, layer: None = None, *, aliases: tuple[str, ...] = ()
) -> Callable[[NormLayerType], NormLayerType]: ...


@overload
def register_norm_layer(name: str, layer: NormLayerType, *, aliases: tuple[str, ...] = ()) -> NormLayerType: ...


def register_norm_layer(
    name: str, layer: NormLayerType | None = None, *, aliases: tuple[str, ...] = ()
) -> NormLayerType | Callable[[NormLayerType], NormLayerType]:
    """Register a normalization layer under ``name`` (and ``aliases``) for :func:`get_norm_layer`.

    Use it as a decorator (``@register_norm_layer("sn", aliases=("switchnorm",))``) or call it directly with the
    layer. The layer must accept the channel count as its first positional argument. Registering a name twice
    warns and the later registration wins.

    Args:
        name: Name to register; matched lowercase with ``_``/``-`` removed.
        layer: The class or callable to register. If omitted, a decorator is returned.
        aliases: Extra names resolving to the same layer.

    Returns:
        ``layer`` itself when given, else a decorator that registers and returns its argument.

    Raises:
        InvalidParameterError: If ``name`` is not a non-empty string or ``layer`` is not callable.

    Example:
        In the module that defines the layer::

            @register_norm_layer("sn", aliases=("switchnorm", "switchnorm2d"))
            class SwitchNorm2d(nn.Module): ...

        after which ``create_norm_layer("switch_norm", 64)`` builds one.
    """
    if not isinstance(name, str) or not _normalize_name(name):
        raise InvalidParameterError(f"register_norm_layer: name must be a non-empty string; got {name!r}")

    def decorator(obj: NormLayerType) -> NormLayerType:
        if not callable(obj):
            raise InvalidParameterError(
                f"register_norm_layer: layer must be a class or callable; got {type(obj).__name__}"
            )
        _NORM_LAYERS.add(name, obj, aliases=tuple(aliases))
        return obj

    if layer is None:
        return decorator
    return decorator(layer)


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
        return _NORM_LAYERS.get(norm_layer)
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


def list_norm_layers(pattern: str | None = None) -> list[str]:
    """Sorted registered norm-layer names (aliases excluded), optionally filtered by an fnmatch ``pattern``.

    Example:
        >>> [n for n in list_norm_layers() if n in ("bn", "gn", "in", "ln")]
        ['bn', 'gn', 'in', 'ln']
    """
    return _NORM_LAYERS.names(pattern)


register_norm_layer("bn", nn.BatchNorm2d, aliases=("batchnorm", "batchnorm2d"))
register_norm_layer("gn", GroupNorm, aliases=("groupnorm",))
register_norm_layer("ln", LayerNorm2d, aliases=("layernorm", "layernorm2d"))
register_norm_layer("in", InstanceNorm2d, aliases=("instancenorm", "instancenorm2d"))
