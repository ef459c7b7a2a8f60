"""The learned-ISP run configuration: model, data, loss, PyNET levels, evaluation and the engine's sections.

Same flow as the classification config: defaults → ``--config`` YAML file(s) (``_base_`` allowed) → ``--set key=value``
overrides → validation; the resolved config is written next to the outputs. :func:`resolve_isp_config` validates a
config built in Python and returns an independent copy.

Example:
    >>> cfg = resolve_config(overrides=["model.name=pynet_tiny", "levels.levels=[5,4,3,2,1,0]", "loss.ssim=0.1"])
    >>> (cfg.model.name, cfg.levels.levels, cfg.loss.weights())
    ('pynet_tiny', [5, 4, 3, 2, 1, 0], {'l1': 1.0, 'ssim': 0.1})
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._registry import close_matches_hint
from ...engine.trainer_config import (
    CheckpointConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    TrainerConfig,
    apply_dotted_overrides,
    check_run_name,
    load_yaml_with_bases,
    merge_dict,
    validate_trainer_config,
)
from ...exceptions import ConfigError

__all__ = [
    "AUGMENTS",
    "EvalConfig",
    "ISPDataConfig",
    "ISPModelConfig",
    "ISPRunConfig",
    "LevelsConfig",
    "LossConfig",
    "apply_overrides",
    "config_from_dict",
    "resolve_config",
    "resolve_isp_config",
    "validate_config",
]

AUGMENTS = ("none", "d4")


@dataclass
class ISPModelConfig:
    """Which network.

    Attributes:
        name: Registered ISP model (``isp_unet_tiny``, ``pynet_tiny``, ``mwisp_tiny``, ``awnet_tiny``, their paper
            sizes without ``_tiny``, or ``isp_classical``).
        norm: Norm layer name for architectures with norms (None: the architecture's own default).
        kwargs: Extra constructor options (e.g. ``{"branch": "both"}`` for AWNet).
    """

    name: str = "isp_unet_tiny"
    norm: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ISPDataConfig:
    """Which pairs, and how they are cropped and batched.

    Attributes:
        name: ``isp-synth`` (the embedded benchmark, generated on first use) or a folder in ZRR's layout.
        root: Where ``isp-synth`` is generated (None: its default location).
        convention: RAW normalization (``pynet``: /1023, ``mwisp``: black level 63, ...; see ``raw.normalize_raw``).
        crop: Training crop side in *packed* pixels (RGB crop is twice that); None: whole patches.
        batch_size: Training batch size.
        eval_batch_size: Evaluation batch size.
        train_subset: Use the first N training pairs (None: all).
        test_subset: Evaluate on the first N test pairs (None: all).
        augment: ``none`` or ``d4`` (the 8 flips/rotations of whole Bayer cells, applied to RAW and RGB jointly, so
            the CFA pattern is kept; MW-ISPNet trains with flips and 90-degree rotations).
        num_workers: DataLoader workers.
    """

    name: str = "isp-synth"
    root: str | None = None
    convention: str = "pynet"
    crop: int | None = 32
    batch_size: int = 8
    eval_batch_size: int = 4
    train_subset: int | None = None
    test_subset: int | None = None
    augment: str = "d4"
    num_workers: int = 0


@dataclass
class LossConfig:
    """Weights of the loss terms (0: off) and their options; see :mod:`pickwise.tasks.isp.losses`.

    Attributes:
        l1, charbonnier, mse, ssim, ms_ssim, color, perceptual: Term weights.
        charbonnier_eps: Charbonnier ``eps``.
        vgg_weights: Local file with torchvision's VGG-19 state dict (needed when ``perceptual > 0``).
        vgg_layer: Perceptual feature layer (``relu5_4``, PyNET's).
        side_weight: Weight of the Charbonnier loss on each side output of multi-output nets (AWNet; 0: off).
    """

    l1: float = 1.0
    charbonnier: float = 0.0
    mse: float = 0.0
    ssim: float = 0.0
    ms_ssim: float = 0.0
    color: float = 0.0
    perceptual: float = 0.0
    charbonnier_eps: float = 1e-3
    vgg_weights: str | None = None
    vgg_layer: str = "relu5_4"
    side_weight: float = 0.0

    def weights(self) -> dict[str, float]:
        """``{term: weight}`` of the nonzero terms."""
        names = ("l1", "charbonnier", "mse", "ssim", "ms_ssim", "color", "perceptual")
        return {n: float(getattr(self, n)) for n in names if getattr(self, n)}


@dataclass
class LevelsConfig:
    """PyNET's coarse-to-fine schedule: one training phase per level, each starting from the previous one's weights.

    Attributes:
        levels: Levels to train, in order (e.g. ``[5, 4, 3, 2, 1, 0]``); empty: one phase at full resolution.
        epochs: Epochs per phase (one value for all, or one per level); empty: ``train.epochs`` for every phase.
        steps: Optimizer steps per phase (one value or one per level; overrides ``train.max_steps``); empty: none.
    """

    levels: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)

    def phase_steps(self, default: int | None) -> list[int | None]:
        """Step limit of each phase."""
        n = max(1, len(self.levels))
        if not self.steps:
            return [default] * n
        if len(self.steps) == 1:
            return [self.steps[0]] * n
        return list(self.steps)

    def phase_epochs(self, default: int) -> list[int]:
        """Epochs of each phase."""
        if not self.levels:
            return [default]
        if not self.epochs:
            return [default] * len(self.levels)
        if len(self.epochs) == 1:
            return self.epochs * len(self.levels)
        return list(self.epochs)


@dataclass
class EvalConfig:
    """How outputs are scored.

    Attributes:
        clamp: Clamp predictions to [0, 1] before scoring (models without an output sigmoid).
        quantize: Score 8-bit quantized images (MW-ISPNet's PSNR convention; default False: PyNET's float PSNR).
        ensemble: ``none`` or a self-ensemble mode (``packed``, ``rgb``, ``bayer``; see ``tiling.self_ensemble``).
    """

    clamp: bool = True
    quantize: bool = False
    ensemble: str = "none"


def _default_optim() -> OptimizerConfig:
    # Adam(W) at 1e-4 without weight decay: MW-ISPNet's and AWNet's optimiser and rate (PyNET: 5e-5)
    return OptimizerConfig(name="adamw", lr=1e-4, momentum=0.9, weight_decay=0.0)


def _default_schedule() -> ScheduleConfig:
    return ScheduleConfig(name="cosine", warmup_epochs=0.0, min_lr_ratio=0.1)


@dataclass
class ISPRunConfig:
    """Everything a learned-ISP run needs. Outputs go to ``<output_dir>/<name>/``."""

    name: str | None = None
    output_dir: str = "runs"
    model: ISPModelConfig = field(default_factory=ISPModelConfig)
    data: ISPDataConfig = field(default_factory=ISPDataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    levels: LevelsConfig = field(default_factory=LevelsConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    optim: OptimizerConfig = field(default_factory=_default_optim)
    schedule: ScheduleConfig = field(default_factory=_default_schedule)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def trainer_config(self, epochs: int | None = None, max_steps: int | None = None) -> TrainerConfig:
        """The engine's part (optionally with another epoch count and step limit, for one PyNET phase)."""
        train = dataclasses.replace(
            self.train,
            epochs=self.train.epochs if epochs is None else epochs,
            max_steps=self.train.max_steps if max_steps is None else max_steps,
        )
        return TrainerConfig(
            batch_size=self.data.batch_size,
            eval_batch_size=self.data.eval_batch_size,
            num_workers=self.data.num_workers,
            optim=self.optim,
            schedule=self.schedule,
            train=train,
            checkpoint=self.checkpoint,
            name=self.name,
        )

    def to_dict(self) -> dict[str, Any]:
        """Nested plain-dict form (the ``config.yaml`` layout)."""
        return dataclasses.asdict(self)


def config_from_dict(data: dict[str, Any], base: ISPRunConfig | None = None) -> ISPRunConfig:
    """Build a config from nested mappings (unknown keys raise :class:`ConfigError` with close matches)."""
    cfg = base if base is not None else ISPRunConfig()
    merge_dict(cfg, data, ISPRunConfig)
    return cfg


def apply_overrides(cfg: ISPRunConfig, overrides: list[str]) -> ISPRunConfig:
    """Apply dotted ``key=value`` overrides (YAML scalars) in order."""
    return apply_dotted_overrides(cfg, overrides, ISPRunConfig, command="pickwise isp train", example="optim.lr=1e-4")


def validate_config(cfg: ISPRunConfig) -> ISPRunConfig:
    """Check ranges and choices; raises :class:`ConfigError` naming the field."""
    validate_trainer_config(cfg.trainer_config())
    if not cfg.model.name:
        raise ConfigError("config: model.name must not be empty")
    if not cfg.data.name:
        raise ConfigError("config: data.name must not be empty")
    for key in ("batch_size", "eval_batch_size"):
        if getattr(cfg.data, key) < 1:
            raise ConfigError(f"config: data.{key} must be >= 1; got {getattr(cfg.data, key)}")
    for key in ("crop", "train_subset", "test_subset"):
        value = getattr(cfg.data, key)
        if value is not None and value < 1:
            raise ConfigError(f"config: data.{key} must be >= 1 (or null); got {value}")
    if cfg.data.crop is not None and cfg.data.crop % 2:
        raise ConfigError(
            f"config: data.crop must be even (whole Bayer cells after the ×2 output); got {cfg.data.crop}"
        )
    if cfg.data.augment not in AUGMENTS:
        hint = close_matches_hint(cfg.data.augment, list(AUGMENTS))
        raise ConfigError(f"config: data.augment must be one of {', '.join(AUGMENTS)}; got {cfg.data.augment!r} {hint}")
    if cfg.eval.ensemble not in ("none", "packed", "rgb", "bayer"):
        raise ConfigError(f"config: eval.ensemble must be none, packed, rgb or bayer; got {cfg.eval.ensemble!r}")
    weights = cfg.loss.weights()
    for name, w in weights.items():
        if w < 0:
            raise ConfigError(f"config: loss.{name} must be >= 0; got {w}")
    if not weights:
        raise ConfigError("config: every loss weight is 0; set at least one, e.g. loss.l1=1.0")
    if cfg.loss.side_weight < 0 or cfg.loss.charbonnier_eps <= 0:
        raise ConfigError("config: loss.side_weight must be >= 0 and loss.charbonnier_eps > 0")
    if cfg.loss.perceptual > 0 and not cfg.loss.vgg_weights:
        raise ConfigError(
            "config: loss.perceptual > 0 needs loss.vgg_weights (a local VGG-19 state-dict file; none ship offline)"
        )
    bad = [lv for lv in cfg.levels.levels if lv not in range(6)]
    if bad:
        raise ConfigError(f"config: levels.levels must hold PyNET levels 0..5; got {cfg.levels.levels}")
    if cfg.levels.levels and any(b >= a for a, b in zip(cfg.levels.levels, cfg.levels.levels[1:])):
        raise ConfigError(
            f"config: levels.levels must go coarse to fine (decreasing), e.g. [5,4,3,2,1,0]; got {cfg.levels.levels}"
        )
    if cfg.levels.epochs and len(cfg.levels.epochs) not in (1, len(cfg.levels.levels)):
        raise ConfigError("config: levels.epochs must hold one value or one per level")
    if cfg.levels.steps and len(cfg.levels.steps) not in (1, len(cfg.levels.levels)):
        raise ConfigError("config: levels.steps must hold one value or one per level")
    if any(e < 1 for e in cfg.levels.steps):
        raise ConfigError(f"config: levels.steps must be >= 1; got {cfg.levels.steps}")
    if any(e < 1 for e in cfg.levels.epochs):
        raise ConfigError(f"config: levels.epochs must be >= 1; got {cfg.levels.epochs}")
    check_run_name(cfg.name, cfg.output_dir)
    return cfg


def resolve_config(config_files: list[str | Path] | None = None, overrides: list[str] | None = None) -> ISPRunConfig:
    """Defaults, then each YAML file in order, then the overrides; validated."""
    cfg = ISPRunConfig()
    for path in config_files or []:
        config_from_dict(load_yaml_with_bases(path), cfg)
    apply_overrides(cfg, list(overrides or []))
    return validate_config(cfg)


def resolve_isp_config(cfg: ISPRunConfig) -> ISPRunConfig:
    """Validate a config built in Python and return an independent copy (types re-coerced from the fields)."""
    if not isinstance(cfg, ISPRunConfig):
        raise ConfigError(f"config: expected an ISPRunConfig, got {type(cfg).__name__}")
    copy = config_from_dict(dataclasses.asdict(cfg), ISPRunConfig())
    return validate_config(copy)
