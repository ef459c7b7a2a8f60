"""Classification metrics: top-k accuracy, mean loss and the confusion matrix, as functions and accumulators.

Pure functions take whole tensors; the accumulators (:class:`TopKAccuracy`, :class:`MeanMetric`,
:class:`ConfusionMatrix`) keep additive int64/float64 states that the engine sums over processes, so the result of
a distributed evaluation equals the single-process one exactly (counts are integers).

Definitions (``N`` samples, logits ``z ∈ R^{N×C}``, targets ``y``):

- top-k accuracy = (1/N) Σ_i 1[y_i ∈ top-k(z_i)]; ties inside the top-k are resolved by ``torch.topk``;
- confusion matrix ``M[t, p]`` = number of samples of true class ``t`` predicted as ``p`` (rows: truth, as in
  scikit-learn); per-class recall ``M[c, c] / Σ_p M[c, p]``, balanced accuracy = their mean over classes present.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..exceptions import ShapeError
from ._base import Accumulator

__all__ = [
    "ConfusionMatrix",
    "MeanMetric",
    "TopKAccuracy",
    "balanced_accuracy",
    "confusion_matrix",
    "topk_correct",
]


def _check_logits(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.ndim != 2:
        raise ShapeError(f"logits must have shape (N, C), got {tuple(logits.shape)}")
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ShapeError(f"targets must have shape ({logits.shape[0]},), got {tuple(targets.shape)}")


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, topk: Sequence[int] = (1, 5)) -> dict[int, int]:
    """Number of samples whose target is among the ``k`` highest logits, for each ``k`` (capped at ``C``).

    Example:
        >>> import torch
        >>> topk_correct(torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]]), torch.tensor([1, 2]), topk=(1, 2))
        {1: 1, 2: 2}
    """
    _check_logits(logits, targets)
    kmax = min(max(topk), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hits = top == targets[:, None].to(top.device)
    return {k: int(hits[:, : min(k, kmax)].any(1).sum()) for k in topk}


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(num_classes, num_classes)`` int64 matrix, rows = true class, columns = predicted class.

    ``preds`` are class indices ``(N,)`` or logits ``(N, C)`` (argmax taken). Targets outside ``[0, num_classes)``
    (e.g. an ignore index of -1 or 255) are skipped, as segmentation evaluations expect.

    Example:
        >>> import torch
        >>> confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2).tolist()
        [[1, 1], [0, 1]]
    """
    if preds.ndim == 2:
        preds = preds.argmax(1)
    preds, targets = preds.reshape(-1), targets.reshape(-1).to(preds.device)
    if preds.shape != targets.shape:
        raise ShapeError(
            f"preds and targets must have the same number of elements, got {preds.shape} and {targets.shape}"
        )
    keep = (targets >= 0) & (targets < num_classes)
    flat = targets[keep].long() * num_classes + preds[keep].long().clamp(0, num_classes - 1)
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def balanced_accuracy(matrix: torch.Tensor) -> float:
    """Mean per-class recall over the classes that occur (scikit-learn's ``balanced_accuracy_score``)."""
    support = matrix.sum(1)
    present = support > 0
    if not bool(present.any()):
        return float("nan")
    recall = matrix.diagonal()[present].double() / support[present].double()
    return float(recall.mean())


class TopKAccuracy(Accumulator):
    """Streaming top-k accuracy; ``compute()`` returns ``{"acc": ..., "acc5": ...}`` (``acc`` is top-1).

    Args:
        topk: The ``k`` values; the key of ``k`` is ``"acc"`` for 1 and ``f"acc{k}"`` otherwise.
    """

    def __init__(self, topk: Sequence[int] = (1, 5)) -> None:
        super().__init__()
        if not topk or any(int(k) < 1 for k in topk):
            raise ValueError(f"topk must be positive integers, got {tuple(topk)}")
        self.topk = tuple(int(k) for k in topk)
        self.add_state("correct", torch.zeros(len(self.topk), dtype=torch.int64))
        self.add_state("count", torch.zeros((), dtype=torch.int64))

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch of logits ``(N, C)`` and class indices ``(N,)``."""
        hits = topk_correct(logits.detach(), targets, self.topk)
        self._add("correct", torch.tensor([hits[k] for k in self.topk], dtype=torch.int64))
        self._add("count", torch.tensor(targets.shape[0], dtype=torch.int64))

    def compute(self) -> dict[str, float]:
        """Accuracies as fractions (NaN before any update)."""
        n = int(self.count)
        return {
            ("acc" if k == 1 else f"acc{k}"): (int(c) / n if n else float("nan"))
            for k, c in zip(self.topk, self.correct)
        }


class MeanMetric(Accumulator):
    """Streaming (weighted) mean of a scalar, e.g. the evaluation loss: Σ w·x / Σ w in float64."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64))
        self.add_state("weight", torch.zeros((), dtype=torch.float64))

    def update(self, value: torch.Tensor | float, weight: torch.Tensor | float = 1.0) -> None:
        """Add ``value`` (a mean over ``weight`` samples, or a tensor of per-sample values with weight 1 each)."""
        value = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
        if value.ndim:
            self._add("total", value.sum())
            self._add("weight", torch.tensor(float(value.numel()), dtype=torch.float64))
            return
        w = torch.as_tensor(weight, dtype=torch.float64).detach().cpu()
        self._add("total", value * w)
        self._add("weight", w)

    def update_sum(self, total: torch.Tensor | float, weight: torch.Tensor | float) -> None:
        """Add a precomputed sum ``total`` over ``weight`` samples (e.g. a batch's summed loss and its size).

        Adds exactly ``total`` (converted to float64) instead of ``mean * weight``, so streaming sums match a
        reference that sums per-batch totals.

        Example:
            >>> m = MeanMetric()
            >>> m.update_sum(6.0, 4)
            >>> m.update_sum(2.0, 1)
            >>> m.compute()
            1.6
        """
        self._add("total", torch.as_tensor(total, dtype=torch.float64).detach().cpu())
        self._add("weight", torch.as_tensor(weight, dtype=torch.float64).detach().cpu())

    def compute(self) -> float:
        """The mean (NaN before any update)."""
        w = float(self.weight)
        return float(self.total) / w if w else float("nan")


class ConfusionMatrix(Accumulator):
    """Streaming confusion matrix (rows truth, columns prediction); ``compute()`` returns the int64 matrix.

    Args:
        num_classes: Number of classes ``C``; targets outside ``[0, C)`` are ignored.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.add_state("matrix", torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64))

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        """Add class indices or logits ``preds`` and their ``targets``."""
        self._add("matrix", confusion_matrix(preds.detach(), targets, self.num_classes).cpu())

    def compute(self) -> torch.Tensor:
        """The summed matrix."""
        return self.matrix.clone()
