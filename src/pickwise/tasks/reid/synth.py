"""``reid-synth``: the embedded video re-ID benchmark, a procedural MARS-layout folder made from bundled photos.

:func:`make_reid_synth` draws walking person-like figures (body parts as shapes, clothing cut from the real photos
bundled in scikit-image, gait, bags, logos; see :mod:`pickwise.tasks.reid.synth_render`) seen by several cameras
that differ in viewpoint, scale, aspect, background, colour response, illumination, blur, noise and JPEG quality,
with detection jitter, occluders, distractor and junk tracklets. It writes exactly MARS's published layout::

    <root>/bbox_train/<PPPP>/<PPPP>C<c>T<tttt>F<fff>.jpg
    <root>/bbox_test/<PPPP>/...                (0000 = distractors, 00-1 = junk)
    <root>/info/{train_name.txt, test_name.txt, tracks_train_info.mat, tracks_test_info.mat, query_IDX.mat}
    <root>/meta.json                           parameters, counts, size on disk, generation time
    <root>/manifest.json                       written last: marks the folder complete

so ``load_reid_dataset("mars", root)`` and ``load_reid_dataset("reid-synth", root)`` read it unchanged.

Protocol as MARS: training and test identities are disjoint (train pids odd 1, 3, ..., test pids even 2, 4, ...);
each identity is seen by at least two cameras; the queries (``query_IDX``) are one tracklet per (test identity,
camera) pair; distractor tracklets (label 0: other pedestrians seen once, false detections of background, badly
placed boxes) stay in the gallery; junk tracklets (label -1) are dropped by the loaders.

Defaults (chosen so that generation takes well under a minute on one core and the frame-averaged features of an
ImageNet MobileNetV2 are far from solving it; measured numbers in docs/reid_data.md): 100 train and 100 test
identities, 3-5 tracklets each over 2-4 of 6 cameras, 8-16 frames per tracklet, 128x64 frames (half of MARS's 256x128:
four times fewer pixels to draw, store and read), 40 distractor and 10 junk tracklets, nuisance ``strength = 0.5``
and ``background = 0.3`` (the two difficulty knobs, calibrated).

The folder is built in a temporary sibling folder and moved into place with ``os.replace``; a complete folder with
the same parameters is reused as it is. Everything is drawn from ``numpy.random.default_rng`` seeded by
``(seed, role, index)``, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ...exceptions import DataFormatError, InvalidParameterError
from ...utils.io import atomic_write_json, json_safe

__all__ = [
    "DEFAULT_PARAMS",
    "calibrate_reid_synth",
    "default_reid_synth_root",
    "make_reid_synth",
    "reid_synth_is_complete",
]

VERSION = 2
"""Bumped whenever the drawing changes, so that old folders are regenerated."""

DEFAULT_PARAMS: dict[str, Any] = {
    "num_train_ids": 100,
    "num_test_ids": 100,
    "num_distractors": 40,
    "num_junk": 10,
    "num_cameras": 6,
    "tracklets_per_id": (3, 5),
    "seq_len_range": (8, 16),
    "size": (128, 64),
    "strength": 0.5,
    "background": 0.3,
}
_ROLE_IDENTITY, _ROLE_TRACK, _ROLE_PASSERBY, _ROLE_CAMERA, _ROLE_DISTRACTOR = 1, 2, 3, 4, 5
_NUM_PASSERBY = 24


def default_reid_synth_root() -> Path:
    """``$PICKWISE_DATA_DIR/reid-synth`` when the variable is set, else ``~/.cache/pickwise/reid-synth``."""
    env = os.environ.get("PICKWISE_DATA_DIR", "").strip()
    if env:
        return Path(env).expanduser() / "reid-synth"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return cache / "pickwise" / "reid-synth"


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("generator") != "reid-synth":
        return None
    return manifest


def reid_synth_is_complete(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` holds a complete ``reid-synth`` folder of the current drawing version (any parameters)."""
    manifest = _read_manifest(Path(root).expanduser())
    return manifest is not None and manifest.get("version") == VERSION


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise InvalidParameterError(
            f"make_reid_synth: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_PARAMS)}"
        )
    p = {**DEFAULT_PARAMS, **params}
    for key in ("num_train_ids", "num_test_ids", "num_cameras"):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < (2 if key == "num_cameras" else 1):
            raise InvalidParameterError(
                f"make_reid_synth: {key} must be an integer >= 1 (cameras: 2..9); got {p[key]!r}"
            )
    if p["num_cameras"] > 9:
        raise InvalidParameterError(
            f"make_reid_synth: num_cameras must be 2..9 (one digit in MARS names); got {p['num_cameras']}"
        )
    for key in ("num_distractors", "num_junk"):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 0:
            raise InvalidParameterError(f"make_reid_synth: {key} must be an integer >= 0; got {p[key]!r}")
    for key, low in (("tracklets_per_id", 2), ("seq_len_range", 1), ("size", 8)):
        value = p[key]
        if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(isinstance(v, int) for v in value):
            raise InvalidParameterError(f"make_reid_synth: {key} must be a pair of integers; got {value!r}")
        if key != "size" and not low <= value[0] <= value[1]:
            raise InvalidParameterError(
                f"make_reid_synth: {key} must be (lo, hi) with {low} <= lo <= hi; got {value!r}"
            )
        p[key] = (int(value[0]), int(value[1]))
    if p["seq_len_range"][1] > 999:
        raise InvalidParameterError("make_reid_synth: at most 999 frames per tracklet (3-digit MARS frame numbers)")
    if p["size"][0] < 16 or p["size"][1] < 8:
        raise InvalidParameterError(f"make_reid_synth: size must be (H, W) with H >= 16 and W >= 8; got {p['size']!r}")
    if not isinstance(p["strength"], (int, float)) or isinstance(p["strength"], bool) or not 0 <= p["strength"] <= 3:
        raise InvalidParameterError(f"make_reid_synth: strength must be a number in [0, 3]; got {p['strength']!r}")
    p["strength"] = float(p["strength"])
    if (
        not isinstance(p["background"], (int, float))
        or isinstance(p["background"], bool)
        or not 0 <= p["background"] <= 1
    ):
        raise InvalidParameterError(f"make_reid_synth: background must be a number in [0, 1]; got {p['background']!r}")
    p["background"] = float(p["background"])
    return p


