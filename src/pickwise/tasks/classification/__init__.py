"""Image classification: the task (cross-entropy, top-k accuracy), its run config and the ``pickwise train`` job.

- :mod:`.task`: :class:`ClassificationTask` (training loss, log columns, evaluation accumulators);
- :mod:`.config`: :class:`RunConfig` and its sections, YAML/override resolution, :func:`resolve_run_config`;
- :mod:`.params`: the SN/SSN/EN mixture-logit optimizer group;
- :mod:`.extras`: hooks and regularizers the config implies (SSN radius ramp, PN gamma decay);
- :mod:`.run`: :func:`run_classification`, the whole job (checks, run folder, data, model, trainer, results).

Example:
    >>> from pickwise.tasks.classification import DataConfig, ModelConfig, RunConfig, resolve_run_config
    >>> typed = RunConfig(model=ModelConfig(name="resnet8", norm="gn"), data=DataConfig(name="digits"))
    >>> cfg = resolve_run_config(typed)
    >>> cfg.model.norm, cfg.trainer_config().optim.lr
    ('gn', 0.1)
"""

from __future__ import annotations

from .config import (
    CheckpointConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
    apply_overrides,
    check_registered_names,
    config_from_dict,
    config_to_dict,
    resolve_config,
    resolve_run_config,
    validate_config,
)
from .extras import training_extras
from .params import is_norm_logit, norm_logit_group
from .run import preflight, resolve_device, run_classification
from .task import ClassificationTask

__all__ = [
    "CLI_COMMANDS",
    "CheckpointConfig",
    "ClassificationTask",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "check_registered_names",
    "config_from_dict",
    "config_to_dict",
    "is_norm_logit",
    "norm_logit_group",
    "preflight",
    "resolve_config",
    "resolve_device",
    "resolve_run_config",
    "run_classification",
    "training_extras",
    "validate_config",
]

#: ``pickwise`` subcommands of this task: name -> "module:function(subparsers)".
CLI_COMMANDS: dict[str, str] = {"train": "pickwise.cli.train:add_parser"}
