"""Semantic-segmentation metrics: the pixel confusion matrix, per-class IoU, mIoU and pixel accuracy.

Definitions (the Cityscapes / DA-segmentation benchmark convention, e.g. ``BIT-DA/RIPU:core/utils/misc.py`` and
``munanning/MADA:metrics.py``): over *all* evaluated pixels of a dataset (not averaged per image), with the
confusion matrix ``M[t, p]`` = number of pixels of true class ``t`` predicted as ``p`` (rows truth, columns
prediction, as :func:`pickwise.metrics.confusion_matrix` and scikit-learn),

- ``IoU_c = TP_c / (TP_c + FP_c + FN_c) = M[c, c] / (Σ_p M[c, p] + Σ_t M[t, c] − M[c, c])``;
- ``mIoU = mean_c IoU_c`` over the classes that occur in the prediction or the target;
- pixel accuracy ``= Σ_c M[c, c] / Σ M`` and mean class accuracy ``= mean_c M[c, c] / Σ_p M[c, p]`` (classes
  present in the target).

**Absent classes.** A class with ``TP + FP + FN = 0`` (absent from both the target and the prediction) has no
defined IoU: it is ``NaN`` in ``per_class`` and left out of the mean (``numpy.nanmean``, as MADA's
``runningScore``). RIPU instead divides by ``union + 1e-10`` and averages over all classes, which counts such a
class as 0; on the full Cityscapes val set every class occurs, so both give the same number there, but on a small
subset they differ. ``torchmetrics.classification.MulticlassJaccardIndex`` (1.9) agrees with this convention: with
``average=None`` it reports ``zero_division`` (0 by default; pass ``float("nan")`` to get ours) for such a class, and
its ``"macro"`` average leaves the class out (checked in ``tests/metrics/test_segmentation.py``).

Pixels whose target equals ``ignore_index`` (255, "void") are skipped whatever the prediction. Any other target or
predicted label outside ``[0, num_classes)`` is an error (a label map that was not converted to train ids, or a
model with the wrong number of classes), not silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..exceptions import InvalidParameterError, ShapeError
from ._base import Accumulator

__all__ = ["IoUResult", "SegmentationMetric", "confusion_matrix", "mean_iou"]


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InvalidParameterError(f"num_classes must be an int >= 1; got {num_classes!r}")
    return num_classes


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """Pixel confusion matrix ``(num_classes, num_classes)`` int64, rows = target class, columns = prediction.

    Computed with one ``torch.bincount`` on the device of ``pred`` (CPU or GPU).

    Args:
        pred: Logits ``(B, K, H, W)`` with ``K = num_classes`` (argmax over ``K`` taken), or predicted labels with
            the shape of ``target`` (any integer dtype).
        target: Target train ids ``(B, H, W)`` (or any shape equal to the labels'), values in ``[0, num_classes)``
            or ``ignore_index``.
        num_classes: Number of evaluated classes ``K``.
        ignore_index: Target value whose pixels are skipped; ``None``: none. Default: ``255``.

    Returns:
        ``LongTensor[K, K]`` on ``pred``'s device.

    Raises:
        ShapeError: If the logits' class dimension is not ``num_classes`` or the spatial shapes differ.
        InvalidParameterError: If a target (not ignored) or predicted label lies outside ``[0, num_classes)``.

    Example:
        >>> import torch
        >>> pred = torch.tensor([[0, 1], [1, 1]])
        >>> target = torch.tensor([[0, 0], [255, 1]])
        >>> confusion_matrix(pred, target, 2).tolist()
        [[1, 1], [0, 1]]
    """
    k = _check_num_classes(num_classes)
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise InvalidParameterError(
            f"confusion_matrix: pred and target must be tensors; got {type(pred).__name__} and {type(target).__name__}"
        )
    if pred.is_floating_point() and pred.ndim == target.ndim + 1:
        if pred.shape[1] != k:
            raise ShapeError(
                f"confusion_matrix: logits have {pred.shape[1]} classes in dim 1 (shape {tuple(pred.shape)}); "
                f"expected num_classes={k}"
            )
        pred = pred.argmax(1)
    elif pred.is_floating_point():
        raise ShapeError(
            f"confusion_matrix: floating-point pred must be logits (B, K, H, W) with one more dim than target "
            f"{tuple(target.shape)}; got {tuple(pred.shape)}. Pass logits or integer labels."
        )
    if pred.shape != target.shape:
        raise ShapeError(
            f"confusion_matrix: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape; "
            "upsample the logits to the label size first (F.interpolate(..., mode='bilinear'))"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise InvalidParameterError(f"confusion_matrix: target must hold integer train ids; got dtype {target.dtype}")
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).to(pred.device).long()
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    if target.numel():
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi >= k:
            bad = lo if lo < 0 else hi
            raise InvalidParameterError(
                f"confusion_matrix: target contains label {bad} outside [0, {k}) that is not ignore_index="
                f"{ignore_index}; map label ids to train ids 0..{k - 1} and void pixels to {ignore_index}"
            )
        lo, hi = int(pred.min()), int(pred.max())
        if lo < 0 or hi >= k:
            bad = lo if lo < 0 else hi
            raise InvalidParameterError(
                f"confusion_matrix: prediction contains label {bad} outside [0, {k}); the model must output "
                f"num_classes={k} classes"
            )
    return torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)


@dataclass(frozen=True)
class IoUResult:
    """Result of :func:`mean_iou`.

    Attributes:
        per_class: ``float64[K]`` IoU per class; ``NaN`` for a class absent from both target and prediction.
        miou: Mean of ``per_class`` over its non-NaN entries (over ``classes`` only when given); ``NaN`` if none.
        pixel_acc: Correct pixels / evaluated pixels (``NaN`` with no pixel).
        mean_acc: Mean per-class recall over the classes present in the target (``NaN`` with none).
        present: ``bool[K]``, which classes have a defined IoU.
    """

    per_class: np.ndarray
    miou: float
    pixel_acc: float
    mean_acc: float
    present: np.ndarray


def mean_iou(confmat: torch.Tensor | np.ndarray, classes: Sequence[int] | None = None) -> IoUResult:
    """Per-class IoU, mIoU, pixel accuracy and mean class accuracy of a confusion matrix (see the module docstring).

    Args:
        confmat: ``(K, K)`` counts, rows = target, columns = prediction (:func:`confusion_matrix`).
        classes: Average the mIoU over these class indices only, e.g. the 13-class subset of the SYNTHIA 16-class
            protocol (:data:`pickwise.tasks.adaseg.labels.SYNTHIA_13_OF_16`). ``None``: all classes.

    Returns:
        :class:`IoUResult`.

    Raises:
        ShapeError: If ``confmat`` is not square 2-d.
        InvalidParameterError: If it has negative entries or ``classes`` holds an index outside ``[0, K)``.

    Example:
        >>> import torch
        >>> r = mean_iou(torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]]))
        >>> r.per_class.round(3).tolist(), round(r.miou, 4), round(r.pixel_acc, 4)
        ([0.75, 0.667, nan], 0.7083, 0.8333)
    """
    m = confmat.detach().cpu().numpy() if isinstance(confmat, torch.Tensor) else np.asarray(confmat)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ShapeError(f"mean_iou: confmat must be a square (K, K) matrix; got shape {m.shape}")
    m = m.astype(np.float64)
    if (m < 0).any():
        raise InvalidParameterError("mean_iou: confmat has negative counts; pass the output of confusion_matrix")
    tp = np.diag(m)
    gt, pr = m.sum(1), m.sum(0)
    union = gt + pr - tp
    present = union > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = np.where(present, tp / np.where(present, union, 1.0), np.nan)
        recall = np.where(gt > 0, tp / np.where(gt > 0, gt, 1.0), np.nan)
    if classes is not None:
        idx = np.asarray(list(classes), dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= m.shape[0]):
            raise InvalidParameterError(f"mean_iou: classes must be indices in [0, {m.shape[0]}); got {list(classes)}")
        selected = per_class[idx]
    else:
        selected = per_class
    miou = float(np.nanmean(selected)) if np.isfinite(selected).any() else float("nan")
    total = m.sum()
    pixel_acc = float(tp.sum() / total) if total > 0 else float("nan")
    mean_acc = float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan")
    return IoUResult(per_class=per_class, miou=miou, pixel_acc=pixel_acc, mean_acc=mean_acc, present=present)


class SegmentationMetric(Accumulator):
    """Streaming segmentation metrics over a dataset: one additive int64 confusion matrix.

    ``sync()`` sums the matrix over processes, so a distributed evaluation equals the single-process one exactly.

    Args:
        num_classes: Number of evaluated classes ``K``.
        ignore_index: Target value to skip (``None``: none). Default: ``255``.
        subsets: Extra mIoU averages over class subsets, reported as ``"mIoU/<name>"``, e.g.
            ``{"13": SYNTHIA_13_OF_16}`` for SYNTHIA's mIoU*.

    Example:
        >>> import torch
        >>> metric = SegmentationMetric(2)
        >>> metric.update(torch.tensor([[[0, 1], [1, 1]]]), torch.tensor([[[0, 0], [255, 1]]]))
        >>> metric.compute()
        {'mIoU': 0.5, 'pixel_acc': 0.6666666666666666, 'mean_acc': 0.75, 'IoU/0': 0.5, 'IoU/1': 0.5}
    """

    def __init__(
        self, num_classes: int, ignore_index: int | None = 255, subsets: Mapping[str, Sequence[int]] | None = None
    ) -> None:
        super().__init__()
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_index = ignore_index
        self.subsets = {str(k): tuple(int(i) for i in v) for k, v in (subsets or {}).items()}
        for name, idx in self.subsets.items():
            if any(i < 0 or i >= self.num_classes for i in idx):
                raise InvalidParameterError(
                    f"SegmentationMetric: subset {name!r} has class indices outside [0, {self.num_classes}): {idx}"
                )
        self.add_state("confmat", torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64))

    def update(self, logits_or_pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add logits ``(B, K, H, W)`` or labels ``(B, H, W)`` with their targets ``(B, H, W)``."""
        cm = confusion_matrix(logits_or_pred.detach(), target, self.num_classes, self.ignore_index)
        self._add("confmat", cm)

    def result(self, classes: Sequence[int] | None = None) -> IoUResult:
        """:func:`mean_iou` of the accumulated matrix."""
        return mean_iou(self.confmat, classes)

    def compute(self) -> dict[str, float]:
        """``{"mIoU", "pixel_acc", "mean_acc", "mIoU/<subset>"..., "IoU/<i>"...}`` as floats (NaN where undefined)."""
        r = self.result()
        out = {"mIoU": r.miou, "pixel_acc": r.pixel_acc, "mean_acc": r.mean_acc}
        for name, idx in self.subsets.items():
            out[f"mIoU/{name}"] = mean_iou(self.confmat, idx).miou
        out.update({f"IoU/{i}": float(v) for i, v in enumerate(r.per_class)})
        return out
