"""Video re-ID datasets: MARS, LS-VID, iLIDS-VID, PRID2011, DukeMTMC-VideoReID and the embedded ``reid-synth``.

Every loader returns a :class:`VideoReIDDataset` of :class:`Tracklet` s (frame paths, identity, 0-based camera) in
the conventions of torchreid (``KaiyangZhou/deep-person-reid:torchreid/data/datasets/video/*.py``): only the training
identities are relabelled to ``0..N-1`` (in ascending order of the original label); query and gallery keep their
labels, so evaluation compares them directly.

============ ===================================================== =============================================
name         layout under the dataset folder                       query / gallery
============ ===================================================== =============================================
``mars``     ``bbox_train/<PPPP>/<frame>.jpg``, ``bbox_test/...``, ``query_IDX`` rows of the test table / the
             ``info/{train_name.txt, test_name.txt,                other test rows (torchreid; label -1 = junk
             tracks_train_info.mat, tracks_test_info.mat,          dropped everywhere, label 0 = distractors kept
             query_IDX.mat}``                                      in the gallery); ``query_in_gallery=True``
                                                                   keeps the queries in the gallery as the
                                                                   official MATLAB code does
``lsvid``    ``list_sequence/list_seq_{train,test}.txt``           ``query`` of ``info_test.mat`` / the rest,
             (``<tracklet prefix> <pid>``), ``test/data/           as for MARS
             info_test.mat`` (also under ``info/``)
``ilidsvid`` ``i-LIDS-VID/sequences/cam{1,2}/personNNN/*.png``,    cam1 / cam2 of the split's test persons
             ``train-test people splits/                           (pids = position in the test list); 10
             train_test_splits_ilidsvid.mat`` (or torchreid's      splits, ``split_id`` picks one, the protocol
             ``splits.json``)                                      reports the mean over the 10
``prid2011`` ``prid_2011/multi_shot/cam_{a,b}/person_NNNN/*.png``, cam_a / cam_b; as iLIDS-VID
             ``splits_prid2011.json`` (torchreid's 10 splits)
``dukev``    ``DukeMTMC-VideoReID/{train,query,gallery}/           query folder / gallery folder (a query is a
             <pid>/<tracklet>/*.jpg``                              copy of a gallery tracklet, removed by the
                                                                   same-identity-same-camera rule); opt-in
``reid-synth`` MARS layout written by                              as ``mars``; generated on first use
             :func:`pickwise.tasks.reid.synth.make_reid_synth`
============ ===================================================== =============================================

Where the data lives: the ``root`` argument (the dataset folder itself, or a folder that holds it under the name in
the table or torchreid's folder name), else ``$PICKWISE_DATA_DIR/<name>``. A missing folder or file is a one-line
:class:`~pickwise.exceptions.DataNotFoundError` naming what to put where.

Frame order: MARS and LS-VID follow their index files (name order); iLIDS-VID, PRID2011 and DukeMTMC-VideoReID sort
frames on the frame number in the file name (torchreid globs without sorting for iLIDS-VID and PRID2011, and looks
frames ``F0001..Fn`` up for Duke, which drops the last frame of tracklets that start at ``F0002``; sorting keeps
every frame in the same order).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...exceptions import DataFormatError, DataNotFoundError, InvalidParameterError, UnknownNameError

__all__ = [
    "DATASET_NAMES",
    "Tracklet",
    "VideoReIDDataset",
    "load_reid_dataset",
    "resolve_dataset_root",
]

DATASET_NAMES = ("reid-synth", "mars", "lsvid", "ilidsvid", "prid2011", "dukev")
"""Names accepted by :func:`load_reid_dataset` (``dukev`` needs ``allow_withdrawn=True``)."""

# folder names other toolkits use for the same data (torchreid's dataset_dir, the download archives)
_ALIASES: dict[str, tuple[str, ...]] = {
    "mars": ("MARS",),
    "lsvid": ("LS-VID", "ls-vid", "LSVID"),
    "ilidsvid": ("ilids-vid", "iLIDS-VID"),
    "prid2011": ("prid2011", "PRID2011"),
    "dukev": ("dukemtmc-vidreid", "DukeMTMC-VideoReID"),
    "reid-synth": (),
}
# one file or folder that identifies each layout (used to find the dataset folder inside a given root)
_MARKERS: dict[str, tuple[str, ...]] = {
    "mars": ("info",),
    "reid-synth": ("info",),
    "lsvid": ("list_sequence", "info/list_sequence"),
    "ilidsvid": ("i-LIDS-VID",),
    "prid2011": ("prid_2011",),
    "dukev": ("DukeMTMC-VideoReID",),
}
_HOW_TO_GET = {
    "mars": "download MARS from the authors' page (http://zheng-lab.cecs.anu.edu.au/Project/project_mars.html)",
    "lsvid": "request LS-VID from its authors (GLTR, Li et al. ICCV 2019)",
    "ilidsvid": "download iLIDS-VID from QMUL (https://xiatian-zhu.github.io/downloads_qmul_iLIDS-VID_ReID_dataset.html)",
    "prid2011": "download PRID2011 from TU Graz and torchreid's splits_prid2011.json",
    "dukev": "use your own licensed copy of DukeMTMC-VideoReID",
    "reid-synth": "it is generated by pickwise.tasks.reid.synth.make_reid_synth",
}


@dataclass(frozen=True)
class Tracklet:
    """One tracklet: its frames in temporal order, its identity and its 0-based camera."""

    img_paths: tuple[str, ...]
    pid: int
    camid: int

    def __len__(self) -> int:
        return len(self.img_paths)


@dataclass
class VideoReIDDataset:
    """The three subsets of a video re-ID benchmark.

    Attributes:
        name: Dataset name (as passed to :func:`load_reid_dataset`).
        root: Dataset folder.
        train: Training tracklets, pids relabelled ``0..num_train_pids-1``.
        query: Query tracklets, original pids.
        gallery: Gallery tracklets, original pids (MARS/reid-synth: label 0 marks distractors).
        num_train_pids: Training identities.
        num_train_cams: Distinct cameras among the training tracklets.
    """

    name: str
    root: Path
    train: list[Tracklet]
    query: list[Tracklet]
    gallery: list[Tracklet]
    num_train_pids: int
    num_train_cams: int

    def summary(self) -> str:
        """A small table: identities, tracklets and frames per subset."""
        lines = [f"{self.name} ({self.root})", "  subset   | # ids | # tracklets | # frames (min/mean/max)"]
        for subset in ("train", "query", "gallery"):
            tracks: list[Tracklet] = getattr(self, subset)
            lengths = [len(t) for t in tracks] or [0]
            lines.append(
                f"  {subset:<8} | {len({t.pid for t in tracks}):5d} | {len(tracks):11d} | "
                f"{min(lengths)}/{float(np.mean(lengths)):.1f}/{max(lengths)}"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- locating


def resolve_dataset_root(name: str, root: str | os.PathLike[str] | None) -> Path:
    """The folder that holds dataset ``name``: ``root`` (or its subfolder of that name), else ``$PICKWISE_DATA_DIR``.

    Raises:
        DataNotFoundError: Nothing found; the message says where to put the data.
    """
    marker = _MARKERS[name]
    if root is not None:
        base = Path(root).expanduser()
        source = f"root={str(root)!r}"
    elif os.environ.get("PICKWISE_DATA_DIR", "").strip():
        base = Path(os.environ["PICKWISE_DATA_DIR"].strip()).expanduser() / name
        source = f"$PICKWISE_DATA_DIR/{name}"
    else:
        raise DataNotFoundError(
            f"{name}: no dataset folder given; pass root=<folder> (or --data-root) or put it at "
            f"$PICKWISE_DATA_DIR/{name} ({_HOW_TO_GET[name]})"
        )
    candidates = [base] + [base / sub for sub in (name, *_ALIASES[name])]
    if root is None:  # $PICKWISE_DATA_DIR/<name> may also hold e.g. torchreid's "mars" folder
        candidates.append(base.parent / name)
    for cand in candidates:
        if any((cand / m).exists() for m in marker):
            return cand
    if not base.exists():
        raise DataNotFoundError(
            f"{name}: dataset folder {base} ({source}) does not exist; put the data there or pass root=<folder> "
            f"(or set $PICKWISE_DATA_DIR so that $PICKWISE_DATA_DIR/{name} holds it; {_HOW_TO_GET[name]})"
        )
    raise DataFormatError(
        f"{name}: {base} ({source}) has no '{marker[0]}' entry; expected the {name} layout described in "
        "pickwise.tasks.reid.datasets (docs/reid_data.md)"
    )


def _require(path: Path, name: str) -> Path:
    if not path.exists():
        raise DataFormatError(f"{name}: missing {path}; the dataset folder does not have the expected layout")
    return path


def _loadmat(path: Path, name: str) -> dict[str, Any]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataNotFoundError(
            f"{name}: reading {path.name} needs scipy; install it with `pip install scipy`"
        ) from None
    try:
        return loadmat(str(path))
    except NotImplementedError:  # MATLAB v7.3 = HDF5
        try:
            import h5py
        except ImportError:
            raise DataNotFoundError(
                f"{name}: {path} is a MATLAB v7.3 (HDF5) file; reading it needs h5py (`pip install h5py`)"
            ) from None
        with h5py.File(str(path), "r") as f:
            return {key: np.asarray(f[key]) for key in f if not key.startswith("#")}
    except Exception as err:  # scipy raises several types for a corrupt file
        raise DataFormatError(f"{name}: cannot read {path} as a MATLAB file ({err})") from None


def _mat_var(path: Path, var: str, name: str) -> np.ndarray:
    data = _loadmat(path, name)
    if var not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise DataFormatError(f"{name}: {path} has no variable '{var}' (found {found})")
    return np.asarray(data[var])


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _relabel(tracklets: list[Tracklet]) -> list[Tracklet]:
    pid2label = {pid: i for i, pid in enumerate(sorted({t.pid for t in tracklets}))}
    return [Tracklet(t.img_paths, pid2label[t.pid], t.camid) for t in tracklets]


def _finish(
    name: str, root: Path, train: list[Tracklet], query: list[Tracklet], gallery: list[Tracklet], min_seq_len: int
) -> VideoReIDDataset:
    if min_seq_len > 0:
        train = [t for t in train if len(t) >= min_seq_len]
        query = [t for t in query if len(t) >= min_seq_len]
        gallery = [t for t in gallery if len(t) >= min_seq_len]
    train = _relabel(train)
    for subset, tracks in (("train", train), ("query", query), ("gallery", gallery)):
        if not tracks:
            raise DataFormatError(
                f"{name}: the {subset} subset is empty under {root}"
                + (f" (min_seq_len={min_seq_len} removed every tracklet)" if min_seq_len > 0 else "")
            )
    return VideoReIDDataset(
        name=name,
        root=root,
        train=train,
        query=query,
        gallery=gallery,
        num_train_pids=len({t.pid for t in train}),
        num_train_cams=len({t.camid for t in train}),
    )


# ---------------------------------------------------------------------------------------------------------- MARS


def _mars_tracklets(
    root: Path, names: list[str], table: np.ndarray, home: str, name: str, table_name: str
) -> list[Tracklet]:
    """Port of torchreid's ``Mars.process_data``, no relabelling: rows ``(start, end, pid, cam)``, 1-based."""
    if table.ndim != 2 or table.shape[1] != 4:
        raise DataFormatError(f"{name}: {table_name} must be an (N, 4) table; got shape {table.shape}")
    out = []
    for row, (start, end, pid, cam) in enumerate(table.astype(np.int64).tolist()):
        if pid == -1:  # junk tracklets are ignored everywhere (torchreid)
            continue
        if not 1 <= start <= end <= len(names):
            raise DataFormatError(
                f"{name}: {table_name} row {row + 1} spans frames {start}..{end}, outside the {len(names)} names"
            )
        frames = names[start - 1 : end]
        if len({f[:4] for f in frames}) != 1 or len({f[5:6] for f in frames}) != 1:
            raise DataFormatError(
                f"{name}: {table_name} row {row + 1} mixes identities or cameras in its frame names ({frames[0]}..)"
            )
        out.append(Tracklet(tuple(str(root / home / f[:4] / f) for f in frames), int(pid), int(cam) - 1))
    return out


