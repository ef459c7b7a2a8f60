"""Load trained runs (``<run>/config.yaml`` + ``model.safetensors``) back into models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..engine.config import RunConfig, config_from_dict
from ..engine.run import norm_layer_from_config
from ..exceptions import CheckpointError, DataNotFoundError

__all__ = ["find_runs", "load_run"]


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run folders among ``paths``.

    Each path is a run (it holds ``config.yaml`` and ``model.safetensors``) or a parent searched recursively.
    """
    runs: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataNotFoundError(f"analyze: {path} does not exist")
        if (path / "config.yaml").is_file() and (path / "model.safetensors").is_file():
            runs.append(path)
            continue
        runs.extend(sorted(p.parent for p in path.rglob("model.safetensors") if (p.parent / "config.yaml").is_file()))
    if not runs:
        raise DataNotFoundError(
            f"analyze: no finished runs (config.yaml + model.safetensors) under {', '.join(map(str, paths))}"
        )
    return runs


def load_run(run_dir: Path) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    """Rebuild a run's model with its final weights; returns ``(model, config, results)``."""
    from ..models import create_model

    cfg = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()) or {})
    results_file = run_dir / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    if "num_classes" in results:
        num_classes, in_chans = results["num_classes"], results["in_chans"]
    else:
        from ..data import get_dataset_info

        info = get_dataset_info(cfg.data.name, root=cfg.data.root)
        num_classes, in_chans = info.num_classes, info.in_chans
    model = create_model(
        cfg.model.name,
        num_classes=num_classes,
        in_chans=in_chans,
        norm_layer=norm_layer_from_config(cfg.model),
        **cfg.model.kwargs,
    )
    try:
        state = load_file(str(run_dir / "model.safetensors"))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise CheckpointError(
            f"analyze: cannot load {run_dir / 'model.safetensors'} ({str(err).splitlines()[0]})"
        ) from None
    return model.eval(), cfg, results
