"""Normalization layers with a channels-first constructor, and a name-based factory to swap them.

Every layer takes ``num_features`` first so it can replace :class:`torch.nn.BatchNorm2d`. Build one by name with
:func:`create_norm_layer` (``"bn"``, ``"gn"``, ``"ln"``, ``"in"``, ...) and add new ones with
:func:`register_norm_layer`. The registry's metadata (:func:`norm_layer_info`, :func:`list_norm_layers` filters,
:data:`DEFAULT_NORM`, :func:`is_batch_norm`) is the one place that says which names exist and which layers convert.
"""

from .exemplar import ExemplarNorm2d
from .factory import (
    NormLayerLike,
    NormLayerType,
    create_norm_layer,
    get_norm_layer,
)
from .population import PopulationNorm2d, gamma_decay_param_groups, gamma_decay_penalty
from .registry import (
    DEFAULT_NORM,
    NormLayerInfo,
    is_batch_norm,
    is_convertible_norm,
    is_learned_norm,
    list_norm_layers,
    norm_layer_info,
    register_norm_layer,
    sync_class,
)
from .sparse import (
    SparsestmaxRadiusScheduler,
    SparseSwitchNorm2d,
    clip_switch_grad_norm_,
    ssn_param_groups,
    switch_parameters,
)
from .switchable import SwitchNorm1d, SwitchNorm2d, SwitchNorm3d
from .sync import (
    SyncExemplarNorm2d,
    SyncPopulationNorm2d,
    SyncSparseSwitchNorm2d,
    SyncSwitchNorm1d,
    SyncSwitchNorm2d,
    SyncSwitchNorm3d,
    convert_sync_norm,
)
from .variants import GroupNorm, InstanceNorm2d, LayerNorm2d, effective_num_groups

__all__ = [
    "DEFAULT_NORM",
    "ExemplarNorm2d",
    "GroupNorm",
    "InstanceNorm2d",
    "LayerNorm2d",
    "NormLayerInfo",
    "NormLayerLike",
    "NormLayerType",
    "PopulationNorm2d",
    "SparseSwitchNorm2d",
    "SparsestmaxRadiusScheduler",
    "SwitchNorm1d",
    "SwitchNorm2d",
    "SwitchNorm3d",
    "SyncExemplarNorm2d",
    "SyncPopulationNorm2d",
    "SyncSparseSwitchNorm2d",
    "SyncSwitchNorm1d",
    "SyncSwitchNorm2d",
    "SyncSwitchNorm3d",
    "clip_switch_grad_norm_",
    "convert_sync_norm",
    "create_norm_layer",
    "effective_num_groups",
    "gamma_decay_param_groups",
    "gamma_decay_penalty",
    "get_norm_layer",
    "is_batch_norm",
    "is_convertible_norm",
    "is_learned_norm",
    "list_norm_layers",
    "norm_layer_info",
    "register_norm_layer",
    "ssn_param_groups",
    "switch_parameters",
    "sync_class",
]