def _load_mars(root: Path, name: str, query_in_gallery: bool) -> tuple[list[Tracklet], ...]:
    info = _require(root / "info", name)
    train_names = _read_lines(_require(info / "train_name.txt", name))
    test_names = _read_lines(_require(info / "test_name.txt", name))
    track_train = _mat_var(_require(info / "tracks_train_info.mat", name), "track_train_info", name)
    track_test = _mat_var(_require(info / "tracks_test_info.mat", name), "track_test_info", name)
    query_idx = _mat_var(_require(info / "query_IDX.mat", name), "query_IDX", name).reshape(-1).astype(np.int64) - 1
    for home in ("bbox_train", "bbox_test"):
        _require(root / home, name)
    if query_idx.size == 0 or query_idx.min() < 0 or query_idx.max() >= len(track_test):
        raise DataFormatError(
            f"{name}: query_IDX must hold 1-based rows of tracks_test_info (1..{len(track_test)}); "
            f"got {query_idx.min() + 1}..{query_idx.max() + 1}"
        )
    is_query = np.zeros(len(track_test), dtype=bool)
    is_query[query_idx] = True
    train = _mars_tracklets(root, train_names, track_train, "bbox_train", name, "tracks_train_info")
    query = _mars_tracklets(root, test_names, track_test[query_idx], "bbox_test", name, "query rows")
    gallery_rows = track_test if query_in_gallery else track_test[~is_query]
    gallery = _mars_tracklets(root, test_names, gallery_rows, "bbox_test", name, "tracks_test_info")
    for tracks in (train, query):  # check one file per subset (checking a million files would take minutes)
        if tracks:
            _require(Path(tracks[0].img_paths[0]), name)
    return train, query, gallery