def _plan(seed: int, p: dict[str, Any]) -> list[dict[str, Any]]:
    """Every tracklet to draw: split, pid, camera (1-based), tracklet number, frames, what it shows."""
    plan: list[dict[str, Any]] = []
    num_cams = p["num_cameras"]
    n_train = p["num_train_ids"]
    for gid in range(n_train + p["num_test_ids"]):
        rng = np.random.default_rng([seed, _ROLE_TRACK, gid])
        split = "train" if gid < n_train else "test"
        pid = 2 * gid + 1 if split == "train" else 2 * (gid - n_train) + 2
        n = int(rng.integers(p["tracklets_per_id"][0], p["tracklets_per_id"][1] + 1))
        # m cameras, one query each; the n - m other tracklets go to distinct cameras (cycling), so that most
        # queries keep a true match from another camera in torchreid's query-free gallery
        m = int(rng.integers(2, max(2, min(n - 2, num_cams)) + 1))
        cams = rng.choice(num_cams, m, replace=False).tolist()
        order = rng.permutation(cams).tolist()
        cams += [order[i % m] for i in range(n - m)]
        for k, cam in enumerate(cams):
            plan.append({"split": split, "pid": pid, "cam": cam + 1, "gid": gid, "k": k, "kind": "person"})
    for k in range(p["num_distractors"] + p["num_junk"]):
        rng = np.random.default_rng([seed, _ROLE_DISTRACTOR, k])
        junk = k >= p["num_distractors"]
        kind = str(rng.choice(["person", "background", "upper", "lower"], p=[0.45, 0.25, 0.15, 0.15]))
        if junk:
            kind = str(rng.choice(["background", "upper", "lower"]))
        plan.append(
            {
                "split": "test",
                "pid": -1 if junk else 0,
                "cam": int(rng.integers(num_cams)) + 1,
                "gid": -1,
                "k": k,
                "kind": kind,
            }
        )
    counters: dict[tuple[str, int, int], int] = {}
    for item in plan:
        key = (item["split"], item["pid"], item["cam"])
        counters[key] = counters.get(key, 0) + 1
        item["tnum"] = counters[key]
        rng = np.random.default_rng([seed, _ROLE_TRACK, 1, *_key(item)])
        item["frames"] = int(rng.integers(p["seq_len_range"][0], p["seq_len_range"][1] + 1))
    return plan


