"""What the engine trains: a task turns a batch into a loss and evaluation sums.

The engine owns the loop (devices, precision, accumulation, distribution, checkpoints); a task owns the meaning of a
batch. Later task systems (re-ID, segmentation, ISP) plug in their own task objects with the same two methods.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .augment import augment_batch

__all__ = ["ClassificationTask", "Task"]


class Task(Protocol):
    """The interface between a model, a batch and the engine."""

    def training_loss(
        self, model: nn.Module, batch: object, device: torch.device, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the mean loss of the batch and per-batch *sums* to log (each with a ``count`` entry)."""
        ...

    def evaluation_sums(self, model: nn.Module, batch: object, device: torch.device) -> dict[str, torch.Tensor]:
        """Return additive statistics of the batch (summed over processes by the engine)."""
        ...

    def finalize(self, sums: dict[str, float]) -> dict[str, float]:
        """Turn summed statistics into metrics."""
        ...


class ClassificationTask:
    """Cross-entropy classification with top-1/top-5 accuracy.

    Args:
        augment: Training augmentation mode (``none``, ``flip``, ``crop_flip``).
        repeat_channels: Repeat single-channel images to this many channels (for RGB-pretrained models on gray data).
        label_smoothing: Cross-entropy label smoothing.
    """

    def __init__(self, augment: str = "none", repeat_channels: int | None = None, label_smoothing: float = 0.0) -> None:
        self.augment = augment
        self.repeat_channels = repeat_channels
        self.label_smoothing = label_smoothing

    def _inputs(
        self, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = batch
        if self.repeat_channels and images.shape[1] == 1:
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

    @torch.no_grad()
    def evaluation_sums(
        self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
    ) -> dict[str, torch.Tensor]:
        """Summed loss, top-1 and top-5 hits, and the sample count."""
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
        """``loss`` (mean), ``acc`` and ``acc5`` as fractions."""
        n = max(sums["count"], 1.0)
        out = {"loss": sums["loss"] / n, "acc": sums["correct"] / n}
        if "correct5" in sums:
            out["acc5"] = sums["correct5"] / n
        return out