# --------------------------------------------------------------------------------------------------------- LS-VID


def _first_existing(root: Path, rels: tuple[str, ...], name: str) -> Path:
    for rel in rels:
        if (root / rel).exists():
            return root / rel
    raise DataFormatError(f"{name}: missing {root / rels[0]} (also looked for {', '.join(rels[1:])})")


def _load_lsvid(root: Path, name: str, query_in_gallery: bool) -> tuple[list[Tracklet], ...]:
    """TF-CLIP's ``LSVID`` loader (``AsuradaYuci/TF-CLIP:datasets/set/lsvid.py``): frames = sorted ``prefix*`` files."""
    train_list = _first_existing(
        root, ("list_sequence/list_seq_train.txt", "info/list_sequence/list_seq_train.txt"), name
    )
    test_list = _first_existing(root, ("list_sequence/list_seq_test.txt", "info/list_sequence/list_seq_test.txt"), name)
    query_mat = _first_existing(root, ("test/data/info_test.mat", "info/data/info_test.mat"), name)
    query_idx = _mat_var(query_mat, "query", name)
    query_idx = (query_idx[0] if query_idx.ndim == 2 else query_idx.reshape(-1)).astype(np.int64) - 1
    listing: dict[Path, list[str]] = {}

    def parse(path: Path) -> list[tuple[str, int]]:
        rows = []
        for i, line in enumerate(_read_lines(path)):
            parts = line.split()
            if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
                raise DataFormatError(f"{name}: {path} line {i + 1} is {line!r}; expected '<tracklet prefix> <pid>'")
            rows.append((parts[0], int(parts[1])))
        return rows

    def tracklet(prefix: str, pid: int) -> Tracklet | None:
        if pid == -1:
            return None
        full = root / prefix
        folder = full.parent
        if folder not in listing:
            listing[folder] = sorted(os.listdir(folder)) if folder.is_dir() else []
        frames = [f for f in listing[folder] if f.startswith(full.name)]
        if not frames:
            raise DataFormatError(f"{name}: no frame matches {full}*")
        fields = frames[0].split("_")
        if len(fields) < 3 or not fields[2].isdigit():
            raise DataFormatError(f"{name}: cannot read the camera (third '_' field) from frame name {frames[0]!r}")
        return Tracklet(tuple(str(folder / f) for f in frames), pid, int(fields[2]) - 1)

    train_rows, test_rows = parse(train_list), parse(test_list)
    if query_idx.size == 0 or query_idx.min() < 0 or query_idx.max() >= len(test_rows):
        raise DataFormatError(f"{name}: 'query' in {query_mat} must hold 1-based rows of {test_list.name}")
    is_query = np.zeros(len(test_rows), dtype=bool)
    is_query[query_idx] = True
    train = [t for t in (tracklet(*r) for r in train_rows) if t is not None]
    query = [t for t in (tracklet(*test_rows[i]) for i in query_idx.tolist()) if t is not None]
    gallery_rows = [r for i, r in enumerate(test_rows) if query_in_gallery or not is_query[i]]
    gallery = [t for t in (tracklet(*r) for r in gallery_rows) if t is not None]
    return train, query, gallery


