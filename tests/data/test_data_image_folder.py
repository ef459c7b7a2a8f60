"""Image folders built in tmp_path with Pillow."""

from pathlib import Path

import numpy as np
import pytest
import torch

from pickwise.data import create_dataset, get_dataset_info, load_image_folder
from pickwise.data._base import channel_mean_std
from pickwise.exceptions import DataFormatError, DataNotFoundError, InvalidParameterError

Image = pytest.importorskip("PIL.Image")


def write_image(path, size_hw=(12, 10), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    shape = size_hw if mode == "L" else (*size_hw, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=mode).save(path)
    return path


def make_folder(root, counts, *, size_hw=(12, 10), mode="RGB", ext=".png"):
    paths = []
    for c, (name, n) in enumerate(sorted(counts.items())):
        for i in range(n):
            paths.append(write_image(root / name / f"img{i:02d}{ext}", size_hw, mode, seed=100 * c + i))
    return paths


def test_basic_rgb(tmp_path):
    paths = make_folder(tmp_path, {"dog": 5, "cat": 5, "bird": 4})
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    train = create_dataset(str(tmp_path), "train")
    test = create_dataset(tmp_path, "test")
    info = train.info
    assert info.class_names == ("bird", "cat", "dog")
    assert (info.in_chans, info.image_size) == (3, (12, 10))
    assert (len(train), len(test)) == (info.num_train, info.num_test) == (11, 3)
    assert np.bincount(test.targets.numpy()).tolist() == [1, 1, 1]
    assert not set(train.source_indices.tolist()) & set(test.source_indices.tolist())
    i = 4
    path = paths[int(train.source_indices[i])]
    assert train.classes[int(train.targets[i])] == path.parent.name
    expected = torch.from_numpy(np.asarray(Image.open(path)).transpose(2, 0, 1).copy())
    assert torch.equal(train.images[i], expected)
    mean, std = channel_mean_std(train.images.numpy())
    assert info.mean == mean
    assert info.std == std
    assert str(tmp_path) in info.source
    assert info.name == f"folder:{tmp_path.resolve()}"
    assert info.license
    images, _ = train.tensors()
    assert torch.allclose(images.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)


def test_name_forms_agree(tmp_path):
    make_folder(tmp_path, {"a": 3, "b": 3}, mode="L")
    infos = [
        get_dataset_info(tmp_path),
        get_dataset_info(str(tmp_path)),
        get_dataset_info(f"folder:{tmp_path}"),
        get_dataset_info("folder", root=tmp_path),
        get_dataset_info("image_folder", root=str(tmp_path)),
    ]
    assert all(info == infos[0] for info in infos)
    assert infos[0].in_chans == 1


def test_channels(tmp_path):
    make_folder(tmp_path / "gray", {"a": 2, "b": 2}, mode="L")
    assert get_dataset_info(tmp_path / "gray").in_chans == 1
    make_folder(tmp_path / "mixed", {"a": 2, "b": 2}, mode="L")
    write_image(tmp_path / "mixed" / "b" / "color.jpg", mode="RGB")
    ds = create_dataset(tmp_path / "mixed")
    assert ds.info.in_chans == 3
    assert ds.images.shape[1] == 3


def test_mixed_sizes(tmp_path):
    make_folder(tmp_path, {"a": 3, "b": 3}, size_hw=(12, 10))
    write_image(tmp_path / "b" / "big.png", size_hw=(20, 16))
    with pytest.raises(DataFormatError, match=r"different sizes.*12x10 \(6 images.*20x16 \(1 images") as err:
        create_dataset(tmp_path)
    assert "pass image_size=(H, W) (CLI: --image-size H" in str(err.value)
    assert "\n" not in str(err.value)
    ds = create_dataset(tmp_path, image_size=(8, 6))
    assert tuple(ds.images.shape[1:]) == (3, 8, 6)
    assert ds.info.image_size == (8, 6)
    assert ds.info.num_train + ds.info.num_test == 7
    assert tuple(create_dataset(tmp_path, "test", image_size=9).images.shape[1:]) == (3, 9, 9)


def test_resize_matches_pillow(tmp_path):
    paths = make_folder(tmp_path, {"a": 1, "b": 1}, size_hw=(12, 10))
    ds = create_dataset(tmp_path, image_size=(6, 5))
    expected = np.asarray(Image.open(paths[0]).convert("RGB").resize((5, 6), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(ds.images[0].numpy(), expected.transpose(2, 0, 1))


def test_train_test_subfolders(tmp_path):
    make_folder(tmp_path / "train", {"x": 4, "y": 2})
    make_folder(tmp_path / "test", {"x": 1, "y": 3})
    train, test = create_dataset(tmp_path, "train"), create_dataset(tmp_path, "test")
    assert (len(train), len(test)) == (6, 4)
    assert train.info.class_names == ("x", "y")
    assert test.targets.tolist() == [0, 1, 1, 1]
    assert "train/ and test/" in train.info.source
    assert train.info.mean == channel_mean_std(train.images.numpy())[0]


def test_val_subfolder_and_class_subset(tmp_path):
    make_folder(tmp_path / "train", {"x": 2, "y": 2, "z": 1})
    make_folder(tmp_path / "val", {"z": 2})
    test = create_dataset(tmp_path, "test")
    assert test.targets.tolist() == [2, 2]
    assert test.info.num_classes == 3
    make_folder(tmp_path / "val", {"w": 1})
    with pytest.raises(DataFormatError, match=r"class 'w' exists in .*val but not in .*train"):
        create_dataset(tmp_path, "test")


def test_empty_test_split(tmp_path):
    make_folder(tmp_path, {"a": 1, "b": 2})
    assert len(create_dataset(tmp_path, "train")) == 3
    with pytest.raises(DataFormatError, match="the test split is empty"):
        create_dataset(tmp_path, "test")


def test_cache_sees_new_files(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    assert get_dataset_info(tmp_path).num_train == 4
    write_image(tmp_path / "b" / "extra.png", seed=9)
    assert get_dataset_info(tmp_path).num_train + get_dataset_info(tmp_path).num_test == 5


def test_exception(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        create_dataset(tmp_path / "missing")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        create_dataset(f"folder:{tmp_path / 'missing'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match=r"empty.*is empty \(no class subfolders\)"):
        create_dataset(empty)
    loose = tmp_path / "loose"
    write_image(loose / "a.png")
    with pytest.raises(DataFormatError, match="found 1 images but no class subfolders"):
        load_image_folder(loose)
    noimg = tmp_path / "noimg"
    make_folder(noimg, {"a": 2})
    (noimg / "b").mkdir()
    (noimg / "b" / "readme.txt").write_text("x")
    with pytest.raises(DataFormatError, match=r"class folder .*noimg/b holds no images"):
        create_dataset(noimg)
    broken = tmp_path / "broken"
    make_folder(broken, {"a": 2, "b": 2})
    (broken / "b" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataFormatError, match=r"cannot read image .*broken/b/bad\.png") as err:
        create_dataset(broken)
    assert "\n" not in str(err.value)
    a_file = tmp_path / "file.png"
    write_image(a_file)
    with pytest.raises(DataFormatError, match="is not a directory"):
        load_image_folder(a_file)


def test_truncated_image(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2}, size_hw=(64, 64), ext=".jpg")
    bad = Path(tmp_path / "a" / "img00.jpg")
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataFormatError, match=r"a/img00\.jpg"):
        create_dataset(tmp_path)


def png_header_only(path, width, height):
    """A PNG whose header declares width x height (8-bit grey) with a one-row image body: only the header is valid."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * (width + 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_single_class_refused(tmp_path):
    make_folder(tmp_path, {"only": 4})
    with pytest.raises(DataFormatError, match=r"found 1 class in .*; classification needs >= 2 class folders") as err:
        create_dataset(tmp_path)
    assert "\n" not in str(err.value)
    make_folder(tmp_path / "split" / "train", {"only": 3})
    make_folder(tmp_path / "split" / "test", {"only": 1})
    with pytest.raises(DataFormatError, match="found 1 class in .*train; classification needs >= 2"):
        create_dataset(tmp_path / "split")


def test_symlink_outside_root_skipped(tmp_path):
    root = tmp_path / "root"
    make_folder(root, {"a": 3, "b": 3})
    outside = write_image(tmp_path / "elsewhere" / "x.png", seed=5)
    (root / "a" / "link.png").symlink_to(outside)
    (root / "everything").symlink_to("/")  # would walk the whole filesystem if followed
    (root / "b" / "dangling.png").symlink_to(tmp_path / "missing.png")
    with pytest.warns(UserWarning, match=r"skipped 2 symbolic link\(s\) that lead outside it and 1 broken") as rec:
        info, _ = load_image_folder(root)
    assert "follow_symlinks=True" in str(rec[0].message)
    assert info.class_names == ("a", "b")
    assert info.num_train + info.num_test == 6
    assert "skipped 2 symbolic link(s)" in info.source
    # asked for: the outside file is followed (the / link is removed first: it is not an image class)
    (root / "everything").unlink()
    with pytest.warns(UserWarning, match=r"skipped 1 broken symbolic link\(s\)\.$"):
        info, _ = load_image_folder(root, follow_symlinks=True)
    assert info.num_train + info.num_test == 7


def test_symlink_inside_root_followed_and_cycles_end(tmp_path):
    make_folder(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "again.png").symlink_to(tmp_path / "b" / "img00.png")
    (tmp_path / "b" / "loop").symlink_to(tmp_path / "b")  # a cycle inside the root
    (tmp_path / "c").symlink_to(tmp_path / "a")  # a class folder linked to another one inside the root
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info, _ = load_image_folder(tmp_path)
    assert info.class_names == ("a", "b", "c")
    assert info.num_train + info.num_test == 4 + 3 + 4


def test_env_follow_symlinks(tmp_path, monkeypatch):
    root = tmp_path / "root"
    make_folder(root, {"a": 3, "b": 3})
    (root / "b" / "link.png").symlink_to(write_image(tmp_path / "x.png", seed=7))
    monkeypatch.setenv("PICKWISE_FOLLOW_SYMLINKS", "1")
    assert get_dataset_info(root).num_train + get_dataset_info(root).num_test == 7
    with pytest.warns(UserWarning, match="skipped 1 symbolic link"):
        assert create_dataset(root, follow_symlinks=False).info.num_train == 4


def test_pixel_limit_from_header(tmp_path, monkeypatch):
    make_folder(tmp_path, {"a": 3, "b": 3})
    big = png_header_only(tmp_path / "b" / "huge.png", 12000, 12000)  # 144 MP; only the header is real
    with pytest.raises(
        DataFormatError, match=r"huge\.png is 12000x12000 = 144\.0 megapixels, above the limit of 40 me"
    ):
        create_dataset(tmp_path, image_size=8)
    with pytest.raises(DataFormatError, match=r"pass max_pixels=144000000 \(or set PICKWISE_MAX_IMAGE_PIXELS=1440"):
        create_dataset(tmp_path, image_size=8)
    big.unlink()
    with pytest.raises(DataFormatError, match=r"img00\.png is 10x12 = 0\.0 megapixels, above the limit of 0\.0001 me"):
        create_dataset(tmp_path, max_pixels=100)
    assert len(create_dataset(tmp_path, max_pixels=120)) == 4
    monkeypatch.setenv("PICKWISE_MAX_IMAGE_PIXELS", "119")
    with pytest.raises(DataFormatError, match="above the limit"):
        get_dataset_info(tmp_path)
    monkeypatch.setenv("PICKWISE_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(InvalidParameterError, match="PICKWISE_MAX_IMAGE_PIXELS must be a positive integer"):
        get_dataset_info(tmp_path)
    monkeypatch.delenv("PICKWISE_MAX_IMAGE_PIXELS")
    for bad in (0, -5, 2.5, True):
        with pytest.raises(InvalidParameterError, match="max_pixels must be a positive integer"):
            load_image_folder(tmp_path, max_pixels=bad)


def test_pillow_decompression_bomb_is_one_line(tmp_path):
    make_folder(tmp_path, {"a": 3, "b": 3})
    png_header_only(tmp_path / "a" / "bomb.png", 20000, 20000)  # 400 MP > 2 * PIL.Image.MAX_IMAGE_PIXELS
    with pytest.raises(DataFormatError, match=r"bomb\.png is above Pillow's decompression-bomb limit") as err:
        load_image_folder(tmp_path, max_pixels=10**9)
    assert "\n" not in str(err.value)
    assert "MAX_IMAGE_PIXELS" in str(err.value)


def test_control_characters_in_names_stay_on_one_line(tmp_path):
    make_folder(tmp_path, {"a\nb": 3, "c": 3})
    (tmp_path / "a\nb" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match=r"a\\nb/bad\.png") as err:
        create_dataset(tmp_path)
    assert "\n" not in str(err.value)


def test_16bit_png_scaled_not_clipped(tmp_path):
    rng = np.random.default_rng(3)
    values = {}
    for name in ("a", "b"):
        for i in range(3):
            v = rng.integers(0, 65536, size=(6, 5), dtype=np.uint16)
            path = tmp_path / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(v).save(path)
            assert Image.open(path).mode == "I;16"
            values[(name, i)] = v
    ds = create_dataset(tmp_path, "train")
    assert ds.info.in_chans == 1
    files = sorted(values)
    for image, src in zip(ds.images, ds.source_indices.tolist()):
        expected = np.floor(values[files[src]].astype(np.float64) / 257 + 0.5).astype(np.uint8)
        np.testing.assert_array_equal(image[0].numpy(), expected)
    write_image(tmp_path / "b" / "z_color.png", size_hw=(6, 5))  # sorts last: the 16-bit files keep their indices
    rgb = create_dataset(tmp_path, "train")
    assert rgb.info.in_chans == 3
    for image, src in zip(rgb.images, rgb.source_indices.tolist()):
        if src < len(files):
            expected = np.floor(values[files[src]].astype(np.float64) / 257 + 0.5).astype(np.uint8)
            for channel in image:
                np.testing.assert_array_equal(channel.numpy(), expected)
