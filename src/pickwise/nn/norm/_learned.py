"""Duck-typed helpers shared by the model-level utilities (kept for imports; the definitions live in the registry).

:func:`is_batch_norm`, :func:`is_learned_norm` and :data:`MIXTURE_LOGIT_NAMES` are defined once, in
:mod:`pickwise.nn.norm.registry`, next to the metadata that decides which layers convert.
"""

from __future__ import annotations

from .registry import MIXTURE_LOGIT_NAMES, is_batch_norm, is_convertible_norm, is_learned_norm

__all__ = ["MIXTURE_LOGIT_NAMES", "is_batch_norm", "is_convertible_norm", "is_learned_norm"]
