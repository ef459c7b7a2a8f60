"""The re-ID run configuration: model, data, PK sampler, losses, evaluation and the engine's sections.

The flow is the classification task's (and fast-reid's): defaults → ``--config`` YAML file(s) (``_base_`` allowed) →
``--set key=value`` overrides → validate. The resolved config is written next to the outputs (``config.yaml``) and
``results.json`` so every run can be repeated. The global batch is ``P × K`` (``sampler.num_identities ×
sampler.num_instances``), split over processes.

Defaults are a CPU-size MSTAT run on the generated ``reid-synth`` benchmark (4 frames of 64×32). Values the MSTAT
paper does not pin down (optimizer, schedule, loss weights, frame policies) are reconstructed from the verified
transformer re-ID recipes (TransReID, TF-CLIP, VID-Trans-ReID) and documented on each field.

Example:
    >>> cfg = resolve_reid_config(overrides=["sampler.num_identities=4", "loss.margin=null"])
    >>> cfg.trainer_config().batch_size, cfg.loss.margin, cfg.eval.metric
    (16, None, 'cosine')
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
    apply_dotted_overrides,
    check_run_name,
    flatten_config,
    load_yaml_with_bases,
    merge_dict,
)
from ...exceptions import ConfigError
from ...utils.validation import iter_nonfinite

__all__ = [
    "ReIDDataConfig",
    "ReIDEvalConfig",
    "ReIDLossConfig",
    "ReIDModelConfig",
    "ReIDRunConfig",
    "ReIDSamplerConfig",
    "apply_reid_overrides",
    "reid_config_from_dict",
    "reid_config_to_dict",
    "resolve_reid_config",
    "validate_reid_config",
]

TRAIN_FRAME_POLICIES = ("random", "restricted_random", "evenly")
TEST_FRAME_POLICIES = ("evenly", "restricted_random", "random")


@dataclass
class ReIDModelConfig:
    """Which network to build with ``create_model(name, num_classes=, num_cameras=, seq_len=, img_size=, **kwargs)``.

    Attributes:
        name: Registered re-ID model (``mstat_tiny``, ``mstat_small``, ``mstat_base``, ``vit_frame_avg_tiny``,
            ``reid_mobilenet_v2``).
        kwargs: Extra constructor options (e.g. ``{"use_aap": false}`` for an ablation); ``num_classes``,
            ``num_cameras``, ``seq_len`` and ``img_size`` come from the data and must not be set here.
        freeze: Parameter-name prefixes (as in ``model.named_parameters()``) kept frozen, e.g. the early blocks
            of a pretrained CNN (``["backbone.features.0.", "backbone.features.1."]``); empty: train everything.
    """

    name: str = "mstat_tiny"
    kwargs: dict[str, Any] = field(default_factory=dict)
    freeze: list[str] = field(default_factory=list)


@dataclass
class ReIDDataConfig:
    """Which benchmark, and how clips are cut from tracklets.

    Attributes:
        name: ``reid-synth`` (generated on first use), ``mars``, ``lsvid``, ``ilidsvid``, ``prid2011``, ``dukev``.
        root: Dataset folder (None: the loader's default location).
        split_id: Train/test split of iLIDS-VID / PRID2011 (0-based; their protocol averages 10).
        min_seq_len: Drop tracklets with fewer frames (0: keep all; shorter ones are padded, see below).
        seq_len: Frames per clip T. Tracklets shorter than T are padded by the frame policy (``evenly`` repeats
            the last frame, ``restricted_random`` repeats every frame in order, ``random`` draws with replacement).
        train_frames: Training frame policy (``restricted_random``: one random frame per T-th of the tracklet,
            the usual video-transformer choice; reconstructed for MSTAT).
        test_frames: Test frame policy (``evenly``: T evenly spaced frames, deterministic). Recorded in results.
        height: Frame height (256 in the paper; 64 on CPU).
        width: Frame width (128 in the paper; 32 on CPU).
        augment: Training augmentation: clip-wise horizontal flip and random erasing, p = 0.5 each (TransReID).
        query_in_gallery: Keep queries in the gallery (the MARS MATLAB protocol; reid-synth/MARS/LS-VID only).
        cache_frames: Keep every decoded, resized frame in memory after its first read (shared by the runs of one
            process; about ``frames × H × W × 3`` bytes): for small benchmarks such as reid-synth at CPU sizes.
        eval_batch_size: Clips per evaluation batch (global).
        num_workers: DataLoader worker processes.
    """

    name: str = "reid-synth"
    root: str | None = None
    split_id: int = 0
    min_seq_len: int = 0
    seq_len: int = 4
    train_frames: str = "restricted_random"
    test_frames: str = "evenly"
    height: int = 64
    width: int = 32
    augment: bool = True
    query_in_gallery: bool = False
    cache_frames: bool = False
    eval_batch_size: int = 32
    num_workers: int = 0


@dataclass
class ReIDSamplerConfig:
    """PK batches (see :class:`~pickwise.tasks.reid.samplers.PKSampler`).

    Attributes:
        num_identities: P identities per global batch (16 in TransReID; 8 on CPU).
        num_instances: K tracklets per identity (4 in TransReID and VID-Trans-ReID).
    """

    num_identities: int = 8
    num_instances: int = 4


@dataclass
class ReIDLossConfig:
    """Loss terms per stage (see :func:`~pickwise.tasks.reid.losses.reid_loss`).

    Attributes:
        id_weight: λ_id of the label-smoothed identity cross-entropy on each BNNeck output.
        triplet_weight: λ_tri of the batch-hard triplet loss on each pre-BNNeck feature.
        center_weight: λ_c of the centre loss (0: off; VID-Trans-ReID uses 5e-4).
        center_lr_mult: Learning-rate multiplier of the centres' own optimizer group (no weight decay); the
            centres get the unweighted gradient, as in the center-loss paper's separate update (reconstructed: the
            group shares the main optimizer, VID-Trans-ReID uses a separate SGD at lr 0.5).
        label_smoothing: ε of the identity loss (0.1, TransReID / TF-CLIP).
        margin: Triplet margin (0.3); null: soft margin (TransReID's ``NO_MARGIN``).
        metric: Triplet distance, ``euclidean`` (TransReID) or ``cosine``.
        stage_weights: Weight of each stage's terms; null: ``1/S`` each (reconstructed: a mean keeps the loss
            scale of the 1-stage ablation and of one-head baselines equal to the full model's; a model's own
            ``stage_loss_weights`` attribute is not used, set this instead).
    """

    id_weight: float = 1.0
    triplet_weight: float = 1.0
    center_weight: float = 0.0
    center_lr_mult: float = 1.0
    label_smoothing: float = 0.1
    margin: float | None = 0.3
    metric: str = "euclidean"
    stage_weights: list[float] | None = None


@dataclass
class ReIDEvalConfig:
    """Retrieval evaluation (Market/MARS protocol: same identity and same camera removed).

    Attributes:
        metric: Query-gallery distance, ``cosine`` (features L2-normalised, as TransReID's ``FEAT_NORM``) or
            ``euclidean``.
        rerank: k-reciprocal re-ranking (Zhong et al., CVPR 2017) with k1 = 20, k2 = 6, λ = 0.3.
        max_rank: Length of the CMC curve.
        test_clips: Clips per test tracklet: ``k × T`` frames are taken with ``data.test_frames`` over the whole
            tracklet, cut into ``k`` consecutive clips of T frames, and their embeddings averaged (1: one clip;
            larger k covers more of a long tracklet, towards the "all frames" test of VID-Trans-ReID). Recorded in
            results.
        figures: Write ``cmc.png`` and ``ranked.png`` (the metrics table is always written).
        figure_queries: Queries drawn in the ranked-gallery figure.
        figure_topk: Gallery items per query in that figure.
    """

    metric: str = "cosine"
    rerank: bool = False
    max_rank: int = 50
    test_clips: int = 1
    figures: bool = True
    figure_queries: int = 6
    figure_topk: int = 8


def _default_optim() -> OptimizerConfig:
    # AdamW 3.5e-4 (TF-CLIP's Adam rate) with mild decay: the CPU-size transformers train stably with it
    return OptimizerConfig(name="adamw", lr=3.5e-4, weight_decay=1e-4)


def _default_schedule() -> ScheduleConfig:
    return ScheduleConfig(name="cosine", warmup_epochs=1.0, min_lr_ratio=0.01)


def _default_train() -> TrainConfig:
    return TrainConfig(epochs=10, log_every=10)


@dataclass
class ReIDRunConfig:
    """Everything a re-ID training run needs. Outputs go to ``<output_dir>/<name>/``.

    Attributes:
        name: Run name (default: ``<model>-<data>-s<seed>``).
        output_dir: Parent folder of run folders.
    """

    name: str | None = None
    output_dir: str = "runs"
    model: ReIDModelConfig = field(default_factory=ReIDModelConfig)
    data: ReIDDataConfig = field(default_factory=ReIDDataConfig)
    sampler: ReIDSamplerConfig = field(default_factory=ReIDSamplerConfig)
    loss: ReIDLossConfig = field(default_factory=ReIDLossConfig)
    eval: ReIDEvalConfig = field(default_factory=ReIDEvalConfig)
    optim: OptimizerConfig = field(default_factory=_default_optim)
    schedule: ScheduleConfig = field(default_factory=_default_schedule)
    train: TrainConfig = field(default_factory=_default_train)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    @property
    def batch_size(self) -> int:
        """The global training batch ``P × K``."""
        return self.sampler.num_identities * self.sampler.num_instances

    def trainer_config(self) -> TrainerConfig:
        """The engine's part of this config (batch = P × K), as a frozen :class:`~pickwise.engine.TrainerConfig`."""
        return TrainerConfig(
            batch_size=self.batch_size,
            eval_batch_size=self.data.eval_batch_size,
            num_workers=self.data.num_workers,
            optim=self.optim,
            schedule=self.schedule,
            train=self.train,
            checkpoint=self.checkpoint,
            name=self.name,
        )

    def to_dict(self) -> dict[str, Any]:
        """Nested plain-dict form (the ``config.yaml`` layout)."""
        return dataclasses.asdict(self)


_CHOICES: dict[str, tuple[str, ...]] = {
    "data.train_frames": TRAIN_FRAME_POLICIES,
    "data.test_frames": TEST_FRAME_POLICIES,
    "loss.metric": ("euclidean", "cosine"),
    "eval.metric": ("cosine", "euclidean"),
    "optim.name": ("sgd", "adamw"),
    "schedule.name": ("cosine", "step", "constant"),
    "train.amp": ("none", "bf16", "fp16", "auto"),
}
_POSITIVE_INT = (
    "data.seq_len",
    "data.height",
    "data.width",
    "data.eval_batch_size",
    "sampler.num_identities",
    "sampler.num_instances",
    "eval.max_rank",
    "eval.test_clips",
    "train.grad_accum_steps",
    "train.log_every",
    "checkpoint.keep_last",
)
_NON_NEGATIVE = (
    "data.split_id",
    "data.min_seq_len",
    "data.num_workers",
    "eval.figure_queries",
    "eval.figure_topk",
    "train.epochs",
    "train.eval_every",
    "loss.id_weight",
    "loss.triplet_weight",
    "loss.center_weight",
    "loss.center_lr_mult",
    "optim.momentum",
    "optim.weight_decay",
    "schedule.warmup_epochs",
    "schedule.min_lr_ratio",
)
_ENGINE_MODEL_ARGS = ("num_classes", "num_cameras", "seq_len", "img_size", "pretrained_cfg")


def reid_config_to_dict(cfg: ReIDRunConfig) -> dict[str, Any]:
    """Nested plain-dict form of a config (YAML/JSON serialisable)."""
    return dataclasses.asdict(cfg)


def reid_config_from_dict(data: dict[str, Any], base: ReIDRunConfig | None = None) -> ReIDRunConfig:
    """Build a :class:`ReIDRunConfig` from nested mappings (unknown keys raise :class:`ConfigError`)."""
    cfg = base if base is not None else ReIDRunConfig()
    try:
        merge_dict(cfg, data, ReIDRunConfig)
    except ConfigError as err:
        raise ConfigError(str(err).replace("pickwise train", "pickwise reid train")) from None
    return cfg


def apply_reid_overrides(cfg: ReIDRunConfig, overrides: list[str]) -> ReIDRunConfig:
    """Apply dotted ``key=value`` overrides in order; values are YAML scalars (``1e-3``, ``true``, ``[1,2]``)."""
    return apply_dotted_overrides(
        cfg, overrides, ReIDRunConfig, command="pickwise reid train", example="optim.lr=0.0005"
    )


def validate_reid_config(cfg: ReIDRunConfig) -> ReIDRunConfig:
    """Check value ranges and choices; raises :class:`ConfigError` naming the offending key."""
    nested = reid_config_to_dict(cfg)
    for key, value in iter_nonfinite(nested):
        raise ConfigError(f"config: {key} must be a finite number; got {value!r}")
    flat = flatten_config(nested)
    for key, value in flat.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float) and abs(item) > FLOAT32_MAX:
                raise ConfigError(f"config: {key}={item:g} is outside the float32 range")
            if isinstance(item, int) and not isinstance(item, bool) and abs(item) > INT_LIMIT:
                raise ConfigError(f"config: {key} is too large ({item}); it must fit in a signed 64-bit integer")
            if isinstance(item, str) and "\0" in item:
                raise ConfigError(f"config: {key} contains a NUL byte")
    for key, choices in _CHOICES.items():
        if flat[key] not in choices:
            hint = close_matches_hint(str(flat[key]), list(choices))
            extra = ""
            if key == "data.test_frames" and flat[key] == "all":
                extra = " ('all' gives clips of different lengths; the models take T = data.seq_len frames)"
            raise ConfigError(
                f"config: {key} must be one of {', '.join(choices)}; got {flat[key]!r}"
                + (f" ({hint})" if hint else "")
                + extra
            )
    for key in _POSITIVE_INT:
        if flat[key] < 1:
            raise ConfigError(f"config: {key} must be >= 1; got {flat[key]}")
    for key in _NON_NEGATIVE:
        if flat[key] < 0:
            raise ConfigError(f"config: {key} must be >= 0; got {flat[key]}")
    if not cfg.optim.lr > 0:
        raise ConfigError(f"config: optim.lr must be > 0; got {cfg.optim.lr}")
    if cfg.optim.momentum >= 1:
        raise ConfigError(f"config: optim.momentum must be < 1; got {cfg.optim.momentum}")
    if not 0 <= cfg.loss.label_smoothing < 1:
        raise ConfigError(f"config: loss.label_smoothing must be in [0, 1); got {cfg.loss.label_smoothing}")
    if cfg.loss.margin is not None and cfg.loss.margin < 0:
        raise ConfigError(f"config: loss.margin must be >= 0 or null (soft margin); got {cfg.loss.margin}")
    if cfg.loss.stage_weights is not None and any(w < 0 for w in cfg.loss.stage_weights):
        raise ConfigError(f"config: loss.stage_weights must be >= 0; got {cfg.loss.stage_weights}")
    if cfg.loss.id_weight == 0 and cfg.loss.triplet_weight == 0 and cfg.loss.center_weight == 0:
        raise ConfigError("config: loss.id_weight, loss.triplet_weight and loss.center_weight are all 0")
    if cfg.sampler.num_instances < 2 and cfg.loss.triplet_weight > 0:
        raise ConfigError(
            "config: sampler.num_instances must be >= 2 with the triplet loss (an anchor needs a positive)"
        )
    if cfg.schedule.min_lr_ratio > 1:
        raise ConfigError(f"config: schedule.min_lr_ratio must be <= 1; got {cfg.schedule.min_lr_ratio}")
    if cfg.optim.nesterov and (cfg.optim.name != "sgd" or cfg.optim.momentum == 0):
        raise ConfigError("config: optim.nesterov needs optim.name=sgd and optim.momentum > 0")
    if not 0 <= cfg.train.seed < 2**63:
        raise ConfigError(f"config: train.seed must be in [0, 2**63); got {cfg.train.seed}")
    if not _DEVICE_RE.match(cfg.train.device):
        raise ConfigError(f"config: train.device must be auto, cpu, cuda or cuda:N; got {cfg.train.device!r}")
    if cfg.train.max_steps is not None and cfg.train.max_steps < 1:
        raise ConfigError(f"config: train.max_steps must be >= 1 (or null); got {cfg.train.max_steps}")
    if cfg.train.epochs == 0 and cfg.train.max_steps is None:
        raise ConfigError("config: train.epochs is 0 and train.max_steps is unset; nothing would be trained")
    if not cfg.model.name or not cfg.data.name or not cfg.output_dir:
        empty = [k for k in ("model.name", "data.name", "output_dir") if not flat[k]]
        raise ConfigError(f"config: {empty[0]} must not be empty")
    for name in cfg.model.kwargs:
        if name in _ENGINE_MODEL_ARGS:
            raise ConfigError(f"config: model.kwargs.{name} is set from the data; remove it")
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"config: model.kwargs names must be Python identifiers; got {name!r}")
    check_run_name(cfg.name, cfg.output_dir)
    return cfg


def resolve_reid_config(
    config_files: list[str | Path] | None = None, overrides: list[str] | None = None
) -> ReIDRunConfig:
    """Defaults, then each YAML file in order, then overrides; validated."""
    cfg = ReIDRunConfig()
    for path in config_files or []:
        reid_config_from_dict(load_yaml_with_bases(path), cfg)
    apply_reid_overrides(cfg, list(overrides or []))
    return validate_reid_config(cfg)
