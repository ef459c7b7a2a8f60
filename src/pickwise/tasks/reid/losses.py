"""Re-ID training losses: label-smoothed identity cross-entropy, batch-hard triplet, centre loss, and their sum.

MSTAT (Tang et al., IEEE TMM 2023) trains each of its stages with an identity loss on the BNNeck output and a metric
loss on the pre-BNNeck feature. Its exact weights are not public, so the combination here follows the verified
transformer re-ID recipes (TransReID ``make_loss``, TF-CLIP, VID-Trans-ReID) and every choice is a parameter:

- identity: ``L_id = -Σ_i q_i log p_i`` with ``q_i = 1 - ε + ε/N`` for the true class and ``ε/N`` otherwise
  (Szegedy et al. 2016; ε = 0.1 in TransReID/TF-CLIP);
- triplet, batch-hard (Hermans et al. 2017): for each anchor ``a`` the hardest positive ``max_p d(a, p)`` and hardest
  negative ``min_n d(a, n)`` in the batch; ``[m + d_ap - d_an]_+`` with a margin, ``log(1 + exp(d_ap - d_an))``
  (soft margin) without one;
- centre (Wen et al., ECCV 2016): ``½ ‖x_i - c_{y_i}‖²`` averaged over the batch, with learnable class centres.

Per stage ``s`` the loss is ``w_s (λ_id L_id^s + λ_tri L_tri^s + λ_c L_c^s)``; the stage weights ``w_s`` default to
``1/S`` (a mean, reconstructed: it keeps the loss scale of a 1-stage ablation or a one-head baseline equal to the
full model's; TransReID averages its local branches the same way).

Example:
    >>> import torch
    >>> x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]])
    >>> pids = torch.tensor([0, 0, 1, 1])
    >>> round(float(batch_hard_triplet_loss(x, pids, margin=0.3)), 4)  # d_ap = 1, d_an = 3 for every anchor
    0.0
    >>> round(float(label_smoothed_cross_entropy(torch.zeros(1, 4), torch.tensor([2]), epsilon=0.1)), 4)
    1.3863
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...exceptions import InvalidParameterError, ShapeError

__all__ = [
    "CenterLoss",
    "ReIDLossOutput",
    "batch_hard_triplet_loss",
    "label_smoothed_cross_entropy",
    "pairwise_distances",
    "reid_loss",
]


def label_smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Mean cross-entropy against smoothed one-hot targets ``q = (1 - ε) onehot + ε/N``.

    Args:
        logits: ``[B, N]`` class scores.
        targets: ``[B]`` class indices in ``[0, N)``.
        epsilon: Smoothing ε in ``[0, 1)``; 0 is the plain cross-entropy.

    Returns:
        Scalar mean loss (computed in float32 or wider).
    """
    if logits.ndim != 2 or targets.ndim != 1 or logits.shape[0] != targets.shape[0]:
        raise ShapeError(
            f"label_smoothed_cross_entropy: expected logits [B, N] and targets [B]; got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if not 0.0 <= epsilon < 1.0:
        raise InvalidParameterError(f"label_smoothed_cross_entropy: epsilon must be in [0, 1); got {epsilon}")
    log_p = F.log_softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=1)
    nll = -log_p.gather(1, targets[:, None]).squeeze(1)
    uniform = -log_p.mean(dim=1)
    return ((1.0 - epsilon) * nll + epsilon * uniform).mean()


