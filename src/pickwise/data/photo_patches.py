"""The ``photo-patches`` dataset: 3x32x32 colour crops of real photos bundled in scikit-image and scikit-learn.

A small CIFAR-like natural-image task that needs no download. Each class is the content of one photo (no photo is
shared between classes), named by what the crops show:

=== ======================== =============================================== ============ ===========================
id  class                    photo (loader)                                  licence      content box (rows; cols)
=== ======================== =============================================== ============ ===========================
0   person in spacesuit      ``skimage.data.astronaut()`` 512x512            public domain rows 0-1; cols 0-0.75
1   cat                      ``skimage.data.chelsea()`` 300x451              CC0          whole photo
2   coffee cup               ``skimage.data.coffee()`` 400x600               CC0          rows 0-1; cols 0.15-0.85
3   launch site at night     ``skimage.data.rocket()`` 427x640               public domain whole photo
4   galaxies                 ``skimage.data.hubble_deep_field()`` 872x1000   public domain whole photo
5   stained tissue           ``skimage.data.immunohistochemistry()`` 512x512 none known   whole photo
6   retina                   ``skimage.data.retina()`` 1411x1411             CC0          rows 0.15-0.85; cols same
7   coins                    ``skimage.data.coins()`` 303x384 (grey)         none known   whole photo
8   photographer with tripod ``skimage.data.camera()`` 512x512 (grey)        CC0          rows 0.1-1; cols 0-0.65
9   temple                   scikit-learn ``china.jpg`` 427x640              CC BY 2.0    rows 0-0.95; cols 0.1-0.55
10  flower                   scikit-learn ``flower.jpg`` 427x640             CC BY 2.0    rows 0.2-1; cols 0.25-0.7
=== ======================== =============================================== ============ ===========================

The content box keeps crops on the named content (the astronaut rather than the shuttle model next to her, the
pagoda rather than the lake, the inside of the retina's circle rather than the black border). Each offline photo
with an explicit licence statement or "no known copyright restrictions" was considered; ``moon`` and
``stereo_motorcycle`` were left out because scikit-image states no licence for them, and the textures
(``brick``/``grass``/``gravel``) are the ``textures`` dataset. Only one photo per class is available offline under
these rules, so a class never mixes photos.

**No train/test leakage.** The content box of every photo is cut across its longer side (rows when it is taller
than wide or square, columns otherwise) into a *train region*, the first :data:`TRAIN_FRACTION` = 70 %, and a
*test region*, the remaining 30 %. Every train crop lies entirely in the train region and every test crop entirely
in the test region, so no test image shares a pixel with any train image (checked in
``tests/data/test_data_photo_patches.py``). The test region shows other parts of the same content (the lower
spacesuit, the cat's right eye, the right side of the cup...), so the task measures generalization across parts of
an object, not memorization.

**Crops and augmentation** (all drawn from ``numpy.random.default_rng`` seeded with ``(SEED, split, class)``, so the
dataset is identical on every machine): a square crop of side ``s = u * min(box height, box width)`` with ``u``
uniform in ``[MIN_SCALE, MAX_SCALE] = [0.15, 0.30]`` at a uniform position inside the region; a horizontal flip
with probability 1/2; resizing to 32x32 (bilinear with antialiasing, :func:`torch.nn.functional.interpolate`);
then a brightness factor and a contrast factor, each uniform in ``[0.75, 1.25]`` (``y = (x - m) * c + m * b`` with
``m`` the crop's mean grey level), rounded and clipped to uint8. Crops whose grey-level standard deviation is below
:data:`MIN_STD` (nearly flat patches of sky or black background, which carry no class evidence) are redrawn. Grey
photos are replicated to three channels. Each class has :data:`TRAIN_PER_CLASS` = 180 train and
:data:`TEST_PER_CLASS` = 60 test crops: 1,980 train and 660 test images, balanced. ``source_indices`` number the
crops of a split in (class, draw) order; :func:`crop_boxes` gives each crop's photo, position, side and flip.

Difficulty (measured when the dataset was added; test accuracy with the full train split, deterministic runs):
1-nearest-neighbour on raw pixels 0.462, 5-NN 0.429, an L2-regularized logistic regression on raw pixels
(``C=0.01``) 0.495; chance is 0.091. A linear probe (standardized features, logistic regression ``C=0.1``) on the
global-average-pooled features of MobileNetV2 with its ImageNet weights reaches 0.814 with the crops upsampled to
64x64 and 0.853 at 128x128; the same network randomly initialized (seed 0) 0.544 and 0.611. So features matter
here, which makes it a selection target on which real pretrained networks differ.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..exceptions import DataFormatError
from ._base import DatasetInfo, LoadedSplit, import_optional, needs_packages
from ._registry import DATASETS, DatasetSpec

__all__ = [
    "MAX_SCALE",
    "MIN_SCALE",
    "MIN_STD",
    "PATCH",
    "PHOTOS",
    "PHOTO_PATCHES_CLASSES",
    "PHOTO_PATCHES_INFO",
    "TEST_PER_CLASS",
    "TRAIN_FRACTION",
    "TRAIN_PER_CLASS",
    "CropBoxes",
    "Photo",
    "crop_boxes",
    "split_region",
]

PATCH = 32
TRAIN_PER_CLASS = 180
TEST_PER_CLASS = 60
TRAIN_FRACTION = 0.7
MIN_SCALE = 0.15
MAX_SCALE = 0.30
MIN_STD = 8.0
"""Crops whose grey-level standard deviation (0-255 units) is below this are redrawn."""
SEED = 20261201
_JITTER = (0.75, 1.25)
_MAX_DRAWS = 100


class Photo(NamedTuple):
    """One source photo: class name, loader, expected shape, content box (fractions) and licence.

    ``box`` is ``(row_start, row_stop, col_start, col_stop)`` as fractions of the photo's height and width.
    """

    class_name: str
    package: str
    loader: str
    shape: tuple[int, ...]
    box: tuple[float, float, float, float]
    license: str


PHOTOS: tuple[Photo, ...] = (
    Photo("person in spacesuit", "skimage", "astronaut", (512, 512, 3), (0.0, 1.0, 0.0, 0.75), "public domain (NASA)"),
    Photo("cat", "skimage", "chelsea", (300, 451, 3), (0.0, 1.0, 0.0, 1.0), "CC0 (Stefan van der Walt)"),
    Photo("coffee cup", "skimage", "coffee", (400, 600, 3), (0.0, 1.0, 0.15, 0.85), "CC0 (Rachel Michetti)"),
    Photo("launch site at night", "skimage", "rocket", (427, 640, 3), (0.0, 1.0, 0.0, 1.0), "public domain (SpaceX)"),
    Photo("galaxies", "skimage", "hubble_deep_field", (872, 1000, 3), (0.0, 1.0, 0.0, 1.0), "public domain (NASA)"),
    Photo(
        "stained tissue",
        "skimage",
        "immunohistochemistry",
        (512, 512, 3),
        (0.0, 1.0, 0.0, 1.0),
        "no known copyright restrictions (CMMI)",
    ),
    Photo("retina", "skimage", "retina", (1411, 1411, 3), (0.15, 0.85, 0.15, 0.85), "CC0 (Mikael Häggström)"),
    Photo(
        "coins",
        "skimage",
        "coins",
        (303, 384),
        (0.0, 1.0, 0.0, 1.0),
        "no known copyright restrictions (Brooklyn Museum)",
    ),
    Photo("photographer with tripod", "skimage", "camera", (512, 512), (0.1, 1.0, 0.0, 0.65), "CC0 (Lav Varshney)"),
    Photo("temple", "sklearn", "china.jpg", (427, 640, 3), (0.0, 0.95, 0.1, 0.55), "CC BY 2.0 (danielbuechele)"),
    Photo("flower", "sklearn", "flower.jpg", (427, 640, 3), (0.2, 1.0, 0.25, 0.7), "CC BY 2.0 (vultilion)"),
)
PHOTO_PATCHES_CLASSES = tuple(photo.class_name for photo in PHOTOS)

PHOTO_PATCHES_INFO = DatasetInfo(
    name="photo-patches",
    num_classes=len(PHOTOS),
    class_names=PHOTO_PATCHES_CLASSES,
    in_chans=3,
    image_size=(PATCH, PATCH),
    # train-split statistics, checked in tests/data/test_data_photo_patches.py
    mean=(0.5024, 0.3676, 0.3137),
    std=(0.3075, 0.2479, 0.2451),
    # per-photo licences and attributions: PHOTOS and the module docstring
    license="public domain, CC0 or no known restrictions (skimage photos); CC BY 2.0 (scikit-learn china/flower.jpg)",
    source=(
        "scikit-image skimage.data.astronaut(), chelsea(), coffee(), rocket(), hubble_deep_field(), "
        "immunohistochemistry(), retina(), coins(), camera(); scikit-learn load_sample_images() china.jpg and "
        "flower.jpg (Flickr, retrieved 2011 by Robert Layton); random 32x32 crops from disjoint train/test regions"
    ),
    num_train=len(PHOTOS) * TRAIN_PER_CLASS,
    num_test=len(PHOTOS) * TEST_PER_CLASS,
)


class CropBoxes(NamedTuple):
    """Where the crops of a split come from, one row per sample (``int64`` arrays of shape ``(N,)``).

    ``photo`` is the class / photo index, ``top``/``left`` the crop's top-left pixel in the photo, ``side`` its
    side in pixels, ``flip`` 1 if it was mirrored horizontally.
    """

    photo: np.ndarray
    top: np.ndarray
    left: np.ndarray
    side: np.ndarray
    flip: np.ndarray


def split_region(photo: Photo, split: str) -> tuple[int, int, int, int]:
    """Pixel region ``(row_start, row_stop, col_start, col_stop)`` of ``photo`` that crops of ``split`` lie in.

    The content box is cut across its longer side: the first :data:`TRAIN_FRACTION` is the train region, the rest
    the test region; the two share no pixel.
    """
    height, width = photo.shape[:2]
    r0, r1 = round(photo.box[0] * height), round(photo.box[1] * height)
    c0, c1 = round(photo.box[2] * width), round(photo.box[3] * width)
    if r1 - r0 >= c1 - c0:
        cut = r0 + round(TRAIN_FRACTION * (r1 - r0))
        return (r0, cut, c0, c1) if split == "train" else (cut, r1, c0, c1)
    cut = c0 + round(TRAIN_FRACTION * (c1 - c0))
    return (r0, r1, c0, cut) if split == "train" else (r0, r1, cut, c1)


def _side_range(photo: Photo) -> tuple[int, int]:
    height, width = photo.shape[:2]
    short = min(
        round(photo.box[1] * height) - round(photo.box[0] * height),
        round(photo.box[3] * width) - round(photo.box[2] * width),
    )
    return max(PATCH, round(MIN_SCALE * short)), round(MAX_SCALE * short)


@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """The source photos as read-only uint8 ``(H, W, 3)`` arrays (grey ones replicated), cached."""
    images = []
    sample_images = None
    for photo in PHOTOS:
        if photo.package == "skimage":
            data = import_optional("skimage.data", pip_name="scikit-image", dataset="photo-patches")
            image = np.asarray(getattr(data, photo.loader)())
        else:
            if sample_images is None:
                datasets = import_optional("sklearn.datasets", pip_name="scikit-learn", dataset="photo-patches")
                import_optional("PIL", pip_name="pillow", dataset="photo-patches")
                bunch = datasets.load_sample_images()
                sample_images = {Path(f).name: np.asarray(im) for f, im in zip(bunch.filenames, bunch.images)}
            image = sample_images.get(photo.loader, np.zeros(0, dtype=np.uint8))
        if image.dtype != np.uint8 or image.shape != photo.shape:
            raise DataFormatError(
                f"photo-patches: {photo.package} photo '{photo.loader}' is {image.dtype} {image.shape}; expected uint8 "
                f"{photo.shape}. Install a release that bundles it (`pip install 'scikit-image>=0.22' "
                "'scikit-learn>=1.3' pillow`)."
            )
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        image = np.ascontiguousarray(image)
        image.flags.writeable = False
        images.append(image)
    return tuple(images)


def _grey_std(crop: np.ndarray) -> float:
    return float((crop.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).std())


@lru_cache(maxsize=2)
def _build(split: str) -> tuple[np.ndarray, np.ndarray, CropBoxes]:
    """Draw the crops of ``split``: uint8 ``(N, 3, 32, 32)`` images, int64 targets and their :class:`CropBoxes`."""
    count = TRAIN_PER_CLASS if split == "train" else TEST_PER_CLASS
    photos = _photos()
    out = np.empty((len(PHOTOS) * count, 3, PATCH, PATCH), dtype=np.uint8)
    boxes = np.empty((len(PHOTOS) * count, 5), dtype=np.int64)
    for k, (photo, image) in enumerate(zip(PHOTOS, photos)):
        rng = np.random.default_rng([SEED, 0 if split == "train" else 1, k])
        r0, r1, c0, c1 = split_region(photo, split)
        lo, hi = _side_range(photo)
        hi = min(hi, r1 - r0, c1 - c0)
        for i in range(count):
            for _ in range(_MAX_DRAWS):
                side = int(rng.integers(lo, hi + 1))
                top = int(rng.integers(r0, r1 - side + 1))
                left = int(rng.integers(c0, c1 - side + 1))
                flip = int(rng.integers(2))
                brightness, contrast = rng.uniform(*_JITTER, size=2)
                crop = image[top : top + side, left : left + side]
                if _grey_std(crop) >= MIN_STD:
                    break
            else:  # pragma: no cover - the boxes above always contain textured content
                raise DataFormatError(
                    f"photo-patches: no textured crop found in '{photo.loader}' after {_MAX_DRAWS} draws."
                )
            tensor = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].to(torch.float64)
            small = F.interpolate(tensor, size=(PATCH, PATCH), mode="bilinear", align_corners=False, antialias=True)[0]
            if flip:
                small = small.flip(-1)
            grey_mean = float((small.mean(dim=(1, 2)) * torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)).sum())
            small = (small - grey_mean) * contrast + grey_mean * brightness
            out[k * count + i] = small.round().clamp(0, 255).to(torch.uint8).numpy()
            boxes[k * count + i] = (k, top, left, side, flip)
    targets = np.repeat(np.arange(len(PHOTOS), dtype=np.int64), count)
    out.flags.writeable = False
    return out, targets, CropBoxes(*(np.ascontiguousarray(boxes[:, j]) for j in range(5)))


def crop_boxes(split: str) -> CropBoxes:
    """Photo index, top-left pixel, side and flip of every crop of ``split``, in ``source_indices`` order."""
    return _build(split)[2]


def _load(split: str, root: Path | None = None) -> LoadedSplit:
    images, targets, _ = _build(split)
    return LoadedSplit(images, targets, np.arange(targets.size, dtype=np.int64))


DATASETS.add(
    "photo-patches",
    DatasetSpec(
        "photo-patches",
        "32x32 RGB crops of 11 real photos bundled in scikit-image/scikit-learn (cat, coffee cup, temple, ...)",
        lambda root: PHOTO_PATCHES_INFO,
        _load,
        needs_packages(
            "photo-patches", ("skimage.data", "scikit-image"), ("sklearn.datasets", "scikit-learn"), ("PIL", "pillow")
        ),
    ),
    aliases=("photos",),
)
