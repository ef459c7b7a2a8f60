"""The ``textures`` dataset: 32x32 patch classification cut from scikit-image's bundled CC0 texture photos.

Classes: ``brick``, ``grass``, ``gravel`` (``skimage.data.brick()``, ``grass()``, ``gravel()``, each a 512x512
grayscale image released under CC0). Other ``skimage.data`` images were considered and left out: ``moon``, ``page``
and ``text`` are not textures and carry no explicit CC0 statement.

Patches are :data:`PATCH` x :data:`PATCH` with stride :data:`STRIDE` in both directions. Train patches lie entirely
in rows ``[0, 384)`` (the top 3/4) and test patches in rows ``[384, 512)`` (the bottom 1/4), so no test patch shares
a pixel with any training patch: 23 x 31 = 713 train and 7 x 31 = 217 test patches per class, i.e. 2,139 train and
651 test patches. ``source_indices`` number the patches of a split in (class, row, column) order;
:func:`patch_origins` gives each patch's top-left pixel.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..exceptions import DataFormatError
from ._base import DatasetInfo, LoadedSplit, import_optional, needs_packages
from ._registry import DATASETS, DatasetSpec

__all__ = ["PATCH", "STRIDE", "TEST_ROW_START", "TEXTURE_CLASSES", "TEXTURES_INFO", "patch_origins"]

TEXTURE_CLASSES = ("brick", "grass", "gravel")
PATCH = 32
STRIDE = 16
IMAGE_SIDE = 512
TEST_ROW_START = 384
"""First image row of the test region; train patches end at or above it."""

TEXTURES_INFO = DatasetInfo(
    name="textures",
    num_classes=3,
    class_names=TEXTURE_CLASSES,
    in_chans=1,
    image_size=(PATCH, PATCH),
    # train-split statistics, checked in tests/data/test_data_builtin.py
    mean=(0.4656,),
    std=(0.1384,),
    license="CC0-1.0 (images); BSD-3-Clause (scikit-image)",
    source=(
        "scikit-image skimage.data.brick(), grass(), gravel() (files skimage/data/{brick,grass,gravel}.png); "
        "originals: cc0textures.com Bricks25 and Gravel04, DeviantArt linolafett 'Grass-01', all CC0"
    ),
    num_train=3 * 23 * 31,
    num_test=3 * 7 * 31,
)


def patch_origins(split: str) -> np.ndarray:
    """Top-left ``(row, col)`` of every patch of ``split`` within one source image, shape ``(P, 2)``."""
    row_lo, row_hi = (0, TEST_ROW_START) if split == "train" else (TEST_ROW_START, IMAGE_SIDE)
    rows = np.arange(row_lo, row_hi - PATCH + 1, STRIDE)
    cols = np.arange(0, IMAGE_SIDE - PATCH + 1, STRIDE)
    grid = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1)
    return grid.reshape(-1, 2).astype(np.int64)


@lru_cache(maxsize=1)
def _source_images() -> tuple[np.ndarray, ...]:
    """The three 512x512 uint8 texture images (cached, read-only)."""
    data = import_optional("skimage.data", pip_name="scikit-image", dataset="textures")
    images = []
    for name in TEXTURE_CLASSES:
        image = np.asarray(getattr(data, name)())
        if image.dtype != np.uint8 or image.shape != (IMAGE_SIDE, IMAGE_SIDE):
            raise DataFormatError(
                f"textures: skimage.data.{name}() returned {image.dtype} {image.shape}; expected uint8 (512, 512). "
                "Install a scikit-image release that bundles it (`pip install 'scikit-image>=0.22'`)."
            )
        image.flags.writeable = False
        images.append(image)
    return tuple(images)


def _load(split: str, root: Path | None = None) -> LoadedSplit:
    origins = patch_origins(split)
    offsets = np.arange(PATCH)
    rows = origins[:, 0, None, None] + offsets[None, :, None]
    cols = origins[:, 1, None, None] + offsets[None, None, :]
    patches = [image[rows, cols] for image in _source_images()]
    images = np.concatenate(patches)[:, None, :, :]
    targets = np.repeat(np.arange(len(TEXTURE_CLASSES), dtype=np.int64), len(origins))
    return LoadedSplit(np.ascontiguousarray(images), targets, np.arange(targets.size, dtype=np.int64))


DATASETS.add(
    "textures",
    DatasetSpec(
        "textures",
        "32x32 patches of scikit-image's CC0 brick/grass/gravel photos, 3 classes",
        lambda root: TEXTURES_INFO,
        _load,
        needs_packages("textures", ("skimage.data", "scikit-image")),
    ),
    aliases=("skimage-textures",),
)
