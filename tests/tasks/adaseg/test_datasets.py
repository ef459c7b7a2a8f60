"""GTA5 / SYNTHIA / Cityscapes loaders on tiny fake trees in the exact layouts; class tables; the PNG reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pickwise.exceptions import DataFormatError, DataNotFoundError, InvalidParameterError
from pickwise.models import IMAGENET_MEAN, IMAGENET_STD
from pickwise.tasks.adaseg import labels as L
from pickwise.tasks.adaseg.datasets import class_names, encode_png, load_seg_domain, read_png

PIL = pytest.importorskip("PIL.Image")

# Reference tables typed from the reference notes datasets.md §2 (cityscapesScripts labels.py, RIPU, da-sac)
CS_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
            27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip
SYN16 = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 9, 10: 10, 17: 11, 8: 12, 19: 13, 12: 14, 11: 15}
CS16 = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 23: 9, 24: 10, 25: 11, 26: 12, 28: 13, 32: 14,
        33: 15}  # fmt: skip


def _ref_map(ids: np.ndarray, table: dict[int, int]) -> np.ndarray:
    return np.vectorize(lambda v: table.get(int(v), 255))(ids).astype(np.int64)


def _save_rgb(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.fromarray(array, "RGB").save(path)


def _save_palette(path, ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = PIL.fromarray(ids.astype(np.uint8), "P")
    im.putpalette(list(np.random.default_rng(0).integers(0, 256, 768)))
    im.save(path)


def _rand(shape, seed=0, high=256):
    return np.random.default_rng(seed).integers(0, high, shape).astype(np.uint8)


def test_tables_equal_the_reference_and_protocols():
    lut19, lut16 = L.label_lut("cityscapes", 19), L.label_lut("cityscapes", 16)
    ids = np.arange(34)
    np.testing.assert_array_equal(lut19[ids], _ref_map(ids, CS_TRAIN))
    np.testing.assert_array_equal(lut16[ids], _ref_map(ids, CS16))
    np.testing.assert_array_equal(L.label_lut("synthia", 16)[:23], _ref_map(np.arange(23), SYN16))
    assert (lut19[34:] == -1).all() and (L.label_lut("synthia", 16)[23:] == -1).all()
    assert L.SYNTHIA_13_OF_19 == (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
    expected13 = tuple(L.SYNTHIA_16_CLASSES[i] for i in (0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
    assert expected13 == L.SYNTHIA_13_CLASSES
    assert "wall" not in L.SYNTHIA_13_CLASSES and "terrain" not in L.SYNTHIA_16_CLASSES
    # 13-class protocol: contiguous ids, wall/fence/pole ignored
    lut13 = L.label_lut("cityscapes", 13)
    assert (
        lut13[12] == 255
        and lut13[23] == 6
        and sorted(set(lut13[(lut13 >= 0) & (lut13 < 255)].tolist())) == list(range(13))
    )
    # SYNTHIA in 19-space (da-sac's table): terrain 16 -> 9, lanemarking 22 -> 255
    lut = L.label_lut("synthia", 19)
    assert lut[16] == 9 and lut[22] == 255 and lut[20] == 16
    with pytest.raises(InvalidParameterError, match="protocols"):
        L.label_lut("cityscapes", 18)


def test_cityscapesscripts_table_equals_ours():
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    official = {lab.id: (255 if lab.trainId in (-1, 255) else lab.trainId) for lab in labels.labels if lab.id >= 0}
    assert official == {i: L.CITYSCAPES_LABEL_TO_TRAIN.get(i, 255) for i in range(34)}
    assert L.cityscapes_label_to_train_id() == official


def test_gta5_loader(tmp_path):
    ids = np.array([[7, 8, 0, 33, 26], [24, 25, 11, 0, 21], [23, 1, 17, 19, 20]], dtype=np.uint8)
    image = _rand((3, 5, 3))
    _save_rgb(tmp_path / "gta5" / "images" / "00001.png", image)
    _save_palette(tmp_path / "gta5" / "labels" / "00001.png", ids)
    ds = load_seg_domain("gta5", tmp_path)
    assert len(ds) == 1 and ds.num_classes == 19
    x, y, i = ds[0]
    assert i == 0 and x.shape == (3, 3, 5) and y.dtype == torch.int64
    np.testing.assert_array_equal(y.numpy(), _ref_map(ids, CS_TRAIN))
    ref = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - torch.tensor(IMAGENET_MEAN)[:, None, None]) / (
        torch.tensor(IMAGENET_STD)[:, None, None]
    )
    torch.testing.assert_close(x, ref)
    # resize: labels nearest, so they stay train ids
    ds2 = load_seg_domain("gta5", tmp_path / "gta5", size=(6, 10))
    assert ds2[0][0].shape == (3, 6, 10) and set(ds2[0][1].unique().tolist()) <= set(y.unique().tolist())


def test_bad_ids_size_mismatch_and_missing_data(tmp_path):
    root = tmp_path / "gta5"
    _save_rgb(root / "images" / "00001.png", _rand((3, 4, 3)))
    _save_palette(root / "labels" / "00001.png", np.array([[7, 40, 7, 7]] * 3))
    with pytest.raises(DataFormatError, match=r"label ids 40 are outside") as err:
        load_seg_domain("gta5", root)[0]
    assert "\n" not in str(err.value)
    _save_palette(root / "labels" / "00001.png", np.full((2, 4), 7))
    with pytest.raises(DataFormatError, match="is 4x3 but its label .* is 4x2"):
        load_seg_domain("gta5", root)[0]
    with pytest.raises(DataNotFoundError, match="put the dataset there") as err:
        load_seg_domain("gta5", tmp_path / "nothing")
    assert "\n" not in str(err.value)
    with pytest.raises(DataNotFoundError, match="PICKWISE_DATA_DIR"):
        load_seg_domain("synthia", None)
    (root / "labels" / "00001.png").unlink()
    with pytest.raises(DataFormatError, match="no label file"):
        load_seg_domain("gta5", root)
    with pytest.raises(InvalidParameterError, match="used whole"):
        load_seg_domain("gta5", root, split="val")
    with pytest.raises(InvalidParameterError, match="unknown segmentation domain"):
        load_seg_domain("gtaa", root)


@pytest.mark.parametrize("backend", ["numpy", "cv2"])
def test_synthia_16bit_labels(tmp_path, monkeypatch, backend):
    if backend == "cv2":
        pytest.importorskip("cv2")
    else:  # the built-in decoder, as on a machine without OpenCV
        import builtins

        real_import = builtins.__import__

        def no_cv2(name, *args, **kwargs):
            if name == "cv2":
                raise ImportError("no cv2")
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_cv2)
    folder = tmp_path / "RAND_CITYSCAPES"
    ids = np.random.default_rng(1).integers(0, 23, (4, 6)).astype(np.uint16)
    gt = np.stack([ids, 1000 + ids * 7, np.full_like(ids, 3)], -1).astype(np.uint16)  # other channels: garbage
    _save_rgb(folder / "RGB" / "0000000.png", _rand((4, 6, 3)))
    (folder / "GT" / "LABELS").mkdir(parents=True)
    (folder / "GT" / "LABELS" / "0000000.png").write_bytes(encode_png(gt))
    ds = load_seg_domain("synthia", tmp_path)
    assert ds.num_classes == 16 and class_names("synthia") == ds.class_names
    np.testing.assert_array_equal(ds[0][1].numpy(), _ref_map(ids, SYN16))
    ds13 = load_seg_domain("synthia", tmp_path, num_classes=13)
    ref13 = _ref_map(_ref_map(ids, SYN16), {j: i for i, j in enumerate(L.SYNTHIA_13_OF_16)})
    np.testing.assert_array_equal(ds13[0][1].numpy(), ref13)


def test_png_decoder_equals_opencv_on_filtered_files(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    # smooth content makes libpng pick Sub/Up/Average/Paeth filters, not only None
    base = np.cumsum(np.cumsum(rng.integers(0, 40, (23, 17, 3)), 0), 1)
    for arr in (base.astype(np.uint16) * 3, (base % 256).astype(np.uint8), (base[..., 0] * 5).astype(np.uint16)):
        path = tmp_path / f"x{arr.dtype}{arr.ndim}.png"
        cv2.imwrite(str(path), arr[..., ::-1].copy() if arr.ndim == 3 else arr)
        np.testing.assert_array_equal(read_png(path, backend="numpy"), arr)
        np.testing.assert_array_equal(read_png(path, backend="cv2"), arr)
    round_trip = tmp_path / "rt.png"
    round_trip.write_bytes(encode_png(base.astype(np.uint16)))
    np.testing.assert_array_equal(read_png(round_trip, backend="numpy"), base.astype(np.uint16))


def test_cityscapes_layout_splits_and_colour_label_error(tmp_path):
    root = tmp_path / "cityscapes"
    ids = np.array([[7, 26, 0], [24, 33, 4]], dtype=np.uint8)
    for split, city in (("train", "aachen"), ("val", "lindau")):
        stem = f"{city}_000000_000019"
        _save_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _rand((2, 3, 3)))
        (root / "gtFine" / split / city).mkdir(parents=True)
        PIL.fromarray(ids, "L").save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
        _save_rgb(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", _rand((2, 3, 3)))
    train = load_seg_domain("cityscapes", tmp_path, "train")
    test = load_seg_domain("cityscapes", tmp_path, "test")  # = val
    assert len(train) == 1 and "lindau" in str(test.image_paths[0])
    np.testing.assert_array_equal(train[0][1].numpy(), _ref_map(ids, CS_TRAIN))
    np.testing.assert_array_equal(
        load_seg_domain("cityscapes", root, "val", num_classes=16)[0][1].numpy(), _ref_map(ids, CS16)
    )
    # a colour rendering passed as label map is refused
    lbl = root / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png"
    _save_rgb(lbl, _rand((2, 3, 3)))
    with pytest.raises(DataFormatError, match="mode RGB"):
        load_seg_domain("cityscapes", root, "train")[0]
    with pytest.raises(InvalidParameterError, match="split"):
        load_seg_domain("cityscapes", root, "trainextra")
