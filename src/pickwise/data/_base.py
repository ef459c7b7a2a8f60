"""Dataset metadata (:class:`DatasetInfo`), the in-memory :class:`ImageClassificationDataset` and shared helpers.

Images are stored once as a ``uint8`` tensor ``(N, C, H, W)`` and normalized on access as
``(x / 255 - mean) / std`` with per-channel ``mean``/``std`` given in ``[0, 1]`` units (torchvision convention).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..exceptions import DataNotFoundError, InvalidParameterError, ShapeError

__all__ = [
    "DatasetInfo",
    "ImageClassificationDataset",
    "LoadedSplit",
    "as_image_size",
    "channel_mean_std",
    "import_optional",
    "needs_packages",
]

Indices = Sequence[int] | torch.Tensor | np.ndarray | slice


@dataclass(frozen=True)
class DatasetInfo:
    """Description of a dataset: classes, image geometry, normalization statistics and provenance.

    Args:
        name: Registered name (``"digits"``) or ``"folder:/abs/path"`` for an image folder.
        num_classes: Number of classes.
        class_names: One name per class index.
        in_chans: Number of image channels (1 or 3).
        image_size: ``(H, W)`` of the images as returned (after any resize).
        mean: Per-channel mean of the train split, in ``[0, 1]`` units.
        std: Per-channel standard deviation of the train split, in ``[0, 1]`` units.
        license: Licence of the data (and of the package that ships it).
        source: Provenance: package, file and the original dataset's paper or URL.
        num_train: Number of samples in the full train split.
        num_test: Number of samples in the full test split.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    in_chans: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    license: str
    source: str
    num_train: int
    num_test: int


class LoadedSplit(NamedTuple):
    """Raw arrays of one split: ``images`` uint8 ``(N, C, H, W)``, ``targets`` and ``source_indices`` int64 ``(N,)``."""

    images: np.ndarray
    targets: np.ndarray
    source_indices: np.ndarray


def stratified_split_loader(load_all: Callable[[], tuple[np.ndarray, np.ndarray]]) -> Callable[..., LoadedSplit]:
    """Loader of one split of a dataset whose ``load_all()`` returns all images and labels (80/20 stratified split)."""
    from ._split import stratified_split

    def load(split: str, root: Path | None = None) -> LoadedSplit:
        images, targets = load_all()
        train_idx, test_idx = stratified_split(targets)
        idx = train_idx if split == "train" else test_idx
        return LoadedSplit(images[idx], targets[idx], idx)

    return load


def import_optional(module: str, *, pip_name: str, dataset: str) -> ModuleType:
    """Import an optional dependency, or raise :class:`DataNotFoundError` with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise DataNotFoundError(
            f"{dataset}: needs the optional package '{pip_name}', which could not be imported ({err}); "
            f"install it with `pip install {pip_name}` (or `pip install 'pickwise[data]'`)."
        ) from None


def needs_packages(dataset: str, *modules: tuple[str, str]) -> Callable[[Path | None], None]:
    """An ``available(root)`` check for :class:`~pickwise.data._registry.DatasetSpec`: imports each optional module.

    Args:
        dataset: Dataset name for the error message.
        modules: ``(module, pip_name)`` pairs, e.g. ``("skimage.data", "scikit-image")``.
    """

    def available(root: Path | None = None) -> None:
        for module, pip_name in modules:
            import_optional(module, pip_name=pip_name, dataset=dataset)

    return available


def channel_mean_std(images: np.ndarray, *, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 images, in ``[0, 1]`` units.

    Computed in float64 over chunks of ``chunk`` images. A channel with zero variance gets ``std = 1.0`` so that
    normalization never divides by zero.

    Args:
        images: uint8 array ``(N, C, H, W)`` with ``N >= 1``.
        chunk: Number of images converted to float64 at a time.

    Returns:
        ``(mean, std)``, two tuples of ``C`` floats.
    """
    n, c = images.shape[0], images.shape[1]
    total = np.zeros(c, dtype=np.float64)
    total_sq = np.zeros(c, dtype=np.float64)
    for start in range(0, n, chunk):
        block = images[start : start + chunk].astype(np.float64)
        total += block.sum(axis=(0, 2, 3))
        total_sq += np.square(block).sum(axis=(0, 2, 3))
    count = float(n * images.shape[2] * images.shape[3])
    mean = total / count / 255.0
    var = np.maximum(total_sq / count / 255.0**2 - mean**2, 0.0)
    std = np.sqrt(var)
    std = np.where(std < 1e-6, 1.0, std)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def as_image_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """Normalize ``image_size`` (``None``, ``H`` or ``(H, W)``) to ``None`` or a pair of positive ints.

    Raises:
        InvalidParameterError: If it is not a positive int or a pair of positive ints.
    """
    if image_size is None:
        return None
    is_int = isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool)
    size: tuple[Any, ...] = (
        (image_size, image_size) if is_int else tuple(image_size) if isinstance(image_size, Sequence) else ()
    )
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size):
        raise InvalidParameterError(
            f"image_size must be a positive int or a pair (H, W) of positive ints; got {image_size!r}."
        )
    return int(size[0]), int(size[1])


