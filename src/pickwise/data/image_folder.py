"""Image folders laid out as ``root/<class>/<image>``, read with Pillow, like torchvision's ``ImageFolder``.

* Classes are the sorted names of the non-hidden subfolders; images (``.png .jpg .jpeg .bmp .gif .webp``, any case)
  are found recursively inside each class folder, in sorted path order. Other files are ignored.
* Split: if ``root`` has a ``train/`` folder and a ``test/`` (or else ``val/``) folder, each is such an image folder
  and is used as that split (test classes must also exist in train). Otherwise a stratified 80/20 split with the
  fixed seed :data:`~pickwise.data._split.SPLIT_SEED` is made (see :mod:`pickwise.data._split`).
* Channels: 1 (Pillow mode ``"L"``) if every image of the folder has mode ``"L"`` or ``"1"``; otherwise all images
  are converted to RGB (alpha dropped, palettes expanded). GIFs contribute their first frame.
* Size: with ``image_size=(H, W)`` every image is resized to it (Pillow bilinear); without it all images must
  already share one size.
* ``mean``/``std`` are computed from the loaded (resized) train images; ``source_indices`` index the sorted file list
  of the folder (of ``train/`` or ``test/`` when those exist).
"""

from __future__ import annotations

import os
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataFormatError, DataNotFoundError
from ._base import DatasetInfo, LoadedSplit, as_image_size, channel_mean_std, import_optional
from ._split import stratified_split

__all__ = ["IMAGE_EXTENSIONS", "load_image_folder"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_RESIZE_HINT = "pass image_size=(H, W) (CLI: --image-size H or --set data.image_size=...)"


def _class_files(directory: Path) -> list[tuple[str, list[Path]]]:
    """``[(class_name, sorted image paths)]`` for the class subfolders of ``directory``."""
    entries = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    classes = [p for p in entries if p.is_dir()]
    if not classes:
        loose = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS]
        if loose:
            raise DataFormatError(
                f"image folder {directory}: found {len(loose)} images but no class subfolders; "
                f"put each class's images in {directory}/<class>/."
            )
        raise DataFormatError(
            f"image folder {directory} is empty (no class subfolders); expected {directory}/<class>/<image>.png."
        )
    result = []
    for class_dir in classes:
        files = sorted(
            p
            for p in class_dir.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
        )
        if not files:
            raise DataFormatError(
                f"image folder {directory}: class folder {class_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "add images or remove the folder."
            )
        result.append((class_dir.name, files))
    return result


def _layout(root: Path) -> tuple[tuple[str, ...], dict[str, list[tuple[Path, int, int]]], str]:
    """Return ``(class_names, {split: [(path, label, source_index)]}, description)`` for ``root``."""
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        train = _class_files(root / "train")
        names = tuple(name for name, _ in train)
        test_items = []
        for name, files in _class_files(test_dir):
            if name not in names:
                raise DataFormatError(
                    f"image folder {root}: class '{name}' exists in {test_dir} but not in {root / 'train'}; "
                    "every test class needs training images."
                )
            test_items += [(p, names.index(name)) for p in files]
        train_items = [(p, i) for i, (_, files) in enumerate(train) for p in files]
        splits = {
            "train": [(p, label, j) for j, (p, label) in enumerate(train_items)],
            "test": [(p, label, j) for j, (p, label) in enumerate(test_items)],
        }
        return names, splits, f"train/ and {test_dir.name}/ subfolders"
    classes = _class_files(root)
    names = tuple(name for name, _ in classes)
    items = [(p, i) for i, (_, files) in enumerate(classes) for p in files]
    train_idx, test_idx = stratified_split(np.array([label for _, label in items], dtype=np.int64))
    splits = {split: [(*items[i], int(i)) for i in idx] for split, idx in (("train", train_idx), ("test", test_idx))}
    return names, splits, "stratified 80/20 split, seed 0"


def _open(image_module: Any, path: Path) -> Any:
    try:
        return image_module.open(path)
    except (OSError, ValueError, SyntaxError, image_module.DecompressionBombError) as err:
        raise DataFormatError(f"image folder: cannot read image {path} ({err}); fix or remove the file.") from None


