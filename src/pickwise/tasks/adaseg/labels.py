"""Class tables of the DA-segmentation benchmarks: Cityscapes label ids, SYNTHIA ids, the 19/16/13-class protocols.

Sources (the reference notes ``datasets.md`` §2): ``mcordts/cityscapesScripts:cityscapesscripts/helpers/labels.py``
(label id → train id; :func:`cityscapes_label_to_train_id` uses the installed ``cityscapesscripts`` when present and
this module's equal table otherwise — equality is tested); ``BIT-DA/RIPU:core/datasets/{cityscapes,synthia}.py``
(the 16-class protocol); ``visinf/da-sac:tools/id_mappers.py`` (SYNTHIA ids, their 19-class mapping);
``ZJULearning/MaxSquareLoss:utils/eval.py`` (the 13-class subsets).

Protocols (``num_classes``):

- **19** (GTA5 → Cityscapes): the 19 Cityscapes evaluation classes, in train-id order (:data:`CITYSCAPES_19_CLASSES`).
- **16** (SYNTHIA → Cityscapes): the 19 without terrain, truck and train (:data:`SYNTHIA_16_CLASSES`); Cityscapes
  terrain/truck/train pixels become 255 on the target.
- **13**: the 16 without wall, fence and pole. The usual practice trains the 16-class model and reports mIoU13
  (mIoU*) as the mean over :data:`SYNTHIA_13_OF_16` of the 16 per-class IoUs; ``num_classes=13`` instead maps the
  labels to 13 contiguous ids (wall/fence/pole → 255) for training a 13-way model.

Every unlisted id maps to :data:`IGNORE_INDEX` (255). An id outside the source's id range (Cityscapes 0-33, SYNTHIA
0-22) is an error: it means the file is not a label-id map of that dataset (e.g. a colour or train-id PNG).
"""

from __future__ import annotations

import numpy as np

from ...exceptions import DataFormatError, InvalidParameterError

__all__ = [
    "CITYSCAPES_19_CLASSES",
    "CITYSCAPES_LABEL_TO_TRAIN",
    "CITYSCAPES_MAX_LABEL_ID",
    "IGNORE_INDEX",
    "PROTOCOLS",
    "SYNTHIA_13_CLASSES",
    "SYNTHIA_13_OF_16",
    "SYNTHIA_13_OF_19",
    "SYNTHIA_16_CLASSES",
    "SYNTHIA_16_OF_19",
    "SYNTHIA_ID_NAMES",
    "SYNTHIA_MAX_ID",
    "class_names_for",
    "cityscapes_label_to_train_id",
    "label_lut",
    "map_label_ids",
]

IGNORE_INDEX = 255

#: The 19 Cityscapes evaluation classes in train-id order.
CITYSCAPES_19_CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

#: Cityscapes label id → 19-class train id (``cityscapesscripts`` ``labels.py``); every other id 0-33 → 255.
CITYSCAPES_LABEL_TO_TRAIN: dict[int, int] = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}
CITYSCAPES_MAX_LABEL_ID = 33

