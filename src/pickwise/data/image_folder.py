"""Image folders laid out as ``root/<class>/<image>``, read with Pillow, like torchvision's ``ImageFolder``.

* Classes are the sorted names of the non-hidden subfolders; images (``.png .jpg .jpeg .bmp .gif .webp``, any case)
  are found recursively inside each class folder, in sorted path order. Other files and hidden entries (names
  starting with ``.``, e.g. ``.ipynb_checkpoints/``) are ignored. At least two classes are required: a folder with
  a single class would train to accuracy 1.0 without learning anything, so it is refused.
* Symbolic links: a link whose target lies inside ``root`` is followed; a link that leads outside ``root`` (a class
  folder linked to ``/``, a file linked to an image elsewhere) is skipped unless ``follow_symlinks=True`` (or
  ``PICKWISE_FOLLOW_SYMLINKS=1``), and so are broken links; a warning and ``info.source`` say how many were
  skipped. Directories are visited once each, so link cycles end.
* Size limit: an image with more than ``max_pixels`` pixels (default :data:`DEFAULT_MAX_PIXELS` = 40 megapixels,
  or ``PICKWISE_MAX_IMAGE_PIXELS``) is refused from its header, before it is decoded, with a one-line
  :class:`~pickwise.exceptions.DataFormatError` naming the file, its size and how to raise the limit; Pillow's own
  ``DecompressionBombError`` (above ``2 * PIL.Image.MAX_IMAGE_PIXELS``) becomes the same kind of one-line error.
  40 megapixels decode to 120 MB of RGB; the largest common camera photos (about 50 MP) need the limit raised.
* Split: if ``root`` has a ``train/`` folder and a ``test/`` (or else ``val/``) folder, each is such an image folder
  and is used as that split (test classes must also exist in train). Otherwise a stratified 80/20 split with the
  fixed seed :data:`~pickwise.data._split.SPLIT_SEED` is made (see :mod:`pickwise.data._split`).
* Channels: 1 (Pillow mode ``"L"``) if every image of the folder is greyscale (mode ``"L"``, ``"1"`` or 16-bit);
  otherwise all images are converted to RGB (alpha dropped, palettes expanded). GIFs contribute their first frame.
  16-bit greyscale PNGs are scaled to 8 bits as ``round(v / 257)`` (Pillow's own conversion clips them at 255).
* Size: with ``image_size=(H, W)`` every image is resized to it (Pillow bilinear); without it all images must
  already share one size.
* ``mean``/``std`` are computed from the loaded (resized) train images; ``source_indices`` index the sorted file list
  of the folder (of ``train/`` or ``test/`` when those exist).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataFormatError, DataNotFoundError, InvalidParameterError
from ._base import DatasetInfo, LoadedSplit, as_image_size, channel_mean_std, import_optional
from ._split import stratified_split

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "load_image_folder"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
DEFAULT_MAX_PIXELS = 40_000_000
"""Images with more pixels (width x height, read from the file header) are refused before decoding."""
MAX_PIXELS_ENV = "PICKWISE_MAX_IMAGE_PIXELS"
FOLLOW_SYMLINKS_ENV = "PICKWISE_FOLLOW_SYMLINKS"
_HIGH_BIT_DEPTH_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_RESIZE_HINT = "pass image_size=(H, W) (CLI: --image-size H or --set data.image_size=...)"


def _show(path: object) -> str:
    """``path`` for a one-line message: control characters (newlines, undecodable bytes) are escaped."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(path))


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


