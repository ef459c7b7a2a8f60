"""The engine's own configuration: optimisation, schedule, precision, accumulation, checkpoints, logging, progress.

Nothing here knows about models, datasets or classes; a task's run configuration (e.g.
:class:`pickwise.tasks.classification.RunConfig`) composes these sections and turns itself into a
:class:`TrainerConfig` for the :class:`~pickwise.engine.Trainer`. The generic machinery shared by every task config
(typed coercion of YAML values, ``_base_`` inheritance, dotted overrides, run names) lives here as well.

Example:
    >>> cfg = TrainerConfig(batch_size=32, optim=OptimizerConfig(lr=0.05), train=TrainConfig(epochs=2, seed=3))
    >>> (cfg.optim.lr, cfg.train.epochs, cfg.batch_size)
    (0.05, 2, 32)
    >>> import dataclasses
    >>> dataclasses.replace(cfg, batch_size=64).batch_size
    64
"""

from __future__ import annotations

import copy
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
    "FLOAT32_MAX",
    "CheckpointConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainerConfig",
    "all_keys",
    "apply_dotted_overrides",
    "check_run_name",
    "coerce_value",
    "diff_configs",
    "flatten_config",
    "load_yaml_with_bases",
    "merge_dict",
    "validate_trainer_config",
]

FLOAT32_MAX = 3.4028234663852886e38  # learning rates and decays end up in float32 tensor arithmetic
INT_LIMIT = 2**63 - 1  # every integer must fit torch's int64


@dataclass
class OptimizerConfig:
    """Optimizer settings the engine applies to every parameter group.

    Attributes:
        name: ``sgd`` or ``adamw``.
        lr: Peak learning rate.
        momentum: SGD momentum.
        nesterov: Use Nesterov momentum with SGD.
        weight_decay: L2 / decoupled weight decay.
        no_decay_norm_and_bias: Exclude 1-D parameters (norm weights, biases) from weight decay.
        clip_grad_norm: Clip the global gradient norm to this value (None: no clipping).
    """

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    no_decay_norm_and_bias: bool = True
    clip_grad_norm: float | None = None


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


@dataclass(frozen=True)
class TrainerConfig:
    """Everything the :class:`~pickwise.engine.Trainer` needs, and nothing about models, data or classes.

    Frozen: change a copy with :func:`dataclasses.replace`. The sections are copied on construction, so a section
    object the caller keeps (or a task config it came from) can change later without affecting the trainer.

    Attributes:
        batch_size: Global batch size per optimizer micro-step, split evenly over processes.
        eval_batch_size: Global batch size for evaluation.
        num_workers: DataLoader worker processes.
        optim: Optimizer settings.
        schedule: Learning-rate schedule.
        train: Loop settings (epochs, steps, accumulation, precision, seed, device, logging, progress).
        checkpoint: Checkpoint cadence and retention.
        name: Run name (progress bar label and ``run.json``).
    """

    batch_size: int = 128
    eval_batch_size: int = 512
    num_workers: int = 0
    optim: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    name: str | None = None

    def __post_init__(self) -> None:
        for section in ("optim", "schedule", "train", "checkpoint"):
            object.__setattr__(self, section, copy.deepcopy(getattr(self, section)))

    def to_dict(self) -> dict[str, Any]:
        """Nested plain-dict form (YAML/JSON serialisable)."""
        return dataclasses.asdict(self)


_TRAINER_CHOICES: dict[str, tuple[str, ...]] = {
    "optim.name": ("sgd", "adamw"),
    "schedule.name": ("cosine", "step", "constant"),
    "train.amp": ("none", "bf16", "fp16", "auto"),
}
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d{1,4})$")


