"""Property-based fuzzing of image folders: any tree either loads correctly or fails with one PickwiseUserError line.

Hypothesis draws trees of class folders holding valid PNG/JPEG/GIF/BMP/WebP images of random sizes and modes,
empty files, garbage bytes, truncated images, images under the wrong extension, non-image files, nested and hidden
folders, unicode and control-character names, and symbolic links that stay inside the root, lead outside it or are
broken. For each tree ``create_dataset`` must either return consistent tensors or raise a
:class:`~pickwise.exceptions.PickwiseUserError` whose message is a single line; a tree that is valid by
construction must load.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from pickwise.data import create_dataset
from pickwise.exceptions import PickwiseUserError

hypothesis = pytest.importorskip("hypothesis")
Image = pytest.importorskip("PIL.Image")
st = hypothesis.strategies
given, settings, HealthCheck = hypothesis.given, hypothesis.settings, hypothesis.HealthCheck

# format -> (extension, modes Pillow can write in it)
FORMATS = {
    "PNG": (".png", ("L", "RGB", "RGBA", "P", "1", "LA", "I;16")),
    "JPEG": (".jpg", ("L", "RGB", "CMYK")),
    "GIF": (".gif", ("L", "P")),
    "BMP": (".bmp", ("L", "RGB", "1")),
    "WEBP": (".webp", ("RGB", "RGBA")),
}

# names: any printable or control character a Linux file name may hold (no '/', no NUL, no lone surrogates)
name_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00")
names = st.text(name_chars, min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


visible_names = names.filter(lambda s: not s.startswith(".") and s not in ("train", "test", "val"))


@st.composite
def image_bytes(draw, size=None):
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    ext, modes = FORMATS[fmt]
    mode = draw(st.sampled_from(modes))
    height, width = size if size is not None else (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).integers(0, 256, size=(height, width, 4), dtype=np.uint8)
    image = Image.fromarray(values, "RGBA").convert(mode) if mode != "I;16" else Image.new("I;16", (width, height))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return ext, buffer.getvalue(), (height, width)


REASONS = ("cannot read", "cannot decode", "different sizes", "class in", "holds no images", "is empty", "no class")
BAD_KINDS = ["image", "image", "image", "empty", "garbage", "truncated", "wrong_ext", "text"]


@st.composite
def file_entries(draw, clean=False, size=None):
    """``(relative path parts, bytes, kind, (h, w) or None)``; kind is 'image' for a valid image at its extension."""
    kind = draw(st.sampled_from(["image", "wrong_ext"] if clean else BAD_KINDS))
    ext, data, hw = draw(image_bytes(size))
    if kind == "empty":
        data, hw = b"", None
    elif kind == "garbage":
        data, hw = draw(st.binary(min_size=1, max_size=64)), None
    elif kind == "truncated":
        data, hw = data[: max(1, len(data) // 2)], None
    elif kind == "wrong_ext":  # a valid image under another image extension: Pillow reads content, not names
        ext = draw(st.sampled_from([".png", ".jpg", ".JPEG", ".gif", ".Bmp", ".webp"]))
    elif kind == "text":
        ext, hw = draw(st.sampled_from([".txt", "", ".png.bak", ".csv"])), None
    part_names = visible_names if clean else names
    subdirs = draw(st.lists(part_names, max_size=2))
    return (*subdirs, draw(part_names) + ext), data, kind, hw


@st.composite
def trees(draw):
    """Half the trees are valid by construction (>= 2 visible classes of readable images of one size)."""
    link_kinds = ["inside_file", "inside_dir", "outside_file", "outside_dir", "broken"]
    if draw(st.booleans()):
        image_size = draw(st.sampled_from([None, 8, (5, 7)]))
        size = (draw(st.integers(1, 12)), draw(st.integers(1, 12))) if image_size is None else None
        entries = st.lists(file_entries(clean=True, size=size), min_size=1, max_size=4)
        classes = draw(st.dictionaries(visible_names, entries, min_size=2, max_size=4))
        links = draw(st.lists(st.sampled_from(link_kinds[2:]), max_size=2))
    else:
        image_size = draw(st.sampled_from([None, None, 8, (5, 7)]))
        classes = draw(st.dictionaries(names, st.lists(file_entries(), max_size=5), max_size=4))
        links = draw(st.lists(st.sampled_from(link_kinds), max_size=3))
    return classes, links, image_size


def _write(path: Path, data: bytes) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            return False
        path.write_bytes(data)
        return True
    except OSError:  # e.g. a file and a folder of the same name
        return False


def _check_dataset(ds, split):
    assert len(ds) > 0
    info = ds.info
    assert ds.split == split
    assert info.num_classes == len(info.class_names) >= 2
    assert tuple(ds.images.shape[1:]) == (info.in_chans, *info.image_size)
    assert str(ds.images.dtype) == "torch.uint8"
    assert int(ds.targets.min()) >= 0 and int(ds.targets.max()) < info.num_classes
    assert np.isfinite(info.mean).all() and np.isfinite(info.std).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tree=trees())
def test_image_folder_loads_or_fails_in_one_line(tree):
    classes, links, image_size = tree
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "root"
        root.mkdir()
        outside = base / "outside"
        outside.mkdir()
        Image.new("RGB", (6, 6), (1, 2, 3)).save(outside / "o.png")
        valid = True  # all classes visible, hold >= 1 valid image and only valid images, one size
        sizes = set()
        for name, files in classes.items():
            (root / name).mkdir()
            has_image = False
            for parts, data, kind, hw in files:
                written = _write(root.joinpath(name, *parts), data)
                hidden = any(p.startswith(".") for p in parts)
                is_image_ext = os.path.splitext(parts[-1])[1].lower() in (
                    ".png",
                    ".jpg",
                    ".jpeg",
                    ".gif",
                    ".bmp",
                    ".webp",
                )
                if written and not hidden and is_image_ext:
                    if kind in ("image", "wrong_ext"):
                        has_image = True
                        sizes.add(hw)
                    else:
                        valid = False
            valid &= has_image and not name.startswith(".")
        valid &= len(classes) >= 2 and not ({"train", "test", "val"} & set(classes))
        valid &= image_size is not None or len(sizes) <= 1
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
        for i, link in enumerate(links):
            where = class_dirs[i % len(class_dirs)] if class_dirs else root
            target = {
                "inside_file": next(iter(sorted(root.rglob("*.png"))), root / "none.png"),
                "inside_dir": where,
                "outside_file": outside / "o.png",
                "outside_dir": outside,
                "broken": base / "missing.png",
            }[link]
            with contextlib.suppress(OSError):
                (where / f"link{i}.png").symlink_to(target)
            valid &= link in ("outside_file", "outside_dir", "broken")  # inside links may add unchecked images
        for split in ("train", "test"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # skipped-link notes
                    ds = create_dataset(root, split, image_size=image_size)
            except PickwiseUserError as err:
                message = str(err)
                assert message and "\n" not in message and "\r" not in message, repr(message)
                assert not (valid and split == "train"), f"a valid tree was refused: {message}"
                reason = next((r for r in REASONS if r in message), "other")
                hypothesis.event(f"{split}: {type(err).__name__}: {reason}")
                continue
            _check_dataset(ds, split)
            hypothesis.event(f"{split}: loaded ({'valid' if valid else 'not constructed valid'})")
