"""Pure functions behind the learning-to-normalize layers (torch's ``F.batch_norm`` split).

Modules in :mod:`pickwise.nn.norm` own parameters, buffers and mode logic; the math lives here and is shared with
their Sync variants and the tests.
"""

from ._stats import (
    affine_norm,
    apply_channel_affine,
    batch_norm_moments,
    instance_moments,
    local_batch_stats,
    normalizer_moments,
    parse_normalizers,
    pooled_moments,
    update_running_stats_,
)
from .exemplar import exemplar_descriptors, exemplar_norm, exemplar_ratios, exemplar_scale_shift
from .population import population_norm
from .switchable import sparsemax, sparsestmax, switch_norm, switch_norm_from_ratios, switch_norm_scale_shift

__all__ = [
    "affine_norm",
    "batch_norm_moments",
    "exemplar_ratios",
    "apply_channel_affine",
    "exemplar_descriptors",
    "exemplar_norm",
    "exemplar_scale_shift",
    "instance_moments",
    "local_batch_stats",
    "normalizer_moments",
    "parse_normalizers",
    "pooled_moments",
    "population_norm",
    "sparsemax",
    "sparsestmax",
    "switch_norm",
    "switch_norm_from_ratios",
    "switch_norm_scale_shift",
    "update_running_stats_",
]