# ------------------------------------------------------------------------------------------- iLIDS-VID / PRID2011


def _frame_number(path: str) -> tuple[int, str]:
    digits = re.findall(r"\d+", Path(path).stem)
    return (int(digits[-1]) if digits else -1, path)


def _person_frames(folder: Path, ext: str, name: str) -> tuple[str, ...]:
    if not folder.is_dir():
        raise DataFormatError(f"{name}: missing person folder {folder}")
    frames = sorted((str(p) for p in folder.glob(f"*{ext}")), key=_frame_number)
    if not frames:
        raise DataFormatError(f"{name}: no {ext} frames in {folder}")
    return tuple(frames)


def _two_camera_split(
    cam_dirs: tuple[Path, Path], split: dict[str, list[str]], ext: str, name: str
) -> tuple[list[Tracklet], ...]:
    """As torchreid's ``process_data``/``process_dir``: pid = position in the split's (train or test) person list."""

    def build(dirnames: list[str], cams: tuple[int, ...]) -> list[Tracklet]:
        return [
            Tracklet(_person_frames(cam_dirs[c] / d, ext, name), pid, c) for pid, d in enumerate(dirnames) for c in cams
        ]

    train = build(list(split["train"]), (0, 1))
    query = build(list(split["test"]), (0,))
    gallery = build(list(split["test"]), (1,))
    return train, query, gallery


