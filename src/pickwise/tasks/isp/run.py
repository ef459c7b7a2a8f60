"""Build and run a learned-ISP training job from an :class:`~pickwise.tasks.isp.config.ISPRunConfig`.

A run folder ``<output_dir>/<name>/`` holds ``config.yaml`` (resolved), one engine run per training phase in
``phase-full/`` or, for PyNET's coarse-to-fine schedule, ``phase-level5/`` ... ``phase-level0/`` (each with its own
checkpoints, logs and ``results.json``; phase ℓ starts from phase ℓ+1's final weights), then ``model.safetensors``
(final weights) and ``results.json`` (metrics of the final phase, per-phase history, parameters, MACs, timings).

Every phase is resumable (``resume=True`` continues the unfinished phase from its newest checkpoint and skips the
finished ones) and every file is written atomically. A model without trainable parameters (``isp_classical``) is only
evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from ...engine.checkpoint import save_weights
from ...exceptions import ConfigError, DataNotFoundError
from ...utils.io import atomic_write_json, atomic_write_text
from ...utils.seed import seed_everything
from .config import ISPRunConfig, validate_config
from .losses import ISPLoss
from .task import ISPTask

__all__ = ["build_isp_datasets", "build_isp_model", "default_run_name", "evaluate_isp", "make_task", "run_isp"]

PHASE_DONE = "results.json"


def default_run_name(cfg: ISPRunConfig) -> str:
    """``<model>-<data>-s<seed>`` with path separators removed."""
    data = Path(cfg.data.name).name if os.sep in cfg.data.name else cfg.data.name
    return f"{cfg.model.name}-{data}-s{cfg.train.seed}".replace("/", "_").replace(":", "_")


def dataset_root(cfg: ISPRunConfig) -> Path:
    """The folder in ZRR layout: the generated ``isp-synth`` benchmark or ``data.name`` itself.

    Raises:
        DataNotFoundError: ``data.name`` is neither ``isp-synth`` nor an existing folder.
    """
    if cfg.data.name == "isp-synth":
        from .synth import default_isp_synth_root, make_isp_synth

        return Path(make_isp_synth(cfg.data.root or default_isp_synth_root()))
    root = Path(cfg.data.name).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(
            f"data: {cfg.data.name!r} is neither 'isp-synth' nor a folder in ZRR layout (<root>/train|test/"
            "huawei_raw + canon); see docs/isp_data.md"
        )
    return root


def build_isp_datasets(cfg: ISPRunConfig, splits: tuple[str, ...] = ("train", "test")) -> list[Dataset]:
    """The requested splits as :class:`~pickwise.tasks.isp.raw.ZRRDataset` (first ``*_subset`` pairs if set)."""
    from .raw import ZRRDataset

    root = dataset_root(cfg)
    out: list[Dataset] = []
    for split in splits:
        ds: Dataset = ZRRDataset(root, split, convention=cfg.data.convention)
        limit = cfg.data.train_subset if split == "train" else cfg.data.test_subset
        if limit is not None and limit < len(ds):  # type: ignore[arg-type]
            ds = Subset(ds, range(limit))
        out.append(ds)
    return out


def build_isp_model(cfg: ISPRunConfig) -> torch.nn.Module:
    """``create_model(model.name, norm_layer=model.norm, **model.kwargs)`` (ISP models registered first)."""
    import pickwise.models.isp  # noqa: F401  (registers the ISP models until models/__init__ imports it)

    from ...models import create_model

    return create_model(cfg.model.name, norm_layer=cfg.model.norm, **cfg.model.kwargs)


def make_task(cfg: ISPRunConfig, level: int | None = None) -> ISPTask:
    """The :class:`ISPTask` of ``cfg`` (at a PyNET ``level``)."""
    loss = ISPLoss(
        cfg.loss.weights(),
        charbonnier_eps=cfg.loss.charbonnier_eps,
        vgg_weights=cfg.loss.vgg_weights,
        vgg_layer=cfg.loss.vgg_layer,
    )
    return ISPTask(
        loss,
        crop=cfg.data.crop,
        augment=cfg.data.augment,
        level=level,
        side_weight=cfg.loss.side_weight,
        clamp=cfg.eval.clamp,
        quantize=cfg.eval.quantize,
        ensemble=cfg.eval.ensemble,
    )


@torch.no_grad()
def evaluate_isp(
    model: torch.nn.Module, dataset: Dataset, task: ISPTask, batch_size: int = 4, device: str | torch.device = "cpu"
) -> dict[str, float]:
    """Evaluate ``model`` on ``dataset`` with ``task``'s accumulators (the engine's evaluation, in one process)."""
    from torch.utils.data import DataLoader

    device = torch.device(device)
    model = model.to(device).eval()
    accs = task.make_accumulators()
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        task.evaluation_step(model, batch, device, accs)
    return task.compute(accs)


class _PhaseConfig:
    """What the engine sees for one phase: its :class:`TrainerConfig` and the full ISP config for the records."""

    def __init__(self, cfg: ISPRunConfig, epochs: int, steps: int | None, level: int | None, name: str) -> None:
        self.cfg, self.epochs, self.steps, self.level, self.name = cfg, epochs, steps, level, name

    def trainer_config(self) -> Any:
        return dataclasses.replace(self.cfg.trainer_config(self.epochs, self.steps), name=self.name)

    def to_dict(self) -> dict[str, Any]:
        return {**self.cfg.to_dict(), "phase": {"level": self.level, "epochs": self.epochs, "steps": self.steps}}


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)))


def _check_run_dir(run_dir: Path, resume: bool | None, overwrite: bool) -> None:
    from ...engine.rundir import existing_run_artifacts
    from ...exceptions import CheckpointError, RunFolderError

    if resume and overwrite:
        raise ConfigError("isp train: --resume continues a run and --overwrite deletes it; choose one")
    found = existing_run_artifacts(run_dir) + sorted(p.name for p in run_dir.glob("phase-*"))
    if found and not resume and not overwrite:
        raise RunFolderError(
            f"run folder {run_dir} already holds a run ({', '.join(found)}); continue it with --resume, replace it "
            "with --overwrite, or choose another --name"
        )
    if resume and not found:
        raise CheckpointError(f"resume: {run_dir} holds no run to resume; start without --resume")


def run_isp(
    cfg: ISPRunConfig, *, resume: bool | None = None, overwrite: bool = False, device: str | None = None
) -> dict[str, Any]:
    """Train (phase by phase) and evaluate ``cfg.model`` on ``cfg.data``; returns the ``results.json`` payload.

    Args:
        cfg: The resolved configuration.
        resume: Continue an interrupted run: finished phases are skipped, the unfinished one resumes from its
            newest checkpoint.
        overwrite: Delete a previous run in the folder first.
        device: Overrides ``train.device``.

    Raises:
        RunFolderError: The folder holds another run (neither ``resume`` nor ``overwrite``).
        ConfigError, UnknownNameError, DataNotFoundError, CheckpointError: Bad settings, names, data or checkpoints.
    """
    from ...engine.rundir import RunLock, clear_run_dir
    from ...engine.trainer import Trainer
    from ..classification.run import resolve_device

    validate_config(cfg)
    cfg = dataclasses.replace(cfg)  # the caller's object is not modified
    if cfg.name is None:
        cfg.name = default_run_name(cfg)
    run_dir = Path(cfg.output_dir) / cfg.name
    dev = resolve_device(device or cfg.train.device)
    model = build_isp_model(cfg)  # unknown names and bad options fail before any data are generated or read
    levels: list[int | None] = list(cfg.levels.levels) or [None]
    if cfg.levels.levels and not callable(getattr(model, "forward_levels", None)):
        raise ConfigError(f"config: levels.levels needs a model with level outputs (PyNET); {cfg.model.name} has none")
    train_set, test_set = build_isp_datasets(cfg)
    with RunLock(run_dir):
        _check_run_dir(run_dir, resume, overwrite)
        if overwrite:
            clear_run_dir(run_dir)
            for old in run_dir.glob("phase-*"):
                shutil.rmtree(old)
        import yaml

        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        seed_everything(cfg.train.seed)
        model = build_isp_model(cfg)  # the seeded initialisation
        trainable = any(p.requires_grad for p in model.parameters())
        phases: list[dict[str, Any]] = []
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        if not trainable:
            metrics = evaluate_isp(model, test_set, make_task(cfg), cfg.data.eval_batch_size, dev)
        else:
            epochs = cfg.levels.phase_epochs(cfg.train.epochs)
            steps = cfg.levels.phase_steps(cfg.train.max_steps)
            for level, n_epochs, n_steps in zip(levels, epochs, steps):
                tag = "full" if level is None else f"level{level}"
                phase_dir = run_dir / f"phase-{tag}"
                done = phase_dir / PHASE_DONE
                weights = phase_dir / "model.safetensors"
                if done.is_file() and weights.is_file():
                    _load_weights(model, weights)
                    phases.append(json.loads(done.read_text(encoding="utf-8")))
                    continue
                task = make_task(cfg, level)
                phase_cfg = _PhaseConfig(cfg, n_epochs, n_steps, level, f"{cfg.name}/{tag}")
                trainer = Trainer(phase_cfg, model, train_set, test_set, task, phase_dir, dev)
                has_ckpt = (phase_dir / "checkpoints").is_dir() and any((phase_dir / "checkpoints").iterdir())
                result = trainer.fit(resume=True if (resume and has_ckpt) else None)
                model = trainer.model
                save_weights(model, weights)
                entry = {
                    "level": level,
                    "epochs": result.epochs,
                    "steps": result.steps,
                    "metrics": result.metrics,
                    "train_seconds": result.train_seconds,
                }
                atomic_write_json(done, entry)
                phases.append(entry)
            metrics = phases[-1]["metrics"]
        from ...models.isp import isp_model_stats

        sample = test_set[0]
        stats = isp_model_stats(model, tuple(sample[0].shape[-2:]))
        save_weights(model, run_dir / "model.safetensors")
        payload = {
            "name": cfg.name,
            "model": cfg.model.name,
            "norm": cfg.model.norm,
            "data": cfg.data.name,
            "metrics": metrics,
            "phases": phases,
            "trained": trainable,
            "params": stats["params"],
            "macs_per_image": stats["macs"],
            "eval_packed_size": list(sample[0].shape[-2:]),
            "num_train": len(train_set),  # type: ignore[arg-type]
            "num_test": len(test_set),  # type: ignore[arg-type]
            "seconds": time.perf_counter() - start,
            "device": str(dev),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_json(run_dir / "results.json", payload)
    return payload
