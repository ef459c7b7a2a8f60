"""The ``pickwise adaseg`` run configuration: data, model, active learning, losses, contrastive units, training.

Flow as in the classification task: defaults -> YAML file(s) (``--config``) -> dotted overrides (``--set``) ->
validate. Every reconstructed ADA-MCU value is a field with its default and reason (:class:`MCUConfig`,
:class:`LossWeights`); the CPU defaults (``deeplabv3plus_tiny``, the embedded two-domain benchmark, a few hundred
steps) are sized to run in minutes on a laptop, not to match the paper's recipe (DeepLab-v2 R101, 40k iterations).

Example:
    >>> cfg = resolve_adaseg_config(overrides=["active.strategy=entropy", "active.budget=40/img"])
    >>> (cfg.active.strategy, cfg.active.budget, cfg.contrastive.tau)
    ('entropy', '40/img', 0.1)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
)
from ...exceptions import ConfigError
from .acquisition import get_strategy, parse_budget
from .contrastive import MCUConfig
from .losses import LossWeights

__all__ = [
    "ActiveConfig",
    "AdaSegConfig",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "apply_adaseg_overrides",
    "resolve_adaseg_config",
    "validate_adaseg_config",
]


@dataclass
class DataConfig:
    """Domains (``pickwise.tasks.adaseg.datasets.load_seg_domain`` names) and loader sizes.

    Attributes:
        source: Labelled source domain.
        target: Target domain (its ``train`` split is the unlabelled pool, ``test`` the evaluation set).
        root: Data root (None: the loader's default).
        batch_size: Source images per step; as many target images are paired with them.
        eval_batch_size: Images per evaluation batch.
    """

    source: str = "synth-source"
    target: str = "synth-target"
    root: str | None = None
    batch_size: int = 4
    eval_batch_size: int = 16


@dataclass
class ModelConfig:
    """Segmentation network (``pickwise.models.deeplab``) with a projection head for the contrastive units."""

    name: str = "deeplabv3plus_tiny"
    norm: str = "bn"
    proj_dim: int = 32
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ActiveConfig:
    """Acquisition.

    Attributes:
        strategy: A registered strategy (``random``, ``entropy``, ``margin``, ``mcu``, ``ripu_pixel``,
            ``ripu_region``).
        budget: Total over all rounds: pixels, ``2.2%``, ``40/img``, ``2reg/img`` or ``5img``.
        rounds: Selection rounds (the budget is split evenly).
        radius: Suppression radius (``mcu``, ``ripu_pixel``) or square half-size (``ripu_region``); 1 (reconstructed
            for ``mcu``; RIPU uses its window radius for both roles).
        mcu: Train with the multi-level contrastive units (False: the "no MCU" ablation).
    """

    strategy: str = "mcu"
    budget: str = "2.2%"
    rounds: int = 2
    radius: int = 1
    mcu: bool = True


@dataclass
class OptimConfig:
    """Training schedule of the warm-up and of every round (constant rate in each stage).

    Attributes:
        name: ``sgd`` (the DeepLab recipes) or ``adamw`` (converges in far fewer steps on the CPU benchmark).
        lr: Learning rate.
        momentum: SGD momentum.
        weight_decay: Weight decay.
        warmup_steps: Source-only steps before the first selection.
        round_steps: Steps after each selection.
        seed: Seed of initialisation, data order, selection ties of ``random`` and contrastive sampling.
        device: ``cpu``, ``cuda`` or ``auto``.
        checkpoint_every: Engine checkpoint interval in steps (resume inside a stage).
    """

    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 300
    round_steps: int = 150
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = 50


@dataclass
class AdaSegConfig:
    """Everything one ``pickwise adaseg train`` run needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    active: ActiveConfig = field(default_factory=ActiveConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    contrastive: MCUConfig = field(default_factory=MCUConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    output_dir: str = "runs/adaseg"
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (written next to the outputs)."""
        return dataclasses.asdict(self)

    def run_name(self) -> str:
        """``name`` or ``<strategy>-<budget>-s<seed>``."""
        if self.name:
            return self.name
        budget = self.active.budget.replace("%", "pct").replace("/", "per")
        return f"{self.active.strategy}-{budget}-s{self.optim.seed}"

    def trainer_config(self, steps: int, name: str, epochs: int = 1) -> TrainerConfig:
        """The engine config of one stage of ``steps`` optimizer steps over (at least) ``epochs`` epochs.

        The engine stops at ``min(steps, epochs x steps per epoch)``: pass enough epochs to cover ``steps``.
        """
        o = self.optim
        return TrainerConfig(
            batch_size=self.data.batch_size,
            eval_batch_size=self.data.eval_batch_size,
            optim=OptimizerConfig(name=o.name, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay),
            schedule=ScheduleConfig(name="constant"),
            train=TrainConfig(
                epochs=max(1, int(epochs)),
                max_steps=steps,
                seed=o.seed,
                device=o.device,
                log_every=max(1, min(50, steps)),
                eval_every=0,
                progress=False,
                tensorboard=False,
            ),
            checkpoint=CheckpointConfig(every_steps=o.checkpoint_every, keep_last=1),
            name=name,
        )


def apply_adaseg_overrides(cfg: AdaSegConfig, overrides: list[str]) -> AdaSegConfig:
    """Dotted ``key=value`` overrides (YAML scalars), applied in order."""
    return apply_dotted_overrides(
        cfg,
        overrides,
        AdaSegConfig,
        command="pickwise adaseg train",
        text_keys=("active.budget",),
        example="active.rounds=3",
    )


def validate_adaseg_config(cfg: AdaSegConfig) -> AdaSegConfig:
    """Ranges and choices; raises :class:`ConfigError` naming the key."""
    if int(cfg.active.rounds) < 1:
        raise ConfigError(f"config: active.rounds must be >= 1; got {cfg.active.rounds}")
    parse_budget(cfg.active.budget)
    get_strategy(cfg.active.strategy, **_strategy_params(cfg))
    cfg.contrastive.validate()
    for key in ("data.batch_size", "data.eval_batch_size", "optim.warmup_steps", "optim.round_steps"):
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        lowest = 0 if key == "optim.warmup_steps" else 1
        if value < lowest:
            raise ConfigError(f"config: {key} must be >= {lowest}; got {value}")
    if cfg.optim.name not in ("sgd", "adamw"):
        raise ConfigError(f"config: optim.name must be sgd or adamw; got {cfg.optim.name!r}")
    if not cfg.optim.lr > 0:
        raise ConfigError(f"config: optim.lr must be > 0; got {cfg.optim.lr}")
    for name in ("source", "active", "pseudo", "mcu"):
        if getattr(cfg.loss, name) < 0:
            raise ConfigError(f"config: loss.{name} must be >= 0; got {getattr(cfg.loss, name)}")
    check_run_name(cfg.name, cfg.output_dir)
    return cfg


def _strategy_params(cfg: AdaSegConfig) -> dict[str, Any]:
    return {} if cfg.active.strategy in ("random", "entropy", "margin") else {"radius": cfg.active.radius}


def resolve_adaseg_config(
    config_files: list[str | Path] | None = None, overrides: list[str] | None = None
) -> AdaSegConfig:
    """Defaults, then each YAML file, then the overrides; validated."""
    cfg = AdaSegConfig()
    for path in config_files or []:
        merge_dict(cfg, load_yaml_with_bases(path), AdaSegConfig)
    apply_adaseg_overrides(cfg, list(overrides or []))
    return validate_adaseg_config(cfg)
