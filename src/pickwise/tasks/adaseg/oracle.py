"""A simulated annotator and the persistent selection state of active learning.

The oracle is the only path from target ground truth to training: :meth:`SimulatedOracle.reveal` reads a label store
*at the selected pixels only* (``store.read(index, mask)`` returns the labels under ``mask``) and returns a label map
with ``255`` (ignore) everywhere else. Training code receives those revealed maps, never the target labels.

The selection state (cumulative ``labelled`` masks and the ``revealed`` labels of every target image) is saved once per
round as ``selection/round_XX.pt`` (plain tensors and strings, loadable with ``weights_only=True``), written to a
temporary file and renamed, so a crash between rounds resumes from the last complete round exactly. The state records
the strategy, the budget, the number of rounds and the seed; resuming with any of them changed is refused in one line.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from ...exceptions import CheckpointError, ConfigError, ShapeError
from ...utils.io import atomic_write_bytes

__all__ = [
    "DatasetLabelStore",
    "LabelStore",
    "SelectionState",
    "SimulatedOracle",
    "check_selection_meta",
    "latest_selection",
    "load_selection",
    "save_selection",
]

IGNORE = 255


class LabelStore(Protocol):
    """Ground truth of the target pool, readable only pixel-set by pixel-set."""

    def read(self, index: int, mask: torch.Tensor) -> torch.Tensor:
        """Labels (``long[n]``, row-major) of image ``index`` at the ``n`` pixels where ``mask`` is True."""
        ...


class DatasetLabelStore:
    """A :class:`LabelStore` over a segmentation dataset returning ``(image, label, index)``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def read(self, index: int, mask: torch.Tensor) -> torch.Tensor:
        """Labels of image ``index`` under ``mask`` (the dataset's full label is read, then masked)."""
        label = torch.as_tensor(self.dataset[index][1]).long()
        if label.shape != mask.shape:
            raise ShapeError(f"oracle: label of image {index} is {tuple(label.shape)}, mask {tuple(mask.shape)}")
        return label[mask]


class SimulatedOracle:
    """Reveals ground truth at selected pixels only and counts what it revealed.

    Example:
        >>> class Store:
        ...     def read(self, index, mask):
        ...         return torch.full((int(mask.sum()),), 3)
        >>> m = torch.tensor([[True, False]])
        >>> SimulatedOracle(Store()).reveal(0, m).tolist()
        [[3, 255]]
    """

    def __init__(self, store: LabelStore, ignore_index: int = IGNORE) -> None:
        self.store, self.ignore_index = store, ignore_index
        self.pixels_revealed = 0

    def reveal(self, index: int, mask: torch.Tensor) -> torch.Tensor:
        """``long[H,W]``: the true labels where ``mask`` is True, ``ignore_index`` elsewhere."""
        out = torch.full(mask.shape, self.ignore_index, dtype=torch.long)
        if bool(mask.any()):
            out[mask] = self.store.read(int(index), mask.clone()).long().reshape(-1)
        self.pixels_revealed += int(mask.sum())
        return out


@dataclass
class SelectionState:
    """What has been labelled after ``round`` rounds.

    Attributes:
        labelled: ``bool[N,H,W]`` cumulative selection.
        revealed: ``uint8[N,H,W]`` revealed labels, 255 where unlabelled (or labelled "ignore").
        round: Rounds completed (0: nothing selected yet).
        meta: Strategy, budget text, rounds, seed, pool shape (compared on resume).
    """

    labelled: torch.Tensor
    revealed: torch.Tensor
    round: int
    meta: dict[str, str]

    @classmethod
    def empty(cls, num_images: int, height: int, width: int, meta: dict[str, str]) -> SelectionState:
        """Nothing labelled."""
        return cls(
            torch.zeros(num_images, height, width, dtype=torch.bool),
            torch.full((num_images, height, width), IGNORE, dtype=torch.uint8),
            0,
            dict(meta),
        )

    def labelled_fraction(self) -> float:
        """Labelled pixels / pool pixels."""
        return float(self.labelled.sum()) / max(self.labelled.numel(), 1)

    def add(self, index: int, mask: torch.Tensor, labels: torch.Tensor) -> None:
        """Record the new picks ``mask`` of image ``index`` with their revealed ``labels`` (``long[H,W]``)."""
        self.labelled[index] |= mask
        self.revealed[index] = torch.where(mask, labels.to(torch.uint8), self.revealed[index])

    def target_labels(self) -> torch.Tensor:
        """``long[N,H,W]`` training labels (255 where unlabelled)."""
        return self.revealed.long()


def _path(folder: Path, rnd: int) -> Path:
    return Path(folder) / f"round_{rnd:02d}.pt"


def save_selection(folder: str | Path, state: SelectionState) -> Path:
    """Write ``folder/round_XX.pt`` atomically (tensors and strings only: ``weights_only`` loadable)."""
    buf = io.BytesIO()
    torch.save(
        {
            "labelled": state.labelled,
            "revealed": state.revealed,
            "round": int(state.round),
            "meta": {str(k): str(v) for k, v in state.meta.items()},
        },
        buf,
    )
    path = _path(Path(folder), state.round)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_selection(path: str | Path) -> SelectionState:
    """Read a state written by :func:`save_selection` (``weights_only=True``)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        return SelectionState(
            data["labelled"].bool(), data["revealed"].to(torch.uint8), int(data["round"]), dict(data["meta"])
        )
    except Exception as err:  # a truncated or foreign file
        raise CheckpointError(
            f"selection: cannot read {path} ({type(err).__name__}); delete it to redo that round"
        ) from None


def latest_selection(folder: str | Path) -> SelectionState | None:
    """The state of the highest complete round in ``folder`` (None if there is none)."""
    folder = Path(folder)
    rounds = sorted(
        int(m.group(1)) for p in folder.glob("round_*.pt") if (m := re.fullmatch(r"round_(\d+)\.pt", p.name))
    )
    return load_selection(_path(folder, rounds[-1])) if rounds else None


def check_selection_meta(saved: dict[str, str], current: dict[str, str]) -> None:
    """Refuse to resume a selection made under other settings (one line naming what changed)."""
    changed = [f"{k} {saved.get(k)!r} -> {current.get(k)!r}" for k in sorted(current) if saved.get(k) != current.get(k)]
    if changed:
        raise ConfigError(
            f"resume: the saved selection was made with other settings ({'; '.join(changed)}); "
            "resume with the original settings or start a new run folder"
        )
