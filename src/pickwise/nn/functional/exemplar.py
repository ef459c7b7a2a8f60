r"""Functional Exemplar Normalization (EN): per-sample mixing of normalized outputs, fused into one affine map.

Paper: ``zhang2020exemplar``: R. Zhang, Z. Peng, L. Wu, Z. Li and P. Luo, "Exemplar Normalization for Learning Deep
Representation", CVPR 2020, https://arxiv.org/abs/2003.08761

EN mixes the *normalized maps* of K normalizers with per-sample ratios :math:`\lambda_n \in \Delta^{K-1}`:

.. math::
    y_{nc} = \gamma_c \sum_k \lambda_{nk} \frac{x_{nc} - \mu_{k}}{\sqrt{\sigma_k^2 + \epsilon}} + \beta_c
           = x_{nc} \, a_{nc} + b_{nc},\quad
    a_{nc} = \gamma_c \sum_k \frac{\lambda_{nk}}{s_{k}},\;
    b_{nc} = \beta_c - \gamma_c \sum_k \frac{\lambda_{nk}\mu_{k}}{s_{k}},

so the K normalized maps are never materialised (one reduction pass, O(N·K·C) math, one pointwise pass).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._stats import BatchStatsFn, _positions, affine_norm, batch_norm_moments, normalizer_moments

#: Bound on the magnitude of EN descriptors (keeps the ratio network finite when variances overflow).
DESCRIPTOR_LIMIT = 1e4

__all__ = ["exemplar_descriptors", "exemplar_norm", "exemplar_ratios", "exemplar_scale_shift"]


def exemplar_descriptors(
    mu_in: Tensor, var_in: Tensor, moments: Sequence[tuple[Tensor, Tensor]], eps: float, descriptor: str = "mean_std"
) -> Tensor:
    r"""Per-sample descriptors of every normalizer's standardized map, from instance moments only.

    The global average pool of :math:`(x - \mu_k)/s_k` over the positions of (n, c) is
    :math:`(\mu^{in}_{nc} - \mu_k)/s_k`; its root-mean-square spread is :math:`s^{in}_{nc}/s_k`. ``"mean"`` returns the
    first (the literal "pool the standardized maps" reading; the IN descriptor is then identically 0),
    ``"mean_std"`` both, stacked.

    Overflow: in float32, inputs of magnitude >= ~1e19 give variances that overflow to ``inf`` (as in torch's
    BatchNorm/LayerNorm/GroupNorm, which then return ``beta``). ``s_in / s_k`` is then ``inf * 0 = NaN``, which the
    ratio network would spread to every output. Descriptors are therefore clamped to ``[-DESCRIPTOR_LIMIT,
    DESCRIPTOR_LIMIT]`` (1e4, far beyond the ratio of two standard deviations of real features; e.g. a channel whose
    BN variance is 0 and whose sample std is 1 gives 316 at eps 1e-5) and ``inf * 0`` is read as 0. NaN inputs
    still give NaN outputs: the affine map ``x * a + b`` carries them.

    Returns:
        ``(N, K, D, C)`` with ``D = 1`` (``"mean"``) or ``2`` (``"mean_std"``).
    """
    n, c = mu_in.shape
    s_in = torch.sqrt(var_in + eps)
    out = []
    for mu_k, var_k in moments:
        inv_s = torch.rsqrt(var_k + eps)
        parts = [((mu_in - mu_k) * inv_s).expand(n, c)]
        if descriptor == "mean_std":
            parts.append((s_in * inv_s).expand(n, c))
        out.append(torch.stack(parts, 1))
    d = torch.stack(out, 1)
    return torch.nan_to_num(d, nan=0.0, posinf=DESCRIPTOR_LIMIT, neginf=-DESCRIPTOR_LIMIT).clamp(
        -DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT
    )


def exemplar_scale_shift(
    moments: Sequence[tuple[Tensor, Tensor]], ratios: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
) -> tuple[Tensor, Tensor]:
    """``(scale, shift)`` of shape ``(N, C)`` for per-sample ``ratios`` ``(N, K)`` (see the module docstring)."""
    ratios = ratios.to(moments[0][0].dtype)
    a: Tensor | float = 0.0
    b: Tensor | float = 0.0
    for k, (mu_k, var_k) in enumerate(moments):
        lam_over_s = ratios[:, k : k + 1] * torch.rsqrt(var_k + eps)
        a = a + lam_over_s
        b = b + lam_over_s * mu_k
    assert isinstance(a, Tensor)
    assert isinstance(b, Tensor)
    if weight is not None:
        w = weight.to(a.dtype)
        a = a * w
        b = b * w
    shift = -b if bias is None else bias.to(a.dtype) - b
    return a, shift


def exemplar_ratios(
    descriptors: Tensor,
    ratio_weight: Tensor,
    embed_weight: Tensor,
    embed_bias: Tensor | None,
    fc1_weight: Tensor,
    fc1_bias: Tensor | None,
    fc2_weight: Tensor,
    fc2_bias: Tensor | None,
    *,
    temperature: float = 1.0,
) -> Tensor:
    r"""EN's ratio network (reconstructed design): shared channel conv → relation Gram matrix → MLP → softmax.

    ``descriptors`` ``(N, K, D, C)`` → ``e = conv1d_D→1(descriptors)`` ``(N, K, C)`` → ``R = e eᵀ / C`` ``(N, K, K)``
    → ``logits = ratio_weight + W_2 relu(W_1 vec(R) + b_1) + b_2`` → ``softmax(logits / temperature)`` ``(N, K)``.
    """
    n, k, _d, c = descriptors.shape
    dt = descriptors.dtype

    def cast(t: Tensor) -> Tensor:
        return t.to(dt)

    def cast_optional(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.to(dt)

    kernel = embed_weight.shape[-1]
    # 1-D "same" convolution over channels written as unfold + einsum: on these tiny tensors it is much cheaper
    # (especially its backward) than a convolution kernel call.
    windows = F.pad(descriptors, (kernel // 2, kernel // 2)).unfold(-1, kernel, 1)  # (N, K, D, C, kernel)
    emb = torch.einsum("nkdcj,dj->nkc", windows, cast(embed_weight)[0])
    if embed_bias is not None:
        emb = emb + cast(embed_bias)
    relation = torch.bmm(emb, emb.transpose(1, 2)) / c
    hidden = F.relu(F.linear(relation.reshape(n, k * k), cast(fc1_weight), cast_optional(fc1_bias)))
    offsets = F.linear(hidden, cast(fc2_weight), cast_optional(fc2_bias))
    return torch.softmax((ratio_weight.to(dt) + offsets) / temperature, -1)


def exemplar_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    ratio_fn: Callable[..., Tensor],
    ratio_params: Sequence[Tensor | None] = (),
    training: bool = False,
    momentum: float | Tensor = 0.1,
    eps: float = 1e-5,
    *,
    normalizers: Sequence[str] = ("in", "ln", "bn"),
    channel_last: bool = False,
    batch_stats: BatchStatsFn | None = None,
    descriptor: str = "mean_std",
    fused: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """Exemplar normalization.

    Args:
        input: ``(N, C, *)`` or ``(N, *, C)`` with ``channel_last``.
        running_mean: ``(C,)`` running mean of the ``"bn"`` branch (updated in place in training) or ``None``.
        running_var: ``(C,)`` running unbiased variance or ``None``.
        weight: ``(C,)`` scale or ``None``.
        bias: ``(C,)`` shift or ``None``.
        ratio_fn: ``ratio_fn(descriptors, *ratio_params)`` maps the descriptors ``(N, K, D, C)`` of
            :func:`exemplar_descriptors` to ratios ``(N, K)`` on the simplex, e.g. :func:`exemplar_ratios`. It must
            use only ``ratio_params`` as learnable tensors (they are the inputs gradients are computed for).
        ratio_params: Learnable tensors of ``ratio_fn``.
        training: Batch statistics for ``"bn"`` and running-statistics update.
        momentum: Running-average factor (PyTorch convention).
        eps: Added to every variance.
        normalizers: The K normalizers.
        channel_last: Channel dimension last.
        batch_stats: Batch-moment reduction (default: local batch).
        descriptor: ``"mean_std"`` or ``"mean"`` (see :func:`exemplar_descriptors`).
        fused: Autograd path (see :func:`~pickwise.nn.functional.affine_norm`); default: automatic.

    Returns:
        ``(output, ratios)``: the normalized tensor (input's shape, dtype and memory format) and the ``(N, K)``
        ratios (detached on the fused path; they are for logging).
    """
    record: list[Tensor] = []

    def stats_to_affine(mu_in: Tensor, var_in: Tensor, weight: Tensor | None, bias: Tensor | None, *params: Tensor):
        bn_mean, bn_var = batch_norm_moments(
            mu_in, var_in, positions, running_mean, running_var, training, momentum, normalizers, batch_stats
        )
        moments = normalizer_moments(mu_in, var_in, normalizers, bn_mean, bn_var)
        ratios = ratio_fn(exemplar_descriptors(mu_in, var_in, moments, eps, descriptor), *params)
        record.append(ratios)
        return exemplar_scale_shift(moments, ratios, weight, bias, eps)

    positions = _positions(input, channel_last)
    out = affine_norm(input, stats_to_affine, (weight, bias, *ratio_params), channel_last, fused)
    return out, record[0]
