"""Video re-ID as an engine task: PK batches of clips in, per-stage ID + triplet (+ centre) losses, retrieval out.

Training batches are ``(clips float[B, T, 3, H, W], pids long[B], camids long[B])`` from a PK sampler; the model's
training output is ``{"logits": [...], "features": [...]}`` (one entry per stage) and the loss is
:func:`~pickwise.tasks.reid.losses.reid_loss`. Evaluation batches come from :class:`QueryGalleryDataset`:
``(clip, pid, camid, is_query, index)``; the model's eval output (the fused embedding) goes to a
:class:`~pickwise.metrics.retrieval.RetrievalAccumulator` with the dataset index, whose ``sync`` all-gathers over
processes and orders by index, so a distributed evaluation equals the single-process one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ...engine.params import ParamGroup
from ...exceptions import ShapeError
from .config import ReIDEvalConfig, ReIDLossConfig
from .losses import CenterLoss, reid_loss

__all__ = ["QueryGalleryDataset", "ReIDNet", "ReIDTask"]


class ReIDNet(nn.Module):
    """A re-ID backbone plus the training-only state of its losses (the centre-loss centres).

    Keeping the centres in the trained module makes the engine checkpoint and optimize them with the model (in their
    own parameter group, see :meth:`ReIDTask.param_groups`); ``backbone`` alone is the deployable network.

    Args:
        backbone: A model with ``forward(x [B, T, 3, H, W], camids=None)`` returning the training dict or, in eval
            mode, the ``[B, D]`` embedding.
        centers: One :class:`~pickwise.tasks.reid.losses.CenterLoss` per feature head, or None.
    """

    def __init__(self, backbone: nn.Module, centers: Sequence[CenterLoss] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.centers = nn.ModuleList(centers) if centers else None

    def forward(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> Any:
        """The backbone's output (training dict or eval embedding)."""
        return self.backbone(x, camids)


class QueryGalleryDataset(Dataset):
    """Query then gallery clips as one evaluation set: ``(clip, pid, camid, is_query, index)``.

    Args:
        query: Clip dataset of the query tracklets (items ``(clip, pid, camid)``).
        gallery: Clip dataset of the gallery tracklets.
    """

    def __init__(self, query: Dataset, gallery: Dataset) -> None:
        self.query, self.gallery = query, gallery
        self.num_query = len(query)  # type: ignore[arg-type]
        self.num_gallery = len(gallery)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.num_query + self.num_gallery

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, bool, int]:
        if index < self.num_query:
            clip, pid, camid = self.query[index][:3]
            return clip, pid, camid, True, index
        clip, pid, camid = self.gallery[index - self.num_query][:3]
        return clip, pid, camid, False, index


