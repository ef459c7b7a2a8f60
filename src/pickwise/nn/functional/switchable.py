r"""Functional Switchable Normalization (SN) and the sparse selectors of Sparse SN (sparsemax, sparsestmax).

Papers:
    - ``luo2019switchable``: P. Luo, J. Ren, Z. Peng, R. Zhang and J. Li, "Differentiable Learning-to-Normalize via
      Switchable Normalization", ICLR 2019, https://arxiv.org/abs/1806.10779
    - ``shao2019ssn``: W. Shao, T. Meng, J. Li, R. Zhang, Y. Li, X. Wang and P. Luo, "SSN: Learning Sparse Switchable
      Normalization via SparsestMax", CVPR 2019, https://arxiv.org/abs/1903.03793
    - ``martins2016sparsemax``: A. F. T. Martins and R. F. Astudillo, "From Softmax to Sparsemax", ICML 2016,
      https://arxiv.org/abs/1602.02068
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._stats import BatchStatsFn, _positions, affine_norm, batch_norm_moments, normalizer_moments

__all__ = ["sparsemax", "sparsestmax", "switch_norm", "switch_norm_from_ratios", "switch_norm_scale_shift"]


def _weighted_sum(weights: Tensor, terms: Sequence[Tensor]) -> Tensor:
    """``Σ_k weights[k] * terms[k]``, summed left to right (the same rounding as Python's ``sum``)."""
    total = weights[0] * terms[0]
    for k in range(1, len(terms)):
        total = total + weights[k] * terms[k]
    return total


def switch_norm_scale_shift(
    mu_in: Tensor,
    var_in: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    mean_ratios: Tensor,
    var_ratios: Tensor,
    normalizers: Sequence[str],
    bn_mean: Tensor | None,
    bn_var: Tensor | None,
    eps: float,
) -> tuple[Tensor, Tensor]:
    """The per-(n, c) affine map ``(scale, shift)`` of SN from instance moments (O(N·C) work, differentiable)."""
    moments = normalizer_moments(mu_in, var_in, normalizers, bn_mean, bn_var)
    mean_ratios = mean_ratios.to(mu_in.dtype)
    var_ratios = var_ratios.to(mu_in.dtype)
    mu = _weighted_sum(mean_ratios, [m for m, _ in moments])
    var = _weighted_sum(var_ratios, [v for _, v in moments])
    inv_std = torch.rsqrt(var + eps)
    scale = inv_std if weight is None else inv_std * weight.to(mu_in.dtype)
    shift = -mu * scale if bias is None else bias.to(mu_in.dtype) - mu * scale
    return scale, shift


def switch_norm_from_ratios(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    mean_ratios: Tensor,
    var_ratios: Tensor,
    training: bool = False,
    momentum: float | Tensor = 0.1,
    eps: float = 1e-5,
    *,
    normalizers: Sequence[str] = ("in", "ln", "bn"),
    channel_last: bool = False,
    batch_stats: BatchStatsFn | None = None,
    fused: bool | None = None,
) -> Tensor:
    r"""Switchable normalization with given (already normalised) mixing ratios.

    .. math::
        y = \gamma \frac{x - \sum_k w_k \mu_k}{\sqrt{\sum_k w'_k \sigma_k^2 + \epsilon}} + \beta

    Args:
        input: ``(N, C, *)``, or ``(N, *, C)`` with ``channel_last``.
        running_mean: ``(C,)`` running mean for the ``"bn"`` branch, updated in place when ``training``; ``None``
            uses batch statistics in both modes.
        running_var: ``(C,)`` running (unbiased) variance, same rules.
        weight: ``(C,)`` scale :math:`\gamma` or ``None``.
        bias: ``(C,)`` shift :math:`\beta` or ``None``.
        mean_ratios: ``(K,)`` mixing weights :math:`w` of the means (on the simplex).
        var_ratios: ``(K,)`` mixing weights :math:`w'` of the variances.
        training: Use batch statistics for ``"bn"`` and update the running statistics.
        momentum: Running-average factor (PyTorch convention).
        eps: Added to the mixed variance.
        normalizers: Names of the K normalizers, in the order of the ratios.
        channel_last: Channel dimension is the last one (token inputs ``(N, L, C)``).
        batch_stats: Reduction giving the batch moments; default: this process's batch only.
        fused: Autograd path (see :func:`~pickwise.nn.functional.affine_norm`); default: automatic.

    Returns:
        Tensor of the input's shape, dtype and memory format.
    """

    def stats_to_affine(
        mu_in: Tensor,
        var_in: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        mean_ratios: Tensor,
        var_ratios: Tensor,
    ) -> tuple[Tensor, Tensor]:
        bn_mean, bn_var = batch_norm_moments(
            mu_in, var_in, positions, running_mean, running_var, training, momentum, normalizers, batch_stats
        )
        return switch_norm_scale_shift(
            mu_in, var_in, weight, bias, mean_ratios, var_ratios, normalizers, bn_mean, bn_var, eps
        )

    positions = _positions(input, channel_last)
    return affine_norm(input, stats_to_affine, (weight, bias, mean_ratios, var_ratios), channel_last, fused)


def switch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    mean_weight: Tensor,
    var_weight: Tensor,
    training: bool = False,
    momentum: float | Tensor = 0.1,
    eps: float = 1e-5,
    *,
    normalizers: Sequence[str] = ("in", "ln", "bn"),
    channel_last: bool = False,
    batch_stats: BatchStatsFn | None = None,
    fused: bool | None = None,
) -> Tensor:
    """Switchable normalization with softmax-mixed importance logits ``mean_weight``/``var_weight`` (each ``(K,)``).

    See :func:`switch_norm_from_ratios` for the arguments; this applies ``softmax`` (in float32) to the logits first.
    """
    return switch_norm_from_ratios(
        input,
        running_mean,
        running_var,
        weight,
        bias,
        torch.softmax(mean_weight.float() if mean_weight.dtype != torch.float64 else mean_weight, 0),
        torch.softmax(var_weight.float() if var_weight.dtype != torch.float64 else var_weight, 0),
        training,
        momentum,
        eps,
        normalizers=normalizers,
        channel_last=channel_last,
        batch_stats=batch_stats,
        fused=fused,
    )


