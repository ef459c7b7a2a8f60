"""Domains of the active-DA segmentation task: GTA5, SYNTHIA-RAND-CITYSCAPES, Cityscapes and the embedded benchmark.

:func:`load_seg_domain` returns a :class:`SegDomain` whose items are ``(image float[3,H,W] normalized with
IMAGENET_MEAN/STD, label long[H,W] train ids with 255 = ignore, index int)``.

Layouts (the reference notes ``datasets.md`` §2; the folder is ``root``, a subfolder of it named after the
dataset, or ``$PICKWISE_DATA_DIR/<name>``):

=============== ======================================================= ===============================================
name            images                                                  labels
=============== ======================================================= ===============================================
``gta5``        ``images/NNNNN.png``                                    ``labels/NNNNN.png`` (palette PNG, Cityscapes
                                                                        label ids)
``synthia``     ``RAND_CITYSCAPES/RGB/NNNNNNN.png`` (or ``RGB/``)       ``RAND_CITYSCAPES/GT/LABELS/NNNNNNN.png``:
                                                                        16-bit multi-channel PNG, class id in the
                                                                        first (R) channel
``cityscapes``  ``leftImg8bit/<split>/<city>/*_leftImg8bit.png``        ``gtFine/<split>/<city>/*_gtFine_labelIds.png``
=============== ======================================================= ===============================================

Splits: GTA5 and SYNTHIA are source domains used whole (``split="train"``, all images, as RIPU's lists);
Cityscapes has ``"train"`` (2,975) and ``"val"`` (500; ``"test"`` is an alias, because the official test labels
are private and the DA benchmark evaluates on val). Protocols: ``num_classes`` 19 (default for GTA5 and
Cityscapes), 16 (default for SYNTHIA) or 13 (:mod:`pickwise.tasks.adaseg.labels`).

**16-bit SYNTHIA labels.** Pillow (and imageio's default plugin) silently reduce a 16-bit RGB PNG to 8 bits by
keeping the high byte, which turns every class id (0-22) into 0. The labels are therefore read with OpenCV
(``IMREAD_UNCHANGED``, BGR → channel 2) when it is installed, else with the small pure-numpy PNG decoder
:func:`read_png` here (exact, slower). Label-id images are checked: ids outside the dataset's table, and an image
whose size differs from its label's (GTA5 frames 20801-20860 are known cases), are one-line
:class:`~pickwise.exceptions.DataFormatError` s.

The embedded benchmark ``synth-source`` / ``synth-target`` (:mod:`pickwise.tasks.adaseg.synth`) is generated on
first use (``root``: its folder; default :func:`~pickwise.tasks.adaseg.synth.default_adaseg_synth_root`) and held
in memory.
"""

from __future__ import annotations

import json
import operator
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ...exceptions import DataFormatError, DataNotFoundError, InvalidParameterError
from ...models._registry import IMAGENET_MEAN, IMAGENET_STD
from .labels import IGNORE_INDEX, class_names_for, label_lut, map_label_ids

__all__ = [
    "DATASET_NAMES",
    "SegDomain",
    "class_names",
    "load_seg_domain",
    "read_png",
    "resolve_seg_root",
    "write_png",
]

DATASET_NAMES = ("gta5", "synthia", "cityscapes", "synth-source", "synth-target")
_DEFAULT_CLASSES = {"gta5": 19, "synthia": 16, "cityscapes": 19}
_ALIASES = {"gta5": ("gta5", "gtav", "GTA5"), "synthia": ("synthia", "SYNTHIA"), "cityscapes": ("cityscapes",)}
_HOW_TO_GET = {
    "gta5": "download 'Playing for Data' from https://download.visinf.tu-darmstadt.de/data/from_games/ and unpack "
    "images/ and labels/ into it",
    "synthia": "download SYNTHIA-RAND-CITYSCAPES from https://synthia-dataset.net/ and unpack RAND_CITYSCAPES/ "
    "(RGB/, GT/LABELS/) into it",
    "cityscapes": "register at https://www.cityscapes-dataset.com/ and unpack leftImg8bit_trainvaltest.zip and "
    "gtFine_trainvaltest.zip into it",
}


