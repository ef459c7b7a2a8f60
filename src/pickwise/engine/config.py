"""Typed run configuration: dataclasses, YAML files with ``_base_`` inheritance and dotted ``key=value`` overrides.

The flow is fast-reid's: defaults → ``merge`` YAML file(s) → ``merge`` command-line overrides → validate. The resolved
config is written next to the outputs (``config.yaml``) so every run can be repeated with ``--config``.

Example:
    >>> cfg = resolve_config(overrides=["model.name=resnet8", "optim.lr=0.05"])
    >>> (cfg.model.name, cfg.optim.lr)
    ('resnet8', 0.05)
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from .._registry import close_matches_hint
from ..exceptions import ConfigError
from ..utils.validation import iter_nonfinite

__all__ = [
    "CheckpointConfig",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "check_run_name",
    "config_from_dict",
    "config_to_dict",
    "load_yaml_with_bases",
    "diff_configs",
    "resolve_config",
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
class OptimConfig:
    """Optimizer settings.

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

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    no_decay_norm_and_bias: bool = True
    clip_grad_norm: float | None = None
    norm_logit_lr_mult: float = 1.0
    norm_logit_clip: float | None = None


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, evaluated per optimizer step.

    Attributes:
        name: ``cosine``, ``step`` or ``constant``.
        warmup_epochs: Linear warm-up length in epochs (fractions allowed).
        milestones: For ``step``: epochs at which the rate is multiplied by ``gamma``.
        gamma: Multiplicative factor of the ``step`` schedule.
        min_lr_ratio: Final rate of ``cosine`` as a fraction of ``optim.lr``.
    """

    name: str = "cosine"
    warmup_epochs: float = 0.0
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    min_lr_ratio: float = 0.0


@dataclass
class TrainConfig:
    """Loop settings.

    Attributes:
        epochs: Number of passes over the training set.
        max_steps: Stop after this many optimizer steps (None: run all epochs).
        grad_accum_steps: Micro-batches accumulated per optimizer step.
        amp: Mixed precision: ``none``, ``bf16``, ``fp16`` (CUDA only) or ``auto`` (bf16 on CUDA with bf16 support
            and on CPUs with native bf16 instructions, otherwise none).
        seed: Seed of initialisation, data order, augmentation and dropout.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        deterministic: Call ``torch.use_deterministic_algorithms(True)``.
        log_every: Write a training log row every this many optimizer steps.
        eval_every: Evaluate every this many epochs (0: only at the end).
        progress: Show a progress bar on an interactive terminal.
        tensorboard: Write TensorBoard event files (if the ``tensorboard`` package is installed).
    """

    epochs: int = 1
    max_steps: int | None = None
    grad_accum_steps: int = 1
    amp: str = "none"
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False
    log_every: int = 20
    eval_every: int = 1
    progress: bool = True
    tensorboard: bool = True


@dataclass
class CheckpointConfig:
    """Checkpointing.

    Attributes:
        every_steps: Also save every this many optimizer steps (None: only at the end of each epoch).
        keep_last: Keep this many newest checkpoints (older ones are deleted after a newer one is safely written).
    """

    every_steps: int | None = None
    keep_last: int = 3


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


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _all_keys(cls: type = RunConfig, prefix: str = "") -> list[str]:
    keys = []
    for name, tp in _field_types(cls).items():
        if dataclasses.is_dataclass(tp):
            keys.extend(_all_keys(tp, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check and convert ``value`` to the annotated type ``tp`` (supports Optional, list, dict and scalars)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"config: {key} got an invalid value {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config: {key} must be a list; got {value!r}")
        return [_coerce(key, v, item_tp) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config: {key} must be a mapping; got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config: {key} must be true or false; got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config: {key} must be an integer; got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config: {key} must be a number; got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config: {key} must be a string; got {value!r}")
    raise ConfigError(f"config: {key} has an unsupported type {tp!r}")  # pragma: no cover - internal invariant


def _unknown_key_error(key: str) -> ConfigError:
    hint = close_matches_hint(key, _all_keys())
    return ConfigError(
        f"config: unknown key '{key}'"
        + (f"; {hint}" if hint else ".")
        + " Run `pickwise train --print-config` to see every key."
    )


def _merge_dict(obj: Any, data: dict[str, Any], prefix: str = "") -> None:
    hints = _field_types(type(obj))
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in hints:
            raise _unknown_key_error(key)
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"config: {key} must be a mapping of its fields; got {value!r}")
            _merge_dict(getattr(obj, name), value, f"{key}.")
        else:
            setattr(obj, name, _coerce(key, value, tp))


def config_from_dict(data: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
    """Build a :class:`RunConfig` from nested mappings (unknown keys raise :class:`ConfigError`)."""
    cfg = base if base is not None else RunConfig()
    _merge_dict(cfg, data)
    return cfg


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Nested plain-dict form of a config (YAML/JSON serialisable)."""
    return dataclasses.asdict(cfg)


