"""``isp-synth``: an offline RAW-to-RGB benchmark in Zurich RAW-to-RGB's layout, made from real bundled photos.

ZRR pairs a phone's RAW (Huawei P20) with a DSLR's rendering of the same scene (Canon 5D Mark IV). Here the
*target* is a real photo shipped with a Python package (or Debian's opencv-doc) and the *input* imitates what a
different, worse camera would have recorded, so that a model must learn a real ISP, not just an inverse:

1. the photo is unprocessed (Brooks et al. 2019: inverse smoothstep tone curve, gamma 2.2) into linear light;
2. the phone's own colour matrix (``rgb2cam``, one of Brooks' camera matrices, different from sRGB's primaries);
3. a white balance and exposure drawn per capture (Brooks: red gain U[1.9, 2.4], blue U[1.5, 1.9], exposure
   ``1 / N(0.8, 0.1)``), inverted with highlight preservation;
4. lens shading: ``gain = 1 - vignetting * (r / r_corner)^2`` over the full frame (the photo), so crops from the
   borders are darker;
5. a small misalignment: the RAW samples the scene shifted by ``(dy, dx)`` uniform in ``[-max_shift, max_shift]``
   pixels (bilinear; ZRR pairs are not pixel-aligned either);
6. RGGB mosaic, heteroscedastic shot/read noise at an ISO drawn log-uniformly in ``iso_range``
   (:func:`~pickwise.tasks.isp.unprocess.noise_from_iso`), 10-bit quantisation with black level 63 and white level
   1020 (MW-ISPNet's reading of ZRR).

**Layout** (what :class:`~pickwise.tasks.isp.raw.ZRRDataset` reads unchanged)::

    <root>/train/huawei_raw/<i>.png   10-bit RGGB mosaic in a 16-bit PNG, crop x crop (default 128: packed 4x64x64)
    <root>/train/canon/<i>.png        8-bit RGB target, crop x crop
    <root>/test/huawei_raw|canon/     the same for the test photos
    <root>/full_resolution/huawei_raw|canon/<i>.png   whole test photos (sides cut to a multiple of 32)
    <root>/meta.json                  parameters, photo list and splits, counts, generation time, size
    <root>/captures.json              per pair: photo, position, shift, white balance, exposure, ISO

Targets are PNG by default (ZRR ships JPEGs of unknown quality; lossless targets keep compression artefacts out of
the benchmark); ``target_format="jpg"`` writes JPEG at ``jpeg_quality`` (95).

**Photos and split.** The split is *by photo* and fixed (:data:`PHOTOS`): no test pixel is ever seen in training.
Bundled photos: scikit-image's astronaut, coffee, rocket and scikit-learn's china.jpg for training; scikit-image's
chelsea, scikit-learn's flower.jpg and matplotlib's grace_hopper.jpg for testing. When Debian's ``opencv-doc`` is
installed (``photos="auto"``, the default) 20 of its natural photographs are added (one per scene: stereo pairs and
re-shot views contribute a single image), 5 of them to the test split; ``meta.json`` records which photos were
used, so numbers from machines with and without opencv-doc are never silently compared. ``photos="bundled"`` gives
the same dataset on every machine. Left out: grey images (camera, coins, the chessboards), graphics and renders
(logos, colorwheel, Blender scenes, synthetic blur tests), a painting (starry_night), microscopy/astronomy
(immunohistochemistry, retina, hubble_deep_field) and near-duplicate views.

Deterministic: every draw comes from ``numpy.random.default_rng((seed, split, crc32(photo key)))``; the folder is
written to a temporary sibling and renamed into place when complete (a concurrent or interrupted run never leaves a
half-written dataset), and reused when ``meta.json`` shows the same seed and parameters.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...exceptions import ConfigError, DataFormatError, DataNotFoundError, InvalidParameterError
from ...utils.io import atomic_write_json, strict_json_dumps
from .classical import ClassicalISP
from .raw import RawLevels, ZRRDataset
from .unprocess import XYZ2CAMS, CameraParams, add_noise, mosaic, quantize_raw, rgb2cam_from_xyz2cam, unprocess_rgb

__all__ = [
    "DEFAULT_PARAMS",
    "OPENCV_DOC_DIR",
    "PHOTOS",
    "VERSION",
    "SynthPhoto",
    "available_photos",
    "default_isp_synth_root",
    "evaluate_classical_baseline",
    "isp_synth_is_complete",
    "make_isp_synth",
    "plot_isp_synth_examples",
    "read_isp_synth_meta",
    "synth_classical_isp",
]

VERSION = 1
GENERATOR = "pickwise.isp-synth"
OPENCV_DOC_DIR = Path("/usr/share/doc/opencv-doc/examples/data")

DEFAULT_PARAMS: dict[str, Any] = {
    "crop": 128,
    "train_density": 2.0,
    "test_density": 0.75,
    "min_crops_per_photo": 8,
    "max_side": 1024,
    "full_images": True,
    "full_multiple": 32,
    "max_shift": 1.5,
    "iso_range": (100.0, 1600.0),
    "vignetting": 0.3,
    "phone_xyz2cam": 1,
    "photos": "auto",
    "target_format": "png",
    "jpeg_quality": 95,
}
"""Generation parameters (see :func:`make_isp_synth`). Densities are crops per ``crop x crop`` area of a photo."""


@dataclass(frozen=True)
class SynthPhoto:
    """A source photo: stable key, package, loader/file name, split and licence."""

    key: str
    package: str
    loader: str
    split: str
    license: str


_OCV = "Apache-2.0 AND BSD-3-Clause (Debian opencv-doc; see /usr/share/doc/opencv-doc/copyright)"

PHOTOS: tuple[SynthPhoto, ...] = (
    SynthPhoto("skimage:astronaut", "skimage", "astronaut", "train", "public domain (NASA)"),
    SynthPhoto("skimage:coffee", "skimage", "coffee", "train", "CC0 (Rachel Michetti)"),
    SynthPhoto("skimage:rocket", "skimage", "rocket", "train", "public domain (SpaceX)"),
    SynthPhoto("sklearn:china.jpg", "sklearn", "china.jpg", "train", "CC BY 2.0 (danielbuechele)"),
    SynthPhoto("skimage:chelsea", "skimage", "chelsea", "test", "CC0 (Stefan van der Walt)"),
    SynthPhoto("sklearn:flower.jpg", "sklearn", "flower.jpg", "test", "CC BY 2.0 (vultilion)"),
    SynthPhoto("matplotlib:grace_hopper.jpg", "matplotlib", "grace_hopper.jpg", "test", "public domain (US Navy)"),
    *(
        SynthPhoto(f"opencv-doc:{name}", "opencv-doc", name, split, _OCV)
        for name, split in (
            ("aero1.jpg", "train"),
            ("aloeL.jpg", "train"),
            ("apple.jpg", "train"),
            ("baboon.jpg", "train"),
            ("board.jpg", "train"),
            ("building.jpg", "train"),
            ("butterfly.jpg", "test"),
            ("ela_original.jpg", "train"),
            ("fruits.jpg", "test"),
            ("graf1.png", "train"),
            ("home.jpg", "test"),
            ("left.jpg", "train"),
            ("leuvenA.jpg", "test"),
            ("messi5.jpg", "train"),
            ("orange.jpg", "train"),
            ("rubberwhale1.png", "train"),
            ("smarties.png", "test"),
            ("squirrel_cls.jpg", "train"),
            ("stuff.jpg", "train"),
            ("sudoku.png", "train"),
        )
    ),
)
"""Every photo the benchmark may use, with its fixed split. opencv-doc photos are used only when installed."""


def default_isp_synth_root() -> Path:
    """``$PICKWISE_DATA_DIR/isp-synth`` when the variable is set, else ``~/.cache/pickwise/isp-synth``."""
    env = os.environ.get("PICKWISE_DATA_DIR", "").strip()
    if env:
        return Path(env).expanduser() / "isp-synth"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return cache / "pickwise" / "isp-synth"


def available_photos(photos: str = "auto", opencv_dir: Path | None = None) -> list[SynthPhoto]:
    """The photos ``make_isp_synth`` would use.

    ``"bundled"``: the 7 photos of scikit-image, scikit-learn and matplotlib (all three required); ``"auto"``: those
    of the installed packages plus opencv-doc's when found; ``"all"``: every photo, raising
    :class:`DataNotFoundError` without opencv-doc.
    """
    if photos not in ("auto", "bundled", "all"):
        raise InvalidParameterError(f"isp-synth: photos must be 'auto', 'bundled' or 'all', got {photos!r}")
    folder = OPENCV_DOC_DIR if opencv_dir is None else Path(opencv_dir)
    out = [p for p in PHOTOS if p.package != "opencv-doc"]
    if photos == "bundled":
        return out
    if photos == "auto":  # skip photos of packages that are not installed (the list is recorded in meta.json)
        import importlib.util

        modules = {"skimage": "skimage", "sklearn": "sklearn", "matplotlib": "matplotlib"}
        out = [p for p in out if importlib.util.find_spec(modules[p.package]) is not None]
    found = [p for p in PHOTOS if p.package == "opencv-doc" and (folder / p.loader).is_file()]
    if photos == "all" and len(found) < sum(p.package == "opencv-doc" for p in PHOTOS):
        raise DataNotFoundError(
            f"isp-synth: photos='all' needs Debian's opencv-doc images in {folder}; install them with "
            "`apt-get install opencv-doc`, or use photos='auto'/'bundled'"
        )
    return out + found


def _load_photo(photo: SynthPhoto, max_side: int, opencv_dir: Path) -> np.ndarray:
    """The photo as uint8 ``[H, W, 3]``, downscaled (Lanczos) so that its longer side is at most ``max_side``."""
    from PIL import Image

    from ...data._base import import_optional

    if photo.package == "skimage":
        data = import_optional("skimage.data", pip_name="scikit-image", dataset="isp-synth")
        image = np.asarray(getattr(data, photo.loader)())
    elif photo.package == "sklearn":
        datasets = import_optional("sklearn.datasets", pip_name="scikit-learn", dataset="isp-synth")
        bunch = datasets.load_sample_images()
        image = next(np.asarray(im) for f, im in zip(bunch.filenames, bunch.images) if Path(f).name == photo.loader)
    elif photo.package == "matplotlib":
        cbook = import_optional("matplotlib.cbook", pip_name="matplotlib", dataset="isp-synth")
        with cbook.get_sample_data(photo.loader) as f:
            image = np.asarray(Image.open(f).convert("RGB"))
    else:
        with Image.open(opencv_dir / photo.loader) as im:
            image = np.asarray(im.convert("RGB"))
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataFormatError(f"isp-synth: photo {photo.key} is {image.dtype} {image.shape}; expected uint8 RGB")
    h, w = image.shape[:2]
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
    return np.ascontiguousarray(image)


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise InvalidParameterError(
            f"make_isp_synth: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_PARAMS)}"
        )
    p = {**DEFAULT_PARAMS, **params}
    crop = p["crop"]
    if isinstance(crop, bool) or not isinstance(crop, int) or crop < 16 or crop % 2:
        raise InvalidParameterError(f"make_isp_synth: crop must be an even integer >= 16, got {crop!r}")
    for key in ("train_density", "test_density", "max_shift", "vignetting"):
        if not isinstance(p[key], (int, float)) or isinstance(p[key], bool) or p[key] < 0:
            raise InvalidParameterError(f"make_isp_synth: {key} must be a number >= 0, got {p[key]!r}")
        p[key] = float(p[key])
    if p["vignetting"] >= 1:
        raise InvalidParameterError(f"make_isp_synth: vignetting must be < 1, got {p['vignetting']}")
    lo, hi = p["iso_range"]
    if not 0 < lo <= hi:
        raise InvalidParameterError(
            f"make_isp_synth: iso_range must be (lo, hi) with 0 < lo <= hi, got {p['iso_range']}"
        )
    p["iso_range"] = (float(lo), float(hi))
    if p["phone_xyz2cam"] not in range(len(XYZ2CAMS)):
        raise InvalidParameterError(f"make_isp_synth: phone_xyz2cam must be 0..{len(XYZ2CAMS) - 1}")
    if p["target_format"] not in ("png", "jpg"):
        raise InvalidParameterError(f"make_isp_synth: target_format must be 'png' or 'jpg', got {p['target_format']!r}")
    for key in ("min_crops_per_photo", "max_side", "full_multiple", "jpeg_quality"):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 1:
            raise InvalidParameterError(f"make_isp_synth: {key} must be a positive integer, got {p[key]!r}")
    if p["full_multiple"] % 2:
        raise InvalidParameterError("make_isp_synth: full_multiple must be even (Bayer data)")
    available_photos(p["photos"])  # validates the choice
    return p


def phone_camera(p: dict[str, Any]) -> CameraParams:
    """The simulated phone sensor (colour matrix, levels, CFA) of a parameter set; gains and noise are per capture."""
    return CameraParams(rgb2cam=rgb2cam_from_xyz2cam(XYZ2CAMS[p["phone_xyz2cam"]]))


def _shading(h: int, w: int, strength: float) -> np.ndarray:
    """Lens shading gain over a full ``h x w`` frame: ``1 - strength * (r / r_corner)^2``."""
    y = (np.arange(h) + 0.5 - h / 2) / (h / 2)
    x = (np.arange(w) + 0.5 - w / 2) / (w / 2)
    r2 = (y[:, None] ** 2 + x[None, :] ** 2) / 2.0
    return (1.0 - strength * r2).astype(np.float64)


def _shift(img: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """Sample ``img [3, H, W]`` at ``(y + dy, x + dx)`` (bilinear, border values outside)."""
    _, h, w = img.shape
    ys = (torch.arange(h, dtype=img.dtype) + dy) / (h - 1) * 2 - 1
    xs = (torch.arange(w, dtype=img.dtype) + dx) / (w - 1) * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]
    return F.grid_sample(img[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]


def _capture(
    region: np.ndarray,
    shading: np.ndarray,
    margin: int,
    rng: np.random.Generator,
    phone: CameraParams,
    p: dict[str, Any],
) -> tuple[np.ndarray, dict[str, Any]]:
    """Simulate the phone's RAW of the centre of ``region`` (uint8 with ``margin`` on each side) -> uint16 mosaic."""
    from .unprocess import sample_camera_params

    params = sample_camera_params(rng, base=phone, iso_range=p["iso_range"])
    dy, dx = (float(v) for v in rng.uniform(-p["max_shift"], p["max_shift"], size=2))
    noise_seed = int(rng.integers(0, 2**62))
    srgb = torch.from_numpy(np.array(region, copy=True)).permute(2, 0, 1).to(torch.float64) / 255.0
    cam = unprocess_rgb(srgb, params)
    cam = _shift(cam, dy, dx)
    h, w = cam.shape[-2] - 2 * margin, cam.shape[-1] - 2 * margin
    cam = cam[:, margin : margin + h, margin : margin + w] * torch.from_numpy(shading)
    raw = mosaic(cam, params.pattern)
    raw = add_noise(raw, params.shot_noise, params.read_noise, torch.Generator().manual_seed(noise_seed))
    dn = quantize_raw(raw, params).numpy().astype(np.uint16)
    info = {
        "shift": [round(dy, 4), round(dx, 4)],
        "iso": round(params.extra["iso"], 2),
        "red_gain": round(params.red_gain, 4),
        "blue_gain": round(params.blue_gain, 4),
        "rgb_gain": round(params.rgb_gain, 4),
    }
    return dn, info