class ImageClassificationDataset(Dataset):
    """An in-memory image-classification dataset that returns normalized float tensors.

    Args:
        images: uint8 tensor ``(N, C, H, W)``.
        targets: int64 tensor ``(N,)`` of class indices in ``[0, info.num_classes)``.
        info: The dataset's :class:`DatasetInfo`; ``info.mean``/``info.std`` are used for normalization.
        split: ``"train"`` or ``"test"``.
        source_indices: int64 tensor ``(N,)``: the position of each sample in the original collection (the row in
            ``load_digits()``, the record in the IDX file, the patch number, the sorted file list). Defaults to
            ``arange(N)``.

    Shape:
        - ``dataset[i]``: ``((C, H, W) float32, int)``.
        - ``dataset.tensors()``: ``((N, C, H, W) float32, (N,) int64)``.

    Raises:
        ShapeError: If the tensors' shapes, dtypes or lengths do not match ``info``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        info: DatasetInfo,
        *,
        split: str = "train",
        source_indices: torch.Tensor | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != info.in_chans:
            raise ShapeError(
                f"ImageClassificationDataset: images must be uint8 (N, {info.in_chans}, H, W); "
                f"got {images.dtype} {tuple(images.shape)}."
            )
        if targets.dtype != torch.int64 or targets.shape != (images.shape[0],):
            raise ShapeError(
                f"ImageClassificationDataset: targets must be int64 of shape ({images.shape[0]},); "
                f"got {targets.dtype} {tuple(targets.shape)}."
            )
        if source_indices is None:
            source_indices = torch.arange(images.shape[0], dtype=torch.int64)
        if source_indices.shape != targets.shape:
            raise ShapeError(
                f"ImageClassificationDataset: source_indices must have shape {tuple(targets.shape)}; "
                f"got {tuple(source_indices.shape)}."
            )
        self.images = images
        self.targets = targets
        self.info = info
        self.split = split
        self.source_indices = source_indices.to(torch.int64)
        mean = torch.tensor(info.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(info.std, dtype=torch.float32).view(-1, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = mean / std

    @property
    def classes(self) -> list[str]:
        """Class names, indexed by target (torchvision's ``ImageFolder.classes``)."""
        return list(self.info.class_names)

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Map class name to target index."""
        return {name: i for i, name in enumerate(self.info.class_names)}

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(torch.float32) * self._scale - self._shift

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._normalize(self.images[index]), int(self.targets[index])

    def tensors(self, indices: Indices | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return normalized float32 images and int64 targets for all samples or for ``indices``, in one batch.

        Args:
            indices: ``None`` (all samples), a slice, or a sequence / tensor / array of sample indices.

        Returns:
            ``(images, targets)`` with shapes ``(n, C, H, W)`` and ``(n,)``.
        """
        if indices is None:
            images, targets = self.images, self.targets
        elif isinstance(indices, slice):
            images, targets = self.images[indices], self.targets[indices]
        else:
            index = torch.as_tensor(np.asarray(indices), dtype=torch.int64).reshape(-1)
            images, targets = self.images[index], self.targets[index]
        return self._normalize(images), targets.clone()

    def select(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> ImageClassificationDataset:
        """Return a new dataset holding the samples at ``indices`` (same ``info`` and ``split``).

        Raises:
            InvalidParameterError: If an index is out of range.
        """
        index = torch.as_tensor(np.asarray(indices), dtype=torch.int64).reshape(-1)
        if index.numel() and (int(index.min()) < -len(self) or int(index.max()) >= len(self)):
            raise InvalidParameterError(
                f"select: indices must lie in [0, {len(self)}); got values from {int(index.min())} to "
                f"{int(index.max())}."
            )
        return ImageClassificationDataset(
            self.images[index],
            self.targets[index],
            self.info,
            split=self.split,
            source_indices=self.source_indices[index],
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.info.name!r}, split={self.split!r}, num_samples={len(self)}, "
            f"image_shape={tuple(self.images.shape[1:])}, num_classes={self.info.num_classes})"
        )
