import gzip

import numpy as np
import pytest

from pickwise.data.idx import read_idx, read_idx_header, write_idx
from pickwise.exceptions import DataFormatError, DataNotFoundError, InvalidParameterError


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([5, 0, 9], dtype=np.uint8),
        np.array([[-1, 2]], dtype=np.int8),
        np.array([-300, 7], dtype=np.int16),
        np.array([[1 << 20, -5]], dtype=np.int32),
        np.array([1.5, -2.25], dtype=np.float32),
        np.array([[3.125]], dtype=np.float64),
    ],
)
def test_round_trip(tmp_path, array, suffix):
    path = tmp_path / f"x-idx{suffix}"
    write_idx(path, array)
    out = read_idx(path)
    assert out.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(out, array)
    assert read_idx_header(path) == (out.dtype.newbyteorder(">") if out.itemsize > 1 else out.dtype, array.shape)


def test_layout_matches_mnist_spec(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.array([3, 1], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 2, 3, 1])
    gz = tmp_path / "labels-idx1-ubyte.gz"
    write_idx(gz, np.array([3, 1], dtype=np.uint8))
    assert gzip.decompress(gz.read_bytes()) == path.read_bytes()


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated(tmp_path, suffix):
    path = tmp_path / f"images-idx3-ubyte{suffix}"
    write_idx(path, np.zeros((4, 5, 5), dtype=np.uint8))
    raw = gzip.decompress(path.read_bytes()) if suffix else path.read_bytes()
    cut = raw[:-7]
    path.write_bytes(gzip.compress(cut) if suffix else cut)
    with pytest.raises(DataFormatError, match=r"images-idx3-ubyte.*truncated or corrupt") as err:
        read_idx(path)
    assert "\n" not in str(err.value)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "t.gz"
    write_idx(path, np.arange(1000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataFormatError, match=r"t\.gz is corrupt or truncated"):
        read_idx(path)


def test_trailing_bytes(tmp_path):
    path = tmp_path / "x"
    write_idx(path, np.zeros(3, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DataFormatError, match="declares shape"):
        read_idx(path)


BAD_HEADERS = [b"", b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00", b"\x00\x00\x08\x03\x00"]


@pytest.mark.parametrize("content", BAD_HEADERS)
def test_bad_header(tmp_path, content):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match="bad-idx"):
        read_idx(path)


def test_missing(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        read_idx(tmp_path / "nope.gz")


def test_write_exception(tmp_path):
    with pytest.raises(InvalidParameterError, match="write_idx: array must have dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(InvalidParameterError, match="1-8 dimensions"):
        write_idx(tmp_path / "x", np.zeros((), dtype=np.uint8))