def _pick_split(splits: Any, split_id: int, source: Path, name: str) -> dict[str, list[str]]:
    if not isinstance(splits, list) or not all(isinstance(s, dict) and {"train", "test"} <= s.keys() for s in splits):
        raise DataFormatError(f"{name}: {source} must be a list of {{'train': [...], 'test': [...]}} splits")
    if not 0 <= split_id < len(splits):
        raise InvalidParameterError(f"{name}: split_id must be in 0..{len(splits) - 1}; got {split_id}")
    return splits[split_id]


def _load_ilidsvid(root: Path, name: str, split_id: int) -> tuple[list[Tracklet], ...]:
    seq = root / "i-LIDS-VID" / "sequences"
    cams = (_require(seq / "cam1", name), _require(seq / "cam2", name))
    json_path = root / "splits.json"
    mat_path = root / "train-test people splits" / "train_test_splits_ilidsvid.mat"
    if mat_path.exists():
        ls_set = _mat_var(mat_path, "ls_set", name)
        if ls_set.ndim != 2 or ls_set.shape[1] % 2:
            raise DataFormatError(f"{name}: ls_set in {mat_path} must be (splits, 2N); got {ls_set.shape}")
        persons = sorted(p.name for p in cams[0].iterdir() if p.is_dir())
        other = sorted(p.name for p in cams[1].iterdir() if p.is_dir())
        if persons != other:
            raise DataFormatError(f"{name}: cam1 and cam2 hold different person folders under {seq}")
        if ls_set.min() < 1 or ls_set.max() > len(persons):
            raise DataFormatError(
                f"{name}: ls_set holds person indices {ls_set.min()}..{ls_set.max()} but {seq / 'cam1'} has "
                f"{len(persons)} person folders"
            )
        half = ls_set.shape[1] // 2  # first half = test persons, second half = train (Wang et al. ECCV 2014)
        splits = [
            {
                "train": [persons[i - 1] for i in sorted(row[half:].astype(int).tolist())],
                "test": [persons[i - 1] for i in sorted(row[:half].astype(int).tolist())],
            }
            for row in ls_set
        ]
        source = mat_path
    elif json_path.exists():
        splits, source = json.loads(json_path.read_text()), json_path
    else:
        raise DataFormatError(f"{name}: missing {mat_path} (or torchreid's {json_path})")
    return _two_camera_split(cams, _pick_split(splits, split_id, source, name), ".png", name)


