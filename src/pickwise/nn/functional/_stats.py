r"""Shared statistics engine of the learning-to-normalize layers (SN, SSN, EN, PN).

Everything starts from per-(n, c) *instance* moments (mean and biased variance over the spatial/token positions),
computed once in at least float32. Layer-norm, group-norm and batch-norm moments are then *pooled* from them with
the cancellation-free law of total variance

.. math::
    \mu_p = \frac{1}{|P|}\sum_{i\in P}\mu_i, \qquad
    \sigma_p^2 = \frac{1}{|P|}\sum_{i\in P}\bigl(\sigma_i^2 + (\mu_i - \mu_p)^2\bigr),

which never forms :math:`E[x^2] - E[x]^2` (that difference cancels catastrophically in low precision when
:math:`|\mu| \gg \sigma`). The normalized output of every layer in this family is an affine map per (n, c),
``y = x * a[n, c] + b[n, c]``, so a layer is one reduction pass, O(N·C) scalar math and one fused pointwise pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "BatchStatsFn",
    "StatsToAffineFn",
    "affine_norm",
    "apply_channel_affine",
    "batch_norm_moments",
    "instance_moments",
    "local_batch_stats",
    "normalizer_moments",
    "parse_normalizers",
    "pooled_moments",
    "stat_dtype",
    "update_running_stats_",
]

#: ``f(mu_in, var_in, positions) -> (mu_bn, var_bn, count)``: batch moments per channel (shape ``(C,)``) and the
#: number of elements they were computed from (an int or a 0-d tensor). The local version is
#: :func:`local_batch_stats`; the Sync layers pass a cross-process reduction.
BatchStatsFn = Callable[[Tensor, Tensor, int], "tuple[Tensor, Tensor, Tensor | int]"]

_BASE_NORMALIZERS = ("in", "ln", "bn")


def parse_normalizers(normalizers: Sequence[str], num_features: int, where: str) -> tuple[str, ...]:
    """Validate and canonicalise a normalizer list such as ``("in", "ln", "bn", "gn:8")``.

    Names are lowercased and stripped. ``"gn:G"`` pools statistics over ``G`` groups of ``C // G`` channels and needs
    ``G`` to divide ``num_features``.

    Raises:
        InvalidParameterError: On an empty list, an unknown or duplicated name, or a bad group count.
    """
    from ...exceptions import InvalidParameterError

    if isinstance(normalizers, str) or not isinstance(normalizers, Sequence) or len(normalizers) == 0:
        raise InvalidParameterError(
            f"{where}: normalizers must be a non-empty tuple of names from 'in', 'ln', 'bn', 'gn:G'; "
            f"got {normalizers!r}"
        )
    out: list[str] = []
    for raw in normalizers:
        if not isinstance(raw, str):
            raise InvalidParameterError(f"{where}: normalizer names must be strings; got {raw!r}")
        name = raw.strip().lower()
        if name.startswith("gn:"):
            groups_txt = name[3:]
            if not groups_txt.isdigit() or int(groups_txt) < 1 or num_features % int(groups_txt) != 0:
                raise InvalidParameterError(
                    f"{where}: 'gn:G' needs a positive group count G dividing num_features={num_features}; got {raw!r}"
                )
            name = f"gn:{int(groups_txt)}"
        elif name not in _BASE_NORMALIZERS:
            raise InvalidParameterError(
                f"{where}: unknown normalizer {raw!r}; expected one of 'in', 'ln', 'bn' or 'gn:G' (e.g. 'gn:32')"
            )
        if name in out:
            raise InvalidParameterError(f"{where}: normalizer {name!r} is listed twice in {tuple(normalizers)!r}")
        out.append(name)
    return tuple(out)


def stat_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype statistics are computed in: float32 for half/bfloat16/float32 inputs, float64 for float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _reduce_dims(x: Tensor, channel_last: bool) -> tuple[int, ...]:
    return tuple(range(1, x.dim() - 1)) if channel_last else tuple(range(2, x.dim()))


def _stat_view(t: Tensor, x: Tensor, channel_last: bool) -> Tensor:
    """Reshape an ``(N, C)`` tensor so it broadcasts against ``x``."""
    n, c = t.shape
    extra = [1] * (x.dim() - 2)
    return t.reshape(n, *extra, c) if channel_last else t.reshape(n, c, *extra)


def _moments_forward(x: Tensor, channel_last: bool) -> tuple[Tensor, Tensor, int]:
    """``(mu, biased var, L)`` without autograd: a mean, one centred pointwise pass and a 2-norm reduction."""
    dims = _reduce_dims(x, channel_last)
    xs = x if x.dtype == stat_dtype(x.dtype) else x.to(stat_dtype(x.dtype))
    positions = 1
    for d in dims:
        positions *= x.shape[d]
    mu = xs.mean(dims)
    var = torch.linalg.vector_norm(xs - _stat_view(mu, xs, channel_last), dim=dims).square_().div_(max(positions, 1))
    return mu, var, positions


class _InstanceMoments(torch.autograd.Function):
    """Per-(n, c) mean and biased variance with a lean forward and a one-pass backward.

    Forward: ``mu = mean(x)``, ``var = ||x - mu||^2 / L`` (two cheap reductions and one pointwise pass; much faster
    on CPU than the Welford kernel of :func:`torch.var_mean`, and just as cancellation-free).
    Backward: ``dx = x * (2 g_var / L) + (g_mu - 2 mu g_var) / L`` - one pointwise pass, affine in ``x``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, channel_last: bool) -> tuple[Tensor, Tensor]:
        mu, var, positions = _moments_forward(x, channel_last)
        ctx.save_for_backward(x, mu)
        ctx.channel_last = channel_last
        ctx.positions = positions
        return mu, var

    @staticmethod
    def backward(ctx: Any, g_mu: Tensor | None, g_var: Tensor | None) -> tuple[Tensor | None, None]:
        x, mu = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        inv_l = 1.0 / ctx.positions
        g_mu = torch.zeros_like(mu) if g_mu is None else g_mu
        g_var = torch.zeros_like(mu) if g_var is None else g_var
        c1 = g_var * (2.0 * inv_l)
        c0 = g_mu * inv_l - mu * c1
        xs = x if x.dtype == mu.dtype else x.to(mu.dtype)
        grad = (xs * _stat_view(c1, xs, ctx.channel_last)).add_(_stat_view(c0, xs, ctx.channel_last))
        return grad.to(x.dtype), None


