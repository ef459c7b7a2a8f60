"""Bayer RAW I/O for learned ISP: CFA patterns, ZRR packing, black/white levels, PNG and DNG files, ZRR dataset.

**Packing (Zurich RAW-to-RGB, AIM 2020).** The challenge code (``extract_bayer_channels`` in PyNET-PyTorch, AWNet and
MW-ISPNet, identical in all three) packs a Huawei P20 mosaic as::

    B = raw[1::2, 1::2]; Gb = raw[0::2, 1::2]; R = raw[0::2, 0::2]; Gr = raw[1::2, 0::2]   -> stack (B, Gb, R, Gr)

i.e. the sensor is RGGB and ZRR calls the green in the *red* row "Gb" and the green in the *blue* row "Gr". A model
trained on ZRR expects these semantics, so :func:`pack_bayer` takes the sensor's CFA pattern explicitly and always
returns ``(B, G in R's row, R, G in B's row)``; for ``"RGGB"`` this is exactly ZRR's slicing. :func:`unpack_bayer`
is its exact inverse.

**Normalisation conventions** (:data:`RAW_CONVENTIONS`, all verified in the teams' code; 10-bit values stored in
16-bit PNGs):

- ``"pynet"``: ``raw / (4 * 255)`` = ``raw / 1020``, no black level (PyNET, AWNet);
- ``"skyb"``: ``raw / 1023`` (PyNet-CA, team skyb);
- ``"mwisp"``: ``max(raw - 63, 0) / (1020 - 63)`` (MW-ISPNet, also LiteISPNet): black level 63, white level 1020.

Values above the white level are *not* clipped by ``"pynet"``/``"skyb"`` (PyNET lets 1021-1023 through as
slightly above 1); ``"mwisp"`` does not clip either (its code does not). Use :class:`RawLevels` for any other sensor.

**Files.** :func:`read_raw_png` reads a ZRR RAW patch (one channel, 16-bit container) without loss, refuses 8-bit
files and out-of-range values; :func:`write_dng` / :func:`read_dng` write and read real DNGs (``pidng`` and ``rawpy``,
optional extras ``pip install 'pickwise[isp]'``) bit-exactly for 16-bit data.

**Dataset.** :class:`ZRRDataset` reads ZRR's layout ``<root>/<split>/huawei_raw/<i>.png`` +
``<root>/<split>/canon/<i>.jpg`` (or ``.png``) and returns ``(raw float[4, h, w], rgb float[3, 2h, 2w] in [0, 1],
name)``; ``split="full"`` reads ``<root>/full_resolution/{huawei_raw,canon}`` (the generated benchmark's full images).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ...exceptions import DataFormatError, DataNotFoundError, InvalidParameterError, ShapeError

__all__ = [
    "CFA_PATTERNS",
    "PACKED_ORDER",
    "RAW_CONVENTIONS",
    "RawLevels",
    "ZRRDataset",
    "cfa_offsets",
    "denormalize_raw",
    "normalize_raw",
    "pack_bayer",
    "pseudo_demosaic",
    "read_dng",
    "read_raw_png",
    "read_rgb",
    "unpack_bayer",
    "write_dng",
    "write_raw_png",
]

CFA_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
"""Bayer patterns, named by the 2x2 tile read row by row from the top-left pixel."""

PACKED_ORDER = ("B", "Gb", "R", "Gr")
"""Channel order of packed RAW (ZRR's): blue, green in red's row ("Gb" in ZRR's code), red, green in blue's row."""


@dataclass(frozen=True)
class RawLevels:
    """Black and white level of a sensor in raw digital numbers: ``x_norm = (x - black) / (white - black)``."""

    black: float = 0.0
    white: float = 1020.0
    clip_black: bool = False

    def __post_init__(self) -> None:
        if not self.white > self.black:
            raise InvalidParameterError(f"RawLevels: white level ({self.white}) must exceed black level ({self.black})")


RAW_CONVENTIONS: dict[str, RawLevels] = {
    "pynet": RawLevels(0.0, 1020.0),
    "skyb": RawLevels(0.0, 1023.0),
    "mwisp": RawLevels(63.0, 1020.0, clip_black=True),
}
"""The three published ZRR normalisations (PyNET/AWNet, skyb, MW-ISPNet/LiteISPNet)."""


def _check_pattern(pattern: str) -> str:
    if not isinstance(pattern, str) or pattern.upper() not in CFA_PATTERNS:
        raise InvalidParameterError(
            f"unknown CFA pattern {pattern!r}; use one of {', '.join(CFA_PATTERNS)} (ZRR's Huawei P20 is RGGB)"
        )
    return pattern.upper()


def cfa_offsets(pattern: str) -> dict[str, tuple[int, int]]:
    """``(row, col)`` offset inside the 2x2 tile of each packed channel ``B, Gb, R, Gr`` for a CFA ``pattern``.

    ``Gb`` is the green sharing a row with red and ``Gr`` the green sharing a row with blue (ZRR's naming).

    Example:
        >>> cfa_offsets("RGGB")
        {'B': (1, 1), 'Gb': (0, 1), 'R': (0, 0), 'Gr': (1, 0)}
    """
    pattern = _check_pattern(pattern)
    pos = {(i // 2, i % 2): ch for i, ch in enumerate(pattern)}
    r = next(p for p, ch in pos.items() if ch == "R")
    b = next(p for p, ch in pos.items() if ch == "B")
    g_red_row = next(p for p, ch in pos.items() if ch == "G" and p[0] == r[0])
    g_blue_row = next(p for p, ch in pos.items() if ch == "G" and p[0] == b[0])
    return {"B": b, "Gb": g_red_row, "R": r, "Gr": g_blue_row}


def _stack(planes: list[Any], axis: int) -> Any:
    if isinstance(planes[0], torch.Tensor):
        return torch.stack(planes, dim=axis)
    return np.stack(planes, axis=axis)


def pack_bayer(mosaic: Any, pattern: str = "RGGB") -> Any:
    """Pack a Bayer mosaic ``[..., H, W]`` into ``[..., 4, H/2, W/2]`` in ZRR's order ``(B, Gb, R, Gr)``.

    Works on numpy arrays and torch tensors (any dtype, no copy of values). ``H`` and ``W`` must be even.

    Example:
        >>> import numpy as np
        >>> raw = np.arange(16).reshape(4, 4)
        >>> pack_bayer(raw, "RGGB")[:, 0, 0].tolist()  # B=raw[1,1], Gb=raw[0,1], R=raw[0,0], Gr=raw[1,0]
        [5, 1, 0, 4]
    """
    offsets = cfa_offsets(pattern)
    if mosaic.ndim < 2:
        raise ShapeError(f"pack_bayer: expected a mosaic [..., H, W], got shape {tuple(mosaic.shape)}")
    h, w = mosaic.shape[-2:]
    if h % 2 or w % 2:
        raise ShapeError(
            f"pack_bayer: mosaic of {h}x{w} has an odd side; crop it to {h - h % 2}x{w - w % 2} "
            "(an even crop keeps the CFA phase when it starts at an even row and column)"
        )
    planes = [mosaic[..., r::2, c::2] for r, c in (offsets[ch] for ch in PACKED_ORDER)]
    return _stack(planes, axis=mosaic.ndim - 2)


def unpack_bayer(packed: Any, pattern: str = "RGGB") -> Any:
    """Inverse of :func:`pack_bayer`: ``[..., 4, h, w]`` in ``(B, Gb, R, Gr)`` order -> mosaic ``[..., 2h, 2w]``."""
    offsets = cfa_offsets(pattern)
    if packed.ndim < 3 or packed.shape[-3] != 4:
        raise ShapeError(f"unpack_bayer: expected packed RAW [..., 4, h, w], got shape {tuple(packed.shape)}")
    h, w = packed.shape[-2:]
    shape = (*packed.shape[:-3], 2 * h, 2 * w)
    out: Any = packed.new_empty(shape) if isinstance(packed, torch.Tensor) else np.empty(shape, dtype=packed.dtype)
    for i, ch in enumerate(PACKED_ORDER):
        r, c = offsets[ch]
        out[..., r::2, c::2] = packed[..., i, :, :]
    return out


def _levels(convention: str | RawLevels) -> RawLevels:
    if isinstance(convention, RawLevels):
        return convention
    if convention not in RAW_CONVENTIONS:
        raise InvalidParameterError(
            f"unknown RAW normalisation {convention!r}; use one of {', '.join(RAW_CONVENTIONS)} or a RawLevels(...)"
        )
    return RAW_CONVENTIONS[convention]


def normalize_raw(x: Any, convention: str | RawLevels = "pynet") -> Any:
    """Raw digital numbers -> float: ``(x - black) / (white - black)`` (black clipped first for ``"mwisp"``).

    Args:
        x: raw values (numpy array or tensor, any integer or float dtype).
        convention: ``"pynet"`` (``x / 1020``), ``"skyb"`` (``x / 1023``), ``"mwisp"``
            (``max(x - 63, 0) / 957``) or a :class:`RawLevels`.

    Returns:
        float32 array/tensor of the same kind (float64 stays float64).

    Example:
        >>> import numpy as np
        >>> [round(float(normalize_raw(np.array(1020), c)), 6) for c in ("pynet", "skyb", "mwisp")]
        [1.0, 0.997067, 1.0]
    """
    lv = _levels(convention)
    if isinstance(x, torch.Tensor):
        x = x if x.dtype == torch.float64 else x.float()
        y = x - lv.black
        if lv.clip_black:
            y = y.clamp_min(0.0)
    else:
        x = np.asarray(x)
        x = x if x.dtype == np.float64 else x.astype(np.float32)
        y = x - np.asarray(lv.black, dtype=x.dtype)
        if lv.clip_black:
            y = np.maximum(y, 0)
    return y / (lv.white - lv.black)


def denormalize_raw(x: Any, convention: str | RawLevels = "pynet") -> Any:
    """Inverse of :func:`normalize_raw` (float raw digital numbers; the black clip is not undone)."""
    lv = _levels(convention)
    return x * (lv.white - lv.black) + lv.black


def pseudo_demosaic(packed: torch.Tensor, full_resolution: bool = False) -> torch.Tensor:
    """Half-resolution RGB preview of packed RAW ``[..., 4, h, w]``: ``(R, (Gb + Gr) / 2, B)``.

    With ``full_resolution=True`` the planes are bilinearly upsampled x2 first, like AWNet's 3-channel input
    (which uses OpenCV resizing and BGR order). No white balance or gamma: apply them for display.
    """
    if packed.ndim < 3 or packed.shape[-3] != 4:
        raise ShapeError(f"pseudo_demosaic: expected packed RAW [..., 4, h, w], got shape {tuple(packed.shape)}")
    b, gb, r, gr = packed.unbind(dim=-3)
    rgb = torch.stack([r, 0.5 * (gb + gr), b], dim=-3)
    if full_resolution:
        lead = rgb.shape[:-3]
        flat = rgb.reshape(-1, 3, *rgb.shape[-2:])
        flat = F.interpolate(flat, scale_factor=2, mode="bilinear", align_corners=False)
        rgb = flat.reshape(*lead, 3, *flat.shape[-2:])
    return rgb


# ----------------------------------------------------------------------------------------------------------- files


def _pil(path: Path, what: str):
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - pillow is a core dependency of the data stack
        raise DataNotFoundError(f"{what}: needs pillow; install it with `pip install pillow`") from None
    if not path.is_file():
        raise DataNotFoundError(f"{what}: file not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataFormatError(
            f"{what}: cannot decode {path} ({type(err).__name__}: {err}); the file is corrupt or not an image"
        ) from None
    return image


def read_raw_png(
    path: str | os.PathLike[str], bit_depth: int = 10, white_level: int | None = None, clip: bool = False
) -> np.ndarray:
    """Read a ZRR RAW patch: a one-channel 16-bit PNG holding a 10-bit Bayer mosaic -> ``uint16 [H, W]``.

    Args:
        path: PNG file.
        bit_depth: bits of the sensor data (10 for ZRR's Huawei P20).
        white_level: largest valid value; default ``2**bit_depth - 1`` (1023).
        clip: clip values above ``white_level`` instead of raising (default False: they mean a wrong file or a
            wrong ``bit_depth``).

    Raises:
        DataFormatError: 8-bit or colour PNG, values above the white level, undecodable file.
    """
    path = Path(path)
    image = _pil(path, "read_raw_png")
    if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise DataFormatError(
            f"read_raw_png: {path} is a {image.mode!r} PNG, not a one-channel 16-bit RAW mosaic; ZRR stores "
            f"{bit_depth}-bit RAW in 16-bit PNGs (an 8-bit/colour file is an RGB image, not RAW)"
        )
    raw = np.asarray(image)
    if raw.ndim != 2:
        raise DataFormatError(f"read_raw_png: {path} has shape {raw.shape}; expected a one-channel mosaic")
    limit = (1 << bit_depth) - 1 if white_level is None else int(white_level)
    peak = int(raw.max()) if raw.size else 0
    if peak > limit or int(raw.min()) < 0:
        if not clip:
            raise DataFormatError(
                f"read_raw_png: {path} has values up to {peak}, above the white level {limit} for {bit_depth}-bit "
                "RAW; pass the right bit_depth/white_level, or clip=True to clip"
            )
        raw = np.clip(raw, 0, limit)
    return raw.astype(np.uint16)


def write_raw_png(path: str | os.PathLike[str], mosaic: np.ndarray) -> None:
    """Write a ``uint16 [H, W]`` mosaic as a 16-bit grey PNG (atomically: temp file + ``os.replace``)."""
    from PIL import Image

    from ...utils.io import atomic_write_bytes

    mosaic = np.asarray(mosaic)
    if mosaic.ndim != 2 or mosaic.dtype != np.uint16:
        raise DataFormatError(f"write_raw_png: expected uint16 [H, W], got {mosaic.dtype} {mosaic.shape}")
    buf = io.BytesIO()
    Image.fromarray(mosaic).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an 8-bit RGB target (JPEG or PNG) as ``uint8 [H, W, 3]``; grey images are replicated."""
    path = Path(path)
    image = _pil(path, "read_rgb")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        raise DataFormatError(f"read_rgb: {path} is a 16-bit one-channel image (a RAW mosaic?), not an RGB target")
    return np.asarray(image.convert("RGB"))


_DNG_MIN_SIDE = 22  # measured: LibRaw 0.22 rejects 20x20 and 32x16 frames, reads 22x22


def write_dng(
    path: str | os.PathLike[str],
    mosaic: np.ndarray,
    pattern: str = "RGGB",
    black_level: int = 0,
    white_level: int | None = None,
    bits: int = 16,
    color_matrix: np.ndarray | None = None,
    as_shot_neutral: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> None:
    """Write a Bayer mosaic as an uncompressed DNG with pidng (``pip install pidng``).

    Args:
        path: output ``.dng`` file.
        mosaic: ``uint16 [H, W]`` mosaic (values up to ``2**bits - 1``).
        pattern: CFA pattern of ``mosaic``.
        black_level: black level tag (digital numbers).
        white_level: white level tag; default ``2**bits - 1``.
        bits: BitsPerSample, 16 or 12 (pidng fails on 14; rawpy reads both 12 and 16 back bit-exactly).
        color_matrix: ColorMatrix1, XYZ -> camera 3x3 (default identity).
        as_shot_neutral: AsShotNeutral (camera-space white).
    """
    pattern = _check_pattern(pattern)
    try:
        from pidng.core import RAW2DNG, DNGTags, Tag
        from pidng.defs import CFAPattern, DNGVersion, PhotometricInterpretation
    except ImportError:
        raise DataNotFoundError(
            "write_dng: needs the optional package 'pidng'; install it with `pip install pidng` "
            "(or `pip install 'pickwise[isp]'`)"
        ) from None
    mosaic = np.asarray(mosaic)
    if mosaic.ndim != 2 or mosaic.dtype != np.uint16:
        raise DataFormatError(f"write_dng: expected a uint16 mosaic [H, W], got {mosaic.dtype} {mosaic.shape}")
    if min(mosaic.shape) < _DNG_MIN_SIDE:
        raise ShapeError(
            f"write_dng: a {mosaic.shape[0]}x{mosaic.shape[1]} frame is too small; LibRaw (rawpy) refuses DNGs with a "
            f"side below {_DNG_MIN_SIDE} px, so write at least {_DNG_MIN_SIDE}x{_DNG_MIN_SIDE}"
        )
    if bits not in (12, 16):
        raise InvalidParameterError(f"write_dng: bits must be 12 or 16 (pidng cannot pack 14-bit), got {bits}")
    white = (1 << bits) - 1 if white_level is None else int(white_level)
    if int(mosaic.max(initial=0)) >= 1 << bits:
        raise DataFormatError(f"write_dng: values up to {int(mosaic.max())} do not fit in {bits} bits")
    path = Path(path)
    h, w = mosaic.shape
    cm = np.eye(3) if color_matrix is None else np.asarray(color_matrix, dtype=np.float64)

    def rational(v: float) -> list[int]:
        return [round(float(v) * 10000), 10000]

    tags = DNGTags()
    tags.set(Tag.ImageWidth, w)
    tags.set(Tag.ImageLength, h)
    tags.set(Tag.TileWidth, w)
    tags.set(Tag.TileLength, h)
    tags.set(Tag.BitsPerSample, bits)
    tags.set(Tag.SamplesPerPixel, 1)
    tags.set(Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array)
    tags.set(Tag.CFARepeatPatternDim, [2, 2])
    tags.set(Tag.CFAPattern, getattr(CFAPattern, pattern))
    tags.set(Tag.BlackLevel, int(black_level))
    tags.set(Tag.WhiteLevel, white)
    tags.set(Tag.ColorMatrix1, [rational(v) for v in cm.reshape(-1)])
    tags.set(Tag.CalibrationIlluminant1, 21)  # D65
    tags.set(Tag.AsShotNeutral, [rational(v) for v in as_shot_neutral])
    tags.set(Tag.DNGVersion, DNGVersion.V1_4)
    tags.set(Tag.DNGBackwardVersion, DNGVersion.V1_2)
    tags.set(Tag.Make, "pickwise")
    tags.set(Tag.Model, "synthetic")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = f".{path.stem}.{os.getpid()}.tmp"
    writer = RAW2DNG()
    writer.options(tags, path=str(path.parent), compress=False)
    writer.convert(mosaic, filename=tmp_name)
    os.replace(path.parent / f"{tmp_name}.dng", path)


def read_dng(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a DNG's visible Bayer mosaic with rawpy (``pip install rawpy``).

    Returns:
        ``(mosaic uint16 [H, W], info)`` with ``info`` = ``{"pattern": "RGGB"|..., "black_level": float,
        "white_level": int}``.
    """
    try:
        import rawpy
    except ImportError:
        raise DataNotFoundError(
            "read_dng: needs the optional package 'rawpy'; install it with `pip install rawpy` "
            "(or `pip install 'pickwise[isp]'`)"
        ) from None
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"read_dng: file not found: {path}")
    try:
        with rawpy.imread(str(path)) as raw:
            mosaic = np.array(raw.raw_image_visible, dtype=np.uint16, copy=True)
            desc = raw.color_desc.decode()
            tile = raw.raw_pattern
            if tile is None or np.asarray(tile).shape != (2, 2):
                raise DataFormatError(f"read_dng: {path} is not a 2x2 Bayer RAW (pattern {tile})")
            pattern = "".join(desc[int(i)] for i in np.asarray(tile).reshape(-1))
            info = {
                "pattern": pattern,
                "black_level": float(np.mean(raw.black_level_per_channel)),
                "white_level": int(raw.white_level),
            }
    except DataFormatError:
        raise
    except Exception as err:  # rawpy raises its own LibRawError hierarchy
        raise DataFormatError(
            f"read_dng: cannot decode {path} ({type(err).__name__}: {err}); the file is corrupt or not a RAW file"
        ) from None
    if info["pattern"] not in CFA_PATTERNS:
        raise DataFormatError(f"read_dng: {path} has an unsupported CFA pattern {info['pattern']!r}")
    return mosaic, info


# ----------------------------------------------------------------------------------------------------------- dataset

_SPLIT_DIRS = {"train": ("train",), "test": ("test",), "full": ("full_resolution",)}
_INDEX = re.compile(r"^(\d+)$")


def _sort_key(stem: str) -> tuple[int, int | str]:
    m = _INDEX.match(stem)
    return (0, int(m.group(1))) if m else (1, stem)


class ZRRDataset(Dataset):
    """Zurich RAW-to-RGB pairs in ZRR's folder layout (also the generated ``isp-synth`` benchmark).

    Layout: ``<root>/<split>/huawei_raw/<i>.png`` (10-bit Bayer in 16-bit PNG, RGGB) and
    ``<root>/<split>/canon/<i>.jpg`` or ``.png`` (8-bit RGB of the same height and width). ``split`` is ``"train"``,
    ``"test"`` or ``"full"`` (``<root>/full_resolution/``). Files are matched by stem and sorted numerically.

    Args:
        root: dataset root (the folder holding ``train/`` and ``test/``).
        split: ``"train"``, ``"test"`` or ``"full"``.
        crop: optional crop of the *RGB* target in pixels (int or ``(H, W)``, even); the RAW crop is the same
            region. Random on ``"train"``, centred otherwise (``random_crop`` overrides). Positions are even, so
            the CFA phase is kept.
        convention: RAW normalisation (see :func:`normalize_raw`), default ``"pynet"``.
        pattern: CFA pattern of the files (ZRR: ``"RGGB"``).
        bit_depth: RAW bit depth (10).
        random_crop: None (random for train) or an explicit choice.
        exclude: file stems to leave out (e.g. misaligned training pairs, as skyb's ``filter_imageid.txt``), or the
            path of a text file with one stem per line.

    Items are ``(raw float32 [4, h, w], rgb float32 [3, 2h, 2w] in [0, 1], name)`` where ``name`` is the file stem.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        crop: int | tuple[int, int] | None = None,
        convention: str | RawLevels = "pynet",
        pattern: str = "RGGB",
        bit_depth: int = 10,
        random_crop: bool | None = None,
        exclude: Sequence[str] | str | os.PathLike[str] | None = None,
    ) -> None:
        if split not in _SPLIT_DIRS:
            raise InvalidParameterError(f"ZRRDataset: split must be one of {', '.join(_SPLIT_DIRS)}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.pattern = _check_pattern(pattern)
        self.convention = convention
        _levels(convention)
        self.bit_depth = bit_depth
        size: tuple[int, ...] | None = None
        if crop is not None:
            size = (crop, crop) if isinstance(crop, int) else tuple(int(c) for c in crop)
            if len(size) != 2 or any(c <= 0 or c % 2 for c in size):
                raise InvalidParameterError(f"ZRRDataset: crop must be a positive even size, got {crop!r}")
        self.crop = size
        self.random_crop = split == "train" if random_crop is None else bool(random_crop)
        base = self.root.joinpath(*_SPLIT_DIRS[split])
        raw_dir, rgb_dir = base / "huawei_raw", base / "canon"
        if not raw_dir.is_dir() or not rgb_dir.is_dir():
            raise DataNotFoundError(
                f"ZRRDataset: {raw_dir} and {rgb_dir} must both exist (ZRR layout <root>/{'/'.join(_SPLIT_DIRS[split])}"
                "/huawei_raw/<i>.png + canon/<i>.jpg); download ZRR from the PyNET project page or generate the "
                "offline benchmark with pickwise.tasks.isp.synth.make_isp_synth(root)"
            )
        raws = {p.stem: p for p in raw_dir.iterdir() if p.suffix.lower() == ".png"}
        rgbs: dict[str, Path] = {}
        for p in rgb_dir.iterdir():
            if p.suffix.lower() in (".jpg", ".jpeg", ".png"):
                rgbs.setdefault(p.stem, p)
        names = sorted(set(raws) & set(rgbs), key=_sort_key)
        if not names:
            raise DataFormatError(
                f"ZRRDataset: no RAW/RGB pairs with matching names in {raw_dir} and {rgb_dir} "
                f"({len(raws)} RAW PNGs, {len(rgbs)} RGB images)"
            )
        missing = len(raws) + len(rgbs) - 2 * len(names)
        if missing:
            only = sorted((set(raws) ^ set(rgbs)), key=_sort_key)[:3]
            raise DataFormatError(
                f"ZRRDataset: {missing} files in {base} have no partner (e.g. {', '.join(only)}); every "
                "huawei_raw/<i>.png needs canon/<i>.jpg (or .png) and vice versa"
            )
        if exclude is not None:
            if isinstance(exclude, (str, os.PathLike)):
                path = Path(exclude)
                if not path.is_file():
                    raise DataNotFoundError(f"ZRRDataset: exclude list {path} not found")
                exclude = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            drop = {str(e) for e in exclude}
            names = [n for n in names if n not in drop]
            if not names:
                raise DataFormatError(f"ZRRDataset: every pair in {base} is excluded")
        self.names = names
        self.raw_paths = [raws[n] for n in names]
        self.rgb_paths = [rgbs[n] for n in names]

    def __len__(self) -> int:
        return len(self.names)

    def _crop_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        if self.crop is None:
            return 0, 0, h, w
        ch, cw = self.crop
        if ch > h or cw > w:
            raise ShapeError(f"ZRRDataset: crop {ch}x{cw} is larger than the image {h}x{w}; use a smaller crop")
        if self.random_crop:
            top = 2 * int(torch.randint(0, (h - ch) // 2 + 1, ()).item())
            left = 2 * int(torch.randint(0, (w - cw) // 2 + 1, ()).item())
        else:
            top, left = 2 * ((h - ch) // 4), 2 * ((w - cw) // 4)
        return top, left, ch, cw

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        raw = read_raw_png(self.raw_paths[index], bit_depth=self.bit_depth)
        rgb = read_rgb(self.rgb_paths[index])
        if raw.shape != rgb.shape[:2]:
            raise ShapeError(
                f"ZRRDataset: RAW {self.raw_paths[index].name} is {raw.shape[0]}x{raw.shape[1]} but its target "
                f"{self.rgb_paths[index].name} is {rgb.shape[0]}x{rgb.shape[1]}; ZRR pairs have equal sizes "
                "(the target is at the mosaic's resolution) - resize or drop the pair"
            )
        h, w = raw.shape
        if h % 2 or w % 2:
            raise ShapeError(
                f"ZRRDataset: RAW {self.raw_paths[index].name} is {h}x{w}; Bayer data needs even sides - crop it"
            )
        top, left, ch, cw = self._crop_box(h, w)
        raw = raw[top : top + ch, left : left + cw]
        rgb = rgb[top : top + ch, left : left + cw]
        packed = pack_bayer(torch.from_numpy(raw.astype(np.int32)), self.pattern)
        packed = normalize_raw(packed, self.convention).contiguous()
        target = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1).float().div_(255.0)
        return packed, target, self.names[index]