def sparsemax(input: Tensor, dim: int = -1) -> Tensor:
    r"""Euclidean projection onto the probability simplex (Martins & Astudillo, 2016).

    .. math::
        \operatorname{sparsemax}(v) = \arg\min_{p \in \Delta^{K-1}} \lVert p - v \rVert_2

    Sort descending, find the support size :math:`\rho = \max\{j : 1 + j v_{(j)} > \sum_{i \le j} v_{(i)}\}`, and
    return :math:`\max(v - \tau, 0)` with :math:`\tau = (\sum_{i\le\rho} v_{(i)} - 1)/\rho`. Tensor ops only.
    """
    v = input.movedim(dim, -1)
    k = v.shape[-1]
    v_sorted, _ = torch.sort(v, dim=-1, descending=True)
    cumsum = v_sorted.cumsum(-1)
    ranks = torch.arange(1, k + 1, device=v.device, dtype=v.dtype)
    support = (1 + ranks * v_sorted > cumsum).sum(-1, keepdim=True).clamp_min(1)
    tau = (cumsum.gather(-1, support - 1) - 1) / support.to(v.dtype)
    return torch.clamp(v - tau, min=0).movedim(-1, dim)


def sparsestmax(input: Tensor, radius: float | Tensor, dim: int = -1, eps: float | None = None) -> Tensor:
    r"""SparsestMax of Sparse Switchable Normalization: sparsemax kept outside a sphere around the simplex centre.

    Computes the projection of ``input`` onto :math:`\Delta^{K-1} \cap \{p : \lVert p - \tfrac{1}{K}\mathbf 1\rVert
    \ge r\}` the way the official code does: take :math:`p = \operatorname{sparsemax}(v)`; while :math:`p` lies
    inside the sphere, push it radially outward from the centroid :math:`u_F` of its support face ``F`` onto the
    sphere's intersection with that face (radius :math:`\sqrt{r^2 - \lVert u_F - \tfrac1K\mathbf 1\rVert^2}`), and
    re-project onto the simplex when that leaves it. At ``r = 0`` this *is* sparsemax; for
    :math:`r \ge \sqrt{(K-1)/K}` (the centre-to-vertex distance) every output is one-hot.

    The push :math:`u_F + \rho\,(p - u_F)/\lVert p - u_F\rVert` has no direction when :math:`p = u_F` (e.g. at the
    papers' uniform initialisation, where the official code returns :math:`u_F`), and its Jacobian grows as
    :math:`\rho / \lVert p - u_F\rVert` next to that point (a float32 guard of 1e-12 gave logit gradients of
    1e17-1e19 at uniform logits). Here the push is applied only where :math:`\lVert p - u_F\rVert > \delta`
    (``eps``; default :math:`\sqrt{\epsilon_{mach}}`: 3.5e-4 in float32, 1.5e-8 in float64). Closer than that the
    output is :math:`p` (the official value at the exact centre), and the gradient is sparsemax's, whose Jacobian
    :math:`I - \mathbf 1_F\mathbf 1_F^\top/|F|` restricted to the support has norm 1. So logit gradients are
    bounded by :math:`\rho/\delta` times the upstream gradient everywhere, and by the upstream gradient at uniform
    logits, for every radius.

    The loop runs a fixed ``K`` times with ``torch.where`` instead of Python branches, so it never synchronises
    with the device and compiles into one graph.

    Args:
        input: Logits; the simplex lies along ``dim``.
        radius: :math:`r \ge 0` (a float or a 0-d tensor, e.g. a buffer updated by a schedule).
        dim: Dimension of the K candidates.
        eps: Distance to the face centroid below which the outward push is skipped (see above); ``None``: the
            square root of the dtype's machine epsilon.

    Returns:
        Tensor on the simplex with the shape of ``input``.
    """
    v = input.movedim(dim, -1)
    k = v.shape[-1]
    r = torch.as_tensor(radius, dtype=v.dtype, device=v.device)
    delta = math.sqrt(torch.finfo(v.dtype).eps) if eps is None else float(eps)
    p = sparsemax(v)
    for _ in range(k):
        support = (p > 0).to(v.dtype)
        size = support.sum(-1, keepdim=True)
        centroid = support / size
        rho2 = r * r - (centroid - 1.0 / k).square().sum(-1, keepdim=True)
        offset = p - centroid
        dist2 = offset.square().sum(-1, keepdim=True)
        active = dist2 > delta * delta
        # Masked before the square root and the division, so the untaken branch has no inf/NaN gradient either.
        dist = torch.sqrt(torch.where(active, dist2, torch.ones_like(dist2)))
        rho = torch.sqrt(rho2.clamp_min(0))
        inside = (rho2 > 0) & (dist < rho) & (size > 1) & active
        p = sparsemax(torch.where(inside, centroid + rho * offset / dist, p))
    return p.clamp(0, 1).movedim(-1, dim)


def _sphere_radius_to_vertex(k: int) -> float:
    """Distance from the centre of the (K-1)-simplex to a vertex, ``sqrt((K-1)/K)``."""
    return math.sqrt((k - 1) / k)