def _load_prid2011(root: Path, name: str, split_id: int) -> tuple[list[Tracklet], ...]:
    multi = root / "prid_2011" / "multi_shot"
    cams = (_require(multi / "cam_a", name), _require(multi / "cam_b", name))
    json_path = _require(root / "splits_prid2011.json", name)
    splits = json.loads(json_path.read_text())
    return _two_camera_split(cams, _pick_split(splits, split_id, json_path, name), ".png", name)


# ------------------------------------------------------------------------------------------- DukeMTMC-VideoReID


def _duke_dir(folder: Path, name: str) -> list[Tracklet]:
    out = []
    for pdir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if not pdir.name.lstrip("-").isdigit():
            continue
        pid = int(pdir.name)
        for tdir in sorted(p for p in pdir.iterdir() if p.is_dir()):
            frames = sorted((str(p) for p in tdir.glob("*.jpg")), key=_duke_frame)
            if not frames:
                continue
            img = Path(frames[0]).name
            cam_char = img[5] if "_" not in img else img[6]  # old 0001C6F0099X30823.jpg, new 0001_C6_F0099_X30823.jpg
            if not cam_char.isdigit():
                raise DataFormatError(f"{name}: cannot read the camera from frame name {img!r} in {tdir}")
            out.append(Tracklet(tuple(frames), pid, int(cam_char) - 1))
    return out


def _duke_frame(path: str) -> tuple[int, str]:
    match = re.search(r"F(\d+)", Path(path).name)
    return (int(match.group(1)) if match else -1, path)


def _load_dukev(root: Path, name: str) -> tuple[list[Tracklet], ...]:
    base = root / "DukeMTMC-VideoReID"
    return tuple(_duke_dir(_require(base / sub, name), name) for sub in ("train", "query", "gallery"))


# ---------------------------------------------------------------------------------------------------- entry point