def pairwise_distances(x: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """``[B, B]`` distances between the rows of ``x``: Euclidean (``sqrt`` clamped at 1e-12) or ``1 - cos``."""
    if metric == "euclidean":
        sq = (x * x).sum(1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * x @ x.t()
        return d2.clamp_min(1e-12).sqrt()
    if metric == "cosine":
        xn = F.normalize(x, dim=1)
        return 1.0 - xn @ xn.t()
    raise InvalidParameterError(f"pairwise_distances: metric must be 'euclidean' or 'cosine'; got {metric!r}")


def batch_hard_triplet_loss(
    features: torch.Tensor,
    pids: torch.Tensor,
    margin: float | None = 0.3,
    metric: str = "euclidean",
    *,
    return_stats: bool = False,
) -> Any:
    """Batch-hard triplet loss (Hermans et al., 2017) over one PK batch.

    For each anchor ``a``: ``d_ap = max_{p: y_p = y_a} d(a, p)`` (the anchor itself counts, at distance 0, so an
    anchor without another positive still has a term, as in torchreid and fast-reid) and
    ``d_an = min_{n: y_n ≠ y_a} d(a, n)``. Anchors without any negative (a batch of one identity) are left out; with
    none left the loss is 0 (still connected to the graph).

    Args:
        features: ``[B, D]`` embeddings (MSTAT: each stage's pre-BNNeck feature).
        pids: ``[B]`` identity labels.
        margin: ``m`` of ``[m + d_ap - d_an]_+``; None or 0: the soft margin ``log(1 + exp(d_ap - d_an))``.
        metric: ``euclidean`` or ``cosine`` (``1 - cos``).
        return_stats: Also return the fraction of anchors with ``d_an > d_ap`` (a "triplet accuracy").

    Returns:
        The mean loss over valid anchors, or ``(loss, accuracy)`` with ``return_stats``.
    """
    if features.ndim != 2 or pids.ndim != 1 or features.shape[0] != pids.shape[0]:
        raise ShapeError(
            f"batch_hard_triplet_loss: expected features [B, D] and pids [B]; got {tuple(features.shape)} and "
            f"{tuple(pids.shape)}"
        )
    if margin is not None and margin < 0:
        raise InvalidParameterError(f"batch_hard_triplet_loss: margin must be >= 0 or None; got {margin}")
    x = features.float() if features.dtype in (torch.float16, torch.bfloat16) else features
    dist = pairwise_distances(x, metric)
    same = pids[:, None] == pids[None, :]
    d_ap = dist.masked_fill(~same, float("-inf")).amax(dim=1)
    d_an = dist.masked_fill(same, float("inf")).amin(dim=1)
    valid = (~same).any(dim=1)
    if not bool(valid.any()):
        loss = x.sum() * 0.0
        return (loss, torch.zeros((), device=x.device)) if return_stats else loss
    d_ap, d_an = d_ap[valid], d_an[valid]
    if margin:
        loss = F.relu(margin + d_ap - d_an).mean()
    else:
        loss = F.softplus(d_ap - d_an).mean()
    if return_stats:
        return loss, (d_an > d_ap).float().mean().detach()
    return loss


class CenterLoss(nn.Module):
    """Centre loss (Wen et al., ECCV 2016): ``L_c = ½ mean_i ‖x_i - c_{y_i}‖²`` with learnable centres ``[N, D]``.

    The centres are parameters of this module, so they are checkpointed with the model and optimized by the
    engine's optimizer in their own group (see :func:`center_param_group`): no weight decay, learning rate
    ``optim.lr × center_lr_mult``. As in the paper's separate centre update (and torchreid's / VID-Trans-ReID's
    ``grad *= 1 / weight`` before their centre optimizer), the centres receive the gradient of the **unweighted**
    loss, ``∂L_c/∂c_j = -(1/B) Σ_{i: y_i = j} (x_i - c_j)``, whatever ``weight`` scales the features' gradient with:
    :meth:`weighted` returns ``weight · L_c`` in value, but only the features' part is scaled.

    Args:
        num_classes: Number of training identities N.
        dim: Feature dimension D.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        if num_classes < 1 or dim < 1:
            raise InvalidParameterError(f"CenterLoss: num_classes and dim must be >= 1; got {num_classes}, {dim}")
        self.centers = nn.Parameter(torch.randn(num_classes, dim) * 0.01)

    def forward(self, features: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        """``½ mean_i ‖x_i - c_{y_i}‖²`` (gradients flow to both features and centres)."""
        if features.ndim != 2 or features.shape[1] != self.centers.shape[1] or features.shape[0] != pids.shape[0]:
            raise ShapeError(
                f"CenterLoss: expected features [B, {self.centers.shape[1]}] and pids [B]; got "
                f"{tuple(features.shape)} and {tuple(pids.shape)}"
            )
        return self._loss(features, self.centers, pids)

    def weighted(self, features: torch.Tensor, pids: torch.Tensor, weight: float) -> torch.Tensor:
        """``weight · L_c`` in value; features get ``weight · ∂L_c/∂x``, centres the unweighted ``∂L_c/∂c``."""
        to_features = self._loss(features, self.centers.detach(), pids)
        to_centers = self._loss(features.detach(), self.centers, pids)
        return weight * to_features + (to_centers - to_centers.detach())

    @staticmethod
    def _loss(features: torch.Tensor, centers: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        diff = features - centers[pids]
        if diff.dtype in (torch.float16, torch.bfloat16):
            diff = diff.float()
        return 0.5 * (diff**2).sum(1).mean()


class ReIDLossOutput(dict):
    """The total loss and its detached parts: ``{"loss", "id", "triplet", "center", "acc", "triplet_acc"}``."""


def reid_loss(
    outputs: dict[str, Sequence[torch.Tensor]],
    pids: torch.Tensor,
    *,
    id_weight: float = 1.0,
    triplet_weight: float = 1.0,
    center_weight: float = 0.0,
    stage_weights: Sequence[float] | None = None,
    label_smoothing: float = 0.1,
    margin: float | None = 0.3,
    metric: str = "euclidean",
    centers: Sequence[CenterLoss] | None = None,
) -> ReIDLossOutput:
    """Sum of the per-stage losses of a multi-stage re-ID model.

    Args:
        outputs: The training-mode output ``{"logits": [Tensor[B, N]] * S, "features": [Tensor[B, D_s]] * S}``.
        pids: ``[B]`` training identity labels (relabelled ``0..N-1``).
        id_weight: λ_id of the label-smoothed cross-entropy.
        triplet_weight: λ_tri of the batch-hard triplet loss.
        center_weight: λ_c of the centre loss (needs ``centers``, one per stage).
        stage_weights: ``w_s`` per stage; None: ``1/S`` each.
        label_smoothing: ε of the identity loss.
        margin: Triplet margin (None/0: soft margin).
        metric: Triplet distance, ``euclidean`` or ``cosine``.
        centers: One :class:`CenterLoss` per stage (used when ``center_weight > 0``).

    Returns:
        A :class:`ReIDLossOutput` whose ``"loss"`` carries the graph; the other entries are detached means over
        stages: ``id``, ``triplet``, ``center`` (unweighted), ``acc`` (top-1 of the last head on the batch) and
        ``triplet_acc``.
    """
    if not isinstance(outputs, dict) or "logits" not in outputs or "features" not in outputs:
        raise ShapeError(
            "reid_loss: the model's training output must be a dict with 'logits' and 'features' lists; got "
            f"{type(outputs).__name__}"
        )
    logits, feats = list(outputs["logits"]), list(outputs["features"])
    stages = max(len(logits), len(feats))
    if stages == 0:
        raise ShapeError("reid_loss: the model returned no logits and no features")
    if stage_weights is None:
        weights = [1.0 / stages] * stages
    else:
        weights = [float(w) for w in stage_weights]
        if len(weights) != stages:
            raise InvalidParameterError(
                f"reid_loss: {len(weights)} stage weights for a model with {stages} heads; give {stages} or none"
            )
    if center_weight > 0 and (centers is None or len(centers) != len(feats)):
        raise InvalidParameterError(
            f"reid_loss: center_weight > 0 needs one CenterLoss per feature head ({len(feats)})"
        )
    total = pids.new_zeros((), dtype=torch.float32)
    parts = {"id": 0.0, "triplet": 0.0, "center": 0.0, "triplet_acc": 0.0}
    for s in range(stages):
        w = weights[s]
        if s < len(logits) and id_weight:
            l_id = label_smoothed_cross_entropy(logits[s], pids, label_smoothing)
            total = total + w * id_weight * l_id
            parts["id"] += float(l_id.detach()) / len(logits)
        if s < len(feats) and triplet_weight:
            l_tri, t_acc = batch_hard_triplet_loss(feats[s], pids, margin, metric, return_stats=True)
            total = total + w * triplet_weight * l_tri
            parts["triplet"] += float(l_tri.detach()) / len(feats)
            parts["triplet_acc"] += float(t_acc) / len(feats)
        if s < len(feats) and center_weight > 0 and centers is not None:
            term = centers[s].weighted(feats[s], pids, w * center_weight)
            total = total + term
            parts["center"] += float(centers[s](feats[s].detach(), pids).detach()) / len(feats)
    acc = float((logits[-1].detach().argmax(1) == pids).float().mean()) if logits else 0.0
    out = ReIDLossOutput(loss=total, acc=acc, **parts)
    return out