def validate_trainer_config(cfg: TrainerConfig) -> TrainerConfig:
    """Check the ranges and choices of a :class:`TrainerConfig`; raises :class:`ConfigError` naming the field.

    The same rules as the classification run config's engine sections: finite numbers within float32, choices,
    positive batch sizes and step counts, ``0 <= momentum < 1``, a valid device string and seed.
    """
    nested = cfg.to_dict()
    for key, value in iter_nonfinite(nested):
        raise ConfigError(f"config: {key} must be a finite number; got {value!r}")
    flat = flatten_config(nested)
    for key, value in flat.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float) and abs(item) > FLOAT32_MAX:
                raise ConfigError(f"config: {key}={item:g} is outside the float32 range (|x| <= {FLOAT32_MAX:.4g})")
            if isinstance(item, int) and not isinstance(item, bool) and abs(item) > INT_LIMIT:
                raise ConfigError(f"config: {key} is too large ({item}); it must fit in a signed 64-bit integer")
    for key, choices in _TRAINER_CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(f"config: {key} must be one of {', '.join(choices)}; got {flat[key]!r}")
    for key in ("batch_size", "eval_batch_size", "train.grad_accum_steps", "checkpoint.keep_last", "train.log_every"):
        if flat[key] < 1:
            raise ConfigError(f"config: {key} must be >= 1; got {flat[key]}")
    for key in ("train.epochs", "train.eval_every", "num_workers"):
        if flat[key] < 0:
            raise ConfigError(f"config: {key} must be >= 0; got {flat[key]}")
    for key in ("train.max_steps", "checkpoint.every_steps"):
        if flat[key] is not None and flat[key] < 1:
            raise ConfigError(f"config: {key} must be >= 1 (or null); got {flat[key]}")
    for key, low, exclusive in (
        ("optim.lr", 0.0, True),
        ("optim.momentum", 0.0, False),
        ("optim.weight_decay", 0.0, False),
        ("optim.clip_grad_norm", 0.0, True),
        ("schedule.warmup_epochs", 0.0, False),
        ("schedule.gamma", 0.0, True),
        ("schedule.min_lr_ratio", 0.0, False),
    ):
        value = flat[key]
        if value is not None and (value < low or (exclusive and value == low)):
            raise ConfigError(f"config: {key} must be {'>' if exclusive else '>='} {low:g}; got {value}")
    if cfg.schedule.min_lr_ratio > 1:
        raise ConfigError(f"config: schedule.min_lr_ratio must be <= 1; got {cfg.schedule.min_lr_ratio}")
    if cfg.optim.momentum >= 1:
        raise ConfigError(f"config: optim.momentum must be < 1; got {cfg.optim.momentum}")
    if abs(cfg.optim.lr * cfg.optim.weight_decay) > FLOAT32_MAX:
        raise ConfigError("config: optim.lr x optim.weight_decay overflows float32")
    if any(m < 0 for m in cfg.schedule.milestones):
        raise ConfigError(f"config: schedule.milestones must be >= 0; got {cfg.schedule.milestones}")
    if cfg.optim.nesterov and (cfg.optim.name != "sgd" or cfg.optim.momentum == 0):
        raise ConfigError("config: optim.nesterov needs optim.name=sgd and optim.momentum > 0")
    if not 0 <= cfg.train.seed < 2**63:
        raise ConfigError(f"config: train.seed must be in [0, 2**63); got {cfg.train.seed}")
    if not _DEVICE_RE.match(cfg.train.device):
        raise ConfigError(f"config: train.device must be auto, cpu, cuda or cuda:N; got {cfg.train.device!r}")
    if cfg.train.epochs == 0 and cfg.train.max_steps is None:
        raise ConfigError("config: train.epochs is 0 and train.max_steps is unset; nothing would be trained")
    return cfg


