"""Reader and writer for the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed).

An IDX file is a big-endian header ``0x00 0x00 <type code> <ndim>`` followed by ``ndim`` uint32 dimensions and the
row-major data (format described at http://yann.lecun.com/exdb/mnist/). Files whose name ends in ``.gz`` are read and
written through :mod:`gzip`.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..exceptions import DataFormatError, DataNotFoundError, InvalidParameterError

__all__ = ["read_idx", "read_idx_header", "write_idx"]

_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in _DTYPES.items()}


def _read_bytes(path: Path, size: int | None = None) -> bytes:
    """Read ``size`` bytes (all when ``None``) of a possibly gzipped file, mapping failures to pickwise errors."""
    if not path.is_file():
        raise DataNotFoundError(f"IDX file {path} does not exist; check the path or the dataset directory.")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            return fh.read() if size is None else fh.read(size)
    except (OSError, EOFError, zlib.error) as err:
        raise DataFormatError(
            f"IDX file {path} is corrupt or truncated ({err}); delete it and reinstall or re-download it."
        ) from None


def _parse_header(path: Path, data: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """Return ``(dtype, shape, header_size)`` after checking the magic number."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES or not 1 <= data[3] <= 8:
        raise DataFormatError(
            f"IDX file {path} has a bad magic number {data[:4].hex() or '(empty file)'}; expected 0000 followed by a "
            "type code (08, 09, 0b, 0c, 0d, 0e) and 1-8 dimensions. Is it really an IDX file?"
        )
    ndim = data[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataFormatError(f"IDX file {path} is truncated inside its header ({len(data)} bytes); re-download it.")
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    return _DTYPES[data[2]], tuple(int(s) for s in shape), header_size


def read_idx_header(path: str | os.PathLike[str]) -> tuple[np.dtype, tuple[int, ...]]:
    """Read only the header of an IDX file.

    Args:
        path: File path; ``.gz`` files are decompressed on the fly.

    Returns:
        ``(dtype, shape)`` declared by the header.

    Raises:
        DataNotFoundError: If the file does not exist.
        DataFormatError: If the magic number or header is invalid.
    """
    path = Path(path)
    dtype, shape, _ = _parse_header(path, _read_bytes(path, 4 + 4 * 8))
    return dtype, shape


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file into a numpy array in native byte order.

    Args:
        path: File path; ``.gz`` files are decompressed on the fly.

    Returns:
        Array with the dtype and shape declared by the header.

    Raises:
        DataNotFoundError: If the file does not exist.
        DataFormatError: If the magic number is wrong, or the data is shorter or longer than the header says.
    """
    path = Path(path)
    data = _read_bytes(path)
    dtype, shape, header_size = _parse_header(path, data)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header_size != expected:
        raise DataFormatError(
            f"IDX file {path} holds {len(data) - header_size} data bytes but its header declares shape {shape} "
            f"({expected} bytes); the file is truncated or corrupt, reinstall or re-download it."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``).

    Args:
        path: Destination file.
        array: Array of dtype uint8, int8, int16, int32, float32 or float64 with 1 to 8 dimensions.

    Raises:
        InvalidParameterError: If the dtype or number of dimensions cannot be stored in IDX.
    """
    array = np.asarray(array)
    key = (array.dtype.kind, array.dtype.itemsize)
    if key not in _CODES or not 1 <= array.ndim <= 8:
        raise InvalidParameterError(
            f"write_idx: array must have dtype uint8, int8, int16, int32, float32 or float64 and 1-8 dimensions; "
            f"got {array.dtype} with {array.ndim} dimensions."
        )
    code = _CODES[key]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes()
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(header + payload)
