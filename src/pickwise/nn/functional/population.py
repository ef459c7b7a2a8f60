r"""Functional population normalization (PN): normalize with population (running) statistics, no gradient through them.

Paper: ``luo2019towards``: P. Luo, X. Wang, W. Shao and Z. Peng, "Towards Understanding Regularization in Batch
Normalization", ICLR 2019, https://arxiv.org/abs/1809.00846

.. math::
    y = \gamma \frac{x - \mu_P}{\sqrt{\sigma_P^2 + \epsilon}} + \beta

where :math:`(\mu_P, \sigma_P^2)` are the running estimates *before* this batch's update. The paper decomposes BN
into PN plus an explicit "gamma decay" regularizer (see :func:`pickwise.nn.gamma_decay_penalty`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._stats import (
    BatchStatsFn,
    _positions,
    affine_norm,
    apply_channel_affine,
    instance_moments,
    local_batch_stats,
    stat_dtype,
    update_running_stats_,
)

__all__ = ["population_norm"]


def population_norm(
    input: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    training: bool = False,
    momentum: float | Tensor = 0.1,
    eps: float = 1e-5,
    *,
    warmup: bool | Tensor = False,
    channel_last: bool = False,
    batch_stats: BatchStatsFn | None = None,
    fused: bool | None = None,
) -> Tensor:
    """Population normalization.

    Args:
        input: ``(N, C, *)`` or ``(N, *, C)`` with ``channel_last``.
        running_mean: ``(C,)`` population mean; updated in place from detached batch statistics when ``training``.
        running_var: ``(C,)`` population (unbiased) variance; same.
        weight: ``(C,)`` scale or ``None``.
        bias: ``(C,)`` shift or ``None``.
        training: Update the running statistics from this batch.
        momentum: Running-average factor (PyTorch convention).
        eps: Added to the variance.
        warmup: In training, normalize with the *batch* statistics (with gradient, i.e. plain BN) instead; a bool or
            a 0-d bool tensor (the module passes ``num_batches_tracked <= warmup_steps`` without a host sync).
        channel_last: Channel dimension last.
        batch_stats: Batch-moment reduction (default: local batch).
        fused: Autograd path during warm-up (see :func:`~pickwise.nn.functional.affine_norm`).

    Returns:
        Tensor of the input's shape, dtype and memory format.
    """
    sdt = stat_dtype(input.dtype)
    use_batch = training and not (isinstance(warmup, bool) and not warmup)

    def stats_to_affine(mu_in: Tensor, var_in: Tensor, weight: Tensor | None, bias: Tensor | None):
        pop_mean = running_mean.to(sdt)
        pop_var = running_var.to(sdt)
        if training:
            pop_mean = pop_mean.clone()
            pop_var = pop_var.clone()
            bn_mean, bn_var, count = (batch_stats or local_batch_stats)(mu_in, var_in, positions)
            update_running_stats_(running_mean, running_var, bn_mean.detach(), bn_var.detach(), count, momentum)
            if use_batch:
                warm = torch.as_tensor(warmup, device=bn_mean.device)
                pop_mean = torch.where(warm, bn_mean, pop_mean)
                pop_var = torch.where(warm, bn_var, pop_var)
        scale = torch.rsqrt(pop_var + eps)
        if weight is not None:
            scale = scale * weight.to(scale.dtype)
        shift = -pop_mean * scale if bias is None else bias.to(scale.dtype) - pop_mean * scale
        return scale.unsqueeze(0), shift.unsqueeze(0)

    positions = _positions(input, channel_last)
    if not training:  # eval: no statistics of the input are needed at all (BN-eval cost)
        scale, shift = stats_to_affine(torch.empty(0), torch.empty(0), weight, bias)
        return apply_channel_affine(input, scale, shift, channel_last)
    if not use_batch:  # the moments only feed the running statistics: no gradient through them
        with torch.no_grad():
            mu_in, var_in, _ = instance_moments(input, channel_last)
        scale, shift = stats_to_affine(mu_in, var_in, weight, bias)
        return apply_channel_affine(input, scale, shift, channel_last)
    return affine_norm(input, stats_to_affine, (weight, bias), channel_last, fused)
