"""Normalization layers with a channels-first constructor, and a name-based factory to swap them.

Every layer takes ``num_features`` first so it can replace :class:`torch.nn.BatchNorm2d`. Build one by name with
:func:`create_norm_layer` (``"bn"``, ``"gn"``, ``"ln"``, ``"in"``, ...) and add new ones with
:func:`register_norm_layer`.
"""

from .factory import (
    NormLayerLike,
    NormLayerType,
    create_norm_layer,
    get_norm_layer,
    list_norm_layers,
    register_norm_layer,
)
from .variants import GroupNorm, InstanceNorm2d, LayerNorm2d, effective_num_groups

__all__ = [
    "GroupNorm",
    "InstanceNorm2d",
    "LayerNorm2d",
    "NormLayerLike",
    "NormLayerType",
    "create_norm_layer",
    "effective_num_groups",
    "get_norm_layer",
    "list_norm_layers",
    "register_norm_layer",
]
