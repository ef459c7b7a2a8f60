"""Video re-ID loaders on tiny fake trees written in each dataset's published layout.

The MARS expectations come from a line-by-line port of torchreid's ``Mars`` loader (below), not from the loader under
test; the other datasets are checked against hand-written expectations of the tiny trees.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pickwise.exceptions import DataFormatError, DataNotFoundError, InvalidParameterError, UnknownNameError
from pickwise.tasks.reid.datasets import Tracklet, load_reid_dataset

scipy_io = pytest.importorskip("scipy.io")
Image = pytest.importorskip("PIL.Image")


def _jpeg(path: Path, colour=(120, 60, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 8), colour).save(path, format="PNG" if path.suffix == ".png" else "JPEG")


# --------------------------------------------------------------------------------------------------------- MARS

# (pid, cam, n_frames) per tracklet, in file order
_MARS_TRAIN = [(1, 1, 3), (1, 2, 2), (3, 1, 4), (3, 3, 2), (5, 2, 3)]
_MARS_TEST = [(2, 1, 3), (2, 1, 2), (2, 2, 3), (4, 2, 2), (4, 3, 3), (0, 1, 2), (-1, 2, 2), (6, 4, 2), (6, 5, 3)]
_MARS_QUERY = [1, 4, 8]  # 1-based rows of the test table: (2, cam1), (4, cam2), (6, cam4)


def _mars_tree(root: Path) -> Path:
    info = root / "info"
    info.mkdir(parents=True)
    for split, rows, var in (("train", _MARS_TRAIN, "track_train_info"), ("test", _MARS_TEST, "track_test_info")):
        names, table, counters = [], [], {}
        for pid, cam, n in rows:
            folder = "00-1" if pid == -1 else f"{pid:04d}"
            counters[(pid, cam)] = counters.get((pid, cam), 0) + 1
            start = len(names) + 1
            for f in range(n):
                name = f"{folder}C{cam}T{counters[(pid, cam)]:04d}F{f + 1:03d}.jpg"
                names.append(name)
                _jpeg(root / f"bbox_{split}" / folder / name)
            table.append([start, len(names), pid, cam])
        (info / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        scipy_io.savemat(info / f"tracks_{split}_info.mat", {var: np.asarray(table, dtype=np.int32)})
    scipy_io.savemat(info / "query_IDX.mat", {"query_IDX": np.asarray([_MARS_QUERY], dtype=np.uint16)})
    return root


def _torchreid_mars(root: Path):
    """Port of torchreid ``Mars.__init__`` + ``process_data`` (KaiyangZhou/deep-person-reid, video/mars.py)."""
    loadmat = scipy_io.loadmat

    def get_names(fpath):
        names = []
        with open(fpath) as f:
            for line in f:
                new_line = line.rstrip()
                names.append(new_line)
        return names

    def process_data(names, meta_data, home_dir=None, relabel=False, min_seq_len=0):
        assert home_dir in ["bbox_train", "bbox_test"]
        num_tracklets = meta_data.shape[0]
        pid_list = list(set(meta_data[:, 2].tolist()))
        if relabel:
            pid2label = {pid: label for label, pid in enumerate(sorted(pid_list))}
        tracklets = []
        for tracklet_idx in range(num_tracklets):
            data = meta_data[tracklet_idx, ...]
            start_index, end_index, pid, camid = data
            if pid == -1:
                continue
            assert 1 <= camid <= 6
            if relabel:
                pid = pid2label[pid]
            camid -= 1
            img_names = names[start_index - 1 : end_index]
            pnames = [img_name[:4] for img_name in img_names]
            assert len(set(pnames)) == 1
            camnames = [img_name[5] for img_name in img_names]
            assert len(set(camnames)) == 1
            img_paths = [str(root / home_dir / img_name[:4] / img_name) for img_name in img_names]
            if len(img_paths) >= min_seq_len:
                tracklets.append((tuple(img_paths), int(pid), int(camid)))
        return tracklets

    train_names = get_names(root / "info/train_name.txt")
    test_names = get_names(root / "info/test_name.txt")
    track_train = loadmat(root / "info/tracks_train_info.mat")["track_train_info"]
    track_test = loadmat(root / "info/tracks_test_info.mat")["track_test_info"]
    query_IDX = loadmat(root / "info/query_IDX.mat")["query_IDX"].squeeze().astype(np.int64)
    query_IDX -= 1
    track_query = track_test[query_IDX, :]
    gallery_IDX = [i for i in range(track_test.shape[0]) if i not in query_IDX]
    track_gallery = track_test[gallery_IDX, :]
    train = process_data(train_names, track_train, home_dir="bbox_train", relabel=True)
    query = process_data(test_names, track_query, home_dir="bbox_test", relabel=False)
    gallery = process_data(test_names, track_gallery, home_dir="bbox_test", relabel=False)
    return train, query, gallery


def _as_tuples(tracks: list[Tracklet]):
    return [(t.img_paths, t.pid, t.camid) for t in tracks]


def test_mars_matches_torchreid_port(tmp_path):
    root = _mars_tree(tmp_path / "mars")
    ds = load_reid_dataset("mars", root)
    ref_train, ref_query, ref_gallery = _torchreid_mars(root)
    assert _as_tuples(ds.train) == ref_train
    assert _as_tuples(ds.query) == ref_query
    assert _as_tuples(ds.gallery) == ref_gallery
    assert ds.num_train_pids == 3 and ds.num_train_cams == 3
    # hand-checked: junk (-1) dropped, distractor (0) kept in the gallery, camera 1-based -> 0-based
    assert [t.pid for t in ds.gallery] == [2, 2, 4, 0, 6]
    assert [(t.pid, t.camid) for t in ds.query] == [(2, 0), (4, 1), (6, 3)]
    assert ds.train[0].img_paths[0].endswith("bbox_train/0001/0001C1T0001F001.jpg")
    assert all(Path(p).exists() for t in ds.train + ds.query + ds.gallery for p in t.img_paths)


def test_mars_query_in_gallery_and_min_seq_len(tmp_path):
    root = _mars_tree(tmp_path / "mars")
    ds = load_reid_dataset("mars", root, query_in_gallery=True)
    assert len(ds.gallery) == len(_MARS_TEST) - 1  # every test row but the junk one
    ds = load_reid_dataset("mars", root, min_seq_len=3)
    assert all(len(t) >= 3 for t in ds.train + ds.query + ds.gallery)
    assert sorted({t.pid for t in ds.train}) == [0, 1, 2]  # relabelled after filtering: pids 1, 3, 5 keep one each


def test_mars_env_var_and_parent_folder(tmp_path, monkeypatch):
    _mars_tree(tmp_path / "data" / "mars")
    monkeypatch.setenv("PICKWISE_DATA_DIR", str(tmp_path / "data"))
    assert load_reid_dataset("MARS").num_train_pids == 3
    assert load_reid_dataset("mars", tmp_path / "data").root == tmp_path / "data" / "mars"


def test_missing_dataset_and_files_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("PICKWISE_DATA_DIR", raising=False)
    with pytest.raises(DataNotFoundError, match=r"PICKWISE_DATA_DIR/mars") as err:
        load_reid_dataset("mars")
    assert "\n" not in str(err.value)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_reid_dataset("mars", tmp_path / "nowhere")
    root = _mars_tree(tmp_path / "mars")
    (root / "info" / "query_IDX.mat").unlink()
    with pytest.raises(DataFormatError, match=r"missing .*query_IDX\.mat"):
        load_reid_dataset("mars", root)
    with pytest.raises(UnknownNameError, match="did you mean 'mars'"):
        load_reid_dataset("marss", root)
    with pytest.raises(InvalidParameterError, match="one fixed split"):
        load_reid_dataset("mars", root, split_id=1)


def test_mars_inconsistent_names_rejected(tmp_path):
    root = _mars_tree(tmp_path / "mars")
    names = (root / "info" / "train_name.txt").read_text().splitlines()
    names[1] = names[1].replace("C1T", "C2T")  # a frame of camera 2 inside a camera-1 tracklet
    (root / "info" / "train_name.txt").write_text("\n".join(names))
    with pytest.raises(DataFormatError, match="mixes identities or cameras"):
        load_reid_dataset("mars", root)


# ------------------------------------------------------------------------------------------------------- LS-VID


@pytest.mark.parametrize("base", ["", "info/"])  # TF-CLIP's two layouts (active code: info/ prefix)
def test_lsvid(tmp_path, base):
    root = tmp_path / "LS-VID"
    train_lines, test_lines = [], []
    # tracklet prefix -> (pid, cam, frames); frame name <pid>_<seq>_<cam>_<frame>.jpg
    layout = {
        "train": [("tracklet_1/0001/0001_001_03", 1, 3, 3), ("tracklet_1/0002/0002_004_07", 2, 7, 2)],
        "test": [
            ("tracklet_2/0010/0010_001_01", 10, 1, 2),
            ("tracklet_2/0010/0010_002_05", 10, 5, 3),
            ("tracklet_2/0011/0011_001_02", 11, 2, 2),
            ("tracklet_2/0011/0011_002_04", 11, 4, 2),
            ("tracklet_2/0099/0099_001_02", -1, 2, 2),
        ],
    }
    for split, rows in layout.items():
        lines = train_lines if split == "train" else test_lines
        for prefix, pid, _cam, n in rows:
            for f in range(n):
                _jpeg(root / f"{prefix}_{f:04d}.jpg")
            lines.append(f"{prefix} {pid}")
    (root / base / "list_sequence").mkdir(parents=True)
    (root / base / "list_sequence/list_seq_train.txt").write_text("\n".join(train_lines))
    (root / base / "list_sequence/list_seq_test.txt").write_text("\n".join(test_lines))
    mat = root / ("test/data/info_test.mat" if base == "" else "info/data/info_test.mat")
    mat.parent.mkdir(parents=True)
    scipy_io.savemat(mat, {"query": np.array([[1, 3]], dtype=np.float64)})
    ds = load_reid_dataset("lsvid", tmp_path)
    assert [(t.pid, t.camid, len(t)) for t in ds.train] == [(0, 2, 3), (1, 6, 2)]
    assert [(t.pid, t.camid) for t in ds.query] == [(10, 0), (11, 1)]
    assert [(t.pid, t.camid) for t in ds.gallery] == [(10, 4), (11, 3)]  # junk (-1) dropped
    assert ds.train[0].img_paths == tuple(str(root / f"tracklet_1/0001/0001_001_03_{f:04d}.jpg") for f in range(3))
    ds = load_reid_dataset("lsvid", root, query_in_gallery=True)
    assert len(ds.gallery) == 4


# ------------------------------------------------------------------------------------------- iLIDS-VID / PRID2011


def _ilids_tree(root: Path, persons=(1, 2, 5, 7)) -> Path:
    for cam in (1, 2):
        for p in persons:
            for f in (12, 3, 100):  # frame numbers out of lexical order on purpose
                _jpeg(
                    root
                    / "i-LIDS-VID/sequences"
                    / f"cam{cam}"
                    / f"person{p:03d}"
                    / f"cam{cam}_person{p:03d}_{f:05d}.png"
                )
    split_dir = root / "train-test people splits"
    split_dir.mkdir(parents=True)
    # two splits over the 4 sorted person folders; first half = test (1-based)
    ls_set = np.array([[4, 1, 2, 3], [2, 3, 4, 1]], dtype=np.float64)
    scipy_io.savemat(split_dir / "train_test_splits_ilidsvid.mat", {"ls_set": ls_set})
    return root


def test_ilidsvid_splits(tmp_path):
    root = _ilids_tree(tmp_path / "ilids-vid")
    ds = load_reid_dataset("ilidsvid", root, split_id=0)
    # split 0: test = sorted([4, 1]) -> person001, person007; train = sorted([2, 3]) -> person002, person005
    assert [(Path(t.img_paths[0]).parent.name, t.pid, t.camid) for t in ds.train] == [
        ("person002", 0, 0),
        ("person002", 0, 1),
        ("person005", 1, 0),
        ("person005", 1, 1),
    ]
    assert [(Path(t.img_paths[0]).parent.name, t.pid, t.camid) for t in ds.query] == [
        ("person001", 0, 0),
        ("person007", 1, 0),
    ]
    assert [t.camid for t in ds.gallery] == [1, 1]
    assert [Path(p).name for p in ds.query[0].img_paths] == [
        "cam1_person001_00003.png",
        "cam1_person001_00012.png",
        "cam1_person001_00100.png",
    ]
    ds1 = load_reid_dataset("ilidsvid", root, split_id=1)
    assert [Path(t.img_paths[0]).parent.name for t in ds1.query] == ["person002", "person005"]
    with pytest.raises(InvalidParameterError, match=r"split_id must be in 0\.\.1"):
        load_reid_dataset("ilidsvid", root, split_id=2)


def test_ilidsvid_torchreid_json_and_missing_split(tmp_path):
    root = _ilids_tree(tmp_path / "ilids-vid")
    (root / "train-test people splits" / "train_test_splits_ilidsvid.mat").unlink()
    with pytest.raises(DataFormatError, match="train_test_splits_ilidsvid.mat"):
        load_reid_dataset("ilidsvid", root)
    (root / "splits.json").write_text(
        json.dumps([{"train": ["person001", "person002"], "test": ["person005", "person007"]}])
    )
    ds = load_reid_dataset("ilidsvid", root)
    assert len(ds.train) == 4 and [t.pid for t in ds.query] == [0, 1]


def test_prid2011(tmp_path):
    root = tmp_path / "prid2011"
    for cam in ("cam_a", "cam_b"):
        for p in (1, 2, 3, 4):
            for f in (1, 2, 10):
                _jpeg(root / "prid_2011/multi_shot" / cam / f"person_{p:04d}" / f"{f:04d}.png")
    splits = [{"train": ["person_0001", "person_0003"], "test": ["person_0002", "person_0004"]}] * 10
    (root / "splits_prid2011.json").write_text(json.dumps(splits))
    ds = load_reid_dataset("prid2011", tmp_path, split_id=9)
    assert [(t.pid, t.camid) for t in ds.train] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [(Path(t.img_paths[0]).parts[-3], t.pid) for t in ds.query] == [("cam_a", 0), ("cam_a", 1)]
    assert [(Path(t.img_paths[0]).parts[-3], t.pid) for t in ds.gallery] == [("cam_b", 0), ("cam_b", 1)]
    assert [Path(p).name for p in ds.train[0].img_paths] == ["0001.png", "0002.png", "0010.png"]


# ------------------------------------------------------------------------------------------- DukeMTMC-VideoReID


def test_dukev_opt_in_and_layout(tmp_path):
    base = tmp_path / "dukev" / "DukeMTMC-VideoReID"
    # new naming in train (tracklet starting at F0002), old naming in query/gallery
    for f in (2, 3, 4):
        _jpeg(base / "train/0005/0001" / f"0005_C3_F{f:04d}_X{100 + f:05d}.jpg")
    for f in (1, 2):
        _jpeg(base / "train/0009/0002" / f"0009_C6_F{f:04d}_X{200 + f:05d}.jpg")
    _jpeg(base / "query/0010/0001/0010C2F0001X00001.jpg")
    for sub, cam in (("0001", 2), ("0003", 8)):
        for f in (1, 2):
            _jpeg(base / f"gallery/0010/{sub}/0010C{cam}F{f:04d}X0000{f}.jpg")
    with pytest.raises(InvalidParameterError, match="withdrawn") as err:
        load_reid_dataset("dukev", tmp_path / "dukev")
    assert "\n" not in str(err.value)
    ds = load_reid_dataset("dukev", tmp_path / "dukev", allow_withdrawn=True)
    assert [(t.pid, t.camid, len(t)) for t in ds.train] == [(0, 2, 3), (1, 5, 2)]
    assert [(t.pid, t.camid) for t in ds.query] == [(10, 1)]
    assert [(t.pid, t.camid) for t in ds.gallery] == [(10, 1), (10, 7)]
    assert Path(ds.train[0].img_paths[0]).name == "0005_C3_F0002_X00102.jpg"
