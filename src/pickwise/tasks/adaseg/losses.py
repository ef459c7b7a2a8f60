"""Segmentation losses of active domain adaptation: masked cross-entropy and confidence-thresholded pseudo-labels.

The ADA-MCU objective (Zhang et al., ACCV 2022; weights **reconstructed**, see :class:`LossWeights`)::

    L = L_ce(source) + lambda_active L_ce(target, active labels) + lambda_pseudo L_ce(target, pseudo-labels)
        + sum_levels (lambda_cc L_cc + lambda_pp L_pp)          (the MCU part, pickwise.tasks.adaseg.contrastive)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["LossWeights", "confident_labels", "masked_cross_entropy", "pseudo_labels"]


@dataclass
class LossWeights:
    """Weights of the supervised terms (reconstructed defaults).

    Attributes:
        source: Source cross-entropy; 1.0 (the usual DA recipe).
        active: Cross-entropy on actively labelled target pixels; 1.0 (RIPU weights its active CE as the source CE).
        pseudo: Cross-entropy on confident target pseudo-labels; 0.0 (off: optional in the reconstructed method).
        pseudo_threshold: Confidence a pseudo-label needs; 0.9.
        mcu: Global factor on the multi-level contrastive loss; 1.0 (its per-term weights live in MCUConfig).
    """

    source: float = 1.0
    active: float = 1.0
    pseudo: float = 0.0
    pseudo_threshold: float = 0.9
    mcu: float = 1.0


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Mean cross-entropy over the non-ignored pixels; an exact zero (with a graph) when there are none.

    ``F.cross_entropy`` returns NaN when every pixel is ignored (0/0); a target batch without active labels is
    normal in active learning, so this returns ``0 * logits.sum()`` instead.

    Example:
        >>> masked_cross_entropy(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 255)).item()
        0.0
    """
    valid = labels != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=ignore_index)


@torch.no_grad()
def pseudo_labels(logits: torch.Tensor, threshold: float, ignore_index: int = 255) -> torch.Tensor:
    """Arg-max labels where the top softmax probability is >= ``threshold``, ``ignore_index`` elsewhere."""
    return confident_labels(*F.softmax(logits.float(), dim=1).max(1), threshold, ignore_index)


def confident_labels(
    confidence: torch.Tensor, label: torch.Tensor, threshold: float, ignore_index: int = 255
) -> torch.Tensor:
    """``label`` where ``confidence >= threshold``, ``ignore_index`` elsewhere (one softmax, several thresholds)."""
    return torch.where(confidence >= threshold, label, torch.full_like(label, ignore_index))
