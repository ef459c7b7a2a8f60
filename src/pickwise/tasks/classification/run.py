"""Build a classification run from a :class:`RunConfig`: data, model, device, output folder, trainer.

Before any data are loaded, :func:`preflight` checks everything that can be checked from the config alone: the
device, the model, norm and dataset names (with close matches), ``model.kwargs``/``model.norm_kwargs`` against the
constructors' signatures, and an estimate of the memory the data and one training step need. Then the run folder
is locked and checked: a folder that already holds a run is refused unless the run is resumed (``--resume``) or
replaced (``--overwrite``, which deletes the old run's outputs first).
"""

from __future__ import annotations

import functools
import inspect
import os
import platform
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ... import exceptions as _exceptions
from ..._registry import close_matches_hint
from ...engine.checkpoint import save_weights
from ...engine.rundir import RunLock, clear_run_dir, existing_run_artifacts
from ...engine.trainer import Trainer, TrainResult
from ...exceptions import CheckpointError, ConfigError, PickwiseUserError, RunFolderError
from ...utils.distributed import cleanup_distributed, get_world_size, init_distributed, is_main_process
from ...utils.io import atomic_write_json
from ...utils.seed import seed_everything
from ...utils.validation import iter_nonfinite
from .config import ModelConfig, RunConfig, check_registered_names, check_run_name, validate_config
from .extras import training_extras
from .params import norm_logit_group
from .task import ClassificationTask

__all__ = [
    "MemoryEstimate",
    "check_run_dir",
    "default_run_name",
    "estimate_memory",
    "norm_layer_from_config",
    "preflight",
    "resolve_device",
    "run_classification",
]


def resolve_device(name: str) -> torch.device:
    """``auto`` → the local CUDA device if any (``cuda:LOCAL_RANK`` under torchrun), else CPU.

    Raises:
        ConfigError: For anything but ``auto``, ``cpu``, ``cuda``, ``cuda:N``, for CUDA on a build or machine without
            it, and for a CUDA index the machine does not have.
    """
    if not isinstance(name, str) or not (name in ("auto", "cpu", "cuda") or name.startswith("cuda:")):
        raise ConfigError(f"config: train.device must be auto, cpu, cuda or cuda:N; got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"config: train.device={name} but CUDA is not available; use train.device=cpu")
        if name == "cuda":
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"config: train.device must be auto, cpu, cuda or cuda:N; got {name!r}") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"config: train.device={name} but this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def default_run_name(cfg: RunConfig) -> str:
    """``<model>-<norm>-<data>-s<seed>`` with path separators removed."""
    data = Path(cfg.data.name).name if os.sep in cfg.data.name else cfg.data.name
    return f"{cfg.model.name}-{cfg.model.norm}-{data}-s{cfg.train.seed}".replace("/", "_").replace(":", "_")


def norm_layer_from_config(model_cfg: ModelConfig) -> Any:
    """The ``norm_layer`` argument for ``create_model``: the name, or a partial when ``norm_kwargs`` are set."""
    if not model_cfg.norm_kwargs:
        return model_cfg.norm
    from ...nn.norm import get_norm_layer

    layer = get_norm_layer(model_cfg.norm)
    if layer is None:  # "none"/"" resolve to no layer; kwargs for it make no sense
        raise ConfigError(f"config: model.norm_kwargs are set but model.norm={model_cfg.norm!r} names no layer")
    return functools.partial(layer, **model_cfg.norm_kwargs)


def _build_data(cfg: RunConfig) -> tuple[Any, Any, Any]:
    from ...data import create_dataset, get_dataset_info

    size = (cfg.data.image_size, cfg.data.image_size) if cfg.data.image_size else None
    train = create_dataset(
        cfg.data.name, "train", subset=cfg.data.train_subset, root=cfg.data.root, image_size=size, seed=cfg.train.seed
    )
    test = create_dataset(
        cfg.data.name, "test", subset=cfg.data.test_subset, root=cfg.data.root, image_size=size, seed=cfg.train.seed
    )
    info = getattr(train, "info", None) or get_dataset_info(cfg.data.name, root=cfg.data.root)
    return train, test, info


