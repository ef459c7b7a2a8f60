"""Cross-entropy classification as an engine :class:`~pickwise.engine.Task`.

Training logs ``loss`` and ``acc`` (top-1 on the augmented batch); evaluation streams a
:class:`~pickwise.metrics.MeanMetric` (cross-entropy) and a :class:`~pickwise.metrics.TopKAccuracy` (top-1, top-5),
plus a :class:`~pickwise.metrics.ConfusionMatrix` and the balanced accuracy when ``num_classes`` is given. The engine
sums every accumulator over processes, so distributed results equal single-process ones exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...engine.augment import augment_batch
from ...metrics import Accumulator, ConfusionMatrix, MeanMetric, TopKAccuracy, balanced_accuracy

__all__ = ["ClassificationTask"]


class ClassificationTask:
    """Cross-entropy classification with top-1/top-5 accuracy (and optionally a confusion matrix).

    Args:
        augment: Training augmentation mode (``none``, ``flip``, ``crop_flip``).
        repeat_channels: Repeat single-channel images to this many channels (for RGB-pretrained models on gray data).
        label_smoothing: Cross-entropy label smoothing.
        num_classes: If given, evaluation also keeps a confusion matrix and reports ``balanced_acc`` (mean per-class
            recall over the classes present).

    Example:
        >>> import torch
        >>> task = ClassificationTask(num_classes=3)
        >>> accs = task.make_accumulators()
        >>> model = torch.nn.Flatten()
        >>> batch = (torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), torch.tensor([0, 1]))
        >>> task.evaluation_step(model, batch, torch.device("cpu"), accs)
        >>> {k: round(v, 3) for k, v in task.compute(accs).items()}
        {'loss': 0.895, 'acc': 0.5, 'acc5': 1.0, 'balanced_acc': 0.5}
    """

    def __init__(
        self,
        augment: str = "none",
        repeat_channels: int | None = None,
        label_smoothing: float = 0.0,
        num_classes: int | None = None,
    ) -> None:
        self.augment = augment
        self.repeat_channels = repeat_channels
        self.label_smoothing = label_smoothing
        self.num_classes = num_classes

    def _inputs(
        self, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = batch
        if self.repeat_channels and images.ndim == 4 and images.shape[1] == 1:
            images = images.expand(-1, self.repeat_channels, -1, -1)
        return images.to(device, non_blocking=True), targets.to(device, non_blocking=True)

    def training_loss(
        self,
        model: nn.Module,
        batch: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy on an augmented batch, plus loss/correct/count sums for the log."""
        images, targets = self._inputs(batch, device)
        images = augment_batch(images, self.augment, generator)
        logits = model(images)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)
        with torch.no_grad():
            correct = (logits.argmax(1) == targets).sum()
        n = torch.tensor(targets.numel(), device=device)
        return loss, {"loss": loss.detach() * n, "correct": correct, "count": n}

    def log_row(self, totals: Mapping[str, float]) -> dict[str, float]:
        """``loss`` (mean) and ``acc`` (top-1 on the training batches) of a log window."""
        n = max(totals.get("count", 0.0), 1.0)
        return {"loss": totals.get("loss", 0.0) / n, "acc": totals.get("correct", 0.0) / n}

    # ------------------------------------------------------------------ evaluation through accumulators
    def make_accumulators(self) -> dict[str, Accumulator]:
        """``loss`` (mean cross-entropy), ``topk`` (top-1/top-5) and, with ``num_classes``, ``confusion``."""
        accs: dict[str, Accumulator] = {"loss": MeanMetric(), "topk": TopKAccuracy(topk=(1, 5))}
        if self.num_classes:
            accs["confusion"] = ConfusionMatrix(self.num_classes)
        return accs

    @torch.no_grad()
    def evaluation_step(
        self,
        model: nn.Module,
        batch: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        accumulators: dict[str, Any],
    ) -> None:
        """Add one batch: summed cross-entropy, top-k hits and (if kept) the confusion counts."""
        images, targets = self._inputs(batch, device)
        logits = model(images).float()
        accumulators["loss"].update_sum(F.cross_entropy(logits, targets, reduction="sum"), targets.numel())
        accumulators["topk"].update(logits, targets)
        if "confusion" in accumulators:
            accumulators["confusion"].update(logits, targets)

    def compute(self, accumulators: dict[str, Any]) -> dict[str, float]:
        """``loss``, ``acc``, ``acc5`` (fractions) and ``balanced_acc`` when a confusion matrix is kept."""
        out = {"loss": accumulators["loss"].compute(), **accumulators["topk"].compute()}
        if "confusion" in accumulators:
            out["balanced_acc"] = balanced_accuracy(accumulators["confusion"].compute())
        return out

    # ------------------------------------------------------------------ first protocol (kept for wrappers)
    @torch.no_grad()
    def evaluation_sums(
        self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
    ) -> dict[str, torch.Tensor]:
        """Summed loss, top-1 and top-5 hits, and the sample count (first task protocol, for wrapping tasks)."""
        images, targets = self._inputs(batch, device)
        logits = model(images).float()
        loss = F.cross_entropy(logits, targets, reduction="sum")
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices
        hits = topk == targets[:, None]
        return {
            "loss": loss,
            "correct": hits[:, 0].sum(),
            "correct5": hits.any(1).sum(),
            "count": torch.tensor(targets.numel(), device=device),
        }

    def finalize(self, sums: dict[str, float]) -> dict[str, float]:
        """``loss`` (mean), ``acc`` and ``acc5`` as fractions (first task protocol)."""
        n = max(sums["count"], 1.0)
        out = {"loss": sums["loss"] / n, "acc": sums["correct"] / n}
        if "correct5" in sums:
            out["acc5"] = sums["correct5"] / n
        return out
