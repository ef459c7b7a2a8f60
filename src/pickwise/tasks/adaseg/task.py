"""Active domain adaptation for segmentation as an engine :class:`~pickwise.engine.Task`.

A training batch pairs source images (full labels) with target images whose label maps hold only what the oracle
revealed (255 elsewhere; see :mod:`pickwise.tasks.adaseg.oracle`). The loss is ADA-MCU's objective (Zhang et al.,
ACCV 2022, reconstructed): source CE + active-label CE on the target + optional pseudo-label CE + the multi-level
contrastive loss (:class:`~pickwise.tasks.adaseg.contrastive.MultiLevelContrastiveLoss`). Evaluation streams a
:class:`~pickwise.metrics.segmentation.SegmentationMetric` (dataset-level confusion matrix, mIoU, per-class IoU).

The contrastive loss keeps running state (EMA class centres, memory bank, soft confusion) as buffers of
:class:`ADASegModel`, the wrapper the engine trains, so its checkpoints carry that state and a resumed run is exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...exceptions import ShapeError
from .contrastive import MultiLevelContrastiveLoss, downsample_labels
from .fast_labels import class_max
from .losses import LossWeights, confident_labels

__all__ = ["ADASegModel", "ADASegTask", "model_outputs"]

IGNORE = 255


def model_outputs(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits [B,K,H,W], features [B,P,h,w] or None)`` of a segmentation model returning a dict or a tensor."""
    out = model(images)
    if isinstance(out, Mapping):
        return out["logits"], out.get("features")
    if isinstance(out, torch.Tensor):
        return out, None
    raise ShapeError(f"adaseg: the model must return a tensor or a dict with 'logits'; got {type(out).__name__}")


class ADASegModel(nn.Module):
    """A segmentation network plus the contrastive loss whose buffers the engine checkpoints with the weights.

    Args:
        net: Returns ``{"logits": [B,K,H,W], "features": [B,P,h,w], ...}`` (pickwise.models.deeplab convention).
        contrastive: The MCU loss (None: plain CE training).
    """

    def __init__(self, net: nn.Module, contrastive: MultiLevelContrastiveLoss | None = None) -> None:
        super().__init__()
        self.net = net
        self.contrastive = contrastive

    def forward(self, x: torch.Tensor) -> Any:
        """The network's output."""
        return self.net(x)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