def load_reid_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    split_id: int = 0,
    min_seq_len: int = 0,
    query_in_gallery: bool = False,
    allow_withdrawn: bool = False,
) -> VideoReIDDataset:
    """Load a video re-ID benchmark (see the module docstring for layouts and protocols).

    Args:
        name: One of :data:`DATASET_NAMES`.
        root: Dataset folder (or a folder holding it); default ``$PICKWISE_DATA_DIR/<name>``. For ``reid-synth``
            the default is :func:`pickwise.tasks.reid.synth.default_reid_synth_root`, and the benchmark is generated
            there (with default parameters) when it is not complete yet.
        split_id: Which of the 10 train/test splits of iLIDS-VID or PRID2011 (0-based); their protocol reports the
            mean over all 10. Must be 0 for the single-split datasets.
        min_seq_len: Drop tracklets with fewer frames (0 keeps all, as torchreid's default).
        query_in_gallery: MARS, LS-VID and reid-synth only: keep the query tracklets in the gallery (the official
            MARS MATLAB protocol; the same-identity-same-camera rule removes each query's own copy). The default
            ``False`` is torchreid's gallery, in which queries whose identity has no other tracklet are skipped.
        allow_withdrawn: Must be ``True`` for ``dukev``: DukeMTMC data was withdrawn by its authors in 2019.

    Returns:
        A :class:`VideoReIDDataset`.

    Raises:
        UnknownNameError: Unknown ``name``.
        DataNotFoundError: The dataset folder is missing (the message says where to put it).
        DataFormatError: A file of the layout is missing or malformed (the message names it).
        InvalidParameterError: ``dukev`` without ``allow_withdrawn``, a bad ``split_id`` or ``min_seq_len``.

    Example:
        >>> load_reid_dataset("mars", "/nonexistent/mars")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        pickwise.exceptions.DataNotFoundError: mars: dataset folder /nonexistent/mars (root='/nonexistent/mars') ...
    """
    key = str(name).strip().lower().replace("_", "-")
    key = {"ilids-vid": "ilidsvid", "ls-vid": "lsvid", "prid": "prid2011", "dukemtmcvidreid": "dukev"}.get(key, key)
    if key not in DATASET_NAMES:
        import difflib

        close = difflib.get_close_matches(key, DATASET_NAMES, n=2)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown re-ID dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}{hint}")
    if key == "dukev" and not allow_withdrawn:
        raise InvalidParameterError(
            "dukev: DukeMTMC-VideoReID was withdrawn by its authors (2019); load a copy you are licensed to use "
            "with allow_withdrawn=True (--allow-withdrawn)"
        )
    if isinstance(min_seq_len, bool) or not isinstance(min_seq_len, int) or min_seq_len < 0:
        raise InvalidParameterError(f"{key}: min_seq_len must be an integer >= 0; got {min_seq_len!r}")
    if isinstance(split_id, bool) or not isinstance(split_id, int) or split_id < 0:
        raise InvalidParameterError(f"{key}: split_id must be an integer >= 0; got {split_id!r}")
    if key not in ("ilidsvid", "prid2011") and split_id != 0:
        raise InvalidParameterError(f"{key}: has one fixed split; split_id must be 0, got {split_id}")
    if key == "reid-synth":
        from .synth import VERSION as SYNTH_VERSION
        from .synth import _read_manifest, default_reid_synth_root, make_reid_synth, reid_synth_is_complete

        folder = Path(root).expanduser() if root is not None else default_reid_synth_root()
        if not reid_synth_is_complete(folder):  # a complete folder is used whatever parameters made it
            manifest = _read_manifest(folder)
            if manifest is not None and root is not None:
                # a folder made by another drawing version, possibly with the user's own parameters: never replace
                # it with defaults behind the user's back
                raise DataFormatError(
                    f"reid-synth: {folder} was drawn by generator version {manifest.get('version')!r}, this pickwise "
                    f"draws version {SYNTH_VERSION!r}; regenerate it with make_reid_synth({str(folder)!r}, seed=..., "
                    "...) (or `pickwise reid make-data`) or pass another folder"
                )
            folder = make_reid_synth(folder)
    else:
        folder = resolve_dataset_root(key, root)
    if key in ("mars", "reid-synth"):
        parts = _load_mars(folder, key, query_in_gallery)
    elif key == "lsvid":
        parts = _load_lsvid(folder, key, query_in_gallery)
    elif key == "ilidsvid":
        parts = _load_ilidsvid(folder, key, split_id)
    elif key == "prid2011":
        parts = _load_prid2011(folder, key, split_id)
    else:
        parts = _load_dukev(folder, key)
    train, query, gallery = parts
    return _finish(key, folder, train, query, gallery, min_seq_len)
