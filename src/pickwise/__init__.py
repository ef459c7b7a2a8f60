"""pickwise: learning to normalize, learning to group and model selection for PyTorch.

The most used entry points are re-exported here (imported lazily, so ``import pickwise`` stays light)::

    import pickwise
    model = pickwise.create_model("resnet20", num_classes=10, norm_layer="gn")
    train = pickwise.create_dataset("fashion-mnist", "train")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0.dev0"

_LAZY = {
    "create_model": "pickwise.models",
    "list_models": "pickwise.models",
    "create_norm_layer": "pickwise.nn.norm",
    "get_norm_layer": "pickwise.nn.norm",
    "list_norm_layers": "pickwise.nn.norm",
    "check_dataset_available": "pickwise.data",
    "create_dataset": "pickwise.data",
    "get_dataset_info": "pickwise.data",
    "list_datasets": "pickwise.data",
    "resolve_config": "pickwise.engine.config",
    "run_classification": "pickwise.engine.run",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pickwise' has no attribute {name!r}")
