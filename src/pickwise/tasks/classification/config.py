"""The classification run configuration: model, data and the engine's sections, as YAML or typed dataclasses.

The flow is fast-reid's: defaults → ``merge`` YAML file(s) → ``merge`` command-line overrides → validate. The resolved
config is written next to the outputs (``config.yaml``) so every run can be repeated with ``--config``. The same
config can be built in Python without YAML strings and checked with :func:`resolve_run_config`, which also checks
the registered model, norm and dataset names before any data are loaded.

Example:
    >>> cfg = resolve_config(overrides=["model.name=resnet8", "optim.lr=0.05"])
    >>> (cfg.model.name, cfg.optim.lr)
    ('resnet8', 0.05)
    >>> typed = RunConfig(model=ModelConfig(name="resnet8"), data=DataConfig(name="digits", batch_size=32))
    >>> frozen = resolve_run_config(typed)
    >>> frozen.trainer_config().batch_size
    32
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._registry import close_matches_hint
from ...engine.trainer_config import (
    _DEVICE_RE,
    FLOAT32_MAX,
    INT_LIMIT,
    CheckpointConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    TrainerConfig,
    all_keys,
    apply_dotted_overrides,
    check_run_name,
    deep_update,
    diff_configs,
    flatten_config,
    load_yaml_with_bases,
    merge_dict,
)
from ...exceptions import ConfigError
from ...utils.validation import iter_nonfinite

__all__ = [
    "CheckpointConfig",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "check_registered_names",
    "check_run_name",
    "config_from_dict",
    "config_to_dict",
    "diff_configs",
    "load_yaml_with_bases",
    "resolve_config",
    "resolve_run_config",
    "validate_config",
]


@dataclass
class ModelConfig:
    """Which network to build.

    Attributes:
        name: Registered model name (``pickwise models`` lists them).
        norm: Normalization layer name from the norm factory (``bn``, ``gn``, ``ln``, ``in``, ...).
        pretrained: Load the model's shipped weights (sha256-checked).
        kwargs: Extra keyword arguments for the model constructor.
        norm_kwargs: Extra keyword arguments for every normalization layer (e.g. ``{"num_groups": 8}`` for ``gn``,
            ``{"warmup_steps": 200}`` for ``pn``).
        gamma_decay: Coefficient of the explicit gamma-decay regularizer added to the loss (0: off); used with
            population normalization (``norm: pn``), see :func:`pickwise.nn.gamma_decay_penalty`.
        sparsestmax_radius: Final radius of the sparsestmax schedule of SSN layers (linear ramp from 0 over the run;
            the official schedule ends at 1.0, beyond the simplex's centre-to-vertex distance, so every layer ends
            one-hot).
    """

    name: str = "resnet20"
    norm: str = "bn"
    pretrained: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)
    norm_kwargs: dict[str, Any] = field(default_factory=dict)
    gamma_decay: float = 0.0
    sparsestmax_radius: float = 1.0


@dataclass
class DataConfig:
    """Which data, and how it is batched.

    Attributes:
        name: Registered dataset name, or an image-folder path (``root/<class>/<image>``).
        root: Folder with the dataset files, for datasets that live outside the package (``--data-dir``).
        batch_size: Global batch size per optimizer micro-step, split evenly over processes.
        eval_batch_size: Global batch size for evaluation.
        train_subset: Train on a deterministic random subset of this many samples (None: all).
        test_subset: Evaluate on a deterministic random subset of this many samples (None: all).
        image_size: Resize images to this square size (needed for image folders with mixed sizes).
        augment: ``none``, ``flip`` or ``crop_flip`` (random crop with 4-pixel padding + horizontal flip).
        num_workers: DataLoader worker processes.
    """

    name: str = "fashion-mnist"
    root: str | None = None
    batch_size: int = 128
    eval_batch_size: int = 512
    train_subset: int | None = None
    test_subset: int | None = None
    image_size: int | None = None
    augment: str = "none"
    num_workers: int = 0


@dataclass
class OptimConfig(OptimizerConfig):
    """Optimizer settings: the engine's :class:`~pickwise.engine.OptimizerConfig` plus the norm-logit group.

    Attributes:
        name: ``sgd`` or ``adamw``.
        lr: Peak learning rate.
        momentum: SGD momentum.
        nesterov: Use Nesterov momentum with SGD.
        weight_decay: L2 / decoupled weight decay.
        no_decay_norm_and_bias: Exclude 1-D parameters (norm weights, biases) from weight decay.
        clip_grad_norm: Clip the global gradient norm to this value (None: no clipping).
        norm_logit_lr_mult: Learning-rate multiplier for the mixture logits of SN/SSN/EN layers (``mean_weight``,
            ``var_weight``); they never get weight decay. SSN's recipe is 0.1.
        norm_logit_clip: Clip the gradient norm of the mixture logits to this value (SSN's recipe: 1.0).
    """

    norm_logit_lr_mult: float = 1.0
    norm_logit_clip: float | None = None


@dataclass
class RunConfig:
    """Everything a training run needs. Outputs go to ``<output_dir>/<name>/``.

    Attributes:
        name: Run name (default: ``<model>-<norm>-<data>-<seed>``).
        output_dir: Parent folder of run folders.
    """

    name: str | None = None
    output_dir: str = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def trainer_config(self) -> TrainerConfig:
        """The engine's part of this config, as a frozen :class:`~pickwise.engine.TrainerConfig` (copied)."""
        optim = OptimizerConfig(**{f.name: getattr(self.optim, f.name) for f in dataclasses.fields(OptimizerConfig)})
        return TrainerConfig(
            batch_size=self.data.batch_size,
            eval_batch_size=self.data.eval_batch_size,
            num_workers=self.data.num_workers,
            optim=optim,
            schedule=self.schedule,
            train=self.train,
            checkpoint=self.checkpoint,
            name=self.name,
        )

    def default_param_groups(self) -> list[Any]:
        """The extra optimizer group this config implies: SN/SSN/EN mixture logits (see :mod:`.params`)."""
        from .params import norm_logit_group

        return [norm_logit_group(self.optim.norm_logit_lr_mult, self.optim.norm_logit_clip)]

    def to_dict(self) -> dict[str, Any]:
        """Nested plain-dict form (the ``config.yaml`` layout)."""
        return dataclasses.asdict(self)


_CHOICES: dict[str, tuple[str, ...]] = {
    "data.augment": ("none", "flip", "crop_flip"),
    "optim.name": ("sgd", "adamw"),
    "schedule.name": ("cosine", "step", "constant"),
    "train.amp": ("none", "bf16", "fp16", "auto"),
}
_POSITIVE_INT = (
    "data.batch_size",
    "data.eval_batch_size",
    "train.grad_accum_steps",
    "checkpoint.keep_last",
    "train.log_every",
)


# (key, lowest allowed, lowest is exclusive) for float fields; None-able fields are checked when set
_FLOAT_RANGES: tuple[tuple[str, float, bool], ...] = (
    ("optim.lr", 0.0, True),
    ("optim.momentum", 0.0, False),
    ("optim.weight_decay", 0.0, False),
    ("optim.clip_grad_norm", 0.0, True),
    ("optim.norm_logit_lr_mult", 0.0, False),
    ("optim.norm_logit_clip", 0.0, True),
    ("schedule.warmup_epochs", 0.0, False),
    ("schedule.gamma", 0.0, True),
    ("schedule.min_lr_ratio", 0.0, False),
    ("model.gamma_decay", 0.0, False),
    ("model.sparsestmax_radius", 0.0, False),
)


def _all_keys(cls: type | None = None, prefix: str = "") -> list[str]:
    return all_keys(cls or RunConfig, prefix)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    return flatten_config(data, prefix)


_deep_update = deep_update


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Nested plain-dict form of a config (YAML/JSON serialisable)."""
    return dataclasses.asdict(cfg)


def check_registered_names(cfg: RunConfig) -> None:
    """Check the model, norm and dataset names against their registries (nothing is loaded or built).

    Raises:
        UnknownNameError: With close matches, for a model or norm name that is not registered.
        ConfigError, DataNotFoundError: For a dataset name that is neither registered nor an existing folder.
    """
    from ...data._registry import DATASETS
    from ...models._registry import model_entrypoint
    from ...nn.norm import get_norm_layer

    model_entrypoint(cfg.model.name)
    if cfg.model.norm:
        get_norm_layer(cfg.model.norm)
    name = cfg.data.name
    if name in DATASETS:
        return
    folder = Path(name[len("folder:") :] if name.startswith("folder:") else name).expanduser()
    if name.lower() in ("folder", "image-folder", "imagefolder") and cfg.data.root:
        folder = Path(cfg.data.root).expanduser()
    if not folder.is_dir():
        from ...data import get_dataset_info

        get_dataset_info(name, root=cfg.data.root)  # the registry's one-line error with close matches
        raise ConfigError(f"config: data.name={name!r} is neither a registered dataset nor a folder")


def resolve_run_config(cfg: RunConfig, *, check_names: bool = True) -> RunConfig:
    """Validate a config built in Python and return a frozen-by-convention deep copy.

    Runs :func:`validate_config` (ranges, choices, types re-coerced from the dataclass fields) and, with
    ``check_names``, :func:`check_registered_names`, so a typo such as ``norm="sx"`` fails here, before any data are
    loaded. The returned copy is independent of ``cfg``; change it with :func:`dataclasses.replace` on the sections
    (``dataclasses.replace(c, optim=dataclasses.replace(c.optim, lr=0.05))``) and resolve again.

    Raises:
        ConfigError, UnknownNameError, DataNotFoundError: One line naming the field.
    """
    if not isinstance(cfg, RunConfig):
        raise ConfigError(f"config: expected a RunConfig, got {type(cfg).__name__}")
    copy = config_from_dict(config_to_dict(cfg), RunConfig())  # re-coerces every field to its annotated type
    validate_config(copy)
    if check_names:
        check_registered_names(copy)
    return copy


def config_from_dict(data: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
    """Build a :class:`RunConfig` from nested mappings (unknown keys raise :class:`ConfigError`)."""
    cfg = base if base is not None else RunConfig()
    merge_dict(cfg, data, RunConfig)
    return cfg


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply dotted ``key=value`` overrides in order; values are YAML scalars (``1e-3``, ``true``, ``[1,2]``)."""
    return apply_dotted_overrides(
        cfg, overrides, RunConfig, free_dicts=("model.kwargs", "model.norm_kwargs"), example="optim.lr=0.05"
    )


def validate_config(cfg: RunConfig) -> RunConfig:
    """Check value ranges and choices; raises :class:`ConfigError` with the offending key.

    Every float (including list items, ``model.kwargs`` and ``model.norm_kwargs``) must be finite and within the
    float32 range (so must ``optim.lr`` times ``optim.weight_decay`` and ``optim.norm_logit_lr_mult``), every integer
    must fit in int64, strings must not hold NUL bytes, and the run name must stay inside ``output_dir``.
    """
    nested = config_to_dict(cfg)
    flat = flatten_config(nested)
    for key, value in iter_nonfinite(nested):
        raise ConfigError(f"config: {key} must be a finite number; got {value!r}")
    for key, value in flat.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float) and abs(item) > FLOAT32_MAX:
                raise ConfigError(f"config: {key}={item:g} is outside the float32 range (|x| <= {FLOAT32_MAX:.4g})")
    for other in ("optim.weight_decay", "optim.norm_logit_lr_mult"):  # products the optimizer forms in float32
        if abs(cfg.optim.lr * flat[other]) > FLOAT32_MAX:
            raise ConfigError(f"config: optim.lr x {other} = {cfg.optim.lr * flat[other]:g} overflows float32")
    for key, value in flat.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, int) and not isinstance(item, bool) and abs(item) > INT_LIMIT:
                raise ConfigError(f"config: {key} is too large ({item}); it must fit in a signed 64-bit integer")
            if isinstance(item, str) and "\0" in item:
                raise ConfigError(f"config: {key} contains a NUL byte")
    for key, kwargs in (("model.kwargs", cfg.model.kwargs), ("model.norm_kwargs", cfg.model.norm_kwargs)):
        bad = [k for k in kwargs if not isinstance(k, str) or not k.isidentifier()]
        if bad:
            raise ConfigError(f"config: {key} names must be Python identifiers; got {bad[0]!r}")
    for key, choices in _CHOICES.items():
        if flat[key] not in choices:
            hint = close_matches_hint(str(flat[key]), list(choices))
            raise ConfigError(
                f"config: {key} must be one of {', '.join(choices)}; got {flat[key]!r}" + (f" ({hint})" if hint else "")
            )
    for key in _POSITIVE_INT:
        if flat[key] < 1:
            raise ConfigError(f"config: {key} must be >= 1; got {flat[key]}")
    for key in ("train.epochs", "train.eval_every", "data.num_workers"):
        if flat[key] < 0:
            raise ConfigError(f"config: {key} must be >= 0; got {flat[key]}")
    for key in (
        "train.max_steps",
        "checkpoint.every_steps",
        "data.train_subset",
        "data.test_subset",
        "data.image_size",
    ):
        if flat[key] is not None and flat[key] < 1:
            raise ConfigError(f"config: {key} must be >= 1 (or null); got {flat[key]}")
    for key, low, exclusive in _FLOAT_RANGES:
        value = flat[key]
        if value is None:
            continue
        if value < low or (exclusive and value == low):
            raise ConfigError(f"config: {key} must be {'>' if exclusive else '>='} {low:g}; got {value}")
    if cfg.schedule.min_lr_ratio > 1:
        raise ConfigError(f"config: schedule.min_lr_ratio must be <= 1; got {cfg.schedule.min_lr_ratio}")
    if cfg.optim.momentum >= 1:
        raise ConfigError(f"config: optim.momentum must be < 1; got {cfg.optim.momentum}")
    if any(m < 0 for m in cfg.schedule.milestones):
        raise ConfigError(f"config: schedule.milestones must be >= 0; got {cfg.schedule.milestones}")
    if cfg.optim.nesterov and (cfg.optim.name != "sgd" or cfg.optim.momentum == 0):
        raise ConfigError("config: optim.nesterov needs optim.name=sgd and optim.momentum > 0")
    if not 0 <= cfg.train.seed < 2**63:
        raise ConfigError(f"config: train.seed must be in [0, 2**63); got {cfg.train.seed}")
    if not _DEVICE_RE.match(cfg.train.device):
        raise ConfigError(f"config: train.device must be auto, cpu, cuda or cuda:N; got {cfg.train.device!r}")
    if not cfg.model.name or not cfg.data.name or not cfg.output_dir:
        empty = [k for k in ("model.name", "data.name", "output_dir") if not flat[k]]
        raise ConfigError(f"config: {empty[0]} must not be empty")
    check_run_name(cfg.name, cfg.output_dir)
    if cfg.train.epochs == 0 and cfg.train.max_steps is None:
        raise ConfigError("config: train.epochs is 0 and train.max_steps is unset; nothing would be trained")
    return cfg


def resolve_config(config_files: list[str | Path] | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults, then each YAML file in order, then overrides; validated."""
    cfg = RunConfig()
    for path in config_files or []:
        config_from_dict(load_yaml_with_bases(path), cfg)
    apply_overrides(cfg, list(overrides or []))
    return validate_config(cfg)
