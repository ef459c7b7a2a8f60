"""Tracklets from a raw video: HOG people detection, IoU + Hungarian linking, crops written in the MARS layout.

A smoke-test source of *real* pedestrian tracklets for the video re-ID pipeline (e.g. OpenCV's ``vtest.avi``); it has
**no identity labels**, so nothing measured on it is a re-ID benchmark. The steps:

1. **Detection**: OpenCV's built-in HOG + linear SVM people detector (Dalal & Triggs, CVPR 2005;
   ``cv2.HOGDescriptor_getDefaultPeopleDetector``) on every ``every``-th frame, optionally upscaled first (the
   detection window is 64 × 128 px, so people shorter than about 100 px are missed at scale 1), detections below
   ``min_score`` dropped, then greedy non-maximum suppression (:func:`nms`).
2. **Linking** (:func:`link_detections`, a pure function): the detections of each processed frame are assigned to
   the tracks alive in the previous one by the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on the
   cost ``1 − IoU``; a pair is kept only if its IoU reaches ``iou_threshold``, as in SORT (Bewley et al., ICIP 2016)
   without the Kalman filter. Unmatched detections start tracks; a track not matched for more than ``max_gap``
   processed frames ends.
3. **Pseudo-identities and cameras**: every track is its own identity (pid ``1, 2, ...``). The video is split at
   its middle frame: frames before it are "camera 1" (camid 0), frames after it "camera 2" (camid 1), and a track
   that crosses the middle is **cut into two tracklets with the same pid**. Queries are the first-half tracklets,
   the gallery the second-half ones, so the only true matches are the two halves of a cut track.
4. **Writing** in the MARS layout (Zheng et al., ECCV 2016; torchreid's loader):
   ``bbox_test/<pid4>/<pid4>C<cam>T<tracklet4>F<frame3>.jpg`` crops resized to ``size`` (MARS: 256 × 128),
   ``info/test_name.txt`` (one frame name per line, grouped by identity then tracklet),
   ``info/tracks_test_info.mat`` (``track_test_info``, int32 rows ``start, end`` (1-based, inclusive, into
   ``test_name.txt``), ``pid``, ``camera`` (1-based)), ``info/query_IDX.mat`` (``query_IDX``, uint16 1 × n, 1-based
   rows of the camera-1 tracklets). The training split (``bbox_train``, ``train_name.txt``, ``tracks_train_info.mat``)
   repeats every tracklet (hard links where the file system allows), because MARS loaders require a non-empty one;
   with ``train_copy=False`` it is left empty. Written into a temporary folder next to ``out_root`` and renamed
   into place; a ``pickwise_video.json`` records the settings, and a folder extracted with the same settings is
   reused.

The default thresholds are reconstructed choices (no paper pins them for this use) and are parameters.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...exceptions import DataFormatError, DataNotFoundError, InvalidParameterError
from ...utils.io import atomic_write_json, atomic_write_text

__all__ = [
    "Track",
    "box_iou",
    "demo_video_retrieval",
    "extract_tracklets",
    "link_detections",
    "nms",
    "read_extracted_tracklets",
]

_META = "pickwise_video.json"
_FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------------------------------
# pure geometry and linking
# --------------------------------------------------------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: ``(N, 4)`` boxes ``x1, y1, x2, y2`` (``x2 > x1``, ``y2 > y1``).
        b: ``(M, 4)`` boxes.

    Returns:
        ``(N, M)`` float64 IoU (0 where boxes are disjoint or degenerate).

    Example:
        >>> box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 1, 3, 3], [5, 5, 6, 6]])).round(6).tolist()
        [[0.142857, 0.0]]
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.4) -> np.ndarray:
    """Greedy non-maximum suppression: keep the best-scoring box, drop those overlapping it by more than the threshold.

    Args:
        boxes: ``(N, 4)`` boxes ``x1, y1, x2, y2``.
        scores: ``(N,)`` scores (higher is better; ties keep the earlier box).
        iou_threshold: Boxes with IoU above this with a kept box are suppressed.

    Returns:
        Indices of the kept boxes, by decreasing score.

    Example:
        >>> nms(np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]]), np.array([0.9, 0.8, 0.7])).tolist()
        [0, 2]
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    iou = box_iou(boxes, boxes)
    suppressed = np.zeros(len(boxes), dtype=bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= iou[i] > iou_threshold
    return np.asarray(keep, dtype=np.int64)


@dataclass
class Track:
    """One linked track: the frames where it was detected, its boxes and detection indices (row in that frame)."""

    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    detections: list[int] = field(default_factory=list)
    misses: int = 0
    order: int = 0

    def __len__(self) -> int:
        return len(self.frames)


def link_detections(
    detections: list[np.ndarray],
    iou_threshold: float = 0.3,
    *,
    max_gap: int = 1,
    frame_ids: list[int] | None = None,
) -> list[Track]:
    """Link per-frame detections into tracks by IoU with Hungarian assignment (SORT without the motion model).

    For each frame ``t``, the cost between every live track (its last box) and every detection is ``1 − IoU``;
    ``scipy.optimize.linear_sum_assignment`` minimises the total cost, and an assigned pair is accepted only when
    ``IoU ≥ iou_threshold``. Unaccepted detections start new tracks; a track missed in more than ``max_gap``
    consecutive frames is closed. Tracks are returned in order of their first detection (then detection order).

    Args:
        detections: One ``(n_t, 4)`` array of boxes ``x1, y1, x2, y2`` per frame (``n_t`` may be 0).
        iou_threshold: Minimum IoU of an accepted match (reconstructed default 0.3, SORT's value).
        max_gap: Frames a track may go undetected and still continue (0: must be detected in every frame).
        frame_ids: Frame number of each entry of ``detections`` (default ``0, 1, ...``).

    Returns:
        The tracks (``Track.frames`` holds ``frame_ids`` values).

    Example:
        >>> dets = [np.array([[0, 0, 10, 20]]), np.array([[1, 0, 11, 20], [50, 0, 60, 20]])]
        >>> [t.frames for t in link_detections(dets)]
        [[0, 1], [1]]
    """
    from scipy.optimize import linear_sum_assignment

    if not 0.0 < float(iou_threshold) <= 1.0:
        raise InvalidParameterError(f"link_detections: iou_threshold must be in (0, 1]; got {iou_threshold!r}")
    if isinstance(max_gap, bool) or not isinstance(max_gap, int) or max_gap < 0:
        raise InvalidParameterError(f"link_detections: max_gap must be an integer >= 0; got {max_gap!r}")
    ids = list(range(len(detections))) if frame_ids is None else list(frame_ids)
    if len(ids) != len(detections):
        raise InvalidParameterError(
            f"link_detections: frame_ids has {len(ids)} entries for {len(detections)} frames of detections"
        )
    finished: list[Track] = []
    live: list[Track] = []
    created = 0
    for frame, boxes in zip(ids, detections):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        matched_det: set[int] = set()
        matched_track: set[int] = set()
        if live and len(boxes):
            iou = box_iou(np.stack([t.boxes[-1] for t in live]), boxes)
            rows, cols = linear_sum_assignment(1.0 - iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= iou_threshold:
                    live[r].frames.append(frame)
                    live[r].boxes.append(boxes[c])
                    live[r].detections.append(int(c))
                    live[r].misses = 0
                    matched_det.add(int(c))
                    matched_track.add(int(r))
        still: list[Track] = []
        for i, track in enumerate(live):
            if i not in matched_track:
                track.misses += 1
            (still if track.misses <= max_gap else finished).append(track)
        live = still
        for c in range(len(boxes)):
            if c not in matched_det:
                live.append(Track(frames=[frame], boxes=[boxes[c]], detections=[c], order=created))
                created += 1
    finished.extend(live)
    return sorted(finished, key=lambda t: t.order)


# --------------------------------------------------------------------------------------------------------------------
# video reading and detection
# --------------------------------------------------------------------------------------------------------------------


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "pickwise.tasks.reid.video needs OpenCV: pip install 'opencv-python-headless<5' (or pickwise[reid])"
        ) from err
    if not hasattr(cv2, "HOGDescriptor"):
        raise ImportError(
            f"OpenCV {cv2.__version__} has no HOGDescriptor (removed in 5.x): pip install 'opencv-python-headless<5'"
        )
    return cv2


def _open_video(cv2: Any, video_path: Path) -> Any:
    if not video_path.is_file():
        raise DataNotFoundError(f"extract_tracklets: no video file at {video_path}")
    cap = cv2.VideoCapture(str(video_path))
    ok = cap.isOpened()
    frame = cap.read()[1] if ok else None
    if not ok or frame is None:
        cap.release()
        raise DataFormatError(
            f"extract_tracklets: OpenCV cannot decode {video_path} (not a video, or a codec this OpenCV build lacks); "
            "convert it, e.g. ffmpeg -i in.xxx -c:v mjpeg out.avi"
        )
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    return cap


def _detector(cv2: Any) -> Any:
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return hog


def _detect(hog: Any, frame: np.ndarray, upscale: float, hog_scale: float, min_score: float, nms_iou: float):
    cv2 = _import_cv2()
    img = frame if upscale == 1.0 else cv2.resize(frame, None, fx=upscale, fy=upscale)
    rects, weights = hog.detectMultiScale(img, winStride=(8, 8), padding=(8, 8), scale=hog_scale)
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / upscale
    scores = np.asarray(weights, dtype=np.float64).reshape(-1)
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
    good = scores >= min_score
    boxes, scores = boxes[good], scores[good]
    keep = nms(boxes, scores, nms_iou)
    return boxes[keep], scores[keep]


def _crop(frame: np.ndarray, box: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    cv2 = _import_cv2()
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = np.rint(np.asarray(box, dtype=np.float64)).astype(int).tolist()
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return cv2.resize(frame[y1:y2, x1:x2], (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


# --------------------------------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------------------------------


def _settings(video_path: Path, **params: Any) -> dict[str, Any]:
    stat = video_path.stat()
    return {
        "format_version": _FORMAT_VERSION,
        "video": str(video_path.resolve()),
        "video_bytes": stat.st_size,
        "video_mtime_ns": stat.st_mtime_ns,
        **params,
    }


def _read_meta(root: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads((root / _META).read_text())
    except (OSError, ValueError):
        return None


def extract_tracklets(
    video_path: str | os.PathLike[str],
    out_root: str | os.PathLike[str],
    *,
    every: int = 1,
    min_len: int = 4,
    iou_threshold: float = 0.3,
    max_gap: int = 1,
    max_frames: int | None = None,
    upscale: float = 1.0,
    hog_scale: float = 1.05,
    min_score: float = 0.5,
    nms_iou: float = 0.4,
    size: tuple[int, int] = (256, 128),
    train_copy: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Detect, track and crop the people of a video into a MARS-layout folder (see the module docstring).

    Args:
        video_path: A video OpenCV can decode.
        out_root: Folder to create; it will hold ``bbox_test/``, ``bbox_train/`` and ``info/``.
        every: Process every ``every``-th frame (1: all).
        min_len: Tracklets (after the cut at the middle frame) with fewer frames are dropped (reconstructed: 4).
        iou_threshold: Minimum IoU to continue a track (reconstructed: 0.3, SORT's value).
        max_gap: Processed frames a track may miss and continue (reconstructed: 1).
        max_frames: Read at most this many frames from the start (None: the whole video).
        upscale: Resize factor applied before detection (HOG finds people taller than about 100 px at 1.0).
        hog_scale: Pyramid step of ``detectMultiScale`` (OpenCV's sample: 1.05).
        min_score: Minimum SVM score of a detection (reconstructed: 0.5; OpenCV's raw output goes down to 0).
        nms_iou: IoU above which overlapping detections are suppressed (reconstructed: 0.4).
        size: Crop size ``(H, W)`` (MARS: 256 × 128).
        train_copy: Repeat the tracklets as the training split (``pickwise.tasks.reid.datasets`` and torchreid
            read only folders with one); pseudo-identities, so nothing trained on them is a re-ID result.
        overwrite: Replace an existing extraction made with other settings (a folder that is not one is never
            replaced).
        progress: Report progress every 10 s on stderr.

    Returns:
        ``out_root`` as a :class:`~pathlib.Path` (the dataset root for a MARS loader).

    Raises:
        DataNotFoundError: No file at ``video_path``.
        DataFormatError: OpenCV cannot decode it, no tracklet survived, or ``out_root`` holds something else.
        InvalidParameterError: Bad parameter values.
    """
    cv2 = _import_cv2()
    video_path, out_root = Path(video_path), Path(out_root)
    for name, value, low in (("every", every, 1), ("min_len", min_len, 1), ("max_gap", max_gap, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidParameterError(f"extract_tracklets: {name} must be an integer >= {low}; got {value!r}")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 2):
        raise InvalidParameterError(f"extract_tracklets: max_frames must be None or an integer >= 2; got {max_frames}")
    if not upscale > 0 or not hog_scale > 1:
        raise InvalidParameterError(
            f"extract_tracklets: need upscale > 0 and hog_scale > 1; got {upscale!r} and {hog_scale!r}"
        )
    size = (int(size[0]), int(size[1]))
    cap = _open_video(cv2, video_path)
    settings = _settings(
        video_path,
        every=every,
        min_len=min_len,
        iou_threshold=float(iou_threshold),
        max_gap=max_gap,
        max_frames=max_frames,
        upscale=float(upscale),
        hog_scale=float(hog_scale),
        min_score=float(min_score),
        nms_iou=float(nms_iou),
        size=list(size),
        train_copy=bool(train_copy),
    )
    if out_root.exists():
        meta = _read_meta(out_root)
        if meta is not None and {k: meta.get(k) for k in settings} == settings:
            cap.release()
            return out_root
        if meta is None:
            cap.release()
            raise DataFormatError(
                f"extract_tracklets: {out_root} exists and is not a pickwise video extraction; choose another folder"
            )
        if not overwrite:
            cap.release()
            raise DataFormatError(
                f"extract_tracklets: {out_root} holds an extraction with other settings; pass overwrite=True "
                "(--overwrite) or choose another folder"
            )
    out_root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_root.name}.tmp-", dir=out_root.parent))
    try:
        summary = _extract_into(cap, tmp, settings, progress)
        atomic_write_json(tmp / _META, {**settings, **summary})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private (0700); the dataset folder gets the usual mode
        if out_root.exists():
            old = out_root.with_name(f".{out_root.name}.old-{os.getpid()}")
            os.replace(out_root, old)
            os.replace(tmp, out_root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_root)
    finally:
        cap.release()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_root


def _extract_into(cap: Any, root: Path, settings: dict[str, Any], progress: bool) -> dict[str, Any]:
    cv2 = _import_cv2()
    from scipy.io import savemat

    from ...engine.progress import NullProgress, make_progress

    every, max_frames = settings["every"], settings["max_frames"]
    size = tuple(settings["size"])
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    if max_frames is not None:
        total = min(total, max_frames) if total > 0 else max_frames
    crops_dir = root / "_crops"
    crops_dir.mkdir()
    hog = _detector(cv2)
    detections: list[np.ndarray] = []
    frame_ids: list[int] = []
    crop_names: dict[tuple[int, int], str] = {}
    bar = make_progress(total, desc="extract_tracklets", enabled=progress) if total > 0 else NullProgress()
    start = time.perf_counter()
    index = 0
    while max_frames is None or index < max_frames:
        ok, frame = cap.read()
        if not ok or frame is None:
            break
        if index % every == 0:
            boxes, _ = _detect(
                hog, frame, settings["upscale"], settings["hog_scale"], settings["min_score"], settings["nms_iou"]
            )
            kept: list[np.ndarray] = []
            for box in boxes:
                crop = _crop(frame, box, size)
                if crop is None:
                    continue
                name = f"{index:06d}_{len(kept):03d}.jpg"
                if not cv2.imwrite(str(crops_dir / name), crop, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                    raise DataFormatError(f"extract_tracklets: could not write {crops_dir / name}")
                crop_names[(index, len(kept))] = name
                kept.append(box)
            detections.append(np.asarray(kept, dtype=np.float64).reshape(-1, 4))
            frame_ids.append(index)
        index += 1
        bar.update(1)
    bar.close()
    num_frames = index
    if num_frames < 2:
        raise DataFormatError("extract_tracklets: the video has fewer than 2 readable frames")
    tracks = link_detections(detections, settings["iou_threshold"], max_gap=settings["max_gap"], frame_ids=frame_ids)
    middle = num_frames // 2  # frames < middle: camera 1 (camid 0); frames >= middle: camera 2 (camid 1)

    # pieces: (pid, camera, [(frame, detection slot)]); a track crossing the middle is cut, same pid on both sides
    pieces: list[tuple[int, int, list[tuple[int, int]]]] = []
    pid = 0
    for track in tracks:
        members = list(zip(track.frames, track.detections))
        halves = [[m for m in members if m[0] < middle], [m for m in members if m[0] >= middle]]
        halves = [h for h in halves if len(h) >= settings["min_len"]]
        if not halves:
            continue
        pid += 1
        for h in halves:
            camera = 1 if h[0][0] < middle else 2
            for s in range(0, len(h), 999):  # MARS frame numbers have 3 digits
                pieces.append((pid, camera, h[s : s + 999]))
    if not pieces:
        raise DataFormatError(
            f"extract_tracklets: no tracklet of at least {settings['min_len']} frames was found in {num_frames} "
            "frames; lower min_len or min_score, raise upscale (people shorter than ~100 px), or process more frames"
        )
    if pid > 9999 or len(pieces) > 9999:
        raise DataFormatError(f"extract_tracklets: {len(pieces)} tracklets exceed the MARS name format (4 digits)")
    names: list[str] = []
    info = np.zeros((len(pieces), 4), dtype=np.int32)
    for t, (p, camera, members) in enumerate(pieces, start=1):
        folder = root / "bbox_test" / f"{p:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        first = len(names) + 1
        for k, member in enumerate(members, start=1):
            name = f"{p:04d}C{camera}T{t:04d}F{k:03d}.jpg"
            os.replace(crops_dir / crop_names[member], folder / name)
            names.append(name)
        info[t - 1] = (first, len(names), p, camera)
    shutil.rmtree(crops_dir)
    (root / "bbox_train").mkdir()
    if settings["train_copy"]:
        for name in names:
            src, dst = root / "bbox_test" / name[:4] / name, root / "bbox_train" / name[:4] / name
            dst.parent.mkdir(exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
    info_dir = root / "info"
    info_dir.mkdir()
    atomic_write_text(info_dir / "test_name.txt", "".join(f"{n}\n" for n in names))
    atomic_write_text(info_dir / "train_name.txt", "".join(f"{n}\n" for n in names) if settings["train_copy"] else "")
    query_rows = np.flatnonzero(info[:, 3] == 1) + 1
    savemat(info_dir / "tracks_test_info.mat", {"track_test_info": info})
    train_info = info if settings["train_copy"] else np.zeros((0, 4), dtype=np.int32)
    savemat(info_dir / "tracks_train_info.mat", {"track_train_info": train_info})
    savemat(info_dir / "query_IDX.mat", {"query_IDX": query_rows.astype(np.uint16)[None, :]})
    return {
        "num_frames_read": num_frames,
        "middle_frame": middle,
        "num_tracks": len(tracks),
        "num_identities": pid,
        "num_tracklets": len(pieces),
        "num_query_tracklets": len(query_rows),
        "num_gallery_tracklets": int(len(pieces) - len(query_rows)),
        "num_cut_tracks": len({p for p, c, _ in pieces if c == 1} & {p for p, c, _ in pieces if c == 2}),
        "extract_seconds": round(time.perf_counter() - start, 2),
    }


def read_extracted_tracklets(root: str | os.PathLike[str]) -> list[tuple[tuple[str, ...], int, int]]:
    """Read back an extraction: ``(frame paths, pid, camid)`` per tracklet (camid 0-based), in ``info`` order.

    A minimal reader of the MARS ``info`` files written by :func:`extract_tracklets` (the full MARS loader is
    ``pickwise.tasks.reid.datasets``); queries are the tracklets with camid 0.
    """
    from scipy.io import loadmat

    root = Path(root)
    names = (root / "info" / "test_name.txt").read_text().split()
    info = loadmat(root / "info" / "tracks_test_info.mat")["track_test_info"]
    out = []
    for start, end, pid, camera in info.astype(np.int64).reshape(-1, 4):
        paths = tuple(str(root / "bbox_test" / n[:4] / n) for n in names[start - 1 : end])
        out.append((paths, int(pid), int(camera) - 1))
    return out


# --------------------------------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------------------------------


def _read_rgb(path: str) -> np.ndarray:
    cv2 = _import_cv2()
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise DataFormatError(f"cannot read the image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _embed_tracklets(model: Any, tracklets: list, frames_per_tracklet: int, size: tuple[int, int]) -> Any:
    import torch

    from ...models import IMAGENET_MEAN, IMAGENET_STD

    cv2 = _import_cv2()

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    feats = []
    with torch.no_grad():
        for paths, _, _ in tracklets:
            pick = np.unique(np.linspace(0, len(paths) - 1, min(frames_per_tracklet, len(paths))).round().astype(int))
            imgs = [cv2.resize(_read_rgb(paths[i]), (size[1], size[0])) for i in pick]
            x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
            x = (x - mean) / std
            f = model.forward_head(model.forward_features(x), pre_logits=True)  # (T, 1280) pooled ImageNet features
            feats.append(f.mean(0))
    return torch.stack(feats)


def demo_video_retrieval(
    video: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    model: str = "mobilenet_v2",
    *,
    every: int = 2,
    max_frames: int | None = None,
    frames_per_tracklet: int = 8,
    num_queries: int = 4,
    top_k: int = 5,
    metric: str = "cosine",
    progress: bool = True,
    **extract_kwargs: Any,
) -> dict[str, Any]:
    """Query first-half tracklets of a video against its second half with ImageNet features; save a ranked gallery.

    **Not a benchmark**: the video has no identity labels. Tracklets are pseudo-identities, and the only "true"
    matches are the two halves of a track cut at the middle frame (see :func:`extract_tracklets`), so the numbers
    printed are a consistency check of the pipeline, not re-ID accuracy.

    Steps: :func:`extract_tracklets` into ``out_dir/tracklets``; embed every tracklet by averaging the pooled
    features of ``frames_per_tracklet`` evenly spaced crops (``create_model(model, pretrained=True)``, ImageNet
    weights, no re-ID training); rank the gallery for every query with :class:`~pickwise.metrics.RetrievalAccumulator`;
    draw the ``top_k`` gallery tracklets of ``num_queries`` queries (those with a cut-track partner first; green
    frame: same pseudo-identity) to ``out_dir/ranked_gallery.png``; write ``out_dir/summary.json``.

    Args:
        video: Video path (e.g. OpenCV's ``vtest.avi``).
        out_dir: Output folder.
        model: A registered model with ``forward_features``/``forward_head`` and ImageNet weights.
        every: Frame step of the extraction (2 halves the HOG time).
        max_frames: Read at most this many frames.
        frames_per_tracklet: Crops averaged per tracklet.
        num_queries: Rows of the figure.
        top_k: Gallery tracklets shown per query.
        metric: Distance of the ranking (``"cosine"`` or ``"euclidean"``).
        progress: Report extraction progress.
        **extract_kwargs: More :func:`extract_tracklets` settings.

    Returns:
        The summary: counts, timings, the pseudo-label metrics (or None when no query has a partner) and the
        figure path.
    """
    import torch

    from ...metrics.retrieval import RetrievalAccumulator
    from ...models import create_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    root = extract_tracklets(
        video, out_dir / "tracklets", every=every, max_frames=max_frames, progress=progress, **extract_kwargs
    )
    t_extract = time.perf_counter() - t0
    meta = _read_meta(root) or {}
    size = tuple(meta.get("size", (256, 128)))
    tracklets = read_extracted_tracklets(root)
    camids = np.array([c for _, _, c in tracklets])
    pids = np.array([p for _, p, _ in tracklets])
    if not (camids == 0).any() or not (camids == 1).any():
        raise DataFormatError(
            f"demo_video_retrieval: need tracklets in both halves of the video; got {int((camids == 0).sum())} in "
            f"the first and {int((camids == 1).sum())} in the second (process more frames)"
        )
    t1 = time.perf_counter()
    net = create_model(model, pretrained=True).eval()
    feats = _embed_tracklets(net, tracklets, frames_per_tracklet, size)
    t_embed = time.perf_counter() - t1
    acc = RetrievalAccumulator(metric=metric)
    acc.update(feats, torch.from_numpy(pids), torch.from_numpy(camids), torch.from_numpy(camids == 0))
    q_idx, g_idx = np.flatnonzero(camids == 0), np.flatnonzero(camids == 1)
    has_partner = np.isin(pids[q_idx], pids[g_idx])
    metrics = acc.compute() if has_partner.any() else None
    dist = acc.distmat().numpy()
    rows = [int(i) for i in np.flatnonzero(has_partner)] + [int(i) for i in np.flatnonzero(~has_partner)]
    rows = rows[: max(1, num_queries)]
    figure = out_dir / "ranked_gallery.png"
    _draw_ranked_gallery(figure, tracklets, q_idx, g_idx, dist, rows, top_k)
    summary = {
        "video": str(Path(video)),
        "not_a_benchmark": "no identity labels: pseudo-identities are tracks; positives are the two halves of a track "
        "cut at the middle frame",
        "model": model,
        "metric": metric,
        "tracklets_root": str(root),
        "num_tracklets": len(tracklets),
        "num_queries": len(q_idx),
        "num_gallery": len(g_idx),
        "num_queries_with_partner": int(has_partner.sum()),
        "extract": {k: meta.get(k) for k in ("num_frames_read", "num_tracks", "num_cut_tracks", "extract_seconds")},
        "extract_seconds_total": round(t_extract, 2),
        "embed_seconds": round(t_embed, 2),
        "total_seconds": round(time.perf_counter() - t0, 2),
        "pseudo_label_metrics": metrics,
        "figure": str(figure),
    }
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


def _draw_ranked_gallery(
    path: Path, tracklets: list, q_idx: np.ndarray, g_idx: np.ndarray, dist: np.ndarray, rows: list[int], top_k: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cv2 = _import_cv2()

    top_k = max(1, min(top_k, len(g_idx)))
    fig, axes = plt.subplots(len(rows), top_k + 1, figsize=(1.1 * (top_k + 1), 2.0 * len(rows)), squeeze=False)
    for r, qi in enumerate(rows):
        q_paths, q_pid, _ = tracklets[q_idx[qi]]
        order = np.argsort(dist[qi], kind="stable")[:top_k]
        cells = [(q_paths, f"query\npid {q_pid}", "black")]
        for rank, gi in enumerate(order, start=1):
            g_paths, g_pid, _ = tracklets[g_idx[gi]]
            colour = "green" if g_pid == q_pid else "red"
            cells.append((g_paths, f"#{rank} pid {g_pid}\nd={dist[qi, gi]:.2f}", colour))
        for c, (paths, title, colour) in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(cv2.resize(_read_rgb(paths[len(paths) // 2]), (48, 96), interpolation=cv2.INTER_AREA))
            ax.set_title(title, fontsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(2 if c else 1)
    fig.suptitle("first half → second half (not a benchmark: green = same track cut at the middle)", fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fig.savefig(tmp, dpi=72, format="png")
    plt.close(fig)
    os.replace(tmp, path)
