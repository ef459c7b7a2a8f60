"""Metrics as pure functions plus additive accumulators (``update`` / ``merge`` / ``sync`` / ``compute``).

Modules hold one family each and import no task: ``classification`` (top-k accuracy, mean, confusion matrix),
``retrieval`` (re-ID CMC, mAP and mINP with the same-camera protocol).
The accumulators' states are sums of int64/float64 tensors, so a distributed evaluation summed with ``sync()``
equals the single-process result.

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
from .retrieval import RankResult, evaluate_rank

__all__ = [
    "Accumulator",
    "ConfusionMatrix",
    "MeanMetric",
    "RankResult",
    "TopKAccuracy",
    "balanced_accuracy",
    "confusion_matrix",
    "evaluate_rank",
    "topk_correct",
]
