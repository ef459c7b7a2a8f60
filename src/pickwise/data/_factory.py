"""Public entry points: :func:`list_datasets`, :func:`get_dataset_info` and :func:`create_dataset`."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..exceptions import DataFormatError, DataNotFoundError, InvalidParameterError
from ._base import DatasetInfo, ImageClassificationDataset, LoadedSplit, as_image_size
from ._registry import DATASETS, DatasetSpec, normalize_dataset_name
from ._split import stratified_subset
from .image_folder import load_image_folder

__all__ = ["check_dataset_available", "create_dataset", "get_dataset_info", "list_datasets"]

_FOLDER_NAMES = ("folder", "image-folder", "imagefolder")
PathArg = str | os.PathLike[str]


def list_datasets(pattern: str | None = None) -> list[str]:
    """Sorted names of the built-in datasets, optionally filtered by an fnmatch ``pattern`` such as ``"*mnist*"``.

    Image folders are not listed: pass their path (or ``"folder:PATH"``) as the name instead.
    """
    return DATASETS.names(pattern)


def _resolve(name: str | os.PathLike[str], root: PathArg | None) -> DatasetSpec | Path:
    """Return the registered spec for ``name``, or the image-folder path it denotes."""
    if isinstance(name, os.PathLike):
        return Path(name).expanduser()
    if not isinstance(name, str):
        raise InvalidParameterError(f"dataset name must be a string or a path; got {type(name).__name__}.")
    if name.startswith("folder:"):
        if not name[len("folder:") :].strip():
            raise InvalidParameterError("dataset name 'folder:' needs a path; use 'folder:PATH'.")
        return Path(name[len("folder:") :]).expanduser()
    if normalize_dataset_name(name) in _FOLDER_NAMES:
        if root is None:
            raise InvalidParameterError(
                f"dataset '{name}' needs the image folder: pass root=PATH (CLI: --data-dir PATH) or name='folder:PATH'."
            )
        return Path(root).expanduser()
    if name in DATASETS:
        return DATASETS.get(name)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if "/" in name or os.sep in name or name.startswith((".", "~")):
        raise DataNotFoundError(
            f"image folder {path} does not exist; pass an existing directory laid out as {path}/<class>/<image>.png, "
            "or a dataset name (run `pickwise datasets` to list them)."
        )
    return DATASETS.get(name)  # raises UnknownNameError with close matches


def _root(root: PathArg | None) -> Path | None:
    return None if root is None else Path(root).expanduser()


def get_dataset_info(
    name: str | os.PathLike[str],
    root: PathArg | None = None,
    *,
    image_size: int | tuple[int, int] | None = None,
    follow_symlinks: bool | None = None,
    max_pixels: int | None = None,
) -> DatasetInfo:
    """Return the :class:`DatasetInfo` of a built-in dataset or an image folder.

    For built-in datasets this is cheap (no images are decoded; ``fashion-mnist`` reads the IDX headers if it finds
    the files, else reports the official counts). For an image folder the train images are loaded to compute
    ``mean``/``std``.

    Args:
        name: A registered name (see :func:`list_datasets`), an existing directory, ``"folder:PATH"``, or
            ``"folder"`` together with ``root=PATH``.
        root: Data directory for datasets read from files (``fashion-mnist``; the folder for ``name="folder"``).
            Ignored when ``name`` is itself a folder path.
        image_size: Resize target ``H`` or ``(H, W)``; reflected in ``info.image_size``.
        follow_symlinks: Image folders only: follow symbolic links that lead outside the folder (see
            :func:`~pickwise.data.load_image_folder`).
        max_pixels: Image folders only: the largest allowed image, in pixels (see
            :func:`~pickwise.data.load_image_folder`).

    Raises:
        UnknownNameError: If ``name`` is neither registered nor an existing directory.
        DataNotFoundError: If an image folder path does not exist.
        DataFormatError: If an image folder cannot be used as it is.
    """
    size = as_image_size(image_size)
    target = _resolve(name, root)
    if isinstance(target, Path):
        return load_image_folder(target, image_size=size, follow_symlinks=follow_symlinks, max_pixels=max_pixels)[0]
    info = target.info(_root(root))
    return info if size is None else replace(info, image_size=size)


def check_dataset_available(name: str | os.PathLike[str], root: PathArg | None = None) -> None:
    """Raise if :func:`create_dataset` could not find the data of ``name``; cheap (no image is decoded).

    :func:`get_dataset_info` answers "what is it?" and may report static metadata of a dataset whose files are
    missing (``fashion-mnist``); this answers "is it there?": the files are looked up and the optional packages
    imported. Image folders are only checked to exist.

    Raises:
        UnknownNameError: If ``name`` is neither registered nor an existing directory.
        DataNotFoundError: If the data files or an optional package are missing.
    """
    target = _resolve(name, root)
    if isinstance(target, Path):
        if not target.is_dir():
            raise DataNotFoundError(
                f"image folder {target} does not exist; pass an existing directory laid out as "
                f"{target}/<class>/<image>.png."
            )
        return
    if target.available is not None:
        target.available(_root(root))
    else:
        target.info(_root(root))


def _resize(images: torch.Tensor, size: tuple[int, int], chunk: int = 4096) -> torch.Tensor:
    """Bilinear (antialiased) resize of uint8 ``(N, C, H, W)`` images, rounded back to uint8."""
    out = torch.empty((images.shape[0], images.shape[1], *size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].to(torch.float32)
        block = F.interpolate(block, size=size, mode="bilinear", align_corners=False, antialias=True)
        out[start : start + chunk] = block.round_().clamp_(0, 255).to(torch.uint8)
    return out


def create_dataset(
    name: str | os.PathLike[str],
    split: str = "train",
    *,
    root: PathArg | None = None,
    subset: int | None = None,
    image_size: int | tuple[int, int] | None = None,
    seed: int = 0,
    follow_symlinks: bool | None = None,
    max_pixels: int | None = None,
) -> ImageClassificationDataset:
    """Load one split of a dataset into memory.

    Train/test splits are fixed: official ones for ``fashion-mnist``, a stratified 80/20 split with the constant
    seed 0 for ``digits``, ``mnist-5k`` and image folders without ``train/``/``test/`` subfolders, disjoint image
    regions for ``textures``. ``seed`` never changes them.

    Args:
        name: A registered name (see :func:`list_datasets`), an existing directory, ``"folder:PATH"``, or
            ``"folder"`` together with ``root=PATH``. A registered name wins over a same-named directory; write
            ``"./digits"`` or ``"folder:digits"`` for the directory.
        split: ``"train"`` or ``"test"``.
        root: Data directory for datasets read from files (``fashion-mnist``; the folder for ``name="folder"``).
        subset: Keep only this many samples of the split: a class-stratified random subset (largest-remainder
            allocation, random within each class); the same ``subset`` and ``seed`` always give the same samples.
        image_size: Resize every image to ``H`` x ``H`` (int) or ``(H, W)``: bilinear with antialiasing (torch)
            for built-in datasets, Pillow bilinear for image folders. Built-in ``mean``/``std`` are not recomputed.
        seed: Seed of the ``subset`` draw.
        follow_symlinks: Image folders only: follow symbolic links that lead outside the folder (default: skip
            them, or ``$PICKWISE_FOLLOW_SYMLINKS``; see :func:`~pickwise.data.load_image_folder`).
        max_pixels: Image folders only: the largest allowed image, in pixels, checked before decoding (default
            40 megapixels, or ``$PICKWISE_MAX_IMAGE_PIXELS``).

    Returns:
        The split as an :class:`ImageClassificationDataset`; ``dataset.info`` describes the whole dataset.

    Raises:
        UnknownNameError: If ``name`` is neither registered nor an existing directory.
        InvalidParameterError: For a bad ``split``, ``subset``, ``image_size`` or ``seed``.
        DataNotFoundError: If the data files or an optional package are missing.
        DataFormatError: If the files exist but cannot be used as they are.
    """
    if split not in ("train", "test"):
        raise InvalidParameterError(f"create_dataset: split must be 'train' or 'test'; got {split!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidParameterError(f"create_dataset: seed must be an int; got {seed!r}.")
    size = as_image_size(image_size)
    target = _resolve(name, root)
    if isinstance(target, Path):
        info, splits = load_image_folder(
            target, image_size=size, follow_symlinks=follow_symlinks, max_pixels=max_pixels
        )
        loaded: LoadedSplit = splits[split]
        if loaded.targets.size == 0:
            raise DataFormatError(
                f"image folder {target}: the {split} split is empty (a class needs at least 3 images to get a test "
                "image in the 80/20 split); add images or use train/ and test/ subfolders."
            )
    else:
        loaded = target.load(split, _root(root))
        info = target.info(_root(root))
    images = torch.from_numpy(np.array(loaded.images, dtype=np.uint8, copy=True))
    if size is not None and tuple(images.shape[-2:]) != size:
        images = _resize(images, size)
    if size is not None:
        info = replace(info, image_size=size)
    dataset = ImageClassificationDataset(
        images,
        torch.from_numpy(np.array(loaded.targets, dtype=np.int64, copy=True)),
        info,
        split=split,
        source_indices=torch.from_numpy(np.array(loaded.source_indices, dtype=np.int64, copy=True)),
    )
    if subset is not None:
        dataset = dataset.select(stratified_subset(dataset.targets.numpy(), subset, seed=int(seed)))
    return dataset
