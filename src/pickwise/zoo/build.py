"""Training and storing the zoo (resumable: built entries are kept, interrupted ones resume)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..utils.io import atomic_write_json, sha256_file
from ..utils.seed import seed_everything
from .spec import DEFAULT_ZOO, ZooEntry
from .store import list_zoo

__all__ = ["build_zoo", "default_zoo_dir"]


def default_zoo_dir() -> Path:
    """``$PICKWISE_ZOO_DIR``, else ``~/.cache/pickwise/zoo``."""
    return Path(os.environ.get("PICKWISE_ZOO_DIR", Path.home() / ".cache" / "pickwise" / "zoo"))


def _train_entry(entry: ZooEntry, root: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    from ..data import get_dataset_info
    from ..engine.config import resolve_config
    from ..engine.run import run_classification

    test_images = min(2000, get_dataset_info(entry.data).num_test)
    cfg = resolve_config(
        overrides=[
            f"model.name={entry.model}",
            f"model.norm={entry.norm}",
            f"data.name={entry.data}",
            f"data.batch_size={entry.batch_size}",
            f"train.epochs={entry.epochs}",
            f"optim.lr={entry.lr}",
            f"train.seed={entry.seed}",
            "schedule.warmup_epochs=0.1",
            "train.tensorboard=false",
            f"output_dir={root / '_runs'}",
            f"name={entry.name}",
            *([f"data.train_subset={entry.train_subset}"] if entry.train_subset else []),
        ]
    )
    cfg.model.kwargs = dict(entry.kwargs)
    run_dir = Path(cfg.output_dir) / entry.name
    resume = True if any((run_dir / "checkpoints").glob("ckpt-*")) else None
    result = run_classification(cfg, resume=resume)
    from ..analysis.runs import load_run

    model, _, results = load_run(run_dir)
    return model, {
        "source_test_acc": result.metrics.get("acc"),
        "source_test_images": test_images,
        "num_classes": results["num_classes"],
        "in_chans": results["in_chans"],
        "train_seconds": result.train_seconds,
    }


def _static_entry(entry: ZooEntry) -> tuple[torch.nn.Module, dict[str, Any]]:
    from ..models import create_model

    seed_everything(entry.seed)
    if entry.pretrained:
        model = create_model(entry.model, pretrained=True, norm_layer=entry.norm, **entry.kwargs)
        return model, {"source_test_acc": None, "num_classes": int(model.num_classes), "in_chans": 3}
    model = create_model(entry.model, num_classes=10, in_chans=1, norm_layer=entry.norm, **entry.kwargs)
    return model, {"source_test_acc": None, "num_classes": 10, "in_chans": 1}


def build_zoo(
    root: str | os.PathLike[str] | None = None, entries: Sequence[ZooEntry] = DEFAULT_ZOO, *, force: bool = False
) -> list[dict[str, Any]]:
    """Build (or complete) the zoo under ``root``; returns the records of all requested entries.

    Entries already built are kept unless ``force``; a run interrupted mid-training resumes from its checkpoint.
    Pretrained entries whose weights package is missing are skipped with a note.
    """
    from ..exceptions import PickwiseUserError

    root = Path(root) if root is not None else default_zoo_dir()
    root.mkdir(parents=True, exist_ok=True)
    built = {e["name"]: e for e in list_zoo(root)}
    records = []
    for entry in entries:
        if entry.name in built and not force:
            records.append(built[entry.name])
            continue
        start = time.perf_counter()
        try:
            model, info = _static_entry(entry) if entry.pretrained or entry.untrained else _train_entry(entry, root)
        except PickwiseUserError as err:
            print(f"zoo: skipping {entry.name}: {err}", file=sys.stderr)
            continue
        folder = root / entry.name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        record: dict[str, Any] = {
            "name": entry.name,
            "model": entry.model,
            "norm": entry.norm,
            "kwargs": dict(entry.kwargs),
            "source_data": entry.data or ("imagenet" if entry.pretrained else None),
            "epochs": entry.epochs,
            "train_subset": entry.train_subset,
            "pretrained": entry.pretrained,
            "untrained": entry.untrained,
            "num_features": int(model.num_features),
            "build_seconds": time.perf_counter() - start,
            **info,
        }
        if not entry.pretrained:  # shipped weights are not copied: the model registry verifies them itself
            tmp = folder / ".model.safetensors.tmp"
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
            os.replace(tmp, folder / "model.safetensors")
            record["weights"] = "model.safetensors"
            record["sha256"] = sha256_file(folder / "model.safetensors")
        atomic_write_json(folder / "entry.json", record)
        records.append(record)
    return records