class ADASegTask:
    """Source CE + active CE (+ pseudo CE) + MCU loss; evaluation by mIoU.

    Args:
        num_classes: ``K``.
        weights: :class:`LossWeights`.
        source_only: Ignore the target half of the batch (the warm-up and the source-only baseline).
        target_only: Ignore the source half (the fully supervised target upper bound).
        use_mcu: Add the model's contrastive loss (False: the "no MCU" ablation; its state is kept but unused).

    Batches are ``(src_img, src_label, tgt_img, tgt_label, tgt_index)`` for training and ``(image, label, index)``
    for evaluation.
    """

    def __init__(
        self,
        num_classes: int,
        weights: LossWeights | None = None,
        source_only: bool = False,
        target_only: bool = False,
        use_mcu: bool = True,
    ) -> None:
        self.num_classes = int(num_classes)
        self.use_mcu = use_mcu
        self.weights = weights or LossWeights()
        self.source_only, self.target_only = source_only, target_only

    def training_loss(
        self, model: nn.Module, batch: Any, device: torch.device, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The objective of one paired batch and its log sums (``loss``, ``ce_src``, ``ce_tgt``, ``mcu``, ``count``)."""
        src_img, src_lbl, tgt_img, tgt_lbl = (t.to(device) for t in batch[:4])
        w = self.weights
        if self.source_only:
            images = src_img
        elif self.target_only:
            images = tgt_img
        else:
            images = torch.cat([src_img, tgt_img])
        logits, feats = model_outputs(model, images)
        logits = logits.float()
        ns = 0 if self.target_only else src_img.shape[0]
        contrastive = self._contrastive(model)
        conf = arg = None
        if not self.source_only and (w.pseudo > 0 or contrastive is not None):
            conf, arg = class_max(F.softmax(logits[ns:].detach(), dim=1))  # one softmax for both thresholds
        # the supervised terms in one cross-entropy over the whole batch: source labels, active labels, and (pseudo
        # weight > 0) pseudo-labels on the unlabelled target pixels, each term a mean over its own pixels
        labels, weight = [], []
        if ns:
            labels.append(src_lbl)
            weight.append(self._mean_weights(src_lbl != IGNORE, w.source))
        if not self.source_only:
            active = tgt_lbl != IGNORE
            t_labels, t_weight = tgt_lbl, self._mean_weights(active, w.active)
            if w.pseudo > 0 and conf is not None and arg is not None:
                pl = confident_labels(conf, arg, w.pseudo_threshold, IGNORE)
                pl = torch.where(active, torch.full_like(pl, IGNORE), pl)  # only unlabelled pixels
                t_labels = torch.where(active, tgt_lbl, pl)
                t_weight = t_weight + self._mean_weights(pl != IGNORE, w.pseudo)
            labels.append(t_labels)
            weight.append(t_weight)
        per_pixel = F.cross_entropy(logits, torch.cat(labels), ignore_index=IGNORE, reduction="none")  # 0: ignored
        supervised = (per_pixel * torch.cat(weight)).sum()
        with torch.no_grad():  # the logged terms, unweighted means
            ce_src = self._masked_mean(per_pixel[:ns], src_lbl != IGNORE) if ns else per_pixel.new_zeros(())
            ce_tgt = self._masked_mean(per_pixel[ns:], tgt_lbl != IGNORE) if not self.source_only else ce_src * 0
        mcu = supervised.new_zeros(())
        if (
            contrastive is not None
            and feats is not None
            and w.mcu > 0
            and not self.target_only
            and not self.source_only
        ):
            cfg = contrastive.config
            unit_labels = tgt_lbl
            if cfg.use_pseudo and conf is not None and arg is not None:
                thr = confident_labels(conf, arg, cfg.pseudo_threshold, IGNORE)
                unit_labels = torch.where(tgt_lbl != IGNORE, tgt_lbl, thr)
            size = (int(feats.shape[-2]), int(feats.shape[-1]))
            k = self.num_classes
            ls = downsample_labels(src_lbl, size, k)
            lt = downsample_labels(unit_labels, size, k, sparse=True)
            probs = None
            if cfg.correlation == "confusion":  # only that estimator needs the source softmax
                small = F.interpolate(logits[:ns].detach(), size=size, mode="bilinear", align_corners=False)
                probs = F.softmax(small, dim=1)
            mcu, _ = contrastive(feats[:ns], ls, feats[ns:], lt, probs_src=probs, generator=generator)
        loss = supervised + w.mcu * mcu
        n = torch.tensor(float(images.shape[0]), device=device)
        stats = {
            "loss": loss.detach() * n,
            "ce_src": ce_src.detach() * n,
            "ce_tgt": ce_tgt.detach() * n,
            "mcu": torch.as_tensor(mcu).detach() * n,
            "count": n,
        }
        return loss, stats

    @staticmethod
    def _mean_weights(mask: torch.Tensor, scale: float) -> torch.Tensor:
        """Per-pixel weights that turn a sum over ``mask`` into ``scale`` times its mean (zeros if it is empty)."""
        return mask.float() * (scale / max(int(mask.sum()), 1))

    @staticmethod
    def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (values * mask).sum() / mask.sum().clamp_min(1)

    def _contrastive(self, model: nn.Module) -> MultiLevelContrastiveLoss | None:
        return getattr(_unwrap(model), "contrastive", None) if self.use_mcu else None

    def log_row(self, totals: Mapping[str, float]) -> dict[str, float]:
        """Mean ``loss``, ``ce_src``, ``ce_tgt`` and ``mcu`` over the window."""
        n = max(totals.get("count", 0.0), 1.0)
        return {k: totals.get(k, 0.0) / n for k in ("loss", "ce_src", "ce_tgt", "mcu")}

    def make_accumulators(self) -> dict[str, Any]:
        """One :class:`~pickwise.metrics.segmentation.SegmentationMetric`."""
        from ...metrics.segmentation import SegmentationMetric

        return {"seg": SegmentationMetric(self.num_classes, ignore_index=IGNORE)}

    @torch.no_grad()
    def evaluation_step(self, model: nn.Module, batch: Any, device: torch.device, accumulators: dict[str, Any]) -> None:
        """Add one ``(image, label, index)`` batch to the confusion matrix."""
        images, labels = batch[0].to(device), batch[1].to(device)
        logits, _ = model_outputs(model, images)
        accumulators["seg"].update(logits.float(), labels)

    def compute(self, accumulators: dict[str, Any]) -> dict[str, float]:
        """``mIoU``, ``pixel_acc``, ``mean_acc`` and ``IoU/<i>`` (fractions; NaN for classes absent everywhere)."""
        return dict(accumulators["seg"].compute())