def _key(item: dict[str, Any]) -> tuple[int, int, int, int]:
    """Non-negative integers that identify a planned tracklet (seed material)."""
    return (item["gid"] + 1, item["k"], item["pid"] + 1, item["cam"])


def _folder(pid: int) -> str:
    return "00-1" if pid == -1 else f"{pid:04d}"


def _mat_bytes(var: str, value: np.ndarray) -> bytes:
    """A MATLAB v5 file holding ``var`` with a fixed header text (scipy writes the creation time there)."""
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {var: value}, do_compression=False)
    data = bytearray(buf.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, written by pickwise reid-synth".ljust(116)
    return bytes(data)


def _generate(tmp: Path, seed: int, p: dict[str, Any], progress: bool) -> dict[str, Any]:
    from ...engine.progress import make_progress
    from .synth_render import make_camera, make_identity, render_tracklet

    size, strength = p["size"], p["strength"]
    cameras = [
        make_camera(np.random.default_rng([seed, _ROLE_CAMERA, c]), c, size, strength, p["background"])
        for c in range(p["num_cameras"])
    ]
    passersby = [make_identity(np.random.default_rng([seed, _ROLE_PASSERBY, k])) for k in range(_NUM_PASSERBY)]
    identities: dict[int, Any] = {}
    plan = _plan(seed, p)
    names: dict[str, list[tuple[tuple[str, int, int], list[str], int, int]]] = {"train": [], "test": []}
    bar = make_progress(len(plan), desc="reid-synth", enabled=progress)
    for item in plan:
        rng = np.random.default_rng([seed, _ROLE_TRACK, 2, *_key(item)])
        if item["gid"] >= 0:
            if item["gid"] not in identities:
                identities[item["gid"]] = make_identity(np.random.default_rng([seed, _ROLE_IDENTITY, item["gid"]]))
            ident = identities[item["gid"]]
        elif item["kind"] == "background":
            ident = None
        else:  # distractor pedestrians are seen once; junk boxes show part of someone
            ident = make_identity(rng)
        passer = passersby[int(rng.integers(_NUM_PASSERBY))]
        partial = item["kind"] if item["kind"] in ("upper", "lower") else None
        frames = render_tracklet(
            ident,
            cameras[item["cam"] - 1],
            rng,
            item["frames"],
            size,
            strength=strength,
            occluder_ident=passer,
            partial=partial,
        )
        folder = _folder(item["pid"])
        out_dir = tmp / f"bbox_{item['split']}" / folder
        out_dir.mkdir(parents=True, exist_ok=True)
        frame_names = []
        for f, data in enumerate(frames):
            name = f"{folder}C{item['cam']}T{item['tnum']:04d}F{f + 1:03d}.jpg"
            (out_dir / name).write_bytes(data)
            frame_names.append(name)
        names[item["split"]].append(((folder, item["cam"], item["tnum"]), frame_names, item["pid"], item["cam"]))
        bar.update(1)
    bar.close()
    info = tmp / "info"
    info.mkdir()
    counts: dict[str, Any] = {}
    query_rows: list[int] = []
    for split in ("train", "test"):
        rows = sorted(names[split], key=lambda r: r[0])  # grouped by identity folder, then camera and tracklet
        lines: list[str] = []
        table = []
        for key, frame_names, pid, cam in rows:
            table.append([len(lines) + 1, len(lines) + len(frame_names), pid, cam])
            lines.extend(frame_names)
            if split == "test" and pid > 0 and key[2] == 1:  # one query per (identity, camera) pair
                query_rows.append(len(table))
        (info / f"{split}_name.txt").write_text("\n".join(lines) + "\n")
        var = f"track_{split}_info"
        (info / f"tracks_{split}_info.mat").write_bytes(_mat_bytes(var, np.asarray(table, dtype=np.int32)))
        counts[split] = {
            "ids": len({r[2] for r in rows if r[2] > 0}),
            "tracklets": len(rows),
            "frames": len(lines),
            "distractor_tracklets": sum(r[2] == 0 for r in rows),
            "junk_tracklets": sum(r[2] == -1 for r in rows),
        }
    counts["query_tracklets"] = len(query_rows)
    (info / "query_IDX.mat").write_bytes(_mat_bytes("query_IDX", np.asarray([query_rows], dtype=np.uint16)))
    return counts


def _disk_size(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def make_reid_synth(
    root: str | os.PathLike[str] | None = None, *, seed: int = 0, progress: bool = True, **params: Any
) -> Path:
    """Write (or reuse) the ``reid-synth`` benchmark at ``root`` and return its path.

    Args:
        root: Target folder (default :func:`default_reid_synth_root`). It must not exist, be empty, or hold a
            ``reid-synth`` folder (which is reused when its seed and parameters match, else replaced).
        seed: Random seed; the same seed and parameters give byte-identical images and index files.
        progress: Print progress lines (every 10 s) while drawing.
        **params: Overrides of :data:`DEFAULT_PARAMS`: ``num_train_ids``, ``num_test_ids``, ``num_distractors``,
            ``num_junk``, ``num_cameras`` (2..9), ``tracklets_per_id`` (lo, hi) with lo >= 2, ``seq_len_range``
            (lo, hi), ``size`` (H, W), ``strength`` (0 = clean frames, 1 = hard; scales every
            camera, illumination, jitter and occluder nuisance; default 0.5), ``background`` (contrast of the
            background photos: 0 = flat, 1 = as shot; default 0.3).

    Returns:
        The folder, in MARS layout.

    Raises:
        InvalidParameterError: Unknown or invalid parameters.
        DataFormatError: ``root`` exists, is not empty and is not a ``reid-synth`` folder.

    Example:
        >>> import tempfile
        >>> from pickwise.tasks.reid.datasets import load_reid_dataset
        >>> root = make_reid_synth(tempfile.mkdtemp(), num_train_ids=3, num_test_ids=3, num_distractors=1,
        ...                        num_junk=1, seq_len_range=(3, 4), size=(32, 16), progress=False)
        >>> ds = load_reid_dataset("mars", root)
        >>> ds.num_train_pids, sorted({t.pid for t in ds.query})
        (3, [2, 4, 6])
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidParameterError(f"make_reid_synth: seed must be an integer >= 0; got {seed!r}")
    p = _check_params(params)
    wanted = {"seed": int(seed), "params": json_safe(p)}  # tuples as lists: the manifest's JSON form
    root = default_reid_synth_root() if root is None else Path(root).expanduser()
    manifest = _read_manifest(root)
    if (
        manifest is not None
        and manifest.get("version") == VERSION
        and {
            "seed": manifest.get("seed"),
            "params": manifest.get("params"),
        }
        == wanted
    ):
        return root
    if root.exists() and manifest is None and (not root.is_dir() or any(root.iterdir())):
        raise DataFormatError(
            f"reid-synth: {root} exists and is not a reid-synth folder (no manifest.json); pass an empty or new folder"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        start, cpu_start = time.perf_counter(), time.process_time()
        counts = _generate(tmp, int(seed), p, progress)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        meta = {
            "generator": "reid-synth",
            "version": VERSION,
            **wanted,
            "counts": counts,
            "size_bytes": _disk_size(tmp),
            "generation_seconds": round(seconds, 2),
            "generation_cpu_seconds": round(cpu_seconds, 2),
            "layout": "MARS (bbox_train, bbox_test, info/*.txt|*.mat)",
            "sources": "scikit-image bundled photos: brick, grass, gravel, camera, coins, astronaut, chelsea, "
            "coffee, rocket, immunohistochemistry",
        }
        atomic_write_json(tmp / "meta.json", meta)
        atomic_write_json(tmp / "manifest.json", {"generator": "reid-synth", "version": VERSION, **wanted})
        old = None
        if root.exists():
            if manifest is not None:  # our own folder with other parameters: move it aside, delete after the swap
                old = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
                os.replace(root, old)
            else:
                root.rmdir()  # empty
        try:
            os.replace(tmp, root)
        except OSError:
            # another process finished the same folder first: keep theirs if it is what we want
            if reid_synth_is_complete(root) and _read_manifest(root) is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def calibrate_reid_synth(root: str | os.PathLike[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Rank-1/mAP of frame-averaged ImageNet MobileNetV2 features on ``reid-synth`` (see ``synth_calibrate``)."""
    from .synth_calibrate import calibrate_reid_synth as _calibrate

    return _calibrate(root, **kwargs)