# ---------------------------------------------------------------------- generic config machinery
def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the dataclass ``cls`` (nested dataclass fields expanded)."""
    keys = []
    for name, tp in typing.get_type_hints(cls).items():
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            keys.extend(all_keys(tp, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def coerce_value(key: str, value: Any, tp: Any) -> Any:
    """Check and convert ``value`` to the annotated type ``tp`` (supports Optional, list, dict and scalars).

    Raises:
        ConfigError: Naming ``key`` and the expected type.
    """
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
                return coerce_value(key, value, arg)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"config: {key} got an invalid value {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config: {key} must be a list; got {value!r}")
        return [coerce_value(key, v, item_tp) for v in value]
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


def unknown_key_error(key: str, root: type, command: str = "pickwise train") -> ConfigError:
    """The one-line error for a key that ``root`` does not have, with close matches."""
    hint = close_matches_hint(key, all_keys(root))
    return ConfigError(
        f"config: unknown key '{key}'"
        + (f"; {hint}" if hint else ".")
        + f" Run `{command} --print-config` to see every key."
    )


def apply_dotted_overrides(
    cfg: Any,
    overrides: list[str],
    root: type | None = None,
    *,
    command: str = "pickwise train",
    free_dicts: tuple[str, ...] = ("model.kwargs",),
    text_keys: tuple[str, ...] = (),
    example: str = "optim.lr=0.05",
) -> Any:
    """Apply ``key=value`` overrides (``--set``) to the run config ``cfg`` in order; every task's ``--set`` is this.

    Values are YAML scalars (``1e-3``, ``true``, ``[1, 2]``; an unparsable value stays text). A key below one of
    ``free_dicts`` (``model.kwargs.depth=4``) goes into that dict as it is; any other key must be a field of ``root``
    (unknown keys raise the one-line error with close matches) and is coerced to the field's type.

    Args:
        cfg: The (mutable) dataclass config, changed in place and returned.
        overrides: ``["optim.lr=0.1", ...]``.
        root: The config's dataclass (default ``type(cfg)``).
        command: The CLI command named in errors (``pickwise reid train``).
        free_dicts: Dotted paths of ``dict`` fields that take any key.
        text_keys: Keys whose value is kept as typed when YAML would read a number (``active.budget=5`` means the
            text ``"5"`` to a budget parser, not the integer 5).
        example: A valid override shown when an item has no ``=``.

    Raises:
        ConfigError: An item without ``=``, an unknown key or a value of the wrong type.

    Example:
        >>> from pickwise.tasks.classification import RunConfig
        >>> cfg = apply_dotted_overrides(RunConfig(), ["optim.lr=0.2", "model.kwargs.drop_rate=0.1"])
        >>> cfg.optim.lr, cfg.model.kwargs
        (0.2, {'drop_rate': 0.1})
    """
    root = root or type(cfg)
    keys = set(all_keys(root))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"config: override '{item}' must look like key=value, e.g. {example}")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except (yaml.YAMLError, RecursionError, ValueError):
            value = raw
        if key in text_keys and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = raw.strip()
        free = next((d for d in free_dicts if key.startswith(d + ".")), None)
        if free is not None:
            target = cfg
            for part in free.split("."):
                target = getattr(target, part)
            target[key[len(free) + 1 :]] = value
            continue
        if key not in keys:
            raise unknown_key_error(key, root, command=command)
        parts = key.split(".")
        nested: dict[str, Any] = {}
        cursor = nested
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
        try:
            merge_dict(cfg, nested, root)
        except ConfigError as err:
            if command == "pickwise train":
                raise
            raise ConfigError(str(err).replace("pickwise train", command)) from None
    return cfg


def merge_dict(obj: Any, data: dict[str, Any], root: type | None = None, prefix: str = "") -> None:
    """Set the fields of the (mutable) dataclass ``obj`` from nested mappings, coercing each value to its type."""
    root = root or type(obj)
    hints = typing.get_type_hints(type(obj))
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in hints:
            raise unknown_key_error(key, root)
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"config: {key} must be a mapping of its fields; got {value!r}")
            merge_dict(getattr(obj, name), value, root, f"{key}.")
        else:
            setattr(obj, name, coerce_value(key, value, tp))


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
        deep_update(merged, load_yaml_with_bases(path.parent / base, (*_seen, resolved)))
    deep_update(merged, data)
    return merged


def deep_update(target: dict[str, Any], update: dict[str, Any]) -> None:
    """Recursively merge ``update`` into ``target`` (mappings merged, everything else replaced)."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_update(target[key], value)
        else:
            target[key] = value


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


def flatten_config(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested config dict (``kwargs`` / ``norm_kwargs`` mappings are kept as leaves)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in ("kwargs", "norm_kwargs"):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def diff_configs(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Flattened keys whose values differ between two config dicts: ``{key: (old, new)}``."""
    a, b = flatten_config(old), flatten_config(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
