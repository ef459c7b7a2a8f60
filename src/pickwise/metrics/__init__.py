"""Metrics as pure functions plus additive accumulators (``update`` / ``merge`` / ``sync`` / ``compute``).

Modules hold one family each and import no task: ``classification`` (top-k accuracy, mean, confusion matrix),
``retrieval`` (re-ID CMC, mAP and mINP with the same-camera protocol, k-reciprocal re-ranking, pairwise distances),
``segmentation`` (pixel confusion matrix, per-class IoU, mIoU, pixel accuracy) and ``image`` (PSNR, SSIM and MS-SSIM
as separate functions, the colour-invariant PSNR reported apart).
Most accumulators' states are sums of int64/float64 tensors, so a distributed evaluation summed with ``sync()``
equals the single-process result; :class:`RetrievalAccumulator` instead gathers the embeddings of every process
(ranking needs all of them) and orders them by sample index, with the same guarantee.

Example:
    >>> import torch
    >>> from pickwise.metrics import TopKAccuracy
    >>> acc = TopKAccuracy(topk=(1, 2))
    >>> acc.update(torch.tensor([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]]), torch.tensor([2, 0]))
    >>> acc.compute()
    {'acc': 0.5, 'acc2': 1.0}
"""

from ._base import Accumulator
from .classification import (
    ConfusionMatrix,
    MeanMetric,
    TopKAccuracy,
    balanced_accuracy,
    confusion_matrix,
    topk_correct,
)
from .image import ImageQualityMetric, color_invariant_psnr, ms_ssim, psnr, ssim
from .retrieval import RankResult, RetrievalAccumulator, evaluate_rank, pairwise_distance, re_ranking
from .segmentation import IoUResult, SegmentationMetric, mean_iou
from .segmentation import confusion_matrix as segmentation_confusion_matrix

__all__ = [
    "Accumulator",
    "ConfusionMatrix",
    "ImageQualityMetric",
    "IoUResult",
    "MeanMetric",
    "RankResult",
    "RetrievalAccumulator",
    "SegmentationMetric",
    "TopKAccuracy",
    "balanced_accuracy",
    "color_invariant_psnr",
    "confusion_matrix",
    "evaluate_rank",
    "mean_iou",
    "ms_ssim",
    "pairwise_distance",
    "psnr",
    "re_ranking",
    "segmentation_confusion_matrix",
    "ssim",
    "topk_correct",
]