def _read(image_module: Any, path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """Load ``path`` as a uint8 ``(C, H, W)`` array in ``mode``, resized to ``size=(H, W)`` when given."""
    with _open(image_module, path) as img:
        try:
            img = img.convert(mode)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), image_module.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError) as err:
            raise DataFormatError(
                f"image folder: cannot decode image {path} ({err}); fix or remove the file."
            ) from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


@lru_cache(maxsize=2)
def _load_cached(
    root: Path, image_size: tuple[int, int] | None, signature: tuple[tuple[str, int, int], ...]
) -> tuple[DatasetInfo, dict[str, LoadedSplit]]:
    image_module = import_optional("PIL.Image", pip_name="pillow", dataset=f"image folder {root}")
    names, splits, description = _layout(root)
    all_items = splits["train"] + splits["test"]
    modes: set[str] = set()
    sizes: Counter[tuple[int, int]] = Counter()
    example: dict[tuple[int, int], Path] = {}
    for path, _, _ in all_items:
        with _open(image_module, path) as img:
            modes.add(img.mode)
            hw = (img.size[1], img.size[0])
        sizes[hw] += 1
        example.setdefault(hw, path)
    mode = "L" if modes <= {"L", "1"} else "RGB"
    if image_size is None and len(sizes) > 1:
        found = ", ".join(f"{h}x{w} ({n} images, e.g. {example[(h, w)]})" for (h, w), n in sizes.most_common(3))
        more = f" and {len(sizes) - 3} more sizes" if len(sizes) > 3 else ""
        raise DataFormatError(f"image folder {root}: images have different sizes (HxW): {found}{more}; {_RESIZE_HINT}.")
    final_size = image_size if image_size is not None else next(iter(sizes))
    loaded = {}
    for split, items in splits.items():
        c = 1 if mode == "L" else 3
        images = np.zeros((len(items), c, *final_size), dtype=np.uint8)
        for i, (path, _, _) in enumerate(items):
            images[i] = _read(image_module, path, mode, image_size)
        targets = np.array([label for _, label, _ in items], dtype=np.int64)
        sources = np.array([j for _, _, j in items], dtype=np.int64)
        for array in (images, targets, sources):
            array.flags.writeable = False  # shared through the cache
        loaded[split] = LoadedSplit(images, targets, sources)
    mean, std = channel_mean_std(loaded["train"].images)
    info = DatasetInfo(
        name=f"folder:{root}",
        num_classes=len(names),
        class_names=names,
        in_chans=1 if mode == "L" else 3,
        image_size=(int(final_size[0]), int(final_size[1])),
        mean=mean,
        std=std,
        license="unknown (user-provided images; check their licence)",
        source=f"image folder {root} ({description}; read with Pillow)",
        num_train=len(splits["train"]),
        num_test=len(splits["test"]),
    )
    return info, loaded


def load_image_folder(
    root: str | os.PathLike[str], *, image_size: int | tuple[int, int] | None = None
) -> tuple[DatasetInfo, dict[str, LoadedSplit]]:
    """Load both splits of an image folder (cached while no file changes).

    Args:
        root: Folder laid out as ``root/<class>/<image>`` or ``root/{train,test}/<class>/<image>``.
        image_size: ``H`` or ``(H, W)`` to resize every image to; required when the images differ in size.

    Returns:
        ``(info, {"train": LoadedSplit, "test": LoadedSplit})``; arrays are shared with the cache, do not modify.

    Raises:
        DataNotFoundError: If ``root`` does not exist or Pillow is missing.
        DataFormatError: For an empty folder, no class subfolders, a class without images, an unreadable image or
            mixed image sizes without ``image_size``.
    """
    path = Path(root).expanduser()
    if not path.exists():
        raise DataNotFoundError(
            f"image folder {path} does not exist; pass an existing directory laid out as {path}/<class>/<image>.png."
        )
    if not path.is_dir():
        raise DataFormatError(f"image folder {path} is not a directory; pass a directory laid out as <dir>/<class>/.")
    path = path.resolve()
    signature = tuple(
        (str(p), p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    return _load_cached(path, as_image_size(image_size), signature)