def load_yaml_with_bases(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Load a YAML config; a top-level ``_base_`` (path or list of paths, relative to the file) is merged first."""
    if "\0" in str(path):
        raise ConfigError(f"config: file name {str(path)!r} contains a NUL byte")
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"config: file not found: {path}")
    resolved = path.resolve()
    if resolved in _seen:
        raise ConfigError(f"config: _base_ cycle through {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config: {path} is not valid YAML ({str(err).splitlines()[0]})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"config: {path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8"
        ) from None
    except (OSError, RecursionError) as err:
        raise ConfigError(f"config: cannot read {path} ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a mapping at the top level; got {type(data).__name__}")
    bases = data.pop("_base_", [])
    if bases is None:
        bases = []
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b and "\0" not in b for b in bases):
        raise ConfigError(
            f"config: {path}: _base_ must be a file path or a list of file paths (relative to the file); got {bases!r}"
        )
    merged: dict[str, Any] = {}
    for base in bases:
        _deep_update(merged, load_yaml_with_bases(path.parent / base, (*_seen, resolved)))
    _deep_update(merged, data)
    return merged


def _deep_update(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply dotted ``key=value`` overrides in order; values are YAML scalars (``1e-3``, ``true``, ``[1,2]``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"config: override '{item}' must look like key=value, e.g. optim.lr=0.05")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except (yaml.YAMLError, RecursionError, ValueError):
            value = raw
        parts = key.split(".")
        nested: dict[str, Any] = {}
        cursor = nested
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
        if parts[0] == "model" and len(parts) > 2 and parts[1] in ("kwargs", "norm_kwargs"):
            getattr(cfg.model, parts[1])[".".join(parts[2:])] = value
            continue
        if key not in _all_keys():
            raise _unknown_key_error(key)
        _merge_dict(cfg, nested)
    return cfg


FLOAT32_MAX = 3.4028234663852886e38  # learning rates and decays end up in float32 tensor arithmetic
_INT_LIMIT = 2**63 - 1  # every integer must fit torch's int64
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
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d{1,4})$")


def check_run_name(name: str | None, output_dir: str) -> None:
    """Refuse run names that would write outside ``output_dir`` (absolute paths, ``..``) or into it directly.

    Raises:
        ConfigError: With the offending name.
    """
    if name is None:
        return
    base = Path(output_dir)
    target = base / name
    try:
        inside = os.path.commonpath([os.path.abspath(base), os.path.abspath(target)]) == os.path.abspath(base)
    except ValueError:  # different drives
        inside = False
    normalized = os.path.normpath(name)
    if (
        not name.strip()
        or Path(name).is_absolute()
        or not inside
        or normalized in (".", "..")
        or normalized.startswith(".." + os.sep)
        or ".." in Path(name).parts
        or os.path.abspath(target) == os.path.abspath(base)
    ):
        raise ConfigError(
            f"config: name {name!r} must be a folder name inside output_dir ({output_dir}); absolute paths, '..' and "
            "empty names are refused (use --output-dir to write elsewhere)"
        )


def validate_config(cfg: RunConfig) -> RunConfig:
    """Check value ranges and choices; raises :class:`ConfigError` with the offending key.

    Every float (including list items, ``model.kwargs`` and ``model.norm_kwargs``) must be finite and within the
    float32 range (so must ``optim.lr`` times ``optim.weight_decay`` and ``optim.norm_logit_lr_mult``), every integer
    must fit in int64, strings must not hold NUL bytes, and the run name must stay inside ``output_dir``.
    """
    nested = config_to_dict(cfg)
    flat = _flatten(nested)
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
            if isinstance(item, int) and not isinstance(item, bool) and abs(item) > _INT_LIMIT:
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


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in ("kwargs", "norm_kwargs"):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resolve_config(config_files: list[str | Path] | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults, then each YAML file in order, then overrides; validated."""
    cfg = RunConfig()
    for path in config_files or []:
        config_from_dict(load_yaml_with_bases(path), cfg)
    apply_overrides(cfg, list(overrides or []))
    return validate_config(cfg)


def diff_configs(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Flattened keys whose values differ between two config dicts: ``{key: (old, new)}``."""
    a, b = _flatten(old), _flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