class _Walker:
    """Lists a folder tree in sorted order under the symbolic-link policy of :func:`load_image_folder`.

    Hidden entries (names starting with ``.``) are skipped. A symbolic link is followed only if its target lies
    inside ``root`` or ``follow_symlinks`` is true; links that lead outside and broken links are skipped and
    counted. Directories are visited at most once (by real path), so link cycles end.
    """

    def __init__(self, root: Path, follow_symlinks: bool) -> None:
        self.root = root
        self.follow = follow_symlinks
        self.outside: set[str] = set()
        self.broken: set[str] = set()
        self._real_root = os.path.realpath(root)

    def _inside(self, target: str) -> bool:
        return target == self._real_root or target.startswith(self._real_root.rstrip(os.sep) + os.sep)

    def entries(self, directory: Path) -> tuple[list[Path], list[Path]]:
        """Sorted non-hidden ``(subfolders, files)`` of ``directory`` that the link policy allows."""
        try:
            with os.scandir(directory) as it:
                listed = sorted(it, key=lambda e: e.name)
        except OSError as err:
            raise DataFormatError(
                f"image folder {_show(self.root)}: cannot list {_show(directory)} ({_one_line(err)}); "
                "fix its permissions or remove it."
            ) from None
        dirs, files = [], []
        for entry in listed:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if not os.path.exists(target):
                        self.broken.add(entry.path)
                        continue
                    if not self.follow and not self._inside(target):
                        self.outside.add(entry.path)
                        continue
                if entry.is_dir():
                    dirs.append(Path(entry.path))
                elif entry.is_file():
                    files.append(Path(entry.path))
            except OSError:  # vanished or unreadable entry: not an image we can use
                continue
        return dirs, files

    def images(self, directory: Path) -> list[Path]:
        """All image files below ``directory`` (recursively), in sorted path order."""
        found: list[Path] = []
        seen: set[str] = set()
        stack = [directory]
        while stack:
            current = stack.pop()
            real = os.path.realpath(current)
            if real in seen:
                continue
            seen.add(real)
            dirs, files = self.entries(current)
            found += [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
            stack += reversed(dirs)
        return sorted(found)

    def note(self) -> str:
        """``""`` or a sentence saying how many links were skipped and how to follow them."""
        if not (self.outside or self.broken):
            return ""
        parts = []
        if self.outside:
            parts.append(f"{len(self.outside)} symbolic link(s) that lead outside it")
        if self.broken:
            parts.append(f"{len(self.broken)} broken symbolic link(s)")
        hint = f" (pass follow_symlinks=True or set {FOLLOW_SYMLINKS_ENV}=1 to follow them)" if self.outside else ""
        return f"skipped {' and '.join(parts)}{hint}"


def _class_files(walker: _Walker, directory: Path, *, min_classes: int = 2) -> list[tuple[str, list[Path]]]:
    """``[(class_name, sorted image paths)]`` for the class subfolders of ``directory`` (at least ``min_classes``)."""
    classes, loose_files = walker.entries(directory)
    if not classes:
        loose = [p for p in loose_files if p.suffix.lower() in IMAGE_EXTENSIONS]
        if loose:
            raise DataFormatError(
                f"image folder {_show(directory)}: found {len(loose)} images but no class subfolders; "
                f"put each class's images in {_show(directory)}/<class>/."
            )
        raise DataFormatError(
            f"image folder {_show(directory)} is empty (no class subfolders); "
            f"expected {_show(directory)}/<class>/<image>.png."
        )
    result = []
    for class_dir in classes:
        files = walker.images(class_dir)
        if not files:
            raise DataFormatError(
                f"image folder {_show(directory)}: class folder {_show(class_dir)} holds no images "
                f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder."
            )
        result.append((class_dir.name, files))
    if len(result) < min_classes:
        raise DataFormatError(
            f"found {len(result)} class in {_show(directory)}; classification needs >= 2 class folders "
            f"(only {_show(classes[0].name)}/ was found); add a folder per class."
        )
    return result


Layout = tuple[tuple[str, ...], tuple[tuple[str, tuple[tuple[Path, int, int], ...]], ...], str]


def _layout(root: Path, walker: _Walker) -> Layout:
    """Return ``(class_names, ((split, ((path, label, source_index), ...)), ...), description)`` for ``root``."""
    top_dirs = {p.name: p for p in walker.entries(root)[0]}
    test_dir = next((top_dirs[n] for n in ("test", "val") if n in top_dirs), None)
    if "train" in top_dirs and test_dir is not None:
        train = _class_files(walker, top_dirs["train"])
        names = tuple(name for name, _ in train)
        test_items = []
        for name, files in _class_files(walker, test_dir, min_classes=1):  # a test split may hold fewer classes
            if name not in names:
                raise DataFormatError(
                    f"image folder {_show(root)}: class '{_show(name)}' exists in {_show(test_dir)} but not in "
                    f"{_show(root / 'train')}; every test class needs training images."
                )
            test_items += [(p, names.index(name)) for p in files]
        train_items = [(p, i) for i, (_, files) in enumerate(train) for p in files]
        splits = (
            ("train", tuple((p, label, j) for j, (p, label) in enumerate(train_items))),
            ("test", tuple((p, label, j) for j, (p, label) in enumerate(test_items))),
        )
        return names, splits, f"train/ and {test_dir.name}/ subfolders"
    classes = _class_files(walker, root)
    names = tuple(name for name, _ in classes)
    items = [(p, i) for i, (_, files) in enumerate(classes) for p in files]
    train_idx, test_idx = stratified_split(np.array([label for _, label in items], dtype=np.int64))
    stratified = tuple(
        (split, tuple((*items[i], int(i)) for i in idx)) for split, idx in (("train", train_idx), ("test", test_idx))
    )
    return names, stratified, "stratified 80/20 split, seed 0"


def _too_large(path: Path, width: int, height: int, max_pixels: int) -> DataFormatError:
    return DataFormatError(
        f"image folder: image {_show(path)} is {width}x{height} = {width * height / 1e6:.1f} megapixels, above the "
        f"limit of {max_pixels / 1e6:g} megapixels; pass max_pixels={width * height} (or set "
        f"{MAX_PIXELS_ENV}={width * height}) to allow it, or downscale the image."
    )


def _open(image_module: Any, path: Path, max_pixels: int) -> Any:
    """Open ``path`` lazily (header only) and refuse it if it has more than ``max_pixels`` pixels."""
    try:
        with warnings.catch_warnings():
            # pickwise enforces its own (lower by default) limit just below; Pillow's warning would only repeat it
            warnings.simplefilter("ignore", image_module.DecompressionBombWarning)
            img = image_module.open(path)
    except image_module.DecompressionBombError as err:
        raise DataFormatError(
            f"image folder: image {_show(path)} is above Pillow's decompression-bomb limit ({_one_line(err)}); "
            "raise PIL.Image.MAX_IMAGE_PIXELS and max_pixels to allow it, or downscale the image."
        ) from None
    except (OSError, ValueError, SyntaxError, TypeError, EOFError) as err:
        raise DataFormatError(
            f"image folder: cannot read image {_show(path)} ({_one_line(err)}); fix or remove the file."
        ) from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise _too_large(path, width, height, max_pixels)
    return img


def _to_8bit(image_module: Any, img: Any) -> Any:
    """16-bit greyscale (``I;16*``, or ``I`` as Pillow opens some 16-bit PNGs) to ``L`` by ``round(v / 257)``.

    Pillow's own ``convert("L")`` clips such images at 255, which turns a 16-bit scan almost white.
    """
    values = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
    return image_module.fromarray(((values + 128) // 257).astype(np.uint8), "L")


def _read(image_module: Any, path: Path, mode: str, size: tuple[int, int] | None, max_pixels: int) -> np.ndarray:
    """Load ``path`` as a uint8 ``(C, H, W)`` array in ``mode``, resized to ``size=(H, W)`` when given."""
    with _open(image_module, path, max_pixels) as img:
        try:
            if img.mode in _HIGH_BIT_DEPTH_GREY:
                img = _to_8bit(image_module, img)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", image_module.DecompressionBombWarning)
                img = img.convert(mode)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), image_module.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
        except image_module.DecompressionBombError as err:
            raise DataFormatError(
                f"image folder: image {_show(path)} is above Pillow's decompression-bomb limit ({_one_line(err)}); "
                "raise PIL.Image.MAX_IMAGE_PIXELS and max_pixels to allow it, or downscale the image."
            ) from None
        except (OSError, ValueError, SyntaxError, TypeError, EOFError, MemoryError) as err:
            raise DataFormatError(
                f"image folder: cannot decode image {_show(path)} ({_one_line(err)}); fix or remove the file."
            ) from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


@lru_cache(maxsize=2)
def _load_cached(
    root: Path,
    image_size: tuple[int, int] | None,
    max_pixels: int,
    layout: Layout,
    note: str,
    signature: tuple[tuple[str, int, int], ...],
) -> tuple[DatasetInfo, dict[str, LoadedSplit]]:
    image_module = import_optional("PIL.Image", pip_name="pillow", dataset=f"image folder {_show(root)}")
    names, split_items, description = layout
    splits = dict(split_items)
    all_items = splits["train"] + splits["test"]
    modes: set[str] = set()
    sizes: Counter[tuple[int, int]] = Counter()
    example: dict[tuple[int, int], Path] = {}
    for path, _, _ in all_items:
        with _open(image_module, path, max_pixels) as img:
            modes.add(img.mode)
            hw = (img.size[1], img.size[0])
        sizes[hw] += 1
        example.setdefault(hw, path)
    mode = "L" if modes <= {"L", "1", *_HIGH_BIT_DEPTH_GREY} else "RGB"
    if image_size is None and len(sizes) > 1:
        found = ", ".join(f"{h}x{w} ({n} images, e.g. {_show(example[(h, w)])})" for (h, w), n in sizes.most_common(3))
        more = f" and {len(sizes) - 3} more sizes" if len(sizes) > 3 else ""
        raise DataFormatError(
            f"image folder {_show(root)}: images have different sizes (HxW): {found}{more}; {_RESIZE_HINT}."
        )
    final_size = image_size if image_size is not None else next(iter(sizes))
    loaded = {}
    for split, items in splits.items():
        c = 1 if mode == "L" else 3
        images = np.zeros((len(items), c, *final_size), dtype=np.uint8)
        for i, (path, _, _) in enumerate(items):
            images[i] = _read(image_module, path, mode, image_size, max_pixels)
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
        source=f"image folder {root} ({description}; read with Pillow{'; ' + note if note else ''})",
        num_train=len(splits["train"]),
        num_test=len(splits["test"]),
    )
    return info, loaded


def _max_pixels(max_pixels: int | None) -> int:
    """The pixel limit: the argument, else ``$PICKWISE_MAX_IMAGE_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`."""
    origin = "max_pixels"
    if max_pixels is None:
        raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_PIXELS
        origin = MAX_PIXELS_ENV
        try:
            max_pixels = int(raw.replace("_", ""))
        except ValueError:
            raise InvalidParameterError(
                f"{MAX_PIXELS_ENV} must be a positive integer number of pixels; got {raw!r}."
            ) from None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels <= 0:
        raise InvalidParameterError(f"{origin} must be a positive integer number of pixels; got {max_pixels!r}.")
    return int(max_pixels)


def _follow(follow_symlinks: bool | None) -> bool:
    if follow_symlinks is None:
        return os.environ.get(FOLLOW_SYMLINKS_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    if not isinstance(follow_symlinks, (bool, np.bool_)):
        raise InvalidParameterError(f"follow_symlinks must be True or False; got {follow_symlinks!r}.")
    return bool(follow_symlinks)


def load_image_folder(
    root: str | os.PathLike[str],
    *,
    image_size: int | tuple[int, int] | None = None,
    follow_symlinks: bool | None = None,
    max_pixels: int | None = None,
) -> tuple[DatasetInfo, dict[str, LoadedSplit]]:
    """Load both splits of an image folder (cached while no file changes).

    Args:
        root: Folder laid out as ``root/<class>/<image>`` or ``root/{train,test}/<class>/<image>``.
        image_size: ``H`` or ``(H, W)`` to resize every image to; required when the images differ in size.
        follow_symlinks: Follow symbolic links whose target lies outside ``root`` (links inside ``root`` are always
            followed). ``None`` reads ``$PICKWISE_FOLLOW_SYMLINKS`` (``1``/``true``/``yes``/``on``), default
            ``False``: skipped links are counted in a warning and in ``info.source``.
        max_pixels: Largest allowed ``width * height`` of one image, checked from the file header before decoding.
            ``None`` reads ``$PICKWISE_MAX_IMAGE_PIXELS``, default :data:`DEFAULT_MAX_PIXELS` (40 megapixels).

    Returns:
        ``(info, {"train": LoadedSplit, "test": LoadedSplit})``; arrays are shared with the cache, do not modify.

    Raises:
        DataNotFoundError: If ``root`` does not exist or Pillow is missing.
        DataFormatError: For an empty folder, no class subfolders, a single class, a class without images, an
            unreadable or too large image, or mixed image sizes without ``image_size``.
        InvalidParameterError: For a bad ``image_size``, ``follow_symlinks`` or ``max_pixels``.
    """
    path = Path(root).expanduser()
    if not path.exists():
        raise DataNotFoundError(
            f"image folder {_show(path)} does not exist; pass an existing directory laid out as "
            f"{_show(path)}/<class>/<image>.png."
        )
    if not path.is_dir():
        raise DataFormatError(
            f"image folder {_show(path)} is not a directory; pass a directory laid out as <dir>/<class>/."
        )
    size = as_image_size(image_size)
    limit = _max_pixels(max_pixels)
    path = path.resolve()
    walker = _Walker(path, _follow(follow_symlinks))
    layout = _layout(path, walker)
    note = walker.note()
    if note:
        warnings.warn(f"image folder {_show(path)}: {note}.", UserWarning, stacklevel=2)
    signature = []
    for _, items in layout[1]:
        for p, _, _ in items:
            try:
                stat = p.stat()
            except OSError as err:
                raise DataFormatError(
                    f"image folder: cannot read image {_show(p)} ({_one_line(err)}); fix or remove the file."
                ) from None
            signature.append((str(p), stat.st_mtime_ns, stat.st_size))
    return _load_cached(path, size, limit, layout, note, tuple(signature))
