r"""Population Normalization (PN) and the explicit gamma-decay regularizer.

Paper: ``luo2019towards``: P. Luo, X. Wang, W. Shao and Z. Peng, "Towards Understanding Regularization in Batch
Normalization", ICLR 2019, https://arxiv.org/abs/1809.00846

The paper decomposes BN into PN (normalization by population statistics) plus an implicit "gamma decay" whose
strength scales as 1/batch size. :class:`PopulationNorm2d` is the first part; :func:`gamma_decay_penalty` makes the
second explicit. The exact constants of the paper's ζ(h) are not reproduced here (see ``docs/layers.md``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...exceptions import InvalidParameterError
from .._validation import nonnegative_float, nonnegative_int, positive_int
from ..functional.population import population_norm
from ._base import LearnedNormBase
from .registry import register_norm_layer

__all__ = ["PopulationNorm2d", "gamma_decay_param_groups", "gamma_decay_penalty"]


class PopulationNorm2d(LearnedNormBase):
    r"""Population Normalization: normalize with the running (population) statistics, in training too.

    Paper: P. Luo et al., "Towards Understanding Regularization in Batch Normalization", ICLR 2019,
    https://arxiv.org/abs/1809.00846

    .. math::
        y = \gamma \frac{x - \mu_P}{\sqrt{\sigma_P^2 + \epsilon}} + \beta

    :math:`(\mu_P, \sigma_P^2)` are ``running_mean``/``running_var`` as they were *before* this batch; in training
    they are then updated from the detached batch statistics (PyTorch momentum convention, unbiased variance), so
    no gradient flows through them. The first ``warmup_steps`` training steps normalize with the batch statistics
    instead (plain BN, with gradient), because the population estimates lag at the start. In eval the layer equals
    :class:`torch.nn.BatchNorm2d` in eval with the same buffers. Pair it with :func:`gamma_decay_penalty`.

    Args:
        num_features: Number of channels ``C``.
        eps: Added to the variance. Default: ``1e-5``.
        momentum: Running-average factor (PyTorch convention); ``None`` = cumulative average. Default: ``0.1``.
        affine: Learn ``weight``/``bias``. Default: ``True``.
        track_running_stats: Must be ``True`` (PN *is* normalization by running statistics). Default: ``True``.
        warmup_steps: Training steps normalized with batch statistics. Default: ``0``.
        device: Factory keyword.
        dtype: Factory keyword.

    Shape:
        - Input: ``(N, C, H, W)``
        - Output: same shape, dtype and memory format.
    """

    _input_ranks = (4,)
    _shape_hint = "(N, C, H, W)"
    # PN always tracks its population statistics (track_running_stats must be True)
    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        warmup_steps: int = 0,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if not track_running_stats:
            raise InvalidParameterError(
                "PopulationNorm2d: track_running_stats must be True (PN normalizes with running statistics); got False"
            )
        warmup_steps = nonnegative_int(type(self).__name__, "warmup_steps", warmup_steps)
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, normalizers=None, device=device, dtype=dtype
        )
        self.warmup_steps = warmup_steps
        self.reset_parameters()

    def _needs_running_stats(self) -> bool:
        return True

    def forward(self, input: Tensor) -> Tensor:
        """Normalize with the population statistics (batch statistics during warm-up) and update them."""
        self._check_input(input)
        factor = self._update_factor()
        warmup: bool | Tensor = False
        if self.training and self.warmup_steps > 0:
            warmup = self.num_batches_tracked <= self.warmup_steps
        return population_norm(
            input,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training,
            factor,
            self.eps,
            warmup=warmup,
            channel_last=self.channel_last,
            batch_stats=self._batch_stats_fn(),
        )

    def extra_repr(self) -> str:
        """Constructor arguments, torch style."""
        return super().extra_repr() + (f", warmup_steps={self.warmup_steps}" if self.warmup_steps else "")


def _gamma_layers(model: nn.Module, layer_types: tuple[type, ...] | None) -> list[Any]:
    types = layer_types or (PopulationNorm2d,)
    return [m for m in model.modules() if isinstance(m, types) and getattr(m, "weight", None) is not None]


def gamma_decay_penalty(
    model: nn.Module,
    coeff: float,
    *,
    batch_size: int | None = None,
    scale_with_batch: bool = True,
    layer_types: tuple[type, ...] | None = None,
) -> Tensor:
    r"""Explicit gamma-decay regularizer of BN's decomposition, ``ζ · Σ_layers Σ_c γ_c²`` (differentiable).

    .. math::
        \Omega = \zeta \sum_{\ell} \lVert \gamma_\ell \rVert_2^2, \qquad
        \zeta = \begin{cases} \text{coeff} / M & \text{scale\_with\_batch and } M = \text{batch\_size given} \\
        \text{coeff} & \text{otherwise} \end{cases}

    The paper derives a per-layer ζ(h) ∝ 1/M that also grows with the kurtosis of the normalized pre-activation
    and depends on the curvature of the nonlinearity; those constants are not reproduced (reconstructed design:
    one shared ``coeff``, optional 1/M scaling). Add the result to the loss, and exclude the same γ from the
    optimizer's ordinary weight decay (:func:`gamma_decay_param_groups`) so they are not decayed twice.

    Args:
        model: Module whose norm layers' ``weight`` (γ) are penalised.
        coeff: Strength (``>= 0``).
        batch_size: Per-step batch size ``M`` for the 1/M scaling.
        scale_with_batch: Apply the 1/M scaling when ``batch_size`` is given. Default: ``True``.
        layer_types: Layer classes to include. Default: ``(PopulationNorm2d,)``.

    Returns:
        A 0-d tensor (zero if the model has no such layer).
    """
    coeff = nonnegative_float("gamma_decay_penalty", "coeff", coeff)
    if batch_size is not None:
        batch_size = positive_int("gamma_decay_penalty", "batch_size", batch_size)
    zeta = coeff / batch_size if (scale_with_batch and batch_size is not None) else coeff
    layers = _gamma_layers(model, layer_types)
    if not layers:
        p = next(model.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else None)
    total = sum(m.weight.float().square().sum() for m in layers)
    return zeta * total


def gamma_decay_param_groups(
    model: nn.Module, weight_decay: float, *, layer_types: tuple[type, ...] | None = None, **group_kwargs: Any
) -> list[dict[str, Any]]:
    """Parameter groups that exempt the gamma-decayed γ from ordinary weight decay.

    Returns:
        ``[{"params": others, "weight_decay": weight_decay, **group_kwargs}, {"params": gammas, "weight_decay":
        0.0, "name": "gamma_decay", **group_kwargs}]`` (empty groups dropped).
    """
    gamma_ids = {id(m.weight) for m in _gamma_layers(model, layer_types)}
    gammas = [p for p in model.parameters() if id(p) in gamma_ids]
    others = [p for p in model.parameters() if id(p) not in gamma_ids]
    groups = []
    if others:
        groups.append({"params": others, "weight_decay": weight_decay, "name": "default", **group_kwargs})
    if gammas:
        groups.append({"params": gammas, "weight_decay": 0.0, "name": "gamma_decay", **group_kwargs})
    return groups


register_norm_layer(
    "pn",
    PopulationNorm2d,
    aliases=("populationnorm", "populationnorm2d"),
    description="Population Normalization: running statistics in training too, BN warm-up (Luo et al., ICLR 2019)",
    family="population",
    batch_dependent=True,
    convertible=True,
    sync="syncpn",
)
