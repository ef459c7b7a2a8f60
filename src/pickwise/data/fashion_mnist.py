"""The ``fashion-mnist`` dataset: the full Fashion-MNIST (Xiao et al., 2017) read from its IDX files.

70,000 grayscale 28x28 images of 10 clothing classes with the official 60,000 train / 10,000 test split.
``source_indices`` are record numbers inside the IDX file of the split.

Where the files are looked for (the first directory holding the requested split's two files wins):

1. ``root`` (or ``root/fashion-mnist``) when given (CLI ``--data-dir``); nothing else is searched then;
2. ``$PICKWISE_FASHION_MNIST_DIR`` (or ``root/fashion-mnist`` inside it) when that variable is set; nothing else is
   searched then either, so pointing it to an empty folder hides every other copy (the test suite's "no data"
   check does this). ``$PICKWISE_FASHION_MNIST`` is the older name of the same variable;
3. ``$PICKWISE_DATA_DIR/fashion-mnist``;
4. ``/usr/share/datasets/fashion-mnist`` (the system install of the Debian package ``dataset-fashion-mnist``);
5. the caches: ``sys.prefix/share/pickwise/fashion-mnist`` (where ``make fashion-mnist`` and ``make test`` put the
   files, without root: ``apt-get download dataset-fashion-mnist`` + ``dpkg-deb -x``, inside the virtual
   environment) and ``${XDG_CACHE_HOME:-~/.cache}/pickwise/fashion-mnist``.

Each file may be gzipped (``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..exceptions import DataFormatError, DataNotFoundError
from ._base import DatasetInfo, LoadedSplit
from ._registry import DATASETS, DatasetSpec
from .idx import read_idx, read_idx_header

__all__ = [
    "DEFAULT_DIR",
    "ENV_DIR",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_INFO",
    "cache_dirs",
    "find_fashion_mnist",
]

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_DIR = "PICKWISE_FASHION_MNIST_DIR"
"""Environment variable naming *the* location of the files: when set, no other place is searched."""
_LEGACY_ENV_DIR = "PICKWISE_FASHION_MNIST"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_PREFIX = {"train": "train", "test": "t10k"}
_ALL_FILES = (
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"
)

FASHION_MNIST_INFO = DatasetInfo(
    name="fashion-mnist",
    num_classes=10,
    class_names=FASHION_MNIST_CLASSES,
    in_chans=1,
    image_size=(28, 28),
    # statistics of the official 60,000 train images, checked by the realdata test in tests/data/
    mean=(0.2860,),
    std=(0.3530,),
    license="MIT (Zalando Research)",
    source=(
        "Debian package dataset-fashion-mnist (IDX files {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz in "
        "/usr/share/datasets/fashion-mnist): Fashion-MNIST, H. Xiao, K. Rasul and R. Vollgraf, 'Fashion-MNIST: a "
        "Novel Image Dataset for Benchmarking Machine Learning Algorithms', arXiv:1708.07747, 2017, "
        "https://github.com/zalandoresearch/fashion-mnist"
    ),
    num_train=60000,
    num_test=10000,
)


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _split_files(directory: Path, split: str) -> tuple[Path, Path] | None:
    images = _find_file(directory, f"{_PREFIX[split]}-images-idx3-ubyte")
    labels = _find_file(directory, f"{_PREFIX[split]}-labels-idx1-ubyte")
    return (images, labels) if images is not None and labels is not None else None


def cache_dirs() -> list[Path]:
    """Per-environment and per-user cache folders searched last (see the module docstring)."""
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return [Path(sys.prefix) / "share" / "pickwise" / "fashion-mnist", user_cache / "pickwise" / "fashion-mnist"]


def _env_dir() -> tuple[str, Path] | None:
    for var in (ENV_DIR, _LEGACY_ENV_DIR):
        value = os.environ.get(var, "").strip()
        if value:
            return var, Path(value).expanduser()
    return None


def _candidates(root: Path | None) -> list[Path]:
    if root is not None:
        return [root, root / "fashion-mnist"]
    env = _env_dir()
    if env is not None:
        return [env[1], env[1] / "fashion-mnist"]
    dirs = []
    if os.environ.get("PICKWISE_DATA_DIR"):
        dirs.append(Path(os.environ["PICKWISE_DATA_DIR"]).expanduser() / "fashion-mnist")
    dirs.append(DEFAULT_DIR)
    dirs += cache_dirs()
    return dirs


def find_fashion_mnist(split: str = "train", root: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """Locate the image and label IDX files of ``split`` (see the module docstring for the search order).

    Args:
        split: ``"train"`` or ``"test"``.
        root: Directory holding the files (or a ``fashion-mnist`` subfolder with them).

    Returns:
        ``(images_path, labels_path)``.

    Raises:
        DataNotFoundError: If no searched directory holds both files; the message says how to get them.
    """
    searched = _candidates(None if root is None else Path(root).expanduser())
    for directory in searched:
        found = _split_files(directory, split)
        if found is not None:
            return found
    env = _env_dir() if root is None else None
    if root is not None:
        where = f"{searched[0]} (root; CLI --data-dir)"
    elif env is not None:
        where = f"{env[1]} (${env[0]}, the only place searched while it is set; unset it to search the defaults)"
    else:
        where = ", ".join(str(d) for d in searched)
    raise DataNotFoundError(
        f"fashion-mnist: {split} IDX files not found in {where}; get them with `sudo apt-get install "
        "dataset-fashion-mnist`, or without root with `make fashion-mnist` in a pickwise checkout (apt-get download "
        f"+ dpkg-deb -x into .venv), or pass root=DIR (CLI: --data-dir DIR; or set {ENV_DIR}=DIR) holding {_ALL_FILES} "
        "(gzipped or not)."
    )


def _read_split(split: str, root: Path | None) -> LoadedSplit:
    image_path, label_path = find_fashion_mnist(split, root)
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataFormatError(
            f"fashion-mnist: {image_path} holds {images.dtype} data of shape {images.shape}; expected uint8 "
            "(N, 28, 28). Reinstall the dataset files."
        )
    if labels.dtype != np.uint8 or labels.shape != (images.shape[0],):
        raise DataFormatError(
            f"fashion-mnist: {label_path} holds {labels.dtype} data of shape {labels.shape}; expected uint8 "
            f"({images.shape[0]},) to match {image_path.name}. Reinstall the dataset files."
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise DataFormatError(
            f"fashion-mnist: {label_path} contains label {int(labels.max())}; expected labels 0-9. "
            "Reinstall the dataset files."
        )
    indices = np.arange(images.shape[0], dtype=np.int64)
    return LoadedSplit(images[:, None, :, :], labels.astype(np.int64), indices)


def _info(root: Path | None) -> DatasetInfo:
    """Static info; ``num_train``/``num_test`` come from the IDX headers when the files are found."""
    counts = {}
    for split in ("train", "test"):
        try:
            image_path, _ = find_fashion_mnist(split, root)
        except DataNotFoundError:
            continue
        counts[split] = read_idx_header(image_path)[1][0]
    if not counts:
        return FASHION_MNIST_INFO
    return replace(
        FASHION_MNIST_INFO,
        num_train=counts.get("train", FASHION_MNIST_INFO.num_train),
        num_test=counts.get("test", FASHION_MNIST_INFO.num_test),
    )


def _available(root: Path | None) -> None:
    for split in ("train", "test"):
        find_fashion_mnist(split, root)


DATASETS.add(
    "fashion-mnist",
    DatasetSpec(
        "fashion-mnist",
        "Fashion-MNIST (Zalando), 70,000 28x28 clothing images, 10 classes",
        _info,
        _read_split,
        _available,
    ),
    aliases=("fashionmnist",),
)
