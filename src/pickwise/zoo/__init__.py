"""A small zoo of real candidate models for model selection, trained here on the embedded datasets.

``build_zoo`` trains project models that differ in source data, depth, width and normalizer (plus an untrained
control and the real ImageNet MobileNetV2) and stores each as ``<root>/<name>/model.safetensors`` with an
``entry.json`` (architecture, source data, accuracy on the source test split, sha256 of the weights).
``load_zoo_model`` rebuilds a stored model and checks its sha256.
"""

from .build import build_zoo, default_zoo_dir
from .spec import DEFAULT_ZOO, QUICK_ZOO, ZooEntry
from .store import list_zoo, load_zoo_model

__all__ = ["DEFAULT_ZOO", "QUICK_ZOO", "ZooEntry", "build_zoo", "default_zoo_dir", "list_zoo", "load_zoo_model"]
