"""Neural-network layers: normalization variants and the norm-layer factory."""

from .norm import (
    GroupNorm,
    InstanceNorm2d,
    LayerNorm2d,
    NormLayerLike,
    NormLayerType,
    create_norm_layer,
    effective_num_groups,
    get_norm_layer,
    list_norm_layers,
    register_norm_layer,
)

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
