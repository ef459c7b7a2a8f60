"""The ``digits`` dataset: scikit-learn's bundled 8x8 handwritten digits (UCI optdigits test set).

1,797 grayscale 8x8 images in 10 classes. Pixel values 0-16 are mapped to uint8 by ``floor(v * 255 / 16 + 0.5)``
(0 -> 0, 8 -> 128, 16 -> 255). There is no official split: a stratified 80/20 split with the fixed seed
:data:`~pickwise.data._split.SPLIT_SEED` gives 1,438 train and 359 test images (35-37 test images per class).
``source_indices`` are rows of ``sklearn.datasets.load_digits()``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._base import DatasetInfo, import_optional, needs_packages, stratified_split_loader
from ._registry import DATASETS, DatasetSpec

__all__ = ["DIGITS_INFO"]

DIGITS_INFO = DatasetInfo(
    name="digits",
    num_classes=10,
    class_names=tuple(str(i) for i in range(10)),
    in_chans=1,
    image_size=(8, 8),
    # train-split statistics of the uint8-scaled images, checked in tests/data/test_data_builtin.py
    mean=(0.3055,),
    std=(0.3759,),
    license="BSD-3-Clause (scikit-learn); data CC BY 4.0 (UCI Machine Learning Repository)",
    source=(
        "scikit-learn sklearn.datasets.load_digits() (file sklearn/datasets/data/digits.csv.gz): test set of the UCI "
        "'Optical Recognition of Handwritten Digits' dataset, E. Alpaydin and C. Kaynak, 1998, "
        "https://doi.org/10.24432/C50P49"
    ),
    num_train=1438,
    num_test=359,
)


@lru_cache(maxsize=1)
def _load_all() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 images as uint8 ``(N, 1, 8, 8)`` and int64 labels (cached, read-only)."""
    datasets = import_optional("sklearn.datasets", pip_name="scikit-learn", dataset="digits")
    bunch = datasets.load_digits()
    images = np.floor(np.asarray(bunch.images, dtype=np.float64) * 255.0 / 16.0 + 0.5).astype(np.uint8)
    images = images[:, None, :, :]
    targets = np.asarray(bunch.target, dtype=np.int64)
    images.flags.writeable = False
    targets.flags.writeable = False
    return images, targets


_load = stratified_split_loader(_load_all)


DATASETS.add(
    "digits",
    DatasetSpec(
        "digits",
        "scikit-learn 8x8 handwritten digits, 1,797 images, 10 classes",
        lambda root: DIGITS_INFO,
        _load,
        needs_packages("digits", ("sklearn.datasets", "scikit-learn")),
    ),
    aliases=("sklearn-digits",),
)
