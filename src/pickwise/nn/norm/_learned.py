"""Duck-typed helpers shared by the model-level utilities: which modules are learned-normalizer mixtures."""

from __future__ import annotations

from torch import nn

__all__ = ["MIXTURE_LOGIT_NAMES", "is_batch_norm", "is_learned_norm"]

# static mixture logits: SN/SSN's separate mean and variance logits, EN's static ratio logits
MIXTURE_LOGIT_NAMES = ("mean_weight", "var_weight", "ratio_weight")


def is_learned_norm(module: nn.Module) -> bool:
    """True for SN/SSN/EN-style layers: they expose ``normalizers`` (names) and ``ratios()`` (mixture weights)."""
    normalizers = getattr(module, "normalizers", None)
    return isinstance(normalizers, tuple) and len(normalizers) > 1 and callable(getattr(module, "ratios", None))


def is_batch_norm(module: nn.Module) -> bool:
    """True for torch BatchNorm1d/2d/3d and SyncBatchNorm (and subclasses); the one place that names ``_BatchNorm``."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm)
