"""Bayer packing (ZRR order), normalisation conventions, RAW PNG/DNG files and the ZRR folder dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pickwise.exceptions import DataFormatError, DataNotFoundError, InvalidParameterError, ShapeError
from pickwise.tasks.isp.raw import (
    CFA_PATTERNS,
    RawLevels,
    ZRRDataset,
    denormalize_raw,
    normalize_raw,
    pack_bayer,
    pseudo_demosaic,
    read_dng,
    read_raw_png,
    read_rgb,
    unpack_bayer,
    write_dng,
    write_raw_png,
)


def _zrr_extract_bayer_channels(raw: np.ndarray) -> np.ndarray:
    """Line-by-line port of ``extract_bayer_channels`` (PyNET-PyTorch load_data.py), the ZRR reference packing."""
    ch_b = raw[1::2, 1::2]
    ch_gb = raw[0::2, 1::2]
    ch_r = raw[0::2, 0::2]
    ch_gr = raw[1::2, 0::2]
    return np.dstack((ch_b, ch_gb, ch_r, ch_gr))  # H/2 x W/2 x 4


def test_pack_matches_zrr_code_for_rggb():
    raw = np.random.default_rng(0).integers(0, 1024, (8, 12))
    ref = _zrr_extract_bayer_channels(raw).transpose(2, 0, 1)
    np.testing.assert_array_equal(pack_bayer(raw, "RGGB"), ref)
    torch.testing.assert_close(pack_bayer(torch.from_numpy(raw), "RGGB"), torch.from_numpy(ref))


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_pack_semantics_and_exact_round_trip(pattern):
    # a mosaic whose value names its colour: R=1, G=2, B=3
    colour = {"R": 1, "G": 2, "B": 3}
    tile = np.array([[colour[pattern[0]], colour[pattern[1]]], [colour[pattern[2]], colour[pattern[3]]]])
    mosaic = np.tile(tile, (3, 4))
    packed = pack_bayer(mosaic, pattern)
    assert packed.shape == (4, 3, 4)
    assert [int(packed[i, 0, 0]) for i in range(4)] == [3, 2, 1, 2]  # B, G, R, G
    # the first green shares a row with red
    rows_r = np.nonzero(tile == 1)[0][0]
    g_in_r_row = np.zeros((2, 2), bool)
    g_in_r_row[rows_r] = tile[rows_r] == 2
    marked = np.where(np.tile(g_in_r_row, (3, 4)), 7, mosaic)
    assert (pack_bayer(marked, pattern)[1] == 7).all()
    x = torch.rand(2, 5, 6, 8)
    torch.testing.assert_close(unpack_bayer(pack_bayer(x, pattern), pattern), x, rtol=0, atol=0)
    raw = np.random.default_rng(1).integers(0, 1024, (6, 10)).astype(np.uint16)
    np.testing.assert_array_equal(unpack_bayer(pack_bayer(raw, pattern), pattern), raw)


def test_pack_errors():
    with pytest.raises(ShapeError, match="odd side.*crop it to 4x6"):
        pack_bayer(np.zeros((5, 6)))
    with pytest.raises(InvalidParameterError, match="unknown CFA pattern 'RGBG'"):
        pack_bayer(np.zeros((4, 4)), "RGBG")
    with pytest.raises(ShapeError, match=r"\[..., 4, h, w\]"):
        unpack_bayer(np.zeros((3, 2, 2)))


def test_normalize_conventions():
    raw = np.array([0, 63, 500, 1020, 1023], dtype=np.uint16)
    np.testing.assert_allclose(normalize_raw(raw, "pynet"), raw / (4 * 255), rtol=1e-6)
    np.testing.assert_allclose(normalize_raw(raw, "skyb"), raw / 1023, rtol=1e-6)
    np.testing.assert_allclose(normalize_raw(raw, "mwisp"), np.maximum(raw.astype(float) - 63, 0) / (1020 - 63), 1e-6)
    t = normalize_raw(torch.from_numpy(raw.astype(np.int32)), "mwisp")
    assert t.dtype == torch.float32 and t[0] == 0 and t[3] == 1
    lv = RawLevels(black=64, white=1023)
    np.testing.assert_allclose(denormalize_raw(normalize_raw(raw.astype(np.float64), lv), lv), raw, atol=1e-9)
    with pytest.raises(InvalidParameterError, match="unknown RAW normalisation"):
        normalize_raw(raw, "pynet2")
    with pytest.raises(InvalidParameterError, match="must exceed"):
        RawLevels(100, 50)


def test_pseudo_demosaic():
    packed = torch.stack([torch.full((2, 3), v) for v in (0.1, 0.2, 0.3, 0.4)])[None]
    rgb = pseudo_demosaic(packed)
    assert rgb.shape == (1, 3, 2, 3)
    torch.testing.assert_close(rgb[0, :, 0, 0], torch.tensor([0.3, 0.3, 0.1]))
    assert pseudo_demosaic(packed, full_resolution=True).shape == (1, 3, 4, 6)


def test_raw_png_read_write_and_errors(tmp_path):
    from PIL import Image

    raw = np.random.default_rng(2).integers(0, 1024, (6, 8)).astype(np.uint16)
    write_raw_png(tmp_path / "r.png", raw)
    np.testing.assert_array_equal(read_raw_png(tmp_path / "r.png"), raw)
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "eight.png")
    with pytest.raises(DataFormatError, match="not a one-channel 16-bit RAW"):
        read_raw_png(tmp_path / "eight.png")
    big = raw.copy()
    big[0, 0] = 4000
    write_raw_png(tmp_path / "big.png", big)
    with pytest.raises(DataFormatError, match="above the white level 1023"):
        read_raw_png(tmp_path / "big.png")
    assert read_raw_png(tmp_path / "big.png", clip=True)[0, 0] == 1023
    assert read_raw_png(tmp_path / "big.png", bit_depth=12)[0, 0] == 4000
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataFormatError, match="cannot decode"):
        read_raw_png(tmp_path / "bad.png")
    with pytest.raises(DataNotFoundError):
        read_raw_png(tmp_path / "missing.png")
    with pytest.raises(DataFormatError, match="16-bit one-channel"):
        read_rgb(tmp_path / "r.png")


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_dng_round_trip_bit_exact(tmp_path, pattern):
    pytest.importorskip("pidng")
    pytest.importorskip("rawpy")
    mosaic = np.random.default_rng(3).integers(0, 65536, (24, 30)).astype(np.uint16)
    write_dng(tmp_path / "a.dng", mosaic, pattern, black_level=63, white_level=65535)
    back, info = read_dng(tmp_path / "a.dng")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, mosaic)
    assert info == {"pattern": pattern, "black_level": 63.0, "white_level": 65535}
    assert list(tmp_path.iterdir()) == [tmp_path / "a.dng"]  # no temp file left behind


def test_dng_errors(tmp_path):
    pytest.importorskip("pidng")
    pytest.importorskip("rawpy")
    (tmp_path / "bad.dng").write_bytes(b"II*\x00garbage" * 10)
    with pytest.raises(DataFormatError, match="cannot decode"):
        read_dng(tmp_path / "bad.dng")
    with pytest.raises(ShapeError, match="too small"):
        write_dng(tmp_path / "s.dng", np.zeros((16, 16), np.uint16))
    with pytest.raises(InvalidParameterError, match="bits must be 12 or 16"):
        write_dng(tmp_path / "s.dng", np.zeros((32, 32), np.uint16), bits=14)


def _fake_zrr(root, split, n, size=(8, 10), ext=".jpg", seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / split / "huawei_raw").mkdir(parents=True, exist_ok=True)
    (root / split / "canon").mkdir(parents=True, exist_ok=True)
    raws, rgbs = [], []
    for i in range(n):
        raw = rng.integers(0, 1024, size).astype(np.uint16)
        rgb = rng.integers(0, 256, (*size, 3)).astype(np.uint8)
        write_raw_png(root / split / "huawei_raw" / f"{i}.png", raw)
        Image.fromarray(rgb).save(root / split / "canon" / f"{i}{ext}")
        raws.append(raw)
        rgbs.append(rgb)
    return raws, rgbs


def test_zrr_dataset_reads_layout(tmp_path):
    raws, rgbs = _fake_zrr(tmp_path, "test", 11, ext=".png")
    ds = ZRRDataset(tmp_path, "test")
    assert len(ds) == 11 and ds.names[:3] == ["0", "1", "2"] and ds.names[-1] == "10"  # numeric order
    raw, rgb, name = ds[10]
    assert name == "10" and raw.shape == (4, 4, 5) and rgb.shape == (3, 8, 10)
    ref = _zrr_extract_bayer_channels(raws[10]).transpose(2, 0, 1) / (4 * 255)
    np.testing.assert_allclose(raw.numpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(rgb.numpy(), rgbs[10].transpose(2, 0, 1) / 255, rtol=1e-6)
    # centred crop keeps the CFA phase and covers the same region on both sides
    raw_c, rgb_c, _ = ZRRDataset(tmp_path, "test", crop=4, convention="mwisp")[10]
    assert raw_c.shape == (4, 2, 2) and rgb_c.shape == (3, 4, 4)
    top, left = 2, 2
    sub = raws[10][top : top + 4, left : left + 4].astype(np.float64)
    np.testing.assert_allclose(raw_c.numpy(), pack_bayer(np.maximum(sub - 63, 0) / 957, "RGGB"), rtol=1e-6)
    np.testing.assert_allclose(rgb_c.numpy(), rgbs[10][top : top + 4, left : left + 4].transpose(2, 0, 1) / 255, 1e-6)
    (tmp_path / "bad_ids.txt").write_text("3\n10\n")
    assert ZRRDataset(tmp_path, "test", exclude=tmp_path / "bad_ids.txt").names == [str(i) for i in range(10) if i != 3]
    torch.manual_seed(0)
    raw_r, rgb_r, _ = ZRRDataset(tmp_path, "test", crop=(2, 4), random_crop=True)[3]
    assert raw_r.shape == (4, 1, 2) and rgb_r.shape == (3, 2, 4)


def test_zrr_dataset_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="huawei_raw"):
        ZRRDataset(tmp_path, "train")
    with pytest.raises(InvalidParameterError, match="split"):
        ZRRDataset(tmp_path, "val")
    _fake_zrr(tmp_path, "train", 2)
    (tmp_path / "train" / "canon" / "1.jpg").unlink()
    with pytest.raises(DataFormatError, match="no partner"):
        ZRRDataset(tmp_path, "train")
    # mismatched sizes
    from PIL import Image

    Image.fromarray(np.zeros((6, 10, 3), np.uint8)).save(tmp_path / "train" / "canon" / "1.jpg")
    with pytest.raises(ShapeError, match="ZRR pairs have equal sizes"):
        ZRRDataset(tmp_path, "train")[1]
    with pytest.raises(InvalidParameterError, match="even"):
        ZRRDataset(tmp_path, "train", crop=3)
    with pytest.raises(ShapeError, match="larger than the image"):
        ZRRDataset(tmp_path, "train", crop=64)[0]
