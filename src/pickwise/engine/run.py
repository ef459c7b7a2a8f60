"""Build a classification run from a :class:`RunConfig`: data, model, device, output folder, trainer."""

from __future__ import annotations

import functools
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from ..exceptions import CheckpointError, ConfigError
from ..utils.distributed import cleanup_distributed, get_world_size, init_distributed, is_main_process
from ..utils.io import atomic_write_json, atomic_write_text
from ..utils.seed import seed_everything
from .config import ModelConfig, RunConfig, config_to_dict
from .hooks import training_extras
from .tasks import ClassificationTask
from .trainer import Trainer, TrainResult

__all__ = ["default_run_name", "norm_layer_from_config", "resolve_device", "run_classification"]


def resolve_device(name: str) -> torch.device:
    """``auto`` → the local CUDA device if any (``cuda:LOCAL_RANK`` under torchrun), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"config: train.device={name} but CUDA is not available; use train.device=cpu")
        if name == "cuda":
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"config: train.device must be auto, cpu, cuda or cuda:N; got {name!r}") from None


def default_run_name(cfg: RunConfig) -> str:
    """``<model>-<norm>-<data>-s<seed>`` with path separators removed."""
    data = Path(cfg.data.name).name if os.sep in cfg.data.name else cfg.data.name
    return f"{cfg.model.name}-{cfg.model.norm}-{data}-s{cfg.train.seed}".replace("/", "_").replace(":", "_")


def norm_layer_from_config(model_cfg: ModelConfig) -> Any:
    """The ``norm_layer`` argument for ``create_model``: the name, or a partial when ``norm_kwargs`` are set."""
    if not model_cfg.norm_kwargs:
        return model_cfg.norm
    from ..nn.norm import get_norm_layer

    return functools.partial(get_norm_layer(model_cfg.norm), **model_cfg.norm_kwargs)


def _build_data(cfg: RunConfig) -> tuple[Any, Any, Any]:
    from ..data import create_dataset, get_dataset_info

    size = (cfg.data.image_size, cfg.data.image_size) if cfg.data.image_size else None
    kwargs = {"root": cfg.data.root, "image_size": size, "seed": cfg.train.seed}
    train = create_dataset(cfg.data.name, "train", subset=cfg.data.train_subset, **kwargs)
    test = create_dataset(cfg.data.name, "test", subset=cfg.data.test_subset, **kwargs)
    info = getattr(train, "info", None) or get_dataset_info(cfg.data.name, root=cfg.data.root)
    return train, test, info


def _build_model(cfg: RunConfig, info: Any) -> tuple[torch.nn.Module, ClassificationTask]:
    from ..models import create_model

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


def run_classification(cfg: RunConfig, *, resume: str | Path | bool | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data`` and evaluate it; the whole ``pickwise train`` job.

    Writes ``<output_dir>/<name>/``: ``config.yaml`` (resolved), ``train_log.csv``, ``eval_log.csv``,
    ``tensorboard/``, ``checkpoints/ckpt-*``, ``model.safetensors`` (final weights) and ``results.json``.
    Under ``torchrun`` every process runs this function; only rank 0 writes.

    Args:
        cfg: The resolved configuration.
        resume: True to continue from the newest valid checkpoint of the run, or a checkpoint folder.

    Returns:
        The final metrics and timings.
    """
    device = resolve_device(cfg.train.device)
    init_distributed(device)
    try:
        if cfg.name is None:
            cfg.name = default_run_name(cfg)
        run_dir = Path(cfg.output_dir) / cfg.name
        if resume is True and not (run_dir / "checkpoints").is_dir():
            raise CheckpointError(
                f"resume: no checkpoints in {run_dir / 'checkpoints'}; check --name/--output-dir "
                "or start without --resume"
            )
        torch.use_deterministic_algorithms(cfg.train.deterministic)
        seed_everything(cfg.train.seed)
        train_set, test_set, info = _build_data(cfg)
        model, task = _build_model(cfg, info)  # identical initial weights on every rank (same seed)
        hooks, regularizer = training_extras(cfg, model)
        trainer = Trainer(cfg, model, train_set, test_set, task, run_dir, device, hooks=hooks, regularizer=regularizer)
        if is_main_process():
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        result = trainer.fit(resume=resume)
        if is_main_process():
            from safetensors.torch import save_file

            state = {k: v.detach().cpu().contiguous() for k, v in trainer.model.state_dict().items()}
            tmp = run_dir / ".model.safetensors.tmp"
            save_file(state, str(tmp))
            os.replace(tmp, run_dir / "model.safetensors")
            atomic_write_json(
                run_dir / "results.json",
                {
                    "name": cfg.name,
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
                },
            )
        return result
    finally:
        cleanup_distributed()
