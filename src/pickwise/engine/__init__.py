"""The task-agnostic training engine: loop, checkpoints, run folders, schedules, samplers, parameter groups.

The engine owns devices, precision, gradient accumulation, distribution (torchrun), checkpoints with bit-exact
resume, run folders with their lock, non-finite checks, logging and progress. A :class:`Task` owns the meaning of a
batch: loss, log columns and evaluation through :mod:`pickwise.metrics` accumulators. The engine imports no task
and no ``pickwise.nn`` internals; tasks live in :mod:`pickwise.tasks`.

Example:
    >>> import torch
    >>> from pickwise.engine import TrainerConfig, TrainConfig, OptimizerConfig
    >>> cfg = TrainerConfig(batch_size=8, optim=OptimizerConfig(lr=0.05), train=TrainConfig(epochs=2, device="cpu"))
    >>> validate_trainer_config(cfg).train.epochs
    2
"""

from .checkpoint import Checkpoint, find_checkpoints, latest_valid_checkpoint, load_checkpoint, save_checkpoint
from .hooks import Hook, SparsestmaxRadiusSchedule
from .params import ParamGroup
from .rundir import RunLock, new_run_id, read_run_id
from .sampler import (
    ResumableDistributedSampler,
    SamplerFactory,
    ShardSampler,
    SkipSampler,
    resumable_sampler_factory,
)
from .schedule import lr_at_step
from .task import AccumulatorTask, LegacyTask, Task, legacy_log_row, task_log_row, uses_accumulators
from .trainer import Trainer, TrainResult, as_trainer_config, build_optimizer
from .trainer_config import (
    CheckpointConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    TrainerConfig,
    check_run_name,
    diff_configs,
    load_yaml_with_bases,
    validate_trainer_config,
)

__all__ = [
    "AccumulatorTask",
    "Checkpoint",
    "CheckpointConfig",
    "Hook",
    "LegacyTask",
    "OptimizerConfig",
    "ParamGroup",
    "ResumableDistributedSampler",
    "RunLock",
    "SamplerFactory",
    "ScheduleConfig",
    "ShardSampler",
    "SkipSampler",
    "SparsestmaxRadiusSchedule",
    "Task",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainerConfig",
    "as_trainer_config",
    "build_optimizer",
    "check_run_name",
    "diff_configs",
    "find_checkpoints",
    "latest_valid_checkpoint",
    "legacy_log_row",
    "load_checkpoint",
    "load_yaml_with_bases",
    "lr_at_step",
    "new_run_id",
    "read_run_id",
    "resumable_sampler_factory",
    "save_checkpoint",
    "task_log_row",
    "uses_accumulators",
    "validate_trainer_config",
]
