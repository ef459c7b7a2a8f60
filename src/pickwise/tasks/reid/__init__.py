"""Video person re-identification: MSTAT (Tang et al., IEEE TMM 2023), its data, losses, samplers and CLI.

- :mod:`.datasets`, :mod:`.frames`, :mod:`.synth`: benchmarks (MARS layout and others), frame sampling, the
  generated ``reid-synth`` benchmark;
- :mod:`.losses`: label-smoothed identity cross-entropy, batch-hard triplet, centre loss, their per-stage sum;
- :mod:`.samplers`: the deterministic, distributed P×K identity sampler;
- :mod:`.config`: :class:`ReIDRunConfig` (YAML ``--config`` and ``--set`` overrides);
- :mod:`.task`: :class:`ReIDTask`, the engine task (losses in, CMC/mAP/mINP out);
- :mod:`.run`: :func:`run_reid` and :func:`evaluate_reid`, the ``pickwise reid train|evaluate`` jobs;
- :mod:`.figures`: CMC curves and ranked-gallery images;
- :mod:`.cli`: ``pickwise reid train | evaluate | extract | make-data``.

Example:
    >>> from pickwise.tasks.reid import resolve_reid_config
    >>> resolve_reid_config(overrides=["model.name=vit_frame_avg_tiny"]).model.name
    'vit_frame_avg_tiny'
"""

from __future__ import annotations

from .config import (
    ReIDDataConfig,
    ReIDEvalConfig,
    ReIDLossConfig,
    ReIDModelConfig,
    ReIDRunConfig,
    ReIDSamplerConfig,
    apply_reid_overrides,
    reid_config_from_dict,
    reid_config_to_dict,
    resolve_reid_config,
    validate_reid_config,
)
from .losses import CenterLoss, batch_hard_triplet_loss, label_smoothed_cross_entropy, reid_loss
from .run import ReIDRunResult, evaluate_reid, run_reid
from .samplers import PKSampler, pk_sampler_factory
from .task import QueryGalleryDataset, ReIDNet, ReIDTask

__all__ = [
    "CLI_COMMANDS",
    "CenterLoss",
    "PKSampler",
    "QueryGalleryDataset",
    "ReIDDataConfig",
    "ReIDEvalConfig",
    "ReIDLossConfig",
    "ReIDModelConfig",
    "ReIDNet",
    "ReIDRunConfig",
    "ReIDRunResult",
    "ReIDSamplerConfig",
    "ReIDTask",
    "apply_reid_overrides",
    "batch_hard_triplet_loss",
    "evaluate_reid",
    "label_smoothed_cross_entropy",
    "pk_sampler_factory",
    "reid_config_from_dict",
    "reid_config_to_dict",
    "reid_loss",
    "resolve_reid_config",
    "run_reid",
    "validate_reid_config",
]

#: ``pickwise`` subcommands of this task: name -> "module:function(subparsers)".
CLI_COMMANDS: dict[str, str] = {"reid": "pickwise.tasks.reid.cli:add_parser"}