#: 19-space indices of the 16 SYNTHIA classes (no terrain, truck, train), in 16-class train-id order.
SYNTHIA_16_OF_19: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
SYNTHIA_16_CLASSES: tuple[str, ...] = tuple(CITYSCAPES_19_CLASSES[i] for i in SYNTHIA_16_OF_19)
#: 16-space indices of the 13 classes of mIoU13 (no wall, fence, pole).
SYNTHIA_13_OF_16: tuple[int, ...] = (0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
#: 19-space indices of the 13 classes.
SYNTHIA_13_OF_19: tuple[int, ...] = tuple(SYNTHIA_16_OF_19[i] for i in SYNTHIA_13_OF_16)
SYNTHIA_13_CLASSES: tuple[str, ...] = tuple(SYNTHIA_16_CLASSES[i] for i in SYNTHIA_13_OF_16)

#: SYNTHIA-RAND-CITYSCAPES class ids (``visinf/da-sac:tools/id_mappers.py``).
SYNTHIA_ID_NAMES: dict[int, str] = {
    0: "void",
    1: "sky",
    2: "building",
    3: "road",
    4: "sidewalk",
    5: "fence",
    6: "vegetation",
    7: "pole",
    8: "car",
    9: "traffic sign",
    10: "pedestrian",
    11: "bicycle",
    12: "motorcycle",
    13: "parking-slot",
    14: "road-work",
    15: "traffic light",
    16: "terrain",
    17: "rider",
    18: "truck",
    19: "bus",
    20: "train",
    21: "wall",
    22: "lanemarking",
}
SYNTHIA_MAX_ID = 22
#: SYNTHIA id → 19-class train id (da-sac's full table; void, parking-slot, road-work, lanemarking → 255).
_SYNTHIA_TO_19: dict[int, int] = {
    1: 10,
    2: 2,
    3: 0,
    4: 1,
    5: 4,
    6: 8,
    7: 5,
    8: 13,
    9: 7,
    10: 11,
    11: 18,
    12: 17,
    15: 6,
    16: 9,
    17: 12,
    18: 14,
    19: 15,
    20: 16,
    21: 3,
}

PROTOCOLS: dict[int, tuple[str, ...]] = {19: CITYSCAPES_19_CLASSES, 16: SYNTHIA_16_CLASSES, 13: SYNTHIA_13_CLASSES}


def _check_protocol(num_classes: int) -> int:
    if isinstance(num_classes, bool) or num_classes not in PROTOCOLS:
        raise InvalidParameterError(
            f"num_classes must be one of the protocols 19 (GTA5/Cityscapes), 16 or 13 (SYNTHIA); got {num_classes!r}"
        )
    return int(num_classes)


def class_names_for(num_classes: int) -> tuple[str, ...]:
    """Class names of the 19-, 16- or 13-class protocol, in train-id order."""
    return PROTOCOLS[_check_protocol(num_classes)]


def _from_19(num_classes: int) -> np.ndarray:
    """Map 19-space train ids (and 255) to the protocol's train ids: a 256-entry table."""
    table = np.full(256, IGNORE_INDEX, dtype=np.int64)
    if num_classes == 19:
        table[:19] = np.arange(19)
    elif num_classes == 16:
        table[list(SYNTHIA_16_OF_19)] = np.arange(16)
    else:
        table[list(SYNTHIA_13_OF_19)] = np.arange(13)
    return table


def cityscapes_label_to_train_id() -> dict[int, int]:
    """Label id → 19-class train id for all ids 0-33 (255 = ignore), from ``cityscapesscripts`` when installed.

    Falls back on :data:`CITYSCAPES_LABEL_TO_TRAIN` (the same table, checked against ``cityscapesscripts`` in the
    tests). ``license plate`` (id -1) is not a pixel value of ``*_labelIds.png`` and is left out.
    """
    try:
        from cityscapesscripts.helpers.labels import labels
    except ImportError:
        return {i: CITYSCAPES_LABEL_TO_TRAIN.get(i, IGNORE_INDEX) for i in range(CITYSCAPES_MAX_LABEL_ID + 1)}
    return {
        int(lab.id): (IGNORE_INDEX if lab.trainId in (-1, 255) else int(lab.trainId)) for lab in labels if lab.id >= 0
    }


def label_lut(source: str, num_classes: int = 19) -> np.ndarray:
    """Lookup table ``lut[id] = train id`` (255 ignore) for the ids of ``source``; ``-1`` beyond its id range.

    Args:
        source: ``"cityscapes"`` (Cityscapes label ids, also GTA5's) or ``"synthia"`` (SYNTHIA ids).
        num_classes: Protocol, 19, 16 or 13.

    Returns:
        ``int64[256]``; entries past the source's largest id are ``-1`` (invalid).

    Example:
        >>> lut = label_lut("cityscapes", 16)
        >>> int(lut[7]), int(lut[22]), int(lut[33]), int(lut[40])
        (0, 255, 15, -1)
    """
    to_protocol = _from_19(_check_protocol(num_classes))
    lut = np.full(256, -1, dtype=np.int64)
    if source == "cityscapes":
        for label_id, train_id in cityscapes_label_to_train_id().items():
            lut[label_id] = to_protocol[train_id]
    elif source == "synthia":
        for label_id in range(SYNTHIA_MAX_ID + 1):
            lut[label_id] = to_protocol[_SYNTHIA_TO_19.get(label_id, IGNORE_INDEX)]
    else:
        raise InvalidParameterError(f"label_lut: source must be 'cityscapes' or 'synthia'; got {source!r}")
    return lut


def map_label_ids(ids: np.ndarray, lut: np.ndarray, *, where: str = "label map") -> np.ndarray:
    """Map an id image through ``lut`` (from :func:`label_lut`) to ``uint8`` train ids (255 = ignore).

    Raises:
        DataFormatError: If an id is negative, past the table, or marked invalid (``-1``); the message names the
            offending ids and ``where``.
    """
    ids = np.asarray(ids)
    if ids.dtype.kind not in "ui" and ids.dtype != np.bool_:
        raise DataFormatError(f"{where}: expected an integer label-id image; got dtype {ids.dtype}")
    flat = ids.astype(np.int64, copy=False)
    bad_range = (flat < 0) | (flat >= lut.shape[0])
    mapped = lut[np.where(bad_range, 0, flat)]
    bad = bad_range | (mapped < 0)
    if bad.any():
        values = np.unique(flat[bad])
        shown = ", ".join(str(v) for v in values[:8]) + (" ..." if values.size > 8 else "")
        valid = int(np.flatnonzero(lut >= 0).max())
        raise DataFormatError(
            f"{where}: label ids {shown} are outside this dataset's id table (0-{valid}); the file is not a label-id "
            "map of this dataset (a colour or train-id PNG?). Use the original label files."
        )
    return mapped.astype(np.uint8)