def instance_moments(x: Tensor, channel_last: bool = False) -> tuple[Tensor, Tensor, int]:
    """Per-(n, c) mean and biased variance over all non-batch, non-channel dimensions.

    Args:
        x: ``(N, C, *)`` (channels first) or ``(N, *, C)`` when ``channel_last``; a 2-D ``(N, C)`` input has one
            position per channel (variance 0).
        channel_last: Whether the channel dimension is the last one.

    Returns:
        ``(mu, var, L)``: two ``(N, C)`` tensors in :func:`stat_dtype` and the number ``L`` of positions per (n, c).
    """
    if x.dim() == 2:
        xs = x if x.dtype == stat_dtype(x.dtype) else x.to(stat_dtype(x.dtype))
        return xs, torch.zeros_like(xs), 1
    positions = 1
    for d in _reduce_dims(x, channel_last):
        positions *= x.shape[d]
    mu, var = _InstanceMoments.apply(x, channel_last)
    return mu, var, positions


def pooled_moments(mu: Tensor, var: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Moments of the union of equally sized groups, cancellation-free (kept dimension ``dim``)."""
    mu_p = mu.mean(dim, keepdim=True)
    var_p = (var + (mu - mu_p).square()).mean(dim, keepdim=True)
    return mu_p, var_p


def local_batch_stats(mu_in: Tensor, var_in: Tensor, positions: int) -> tuple[Tensor, Tensor, int]:
    """Batch-norm moments ``(C,)`` of this process's batch, pooled from instance moments (a :data:`BatchStatsFn`)."""
    mu_bn, var_bn = pooled_moments(mu_in, var_in, 0)
    return mu_bn.squeeze(0), var_bn.squeeze(0), mu_in.shape[0] * positions


def _positions(x: Tensor, channel_last: bool) -> int:
    """Number of positions ``L`` per (n, c)."""
    positions = 1
    for d in _reduce_dims(x, channel_last):
        positions *= x.shape[d]
    return positions


def batch_norm_moments(
    mu_in: Tensor,
    var_in: Tensor,
    positions: int,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    training: bool,
    momentum: float | Tensor,
    normalizers: Sequence[str],
    batch_stats: BatchStatsFn | None,
) -> tuple[Tensor | None, Tensor | None]:
    """Moments of the ``"bn"`` branch: batch moments (and running update) in training, running ones in eval.

    Returns ``(None, None)`` when ``"bn"`` is not in ``normalizers``. Batch moments are used in eval too when no
    running statistics are given (``track_running_stats=False``), as in :func:`torch.nn.functional.batch_norm`.
    """
    if "bn" not in normalizers:
        return None, None
    if training or running_mean is None or running_var is None:
        bn_mean, bn_var, count = (batch_stats or local_batch_stats)(mu_in, var_in, positions)
        if training and running_mean is not None and running_var is not None:
            update_running_stats_(running_mean, running_var, bn_mean.detach(), bn_var.detach(), count, momentum)
        return bn_mean, bn_var
    return running_mean, running_var


def _group_moments(mu_in: Tensor, var_in: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    n, c = mu_in.shape
    mu_g, var_g = pooled_moments(mu_in.reshape(n, groups, c // groups), var_in.reshape(n, groups, c // groups), 2)
    return mu_g.expand(n, groups, c // groups).reshape(n, c), var_g.expand(n, groups, c // groups).reshape(n, c)


def normalizer_moments(
    mu_in: Tensor,
    var_in: Tensor,
    normalizers: Sequence[str],
    bn_mean: Tensor | None = None,
    bn_var: Tensor | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """The ``(mean, variance)`` pair of every normalizer, each broadcastable to ``(N, C)``.

    ``"in"`` gives ``(N, C)``, ``"ln"`` ``(N, 1)``, ``"gn:G"`` ``(N, C)`` and ``"bn"`` ``(1, C)`` (taken from
    ``bn_mean``/``bn_var``, which the caller chooses: batch moments in training, running statistics in eval).
    """
    out: list[tuple[Tensor, Tensor]] = []
    for name in normalizers:
        if name == "in":
            out.append((mu_in, var_in))
        elif name == "ln":
            out.append(pooled_moments(mu_in, var_in, 1))
        elif name == "bn":
            if bn_mean is None or bn_var is None:
                raise RuntimeError("normalizer_moments: 'bn' needs bn_mean and bn_var")
            out.append((bn_mean.to(mu_in.dtype).unsqueeze(0), bn_var.to(mu_in.dtype).unsqueeze(0)))
        else:  # "gn:G"
            out.append(_group_moments(mu_in, var_in, int(name[3:])))
    return out


class _ChannelAffine(torch.autograd.Function):
    """``y = x * scale[n, c] + shift[n, c]`` with a backward of one fused reduction pair and one pointwise pass."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: Tensor, shift: Tensor, channel_last: bool) -> Tensor:
        xs = x if x.dtype == scale.dtype else x.to(scale.dtype)
        y = xs * _stat_view(scale, xs, channel_last)
        y.add_(_stat_view(shift, xs, channel_last))
        ctx.save_for_backward(x, scale)
        ctx.channel_last = channel_last
        return y if y.dtype == x.dtype else y.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        x, scale = ctx.saved_tensors
        cl = ctx.channel_last
        dims = _reduce_dims(x, cl)
        gs = grad if grad.dtype == scale.dtype else grad.to(scale.dtype)
        g_x = g_scale = g_shift = None
        if ctx.needs_input_grad[0]:
            g_x = (gs * _stat_view(scale, gs, cl)).to(x.dtype)
        if ctx.needs_input_grad[1]:
            xs = x if x.dtype == scale.dtype else x.to(scale.dtype)
            g_scale = (gs * xs).sum(dims)
        if ctx.needs_input_grad[2]:
            g_shift = gs.sum(dims)
        return g_x, g_scale, g_shift, None


def apply_channel_affine(x: Tensor, scale: Tensor, shift: Tensor, channel_last: bool = False) -> Tensor:
    """Return ``x * scale[n, c] + shift[n, c]`` in ``x``'s dtype and memory format (one pointwise pass).

    ``scale``/``shift`` are ``(N, C)`` (or broadcastable to it). For half/bfloat16 inputs the product is formed in
    float32 and cast back, so large-mean inputs keep their precision. The backward computes ``Σ g``, ``Σ g·x`` per
    (n, c) and ``g * scale`` (no extra intermediate of the input's size is kept).
    """
    n, c = x.shape[0], x.shape[-1] if channel_last else x.shape[1]
    scale = scale.expand(n, c)
    shift = shift.expand(n, c).to(scale.dtype)
    if x.dim() == 2:
        y = x.to(scale.dtype) * scale + shift
        return y.to(x.dtype)
    return _ChannelAffine.apply(x, scale, shift, channel_last)


#: ``f(mu_in, var_in, *tensors) -> (scale, shift)``: the O(N·C) part of a layer, from instance moments to the
#: per-(n, c) affine map.
StatsToAffineFn = Callable[..., "tuple[Tensor, Tensor]"]


class _FusedAffineNorm(torch.autograd.Function):
    """Instance moments -> ``fn`` -> ``x * scale + shift`` as one autograd node (the fused path, §2.6 of the notes).

    Forward: one reduction (mean, ``||x - mu||``), ``fn`` on ``(N, C)`` tensors, one pointwise pass.
    Backward: ``A = Σ g``, ``B = Σ g·x`` per (n, c); the small graph of ``fn`` (kept from the forward, never re-run,
    so running-statistics updates and collectives happen once) maps ``(B, A)`` to the gradients of the moments and of
    ``tensors``; then ``dx = g * scale + x * (2 g_var / L) + (g_mu / L - mu * 2 g_var / L)`` in one buffer.
    First-order only (``once_differentiable``); use ``fused=False`` for double backward.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, channel_last: bool, fn: StatsToAffineFn, *tensors: Tensor | None) -> Tensor:
        dims = _reduce_dims(x, channel_last)
        positions = _positions(x, channel_last)
        sdt = stat_dtype(x.dtype)
        xs = x if x.dtype == sdt else x.to(sdt)
        mu = xs.mean(dims)
        # the centred input doubles as the output buffer: y = (x - mu) * scale + (shift + mu * scale)
        y = xs.sub_(_stat_view(mu, xs, channel_last)) if xs is not x else xs - _stat_view(mu, xs, channel_last)
        var = torch.linalg.vector_norm(y, dim=dims).square_().div_(max(positions, 1))
        with torch.enable_grad():
            mu_leaf = mu.detach().requires_grad_(ctx.needs_input_grad[0])
            var_leaf = var.detach().requires_grad_(ctx.needs_input_grad[0])
            leaves = [
                t.detach().requires_grad_(ctx.needs_input_grad[3 + i]) if isinstance(t, Tensor) else t
                for i, t in enumerate(tensors)
            ]
            scale, shift = fn(mu_leaf, var_leaf, *leaves)
        scale_d = scale.detach().expand_as(mu)
        shift_d = shift.detach().expand_as(mu)
        y.mul_(_stat_view(scale_d, y, channel_last)).add_(
            _stat_view(torch.addcmul(shift_d, mu, scale_d), y, channel_last)
        )
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(x, mu, scale_d)
            ctx.graph = (mu_leaf, var_leaf, leaves, scale, shift)
        ctx.channel_last = channel_last
        ctx.positions = positions
        return y if y.dtype == x.dtype else y.to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, mu, scale = ctx.saved_tensors
        mu_leaf, var_leaf, leaves, scale_g, shift_g = ctx.graph
        cl = ctx.channel_last
        dims = _reduce_dims(x, cl)
        gs = grad if grad.dtype == scale.dtype else grad.to(scale.dtype)
        xs = x if x.dtype == scale.dtype else x.to(scale.dtype)
        g_scale = (gs * xs).sum(dims)
        g_shift = gs.sum(dims)
        wanted = [t for t in (mu_leaf, var_leaf, *leaves) if isinstance(t, Tensor) and t.requires_grad]
        grads = iter(
            torch.autograd.grad(
                (scale_g, shift_g),
                wanted,
                (g_scale.sum_to_size(scale_g.shape), g_shift.sum_to_size(shift_g.shape)),
                allow_unused=True,
                retain_graph=True,  # the small graph lives as long as this node (gradcheck re-runs backward)
            )
            if wanted
            else ()
        )
        by_id = {id(t): next(grads) for t in wanted}
        g_x = None
        if ctx.needs_input_grad[0]:
            g_mu = by_id.get(id(mu_leaf))
            g_var = by_id.get(id(var_leaf))
            g_x = gs * _stat_view(scale, gs, cl)
            c0 = None if g_mu is None else g_mu / ctx.positions
            if g_var is not None:
                c1 = g_var * (2.0 / ctx.positions)
                g_x.addcmul_(xs, _stat_view(c1, xs, cl))
                c0 = -mu * c1 if c0 is None else c0 - mu * c1
            if c0 is not None:
                g_x.add_(_stat_view(c0, xs, cl))
            g_x = g_x.to(x.dtype)
        out: list[Tensor | None] = [g_x, None, None]
        for t in leaves:
            out.append(by_id.get(id(t)) if isinstance(t, Tensor) else None)
        return tuple(out)


def affine_norm(
    x: Tensor,
    fn: StatsToAffineFn,
    tensors: Sequence[Tensor | None],
    channel_last: bool = False,
    fused: bool | None = None,
) -> Tensor:
    """Normalize ``x`` with the per-(n, c) affine map ``fn`` computes from its instance moments.

    Args:
        x: ``(N, C, *)`` or ``(N, *, C)``.
        fn: ``fn(mu_in, var_in, *tensors) -> (scale, shift)``, each broadcastable to ``(N, C)``; may have side
            effects (running statistics), which run exactly once.
        tensors: Extra inputs of ``fn`` that may need gradients (parameters, ratios).
        channel_last: Channel dimension last.
        fused: ``True`` forces the fused single-node autograd path, ``False`` the plain composition (double-backward
            capable, and what ``torch.compile`` traces); ``None`` picks fused in eager mode, plain when compiling.

    Returns:
        Tensor of ``x``'s shape, dtype and memory format.
    """
    if fused is None:
        fused = x.dim() > 2 and not torch.compiler.is_compiling()
    if fused and x.dim() > 2:
        return _FusedAffineNorm.apply(x, channel_last, fn, *tensors)
    mu, var, _ = instance_moments(x, channel_last)
    scale, shift = fn(mu, var, *tensors)
    return apply_channel_affine(x, scale, shift, channel_last)


@torch.no_grad()
def update_running_stats_(
    running_mean: Tensor,
    running_var: Tensor,
    batch_mean: Tensor,
    batch_var: Tensor,
    count: Tensor | int,
    factor: float | Tensor,
) -> None:
    """In-place exponential moving average with PyTorch's convention (no host synchronisation).

    ``running = (1 - factor) * running + factor * batch``; the variance is stored *unbiased*
    (``batch_var * count / (count - 1)``, as :class:`torch.nn.BatchNorm2d` does). Channels whose batch statistics are
    not finite (NaN/Inf inputs) keep their previous running values.
    """
    bessel: Tensor | float
    if isinstance(count, Tensor):
        bessel = count.to(batch_var.dtype) / (count.to(batch_var.dtype) - 1).clamp_min(1)
    else:
        bessel = count / max(count - 1, 1)
    unbiased = batch_var * bessel
    if isinstance(factor, Tensor):
        factor = factor.to(batch_mean.dtype)
    new_mean = torch.lerp(running_mean.to(batch_mean.dtype), batch_mean, factor)
    new_var = torch.lerp(running_var.to(batch_var.dtype), unbiased, factor)
    ok = torch.isfinite(batch_mean) & torch.isfinite(unbiased)
    running_mean.copy_(torch.where(ok, new_mean, running_mean.to(new_mean.dtype)))
    running_var.copy_(torch.where(ok, new_var, running_var.to(new_var.dtype)))
