r"""The paper's complexity measure ζ and its resource-constrained objective for DGConv models.

Paper Eq. (9): :math:`\zeta = \sum_\ell \zeta_\ell` with
:math:`\zeta_\ell = C^\ell \prod_k (1 + g^\ell_k) = C_\ell^2 / G_\ell` = nnz(U_ℓ) (here generalized to
``C_in * C_out / G``), and the objective
:math:`\mathcal{L} \cdot [o / \zeta]^a` subject to :math:`\zeta \le o` (MnasNet-style soft constraint).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...exceptions import InvalidParameterError
from .._validation import check_float, positive_float, positive_int
from .dgconv import DGConv2d

__all__ = ["ResourceConstraint", "complexity", "dense_complexity", "group_budget", "learned_groups"]


def _dgconvs(model: nn.Module, where: str) -> list[tuple[str, DGConv2d]]:
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, DGConv2d)]
    if not layers:
        raise InvalidParameterError(f"{where}: model ({type(model).__name__}) has no DGConv2d layers")
    return layers


def complexity(model: nn.Module) -> torch.Tensor:
    r"""ζ = Σ_ℓ C_in^ℓ C_out^ℓ / G_ℓ over the model's DGConv layers, differentiable w.r.t. the gate logits (STE).

    Raises:
        InvalidParameterError: If the model has no DGConv2d layer.
    """
    layers = _dgconvs(model, "complexity")
    return torch.stack([m.complexity() for _, m in layers]).sum()


def dense_complexity(model: nn.Module) -> float:
    """ζ of the same model with every layer dense (``G = 1``): ``Σ C_in C_out``."""
    return float(sum(m.in_channels * m.out_channels for _, m in _dgconvs(model, "dense_complexity")))


def group_budget(model: nn.Module, groups: int) -> float:
    """ζ of the model if every DGConv had ``groups`` groups: ``Σ C_in C_out / groups``.

    ``group_budget(model, 32)`` is "the cost of ResNeXt's 32 groups", the third-party reproduction's target.
    """
    groups = positive_int("group_budget", "groups", groups)
    return dense_complexity(model) / groups


def learned_groups(model: nn.Module) -> dict[str, int]:
    """Learned group count of every DGConv layer, by module name (reads the gates to the host)."""
    return {n: m.groups for n, m in _dgconvs(model, "learned_groups")}


class ResourceConstraint:
    r"""Multiplicative soft constraint :math:`\mathcal{L}' = \mathcal{L} \cdot [o/\zeta]^{a}` (paper Sec. 3).

    .. math:: a = \begin{cases} 0 & \zeta \le o \\ \text{exponent} & \zeta > o \end{cases}

    so the loss is unchanged inside the budget and grows as ζ exceeds it (``exponent < 0``).

    Note:
        The paper's exact exponent is not reproduced in our sources; the default ``-0.02`` and the
        "0 inside the budget" rule are those of the third-party reproduction ``longxianlei/G-ResNeXt_GroupNet``
        ([reconstructed], see ``docs/dgconv.md``). MnasNet uses ``a = -0.07`` with the same form.

    Args:
        target: The budget ``o`` (e.g. :func:`group_budget` ``(model, 32)``).
        exponent: ``a`` applied when ζ > o; must be ``<= 0``. Default: ``-0.02``.

    Example:
        >>> rc = ResourceConstraint(100.0)
        >>> float(rc.factor(torch.tensor(50.0))), round(float(rc.factor(torch.tensor(200.0))), 4)
        (1.0, 1.014)
    """

    def __init__(self, target: float, exponent: float = -0.02) -> None:
        self.target = positive_float("ResourceConstraint", "target", target, expected="a positive number")
        self.exponent = check_float(
            "ResourceConstraint", "exponent", exponent, high=0.0, expected="a number <= 0 (a penalty above the budget)"
        )

    def factor(self, zeta: torch.Tensor) -> torch.Tensor:
        """``[o / ζ]^a`` with ``a = 0`` inside the budget (branch-free, so it compiles)."""
        a = torch.where(zeta > self.target, torch.full_like(zeta, self.exponent), torch.zeros_like(zeta))
        return (self.target / zeta) ** a

    def __call__(self, loss: torch.Tensor, model_or_zeta: nn.Module | torch.Tensor) -> torch.Tensor:
        """Return ``loss * factor(ζ)``; pass the model (ζ is computed) or a precomputed ζ tensor."""
        zeta = complexity(model_or_zeta) if isinstance(model_or_zeta, nn.Module) else model_or_zeta
        return loss * self.factor(zeta.to(loss.dtype))

    def __repr__(self) -> str:
        return f"ResourceConstraint(target={self.target:g}, exponent={self.exponent:g})"

    def state(self) -> dict[str, Any]:
        """Plain-dict view for logging."""
        return {"target": self.target, "exponent": self.exponent}