class ReIDTask:
    """Per-stage identity + triplet (+ centre) training and CMC/mAP/mINP evaluation (the engine's accumulator task).

    Args:
        loss: The loss weights and options (:class:`~pickwise.tasks.reid.config.ReIDLossConfig`).
        evaluation: Retrieval settings (:class:`~pickwise.tasks.reid.config.ReIDEvalConfig`).
        accumulator_factory: Builds the retrieval accumulator (default:
            :class:`~pickwise.metrics.retrieval.RetrievalAccumulator` with ``evaluation``'s metric and re-ranking).

    Attributes:
        last_accumulator: The synced accumulator of the latest evaluation (distances and ids for figures).

    Example:
        >>> import torch
        >>> class Toy(torch.nn.Module):
        ...     def forward(self, x, camids=None):
        ...         return x.mean(dim=(1, 3, 4))
        >>> task = ReIDTask()
        >>> accs = task.make_accumulators()
        >>> clips = torch.zeros(4, 2, 3, 4, 2)
        >>> clips[0, :, 0] = clips[2, :, 0] = clips[1, :, 1] = clips[3, :, 1] = 1.0
        >>> batch = (clips, torch.tensor([1, 2, 1, 2]), torch.tensor([0, 0, 1, 1]),
        ...          torch.tensor([True, True, False, False]), torch.arange(4))
        >>> task.evaluation_step(Toy().eval(), batch, torch.device("cpu"), accs)
        >>> round(task.compute(accs)["rank1"], 2)
        1.0
    """

    def __init__(
        self,
        loss: ReIDLossConfig | None = None,
        evaluation: ReIDEvalConfig | None = None,
        accumulator_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.loss = loss if loss is not None else ReIDLossConfig()
        self.evaluation = evaluation if evaluation is not None else ReIDEvalConfig()
        self.accumulator_factory = accumulator_factory
        self.last_accumulator: Any = None

    # ------------------------------------------------------------------ training
    def training_loss(
        self, model: nn.Module, batch: Any, device: torch.device, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The summed per-stage loss of one PK batch, and loss/accuracy sums for the log."""
        clips, pids, camids = batch[0], batch[1], batch[2]
        clips = clips.to(device, non_blocking=True)
        pids = torch.as_tensor(pids).to(device, non_blocking=True)
        camids = torch.as_tensor(camids).to(device, non_blocking=True)
        outputs = model(clips, camids)
        if not isinstance(outputs, dict):
            raise ShapeError(
                "reid: the model's training-mode output must be {'logits': [...], 'features': [...]}; got "
                f"{type(outputs).__name__} (is it a re-ID model?)"
            )
        net = getattr(model, "module", model)
        centers = getattr(net, "centers", None)
        parts = reid_loss(
            outputs,
            pids,
            id_weight=self.loss.id_weight,
            triplet_weight=self.loss.triplet_weight,
            center_weight=self.loss.center_weight,
            stage_weights=self.loss.stage_weights,
            label_smoothing=self.loss.label_smoothing,
            margin=self.loss.margin,
            metric=self.loss.metric,
            centers=list(centers) if centers is not None else None,
        )
        n = torch.tensor(float(pids.numel()), device=device)
        stats = {k: torch.tensor(float(parts[k]), device=device) * n for k in ("id", "triplet", "center", "acc")}
        stats["triplet_acc"] = torch.tensor(float(parts["triplet_acc"]), device=device) * n
        stats["loss"] = parts["loss"].detach().float() * n
        stats["count"] = n
        return parts["loss"], stats

    def log_row(self, totals: Mapping[str, float]) -> dict[str, float]:
        """``loss``, ``id``, ``triplet`` (and ``center``) means, ``acc`` (ID top-1) and ``triplet_acc`` of a window."""
        n = max(totals.get("count", 0.0), 1.0)
        row = {k: totals.get(k, 0.0) / n for k in ("loss", "id", "triplet", "acc", "triplet_acc")}
        if self.loss.center_weight > 0:
            row["center"] = totals.get("center", 0.0) / n
        return row

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        """The centres' own group (no weight decay, ``loss.center_lr_mult``), when the model holds centres."""
        if getattr(model, "centers", None) is None:
            return []
        return [
            ParamGroup(
                "reid-centers",
                lambda name, p: name.startswith("centers."),
                lr_mult=self.loss.center_lr_mult,
                weight_decay=0.0,
            )
        ]

    # ------------------------------------------------------------------ evaluation
    def make_accumulators(self) -> dict[str, Any]:
        """``{"retrieval": RetrievalAccumulator(metric, rerank, max_rank)}``."""
        if self.accumulator_factory is not None:
            return {"retrieval": self.accumulator_factory()}
        from ...metrics.retrieval import RetrievalAccumulator

        ev = self.evaluation
        return {"retrieval": RetrievalAccumulator(metric=ev.metric, rerank=ev.rerank, max_rank=ev.max_rank)}

    @torch.no_grad()
    def evaluation_step(self, model: nn.Module, batch: Any, device: torch.device, accumulators: dict[str, Any]) -> None:
        """Embed one batch of query/gallery clips and add them (with pid, camid, is_query, index)."""
        if len(batch) != 5:
            raise ShapeError(
                f"reid: evaluation batches must be (clip, pid, camid, is_query, index); got {len(batch)} items"
            )
        clips, pids, camids, is_query, index = batch
        camids = torch.as_tensor(camids)
        k = int(self.evaluation.test_clips)
        if k > 1:  # (B, k*T, ...) -> (B*k, T, ...): k consecutive clips per tracklet, embeddings averaged
            if clips.shape[1] % k:
                raise ShapeError(f"reid: eval.test_clips={k} needs k*T frames per tracklet; got {clips.shape[1]}")
            b = clips.shape[0]
            clips = clips.reshape(b * k, clips.shape[1] // k, *clips.shape[2:])
            feats = model(clips.to(device, non_blocking=True), camids.repeat_interleave(k).to(device))
            feats = feats.reshape(b, k, -1).mean(1) if isinstance(feats, torch.Tensor) and feats.ndim == 2 else feats
        else:
            feats = model(clips.to(device, non_blocking=True), camids.to(device, non_blocking=True))
        if not isinstance(feats, torch.Tensor) or feats.ndim != 2:
            raise ShapeError(
                "reid: the model's eval-mode output must be a (B, D) embedding; got "
                f"{type(feats).__name__}{'' if not isinstance(feats, torch.Tensor) else tuple(feats.shape)}"
            )
        accumulators["retrieval"].update(
            feats.float().cpu(), torch.as_tensor(pids), camids, torch.as_tensor(is_query), index=torch.as_tensor(index)
        )

    def compute(self, accumulators: dict[str, Any]) -> dict[str, float]:
        """``rank1/5/10/20``, ``mAP``, ``mINP`` (fractions) and the valid/skipped query counts."""
        self.last_accumulator = accumulators["retrieval"]
        return {k: float(v) for k, v in accumulators["retrieval"].compute().items()}
