"""Reading the zoo folder back: listing entries and loading sha256-checked weights."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from ..exceptions import CheckpointError, DataNotFoundError, WeightsIntegrityError
from ..utils.io import sha256_file

__all__ = ["list_zoo", "load_zoo_model"]


def list_zoo(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The ``entry.json`` records of every built entry under ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    entries = []
    for meta in sorted(root.glob("*/entry.json")):
        try:
            entries.append(json.loads(meta.read_text()))
        except json.JSONDecodeError:
            continue  # a damaged record is rebuilt by build_zoo
    return entries


def load_zoo_model(root: str | os.PathLike[str], name: str) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the zoo entry ``name`` with its weights (sha256-checked); returns ``(model in eval mode, record)``."""
    from ..models import create_model

    folder = Path(root) / name
    meta_file = folder / "entry.json"
    if not meta_file.is_file():
        built = ", ".join(e["name"] for e in list_zoo(root)) or "none"
        raise DataNotFoundError(f"zoo: no entry '{name}' in {root} (built: {built}); run `pickwise zoo build`")
    meta = json.loads(meta_file.read_text())
    model = create_model(
        meta["model"],
        num_classes=meta["num_classes"],
        in_chans=meta["in_chans"],
        norm_layer=meta["norm"],
        pretrained=meta.get("pretrained", False),
        **meta.get("kwargs", {}),
    )
    if meta.get("weights"):
        path = folder / meta["weights"]
        if not path.is_file():
            raise CheckpointError(f"zoo: {path} is missing; rebuild with `pickwise zoo build`")
        if sha256_file(path) != meta["sha256"]:
            raise WeightsIntegrityError(f"zoo: {path} does not match its recorded sha256; rebuild the entry")
        model.load_state_dict(load_file(str(path)))
    return model.eval(), meta