# ------------------------------------------------------------------------------------------------------------- PNG


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo the per-scanline PNG filters (types 0-4) into ``uint8[height, stride]``."""
    out = np.zeros((height, stride), dtype=np.uint8)
    prior = np.zeros(stride, dtype=np.int64)
    data = np.frombuffer(raw, dtype=np.uint8)
    if data.size != height * (stride + 1):
        raise DataFormatError(f"PNG: decompressed data has {data.size} bytes; expected {height * (stride + 1)}")
    rows = data.reshape(height, stride + 1)
    for y in range(height):
        ftype, line = int(rows[y, 0]), rows[y, 1:].astype(np.int64)
        if ftype == 0:
            cur = line
        elif ftype == 1:  # Sub: a running sum per byte lane
            lanes = np.zeros(-(-stride // bpp) * bpp, dtype=np.int64)
            lanes[:stride] = line
            cur = (np.cumsum(lanes.reshape(-1, bpp), axis=0).reshape(-1)[:stride]) % 256
        elif ftype == 2:
            cur = (line + prior) % 256
        elif ftype in (3, 4):
            cur = np.zeros(stride, dtype=np.int64)
            lst, pr = line.tolist(), prior.tolist()
            res = [0] * stride
            for x in range(stride):
                a = res[x - bpp] if x >= bpp else 0
                c = pr[x - bpp] if x >= bpp else 0
                pred = (a + pr[x]) // 2 if ftype == 3 else _paeth(a, pr[x], c)
                res[x] = (lst[x] + pred) % 256
            cur = np.asarray(res, dtype=np.int64)
        else:
            raise DataFormatError(f"PNG: unknown filter type {ftype} in row {y}")
        out[y] = cur
        prior = cur
    return out


def _decode_png(path: Path) -> np.ndarray:
    """Pure-numpy PNG decoder (greyscale/RGB/GA/RGBA, 8 or 16 bit, not interlaced): ``(H, W[, C])`` uint8/uint16."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise DataFormatError(f"{path}: not a PNG file")
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise DataFormatError(f"{path}: PNG without IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if channels is None or depth not in (8, 16) or interlace:
        raise DataFormatError(
            f"{path}: PNG colour type {colour}, bit depth {depth}, interlace {interlace} is not supported by the "
            "built-in decoder; install opencv-python-headless"
        )
    bpp = channels * depth // 8
    raw = _unfilter(zlib.decompress(b"".join(idat)), height, width * bpp, bpp)
    if depth == 16:
        arr = raw.reshape(height, width * channels, 2).astype(np.uint16)
        pixels = (arr[..., 0] << 8) | arr[..., 1]
    else:
        pixels = raw
    pixels = pixels.reshape(height, width, channels)
    return pixels[..., 0] if channels == 1 else pixels


def read_png(path: str | os.PathLike[str], *, backend: str = "auto") -> np.ndarray:
    """Read a PNG keeping its bit depth: ``(H, W)`` or ``(H, W, C)`` (RGB order) uint8 or uint16.

    Args:
        path: The file.
        backend: ``"cv2"`` (OpenCV ``IMREAD_UNCHANGED``), ``"numpy"`` (built-in decoder: 8/16-bit grey, GA, RGB, RGBA,
            not interlaced, no palette) or ``"auto"`` (OpenCV when importable).

    Raises:
        DataFormatError: Unreadable or unsupported file.
    """
    path = Path(path)
    if backend not in ("auto", "cv2", "numpy"):
        raise InvalidParameterError(f"read_png: backend must be 'auto', 'cv2' or 'numpy'; got {backend!r}")
    if backend in ("auto", "cv2"):
        try:
            import cv2
        except ImportError:
            if backend == "cv2":
                raise
        else:
            arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if arr is None:
                raise DataFormatError(f"{path}: OpenCV cannot read this file (missing or not an image)")
            if arr.ndim == 3:
                arr = arr[..., [2, 1, 0]] if arr.shape[2] == 3 else arr[..., [2, 1, 0, 3]]
            return np.ascontiguousarray(arr)
    return _decode_png(path)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8/uint16 ``(H, W)`` or ``(H, W, 1|2|3|4)`` array (no filtering, zlib level 6)."""
    arr = np.asarray(array)
    if arr.dtype not in (np.uint8, np.uint16) or arr.ndim not in (2, 3):
        raise InvalidParameterError(f"encode_png: need uint8/uint16 (H, W[, C]); got {arr.dtype} {arr.shape}")
    if arr.ndim == 2:
        arr = arr[..., None]
    height, width, channels = arr.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    depth = 16 if arr.dtype == np.uint16 else 8
    body = arr.astype(">u2").tobytes() if depth == 16 else arr.tobytes()
    stride = width * channels * depth // 8
    rows = np.frombuffer(body, dtype=np.uint8).reshape(height, stride)
    raw = np.concatenate([np.zeros((height, 1), dtype=np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 6))
        + _png_chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write :func:`encode_png` bytes atomically (temp file + ``os.replace``)."""
    from ...utils.io import atomic_write_bytes

    atomic_write_bytes(path, encode_png(array))


def _read_rgb(path: Path) -> np.ndarray:
    from ...data._base import import_optional

    image_mod = import_optional("PIL.Image", pip_name="pillow", dataset="adaseg")
    try:
        with image_mod.open(path) as im:
            return np.array(im.convert("RGB"))
    except (OSError, ValueError) as err:
        raise DataFormatError(f"{path}: cannot read the image ({err})") from None


def _read_id_map(path: Path) -> np.ndarray:
    """A single-channel label-id PNG (palette indices, 8- or 16-bit grey) as an integer array."""
    from ...data._base import import_optional

    image_mod = import_optional("PIL.Image", pip_name="pillow", dataset="adaseg")
    try:
        with image_mod.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
                raise DataFormatError(
                    f"{path}: label PNG has mode {im.mode}; expected a single-channel label-id map (palette or grey), "
                    "not a colour rendering (use the *labelIds* / labels/ files)"
                )
            return np.array(im)
    except OSError as err:
        raise DataFormatError(f"{path}: cannot read the label ({err})") from None


def _synthia_ids(path: Path) -> np.ndarray:
    arr = read_png(path)
    return arr[..., 0] if arr.ndim == 3 else arr


# --------------------------------------------------------------------------------------------------------- dataset


class SegDomain(Dataset):
    """One split of a segmentation domain: lists of image and label files, read (or held in memory) per item.

    Args:
        name: Domain name (``"gta5"``, ``"synth-target"``, ...).
        split: Split name.
        image_paths: Image files.
        label_paths: Label files, parallel to ``image_paths``.
        label_reader: ``path -> uint8[H, W]`` train ids (255 ignore), raising :class:`DataFormatError` on bad ids.
        class_names: Names of the ``num_classes`` classes in train-id order.
        root: The dataset folder.
        size: Resize every image (bilinear, antialiased) and label (nearest) to ``(H, W)``; ``None``: native size.
        preload: Read every file once at construction and keep uint8 arrays in memory.

    Items:
        ``(image float[3, H, W]`` normalized with ``IMAGENET_MEAN/STD``, ``label long[H, W]``, ``index int)``.
    """

    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        name: str,
        split: str,
        image_paths: Sequence[Path],
        label_paths: Sequence[Path],
        label_reader: Callable[[Path], np.ndarray],
        class_names: Sequence[str],
        root: Path | None = None,
        size: tuple[int, int] | None = None,
        preload: bool = False,
    ) -> None:
        if len(image_paths) != len(label_paths):
            raise DataFormatError(f"{name}: {len(image_paths)} images but {len(label_paths)} labels")
        self.name, self.split, self.root = name, split, root
        self.image_paths = [Path(p) for p in image_paths]
        self.label_paths = [Path(p) for p in label_paths]
        self._label_reader = label_reader
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        if size is not None:
            if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
                raise InvalidParameterError(f"{name}: size must be (H, W) positive ints; got {size!r}")
            size = (int(size[0]), int(size[1]))
        self.size = size
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255.0
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255.0
        self._images: list[np.ndarray] | None = None
        self._labels: list[np.ndarray] | None = None
        if preload:
            pairs = [self._read(i) for i in range(len(self))]
            self._images = [p[0] for p in pairs]
            self._labels = [p[1] for p in pairs]

    def __len__(self) -> int:
        return len(self.image_paths)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image = _read_rgb(self.image_paths[index])
        label = self._label_reader(self.label_paths[index])
        if image.shape[:2] != label.shape[:2]:
            raise DataFormatError(
                f"{self.name}: image {self.image_paths[index]} is {image.shape[1]}x{image.shape[0]} but its label "
                f"{self.label_paths[index]} is {label.shape[1]}x{label.shape[0]} (W x H); remove the pair from the "
                "folder (GTA5 frames 20801-20860 are known to mismatch)"
            )
        return image, label

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(uint8[H, W, 3] image, uint8[H, W] train ids)`` at native size."""
        if self._images is not None and self._labels is not None:
            return self._images[index], self._labels[index]
        return self._read(index)

    def label(self, index: int) -> torch.Tensor:
        """The label ``long[H, W]`` of item ``index``, resized like the items (no image decoding when preloaded)."""
        return self._to_tensors(*self.load_pair(index))[1]

    def _to_tensors(self, image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
        lbl = torch.from_numpy(np.ascontiguousarray(label)).long()
        if self.size is not None and tuple(img.shape[-2:]) != self.size:
            img = F.interpolate(img[None], size=self.size, mode="bilinear", align_corners=False, antialias=True)[0]
            lbl = F.interpolate(lbl[None, None].float(), size=self.size, mode="nearest")[0, 0].long()
        return (img - self._mean) / self._std, lbl

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        try:
            index = operator.index(index)  # int, numpy integer or 0-d integer tensor
        except TypeError:
            raise InvalidParameterError(f"{self.name}: index must be an int; got {type(index).__name__}") from None
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} items")
        index = int(index) % len(self)
        image, label = self._to_tensors(*self.load_pair(index))
        return image, label, index

    def __repr__(self) -> str:
        return (
            f"SegDomain(name={self.name!r}, split={self.split!r}, n={len(self)}, num_classes={self.num_classes}, "
            f"root={str(self.root)!r})"
        )


# ---------------------------------------------------------------------------------------------------- real datasets


def resolve_seg_root(name: str, root: str | os.PathLike[str] | None, marker: str) -> Path:
    """The folder of dataset ``name``: ``root`` or a subfolder named after it, else ``$PICKWISE_DATA_DIR/<name>``.

    Raises:
        DataNotFoundError: One line saying where to put the data.
    """
    how = _HOW_TO_GET[name]
    if root is not None:
        base, source = Path(root).expanduser(), f"root={str(root)!r}"
    elif os.environ.get("PICKWISE_DATA_DIR", "").strip():
        base = Path(os.environ["PICKWISE_DATA_DIR"].strip()).expanduser() / name
        source = f"$PICKWISE_DATA_DIR/{name}"
    else:
        raise DataNotFoundError(
            f"{name}: no dataset folder given; pass root=<folder> or put it at $PICKWISE_DATA_DIR/{name} ({how})"
        )
    for cand in [base] + [base / sub for sub in _ALIASES[name]]:
        if (cand / marker).is_dir():
            return cand
    raise DataNotFoundError(f"{name}: no '{marker}' folder in {base} ({source}); put the dataset there: {how}")


def _pairs_by_name(name: str, images_dir: Path, labels_dir: Path) -> tuple[list[Path], list[Path]]:
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() == ".png")
    if not images:
        raise DataFormatError(f"{name}: no .png images in {images_dir}")
    labels = [labels_dir / p.name for p in images]
    missing = [p for p in labels if not p.is_file()]
    if missing:
        raise DataFormatError(
            f"{name}: {len(missing)} images have no label file, e.g. {missing[0]}; every image needs a same-named "
            f"label in {labels_dir}"
        )
    return images, labels


def _load_gta5(root: Any, split: str, num_classes: int, **kwargs: Any) -> SegDomain:
    _source_split("gta5", split)
    folder = resolve_seg_root("gta5", root, "images")
    labels_dir = folder / "labels"
    if not labels_dir.is_dir():
        raise DataNotFoundError(f"gta5: {folder} has images/ but no labels/ folder; {_HOW_TO_GET['gta5']}")
    images, labels = _pairs_by_name("gta5", folder / "images", labels_dir)
    lut = label_lut("cityscapes", num_classes)

    def reader(path: Path) -> np.ndarray:
        return map_label_ids(_read_id_map(path), lut, where=f"gta5 label {path}")

    return SegDomain("gta5", "train", images, labels, reader, class_names_for(num_classes), folder, **kwargs)


def _load_synthia(root: Any, split: str, num_classes: int, **kwargs: Any) -> SegDomain:
    _source_split("synthia", split)
    try:
        folder = resolve_seg_root("synthia", root, "RAND_CITYSCAPES") / "RAND_CITYSCAPES"
    except DataNotFoundError:
        folder = resolve_seg_root("synthia", root, "RGB")
    labels_dir = folder / "GT" / "LABELS"
    if not labels_dir.is_dir():
        raise DataNotFoundError(f"synthia: {folder} has RGB/ but no GT/LABELS/ folder; {_HOW_TO_GET['synthia']}")
    images, labels = _pairs_by_name("synthia", folder / "RGB", labels_dir)
    lut = label_lut("synthia", num_classes)

    def reader(path: Path) -> np.ndarray:
        return map_label_ids(_synthia_ids(path), lut, where=f"synthia label {path}")

    return SegDomain("synthia", "train", images, labels, reader, class_names_for(num_classes), folder, **kwargs)


def _source_split(name: str, split: str) -> None:
    if split not in ("train", "all"):
        raise InvalidParameterError(
            f"{name}: a source domain is used whole; split must be 'train' (or 'all'); got {split!r}"
        )


def _load_cityscapes(root: Any, split: str, num_classes: int, **kwargs: Any) -> SegDomain:
    if split not in ("train", "val", "test"):
        raise InvalidParameterError(f"cityscapes: split must be 'train', 'val' or 'test' (= val); got {split!r}")
    disk_split = "val" if split == "test" else split
    folder = resolve_seg_root("cityscapes", root, "leftImg8bit")
    images_dir, labels_dir = folder / "leftImg8bit" / disk_split, folder / "gtFine" / disk_split
    if not images_dir.is_dir():
        raise DataNotFoundError(f"cityscapes: no {images_dir}; {_HOW_TO_GET['cityscapes']}")
    if not labels_dir.is_dir():
        raise DataNotFoundError(f"cityscapes: no {labels_dir} (gtFine); {_HOW_TO_GET['cityscapes']}")
    images = sorted(images_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise DataFormatError(f"cityscapes: no <city>/*_leftImg8bit.png files in {images_dir}")
    labels = [labels_dir / p.parent.name / p.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png") for p in images]
    missing = [p for p in labels if not p.is_file()]
    if missing:
        raise DataFormatError(f"cityscapes: {len(missing)} images have no *_gtFine_labelIds.png, e.g. {missing[0]}")
    lut = label_lut("cityscapes", num_classes)

    def reader(path: Path) -> np.ndarray:
        return map_label_ids(_read_id_map(path), lut, where=f"cityscapes label {path}")

    return SegDomain("cityscapes", split, images, labels, reader, class_names_for(num_classes), folder, **kwargs)


_LOADERS = {"gta5": _load_gta5, "synthia": _load_synthia, "cityscapes": _load_cityscapes}


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name.strip().lower() not in DATASET_NAMES:
        raise InvalidParameterError(f"unknown segmentation domain {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return name.strip().lower()


def load_seg_domain(
    name: str,
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    *,
    num_classes: int | None = None,
    size: tuple[int, int] | None = None,
    preload: bool | None = None,
) -> SegDomain:
    """Load one split of a segmentation domain (see the module docstring for names, layouts and splits).

    Args:
        name: ``"gta5"``, ``"synthia"``, ``"cityscapes"``, ``"synth-source"`` or ``"synth-target"``.
        root: Dataset folder (for the synthetic benchmark: its folder, generated there on first use).
        split: ``"train"``; Cityscapes ``"val"``/``"test"``; the synthetic benchmark ``"train"``/``"test"``.
        num_classes: Protocol 19, 16 or 13 (real datasets; default 19 for GTA5/Cityscapes, 16 for SYNTHIA). The
            synthetic benchmark has its own classes (background + 10 items); pass ``None`` or that number.
        size: Resize items to ``(H, W)`` (images bilinear, labels nearest).
        preload: Keep decoded arrays in memory (default: True for the synthetic benchmark, False otherwise).

    Raises:
        InvalidParameterError: Unknown name, split or protocol.
        DataNotFoundError: The dataset folder is missing (the message says where to put it).
        DataFormatError: Files do not have the expected layout or content.

    Example:
        >>> load_seg_domain("cityscapes", root="/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        pickwise.exceptions.DataNotFoundError: cityscapes: no 'leftImg8bit' folder in /nonexistent ...
    """
    key = _check_name(name)
    if key.startswith("synth-"):
        from .synth import load_synth_domain

        return load_synth_domain(key, root, split, num_classes=num_classes, size=size, preload=preload)
    k = _DEFAULT_CLASSES[key] if num_classes is None else num_classes
    class_names_for(k)  # validates the protocol
    return _LOADERS[key](root, split, k, size=size, preload=bool(preload))


def class_names(name: str, num_classes: int | None = None) -> tuple[str, ...]:
    """Class names of a domain in train-id order (the protocol's for real datasets).

    Example:
        >>> class_names("synthia")[:3], len(class_names("gta5")), len(class_names("synthia", 13))
        (('road', 'sidewalk', 'building'), 19, 13)
    """
    key = _check_name(name)
    if key.startswith("synth-"):
        from .synth import default_adaseg_synth_root, synth_class_names

        manifest = default_adaseg_synth_root() / "manifest.json"
        try:
            return tuple(json.loads(manifest.read_text())["class_names"])
        except (OSError, ValueError, KeyError, TypeError):
            return synth_class_names()
    return class_names_for(_DEFAULT_CLASSES[key] if num_classes is None else num_classes)