def _build_model(cfg: RunConfig, info: Any) -> tuple[torch.nn.Module, ClassificationTask]:
    from ...models import create_model

    in_chans = 3 if cfg.model.pretrained else info.in_chans
    model = create_model(
        cfg.model.name,
        pretrained=cfg.model.pretrained,
        num_classes=info.num_classes,
        in_chans=None if cfg.model.pretrained else in_chans,
        norm_layer=norm_layer_from_config(cfg.model),
        **cfg.model.kwargs,
    )
    task = ClassificationTask(augment=cfg.data.augment, repeat_channels=3 if in_chans == 3 else None)
    return model, task


_ENGINE_MODEL_ARGS = {
    "pretrained": "model.pretrained",
    "num_classes": "the dataset",
    "in_chans": "the dataset",
    "norm_layer": "model.norm",
}


def _accepted_kwargs(fn: Callable[..., Any]) -> tuple[set[str], bool]:
    """Keyword names ``fn`` accepts, following a ``**kwargs`` entry point to the class in its return annotation.

    Returns:
        ``(names, open_ended)``; ``open_ended`` is True when any name is accepted (a ``**kwargs`` we cannot follow).
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return set(), True
    names = {
        p.name
        for p in sig.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return names, False
    try:
        target = typing.get_type_hints(fn).get("return")
    except Exception:  # unresolvable annotations: accept anything, the constructor will tell
        return names, True
    init = getattr(target, "__init__", None) if isinstance(target, type) else None
    if init is None or init is object.__init__:
        return names, True
    inner, open_ended = _accepted_kwargs(init)
    return names | (inner - {"self"}), open_ended


def _check_kwargs(key: str, kwargs: dict[str, Any], fn: Callable[..., Any], what: str) -> None:
    accepted, open_ended = _accepted_kwargs(fn)
    for name in kwargs:
        if key == "model.kwargs" and name in _ENGINE_MODEL_ARGS:
            raise ConfigError(f"config: {key}.{name} is set by the engine (from {_ENGINE_MODEL_ARGS[name]}); remove it")
        if not open_ended and name not in accepted:
            choices = sorted(accepted - set(_ENGINE_MODEL_ARGS) - {"self"})
            hint = close_matches_hint(name, choices)
            raise ConfigError(
                f"config: {key}.{name} is not an option of {what}"
                + (f"; {hint}" if hint else ".")
                + (f" Options: {', '.join(choices)}." if choices else " It takes no options.")
            )


@dataclass
class MemoryEstimate:
    """Bytes a run needs, estimated before anything is loaded or built.

    Attributes:
        data_bytes: Both splits held in memory as uint8 (after any resize), plus the float32 resize buffer.
        step_bytes: One optimizer micro-step: parameters, gradients and optimizer state, the input batch and the
            activations kept for the backward pass (sum of the outputs of every leaf module, measured with a forward
            pass on the ``meta`` device, which allocates nothing). None if that forward pass could not run.
        available_host: Bytes of host memory available now (``MemAvailable``), None if unknown.
        available_device: Free bytes on the CUDA device (None on CPU).
    """

    data_bytes: int
    step_bytes: int | None
    available_host: int | None
    available_device: int | None

    def describe(self) -> str:
        """``data 1.2 GB + one step 0.3 GB (available 60 GB)``."""
        step = "unknown" if self.step_bytes is None else _gb(self.step_bytes)
        avail = "unknown" if self.available_host is None else _gb(self.available_host)
        text = f"data {_gb(self.data_bytes)} + one step {step} (host memory available: {avail}"
        if self.available_device is not None:
            text += f", device memory free: {_gb(self.available_device)}"
        return text + ")"


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g} GB"


def _host_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _data_geometry(cfg: RunConfig) -> tuple[Any, int, int, tuple[int, int]]:
    """``(info or None, num_train, num_test, stored image size)`` without loading images."""
    from ...data import get_dataset_info
    from ...data._registry import DATASETS

    name = cfg.data.name
    size = (cfg.data.image_size, cfg.data.image_size) if cfg.data.image_size else None
    if name in DATASETS:
        info = get_dataset_info(name, root=cfg.data.root)
        height, width = info.image_size[-2:]
        return info, info.num_train, info.num_test, size or (int(height), int(width))
    # an image folder (or an unknown name, for which get_dataset_info raises UnknownNameError/DataNotFoundError)
    folder = Path(name[len("folder:") :] if name.startswith("folder:") else name).expanduser()
    if name.lower() in ("folder", "image-folder", "imagefolder") and cfg.data.root:
        folder = Path(cfg.data.root).expanduser()
    if not folder.is_dir():
        get_dataset_info(name, root=cfg.data.root)  # raises the registry's or the data module's one-line error
        raise ConfigError(f"config: data.name={name!r} is neither a registered dataset nor a folder")
    count = sum(1 for p in folder.rglob("*") if p.is_file())
    return None, count, 0, size or (0, 0)


def estimate_memory(
    cfg: RunConfig,
    device: torch.device,
    model_fn: Callable[[], torch.nn.Module] | None,
    in_chans: int,
    size: tuple[int, int],
    num_train: int,
    num_test: int,
) -> MemoryEstimate:
    """Estimate the memory of the data and of one training step (see :class:`MemoryEstimate`)."""
    pixels = in_chans * size[0] * size[1]
    data_bytes = (num_train + num_test) * pixels
    if cfg.data.image_size:
        data_bytes += 2 * 4 * min(4096, max(num_train, num_test)) * pixels  # float32 resize block and its output
    step_bytes = None
    if model_fn is not None and pixels > 0:
        local_batch = max(1, cfg.data.batch_size // max(1, get_world_size()))
        try:
            with torch.device("meta"):
                model = model_fn()
                activations = [0]

                def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
                    for t in output if isinstance(output, (tuple, list)) else (output,):
                        if isinstance(t, torch.Tensor):
                            activations[0] += t.numel() * t.element_size()

                leaves = [m for m in model.modules() if not list(m.children())]
                handles = [m.register_forward_hook(hook) for m in leaves]
                try:
                    model.train()
                    model(torch.empty(local_batch, in_chans, *size))
                finally:
                    for h in handles:
                        h.remove()
            params = sum(p.numel() * 4 for p in model.parameters())
            states = 2 if cfg.optim.name == "adamw" else 1
            step_bytes = params * (2 + states) + local_batch * pixels * 4 + activations[0]
        except Exception:  # a model the meta device cannot run: fall back to the data estimate alone
            step_bytes = None
    available_device = None
    if device.type == "cuda":
        try:
            available_device = int(torch.cuda.mem_get_info(device)[0])
        except RuntimeError:
            available_device = None
    return MemoryEstimate(int(data_bytes), step_bytes, _host_available(), available_device)


def preflight(cfg: RunConfig, device: torch.device | None = None) -> MemoryEstimate:
    """Check a config before any data are loaded; returns the memory estimate.

    Checks the device, the model, norm and dataset names, ``model.kwargs`` and ``model.norm_kwargs`` against the
    constructors' signatures (building the model on the ``meta`` device, which allocates nothing), and that the
    data and one training step fit in the available memory.

    Raises:
        ConfigError, UnknownNameError, DataNotFoundError: With one line naming the problem.
    """
    from ...models import create_model
    from ...models._registry import model_entrypoint
    from ...nn.norm import get_norm_layer

    device = device if device is not None else resolve_device(cfg.train.device)
    entry = model_entrypoint(cfg.model.name)  # UnknownNameError with close matches
    norm_cls = get_norm_layer(cfg.model.norm) if cfg.model.norm else None
    _check_kwargs("model.kwargs", cfg.model.kwargs, entry, f"model {cfg.model.name}")
    if cfg.model.norm_kwargs:
        if norm_cls is None:
            raise ConfigError("config: model.norm_kwargs is set but model.norm is empty (no normalization)")
        _check_kwargs("model.norm_kwargs", cfg.model.norm_kwargs, norm_cls, f"norm {cfg.model.norm}")
    info, num_train, num_test, size = _data_geometry(cfg)
    in_chans = 3 if cfg.model.pretrained else (info.in_chans if info is not None else 3)
    num_classes = info.num_classes if info is not None else 2

    def build() -> torch.nn.Module:
        return create_model(
            cfg.model.name,
            pretrained=False,
            num_classes=num_classes,
            in_chans=in_chans,
            norm_layer=norm_layer_from_config(cfg.model),
            **cfg.model.kwargs,
        )

    if cfg.model.kwargs or cfg.model.norm_kwargs:  # option values are checked by building on the meta device
        try:
            with torch.device("meta"):
                build()
        except PickwiseUserError:
            raise
        except (TypeError, ValueError, AssertionError) as err:
            keys = ", ".join(f"{k}={v!r}" for k, v in {**cfg.model.kwargs, **cfg.model.norm_kwargs}.items())
            raise ConfigError(
                f"config: model {cfg.model.name} cannot be built with {keys} "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            ) from None
        except Exception:  # the meta device cannot run this constructor; the real build will report
            pass
    estimate = estimate_memory(cfg, device, build, in_chans, size, num_train, num_test)
    host_need = estimate.data_bytes + ((estimate.step_bytes or 0) if device.type == "cpu" else 0)
    if estimate.available_host is not None and host_need > estimate.available_host:
        raise ConfigError(
            f"config: this run needs about {_gb(host_need)} of memory ({estimate.describe()}); lower "
            "data.image_size, data.batch_size or data.train_subset"
        )
    if estimate.available_device is not None and (estimate.step_bytes or 0) > estimate.available_device:
        raise ConfigError(
            f"config: one training step needs about {_gb(estimate.step_bytes or 0)} on {device} "
            f"({estimate.describe()}); lower data.batch_size or data.image_size"
        )
    return estimate


def check_run_dir(run_dir: Path, resume: str | Path | bool | None, overwrite: bool) -> list[str]:
    """Read-only check of a run folder for a new, resumed or overwriting run; returns the existing outputs.

    Raises:
        CheckpointError: ``resume=True`` but the folder has no checkpoints.
        RunFolderError: A new run (no ``resume``, no ``overwrite``) into a folder that already holds a run.
    """
    if resume and overwrite:
        raise ConfigError("train: --resume continues a run and --overwrite deletes it; choose one")
    if resume is True and not (run_dir / "checkpoints").is_dir():
        raise CheckpointError(
            f"resume: no checkpoints in {run_dir / 'checkpoints'}; check --name/--output-dir or start without --resume"
        )
    found = existing_run_artifacts(run_dir)
    if found and not resume and not overwrite:
        raise RunFolderError(
            f"run folder {run_dir} already holds a run ({', '.join(found)}); continue it with --resume, replace it "
            "with --overwrite, or choose another --name"
        )
    return found


def _main_then_share(fn: Callable[[], None]) -> None:
    """Run ``fn`` on rank 0 and raise its user error on every rank (so no rank waits forever in a collective)."""
    error: PickwiseUserError | None = None
    if is_main_process():
        try:
            fn()
        except PickwiseUserError as err:
            error = err
    if get_world_size() > 1:
        import torch.distributed as dist

        box: list[Any] = [None if error is None else (type(error).__name__, str(error))]
        dist.broadcast_object_list(box, src=0)
        if box[0] is not None and error is None:
            cls = getattr(_exceptions, box[0][0], PickwiseUserError)
            raise cls(f"{box[0][1]} (reported by rank 0)")
    if error is not None:
        raise error


def _null_reasons(payload: dict[str, Any]) -> dict[str, str]:
    """Why each non-finite number of ``payload`` is written as null."""
    reasons = {}
    for key, value in iter_nonfinite(payload):
        if key == "images_per_second":
            reasons[key] = "no optimizer step ran in this process (e.g. resuming a finished run)"
        elif key.startswith(("metrics.", "history.")):
            reasons[key] = f"evaluation gave {value} (the float32 loss overflowed; the weights are finite)"
        else:
            reasons[key] = f"the value was {value}, which JSON cannot hold"
    return reasons


def run_classification(
    cfg: RunConfig, *, resume: str | Path | bool | None = None, overwrite: bool = False
) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data`` and evaluate it; the whole ``pickwise train`` job.

    Writes ``<output_dir>/<name>/``: ``run.json`` (run id), ``config.yaml`` (resolved), ``train_log.csv``,
    ``eval_log.csv``, ``tensorboard/``, ``checkpoints/ckpt-*``, ``model.safetensors`` (final weights) and
    ``results.json``. Under ``torchrun`` every process runs this function; only rank 0 locks the folder and writes.

    Args:
        cfg: The resolved configuration.
        resume: True to continue from the newest valid checkpoint of the run, or a checkpoint folder.
        overwrite: Delete the outputs of a previous run in the folder first. Without it (and without ``resume``)
            a folder that already holds a run is refused.

    Returns:
        The final metrics and timings.

    Raises:
        RunFolderError: The folder holds another run (neither ``resume`` nor ``overwrite``).
        RunLockedError: Another process is training into the folder.
        TrainingDivergedError: The loss or the weights became non-finite (nothing non-finite is written).
        ConfigError, UnknownNameError, CheckpointError, DataNotFoundError: Bad settings, names or checkpoints.
    """
    validate_config(cfg)
    check_registered_names(cfg)  # a typo in model/norm/dataset fails before the device or the data are touched
    device = resolve_device(cfg.train.device)
    init_distributed(device)
    lock: RunLock | None = None
    try:
        if cfg.name is None:
            cfg.name = default_run_name(cfg)
            check_run_name(cfg.name, cfg.output_dir)
        run_dir = Path(cfg.output_dir) / cfg.name
        preflight(cfg, device)  # names, options and memory, before any data are loaded
        lock = RunLock(run_dir, enabled=is_main_process())

        def prepare() -> None:
            if run_dir.is_dir():  # report a busy folder before anything about its contents
                lock.acquire()
            else:  # nothing to lock yet: a refused new run must not leave an empty folder behind
                check_run_dir(run_dir, resume, overwrite)
                lock.acquire()
            if check_run_dir(run_dir, resume, overwrite) and overwrite:  # (re-)checked under the lock
                clear_run_dir(run_dir)

        _main_then_share(prepare)
        torch.use_deterministic_algorithms(cfg.train.deterministic)
        seed_everything(cfg.train.seed)
        train_set, test_set, info = _build_data(cfg)
        model, task = _build_model(cfg, info)  # identical initial weights on every rank (same seed)
        hooks, regularizer = training_extras(cfg, model)
        groups = [norm_logit_group(cfg.optim.norm_logit_lr_mult, cfg.optim.norm_logit_clip)]
        trainer = Trainer(
            cfg,
            model,
            train_set,
            test_set,
            task,
            run_dir,
            device,
            hooks=hooks,
            regularizer=regularizer,
            param_groups=groups,
        )
        result = trainer.fit(resume=resume)  # writes run.json and config.yaml, then trains
        if is_main_process():
            save_weights(trainer.model, run_dir / "model.safetensors")
            payload = {
                "name": cfg.name,
                "run_id": trainer.run_id,
                "model": cfg.model.name,
                "norm": cfg.model.norm,
                "data": cfg.data.name,
                "num_classes": info.num_classes,
                "in_chans": 3 if cfg.model.pretrained else info.in_chans,
                "batch_size": cfg.data.batch_size,
                "metrics": result.metrics,
                "steps": result.steps,
                "epochs": result.epochs,
                "world_size": get_world_size(),
                "train_seconds": result.train_seconds,
                "images_per_second": result.images_per_second,
                "history": result.history,
                "device": str(device),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "platform": platform.platform(),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            reasons = _null_reasons(payload)
            if reasons:
                payload["null_reasons"] = reasons
            atomic_write_json(run_dir / "results.json", payload)
        return result
    finally:
        if lock is not None:
            lock.release()
        cleanup_distributed()