def _encode_png(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _write_pair(base: Path, index: int, dn: np.ndarray, target: np.ndarray, p: dict[str, Any]) -> None:
    from PIL import Image

    (base / "huawei_raw" / f"{index}.png").write_bytes(_encode_png(dn))
    if p["target_format"] == "png":
        (base / "canon" / f"{index}.png").write_bytes(_encode_png(target))
    else:
        Image.fromarray(target).save(base / "canon" / f"{index}.jpg", quality=p["jpeg_quality"])


def _crop_count(h: int, w: int, crop: int, density: float, minimum: int) -> int:
    return max(minimum, math.ceil(density * h * w / crop**2))


def _generate(tmp: Path, seed: int, p: dict[str, Any], photos: list[SynthPhoto], progress: bool) -> dict[str, Any]:
    from ...engine.progress import make_progress

    opencv_dir = OPENCV_DOC_DIR
    phone = phone_camera(p)
    crop = p["crop"]
    margin = math.ceil(p["max_shift"]) + 2
    images = {ph.key: _load_photo(ph, p["max_side"], opencv_dir) for ph in photos}
    plan: list[tuple[SynthPhoto, str, int]] = []
    used: list[dict[str, Any]] = []
    for ph in photos:
        h, w = images[ph.key].shape[:2]
        if min(h, w) < crop + 2 * margin:
            continue
        density = p["train_density"] if ph.split == "train" else p["test_density"]
        n = _crop_count(h, w, crop, density, p["min_crops_per_photo"])
        plan.append((ph, ph.split, n))
        used.append({"key": ph.key, "split": ph.split, "shape": [h, w], "crops": n, "license": ph.license})
    full = [ph for ph, split, _ in plan if split == "test"] if p["full_images"] else []
    total = sum(n for _, _, n in plan) + len(full)
    bar = make_progress(total, enabled=progress, desc="isp-synth", interval=10.0)
    for split in ("train", "test"):
        for sub in ("huawei_raw", "canon"):
            (tmp / split / sub).mkdir(parents=True, exist_ok=True)
    captures: dict[str, list[dict[str, Any]]] = {"train": [], "test": [], "full": []}
    counters = {"train": 0, "test": 0}
    for ph, split, n in plan:
        image = images[ph.key]
        h, w = image.shape[:2]
        shading = _shading(h, w, p["vignetting"])
        rng = np.random.default_rng([seed, 0 if split == "train" else 1, zlib.crc32(ph.key.encode())])
        for _ in range(n):
            top = margin + 2 * int(rng.integers(0, (h - crop - 2 * margin) // 2 + 1))
            left = margin + 2 * int(rng.integers(0, (w - crop - 2 * margin) // 2 + 1))
            region = image[top - margin : top + crop + margin, left - margin : left + crop + margin]
            dn, info = _capture(region, shading[top : top + crop, left : left + crop], margin, rng, phone, p)
            index = counters[split]
            _write_pair(tmp / split, index, dn, image[top : top + crop, left : left + crop], p)
            captures[split].append({"index": index, "photo": ph.key, "top": top, "left": left, **info})
            counters[split] += 1
            bar.update(1)
    if full:
        for sub in ("huawei_raw", "canon"):
            (tmp / "full_resolution" / sub).mkdir(parents=True, exist_ok=True)
    for index, ph in enumerate(full):
        image = images[ph.key]
        m = p["full_multiple"]
        h, w = (image.shape[0] // m) * m, (image.shape[1] // m) * m
        top, left = (image.shape[0] - h) // 2 // 2 * 2, (image.shape[1] - w) // 2 // 2 * 2
        rng = np.random.default_rng([seed, 2, zlib.crc32(ph.key.encode())])
        padded = np.pad(image, ((margin, margin), (margin, margin), (0, 0)), mode="edge")
        region = padded[top : top + h + 2 * margin, left : left + w + 2 * margin]
        shading = _shading(image.shape[0], image.shape[1], p["vignetting"])[top : top + h, left : left + w]
        dn, info = _capture(region, shading, margin, rng, phone, p)
        _write_pair(tmp / "full_resolution", index, dn, image[top : top + h, left : left + w], p)
        captures["full"].append({"index": index, "photo": ph.key, "top": top, "left": left, **info})
        bar.update(1)
    bar.close()
    atomic_write_json(tmp / "captures.json", captures)
    return {
        "photos": used,
        "counts": {"train": counters["train"], "test": counters["test"], "full": len(full)},
        "camera": phone.to_dict(),
    }


def _folder_size(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def read_isp_synth_meta(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``meta.json`` of a complete ``isp-synth`` folder, or None."""
    import json

    try:
        meta = json.loads((Path(root).expanduser() / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("generator") != GENERATOR or not meta.get("complete"):
        return None
    return meta


def isp_synth_is_complete(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` holds a complete ``isp-synth`` folder of the current version (any parameters)."""
    meta = read_isp_synth_meta(root)
    return meta is not None and meta.get("version") == VERSION


def _identity(seed: int, p: dict[str, Any], photos: list[SynthPhoto]) -> dict[str, Any]:
    import json

    return json.loads(strict_json_dumps({"seed": seed, "params": p, "photo_keys": [ph.key for ph in photos]}))


def make_isp_synth(
    root: str | os.PathLike[str] | None = None, *, seed: int = 0, progress: bool = True, **params: Any
) -> Path:
    """Generate (or reuse) the ``isp-synth`` benchmark in ZRR's layout under ``root``; returns ``root``.

    Args:
        root: target folder (default :func:`default_isp_synth_root`). Use one folder per seed/parameter set.
        seed: drawing seed (crop positions, white balance, exposure, ISO, shifts, noise).
        progress: print progress lines (a tqdm bar on a terminal).
        **params: overrides of :data:`DEFAULT_PARAMS`: ``crop`` (target side in pixels, even; RAW input is
            ``4 x crop/2 x crop/2``), ``train_density``/``test_density`` (crops per crop-sized area of a photo),
            ``min_crops_per_photo``, ``max_side`` (photos are downscaled to this longer side), ``full_images`` and
            ``full_multiple`` (whole test photos, sides cut to a multiple), ``max_shift`` (pixels),
            ``iso_range``, ``vignetting``, ``phone_xyz2cam`` (which of Brooks' matrices the phone uses),
            ``photos`` (``"auto"``, ``"bundled"``, ``"all"``), ``target_format`` (``"png"`` or ``"jpg"``),
            ``jpeg_quality``.

    Raises:
        ConfigError: ``root`` exists and holds something else (another seed/parameters, or not an isp-synth folder).
    """
    p = _check_params(params)
    root = default_isp_synth_root() if root is None else Path(root).expanduser()
    photos = available_photos(p["photos"])
    wanted = _identity(seed, p, photos)
    meta = read_isp_synth_meta(root)
    if meta is not None and meta.get("version") == VERSION and meta.get("identity") == wanted:
        return root
    if root.exists() and any(root.iterdir()):
        what = "an isp-synth folder with another seed, parameters or photo set" if meta else "other files"
        raise ConfigError(
            f"make_isp_synth: {root} already holds {what}; pass another root (one per seed/parameter set) or "
            "delete the folder to regenerate it"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    try:
        info = _generate(tmp, seed, p, photos, progress)
        seconds = time.perf_counter() - start
        from .datasets import split_checksum

        checksums = {split: split_checksum(tmp, split) for split in ("train", "test")}
        if p["full_images"] and info["counts"]["full"]:
            checksums["full"] = split_checksum(tmp, "full")
        meta = {
            "generator": GENERATOR,
            "version": VERSION,
            "complete": True,
            "identity": wanted,
            "seed": seed,
            "params": wanted["params"],
            **info,
            "layout": "ZRR: <split>/huawei_raw/<i>.png (10-bit RGGB in 16-bit PNG) + <split>/canon/<i>.<ext>",
            "raw_convention_hint": "black 63, white 1020: normalize with 'mwisp' for linear data, or 'pynet' as ZRR",
            "sha256": checksums,
            "generation_seconds": round(seconds, 2),
            "size_bytes": _folder_size(tmp),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
        }
        atomic_write_json(tmp / "meta.json", meta)
        if root.exists() and not any(root.iterdir()):
            root.rmdir()
        try:
            os.replace(tmp, root)
        except OSError:
            # another process finished first: use its folder when it is the same dataset
            other = read_isp_synth_meta(root)
            if other is None or other.get("identity") != wanted:
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def synth_classical_isp(root_or_meta: str | os.PathLike[str] | dict[str, Any], demosaic: str = "malvar"):
    """The classical baseline calibrated to an ``isp-synth`` folder's phone: its CCM inverse, grey-world WB, gamma.

    It knows the sensor (colour matrix, black/white level, gamma 2.2 and the smoothstep tone curve of the
    simulator) but not the per-capture white balance (estimated by grey world), exposure (the mean of Brooks'
    draw, 1.25) or the lens shading, noise and misalignment.
    """
    meta = root_or_meta if isinstance(root_or_meta, dict) else read_isp_synth_meta(root_or_meta)
    if meta is None:
        raise DataNotFoundError(f"synth_classical_isp: no complete isp-synth folder at {root_or_meta}")
    cam = meta["camera"]
    return ClassicalISP(
        pattern=cam["pattern"],
        input_convention="pynet",
        sensor_levels=RawLevels(cam["black_level"], cam["white_level"]),
        demosaic=demosaic,
        white_balance="grey_world",
        ccm=np.linalg.inv(np.asarray(cam["rgb2cam"], dtype=np.float64)).tolist(),
        exposure=1.25,
        gamma=cam["gamma"],
        tone=True,
    )


@torch.no_grad()
def evaluate_classical_baseline(
    root: str | os.PathLike[str], split: str = "test", demosaic: str = "malvar"
) -> dict[str, float]:
    """PSNR / SSIM (and colour-invariant PSNR, separately) of :func:`synth_classical_isp` on a split, per image."""
    from ...metrics.image import color_invariant_psnr, psnr, ssim

    isp = synth_classical_isp(root, demosaic)
    ds = ZRRDataset(root, split)
    values: dict[str, list[float]] = {"psnr": [], "ssim": [], "color_invariant_psnr": []}
    for i in range(len(ds)):
        raw, rgb, _ = ds[i]
        out = isp(raw[None])
        values["psnr"].append(float(psnr(out, rgb[None])))
        values["ssim"].append(float(ssim(out, rgb[None])))
        values["color_invariant_psnr"].append(float(color_invariant_psnr(out, rgb[None])))
    return {k: float(np.mean(v)) for k, v in values.items()} | {"count": float(len(ds))}


@torch.no_grad()
def plot_isp_synth_examples(
    root: str | os.PathLike[str], path: str | os.PathLike[str], indices: tuple[int, ...] = (0, 1, 2), full: int = 0
) -> Path:
    """Save an example figure: RAW preview, classical baseline and target side by side (needs matplotlib).

    One row per test pair in ``indices`` plus one full-resolution test image (``full``; -1 for none). The preview is
    the half-resolution pseudo-demosaic with grey-world gains and gamma 1/2.2.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...metrics.image import psnr, ssim
    from .classical import grey_world_gains
    from .raw import pseudo_demosaic

    isp = synth_classical_isp(root)
    rows = [("test", i) for i in indices] + ([("full", full)] if full >= 0 else [])
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.6 * len(rows)), squeeze=False)
    for r, (split, index) in enumerate(rows):
        raw, rgb, name = ZRRDataset(root, split, convention="pynet")[index]
        lin = isp.linearize(raw[None])
        preview = pseudo_demosaic(lin).clamp(0, 1)
        preview = (preview * grey_world_gains(preview).view(-1, 3, 1, 1)).clamp(0, 1) ** (1 / 2.2)
        out = isp(raw[None])
        panels = [
            (preview[0], f"RAW preview ({split} {name}, {raw.shape[-2]}x{raw.shape[-1]}x4)"),
            (out[0], f"classical: {psnr(out, rgb[None]).item():.2f} dB / SSIM {ssim(out, rgb[None]).item():.3f}"),
            (rgb, "target"),
        ]
        for c, (img, title) in enumerate(panels):
            axes[r, c].imshow(img.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            axes[r, c].set_title(title, fontsize=7)
            axes[r, c].axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=90, format="png")
    plt.close(fig)
    buf.seek(0)
    # a 256-colour palette keeps the file small enough for the docs (about 3x smaller than RGB)
    with Image.open(buf) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    from ...utils.io import atomic_write_bytes

    atomic_write_bytes(path, out.getvalue())
    return path
