r"""Channels-first variants of torch's group, layer and instance normalization.

Every class here takes the channel count ``num_features`` as its first positional argument, so that any of them can
be dropped in wherever :class:`torch.nn.BatchNorm2d` was (the timm convention, which deliberately differs from
:class:`torch.nn.GroupNorm`). Parameters keep torch's names and shapes (``weight`` and ``bias`` of shape ``(C,)``),
so state dicts stay plain.

Papers:
    - ``wu2018group``: Y. Wu and K. He, "Group Normalization", ECCV 2018, https://arxiv.org/abs/1803.08494
    - ``ba2016layer``: J. L. Ba, J. R. Kiros and G. E. Hinton, "Layer Normalization", 2016,
      https://arxiv.org/abs/1607.06450
    - ``ulyanov2016instance``: D. Ulyanov, A. Vedaldi and V. Lempitsky, "Instance Normalization: The Missing
      Ingredient for Fast Stylization", 2016, https://arxiv.org/abs/1607.08022
    - ``luo2019switchable``: P. Luo, J. Ren, Z. Peng, R. Zhang and J. Li, "Differentiable Learning-to-Normalize via
      Switchable Normalization", ICLR 2019, https://arxiv.org/abs/1806.10779 (the layer-norm definition used here)
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from .._validation import positive_int

__all__ = ["GroupNorm", "InstanceNorm2d", "LayerNorm2d", "effective_num_groups"]


def _check_num_features(where: str, num_features: Any) -> int:
    return positive_int(where, "num_features", num_features)


def effective_num_groups(num_features: int, num_groups: int = 32) -> int:
    """Return the number of groups :class:`GroupNorm` actually uses for ``num_features`` channels.

    The rule is: the largest divisor of ``num_features`` that is at most ``min(num_groups, num_features // 2)``,
    and at least 1. Capping at ``num_features // 2`` keeps at least two channels per group, so a requested group
    count never silently turns group norm into instance norm (one channel per group); taking a divisor means any
    channel count works (e.g. 144 channels with ``num_groups=32`` gives 24 groups of 6).

    Args:
        num_features: Number of channels ``C``.
        num_groups: Requested (maximum) number of groups. Default: ``32``.

    Returns:
        The effective number of groups, a divisor of ``num_features``.

    Raises:
        InvalidParameterError: If either argument is not a positive int.

    Example:
        >>> effective_num_groups(64), effective_num_groups(16), effective_num_groups(144), effective_num_groups(3)
        (32, 8, 24, 1)
    """
    num_features = _check_num_features("effective_num_groups", num_features)
    num_groups = positive_int("effective_num_groups", "num_groups", num_groups)
    cap = max(1, min(num_groups, num_features // 2))
    return next(g for g in range(cap, 0, -1) if num_features % g == 0)


class GroupNorm(nn.GroupNorm):
    r"""Group normalization with the channel count first, so it can replace BatchNorm2d.

    Paper: Y. Wu and K. He, "Group Normalization", ECCV 2018, https://arxiv.org/abs/1803.08494

    .. math::
        y = \frac{x - \mathrm{E}_g[x]}{\sqrt{\mathrm{Var}_g[x] + \epsilon}} \cdot \gamma_c + \beta_c

    Mean and (biased) variance are taken per sample over the channels of a group and all spatial positions.

    Note:
        This is the timm convention and deliberately differs from :class:`torch.nn.GroupNorm`, whose first
        argument is the group count. ``num_groups`` is a maximum: the layer uses
        :func:`effective_num_groups` ``(num_features, num_groups)`` groups (the largest divisor of ``C`` that is at
        most ``min(num_groups, C // 2)``), so it never degenerates into instance norm and never fails on channel
        counts that ``num_groups`` does not divide. The group count in use is ``self.num_groups``.

    Args:
        num_features: Number of channels ``C``.
        num_groups: Maximum number of groups. Default: ``32``.
        eps: Value added to the variance for numerical stability. Default: ``1e-5``.
        affine: Learn a per-channel scale ``weight`` and shift ``bias`` of shape ``(C,)``. Default: ``True``.
        device: Device of the parameters.
        dtype: Dtype of the parameters.

    Shape:
        - Input: :math:`(N, C, *)`
        - Output: :math:`(N, C, *)` (same shape as input)

    Example:
        >>> m = GroupNorm(64)
        >>> m.num_groups
        32
        >>> m(torch.randn(2, 64, 4, 4)).shape
        torch.Size([2, 64, 4, 4])
    """

    def __init__(
        self,
        num_features: int,
        num_groups: int = 32,
        eps: float = 1e-5,
        affine: bool = True,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        # NOTE: channels first (timm convention) so the layer is a drop-in replacement for BatchNorm2d.
        num_features = _check_num_features("GroupNorm", num_features)
        groups = effective_num_groups(num_features, num_groups)
        super().__init__(groups, num_features, eps=eps, affine=affine, device=device, dtype=dtype)
        self.num_features = num_features
        self.requested_num_groups = num_groups

    def extra_repr(self) -> str:
        """Constructor arguments, channels first (the effective group count is shown)."""
        return f"{self.num_features}, num_groups={self.num_groups}, eps={self.eps}, affine={self.affine}"


class LayerNorm2d(nn.GroupNorm):
    r"""Layer normalization over ``(C, H, W)`` of each sample, with a per-channel affine transform.

    Papers: J. L. Ba et al., "Layer Normalization", 2016, https://arxiv.org/abs/1607.06450, in the form used by
    P. Luo et al., "Differentiable Learning-to-Normalize via Switchable Normalization", ICLR 2019,
    https://arxiv.org/abs/1806.10779

    .. math::
        y_{nchw} = \frac{x_{nchw} - \mu_n}{\sqrt{\sigma^2_n + \epsilon}} \cdot \gamma_c + \beta_c,
        \quad \mu_n = \frac{1}{CHW}\sum_{c,h,w} x_{nchw},
        \quad \sigma^2_n = \frac{1}{CHW}\sum_{c,h,w} (x_{nchw} - \mu_n)^2

    Note:
        This is the LN definition of Switchable Normalization (one mean and one biased variance per sample over
        channels and positions), which equals group normalization with a single group. It differs from
        timm's ``LayerNorm2d``, which normalizes over channels only at each position. The affine parameters are per
        channel (shape ``(C,)``), like BatchNorm's, not per element as in :class:`torch.nn.LayerNorm`.

    Args:
        num_features: Number of channels ``C``.
        eps: Value added to the variance for numerical stability. Default: ``1e-5``.
        affine: Learn a per-channel scale ``weight`` and shift ``bias`` of shape ``(C,)``. Default: ``True``.
        device: Device of the parameters.
        dtype: Dtype of the parameters.

    Shape:
        - Input: :math:`(N, C, *)`
        - Output: :math:`(N, C, *)` (same shape as input)

    Example:
        >>> m = LayerNorm2d(8)
        >>> m(torch.randn(2, 8, 4, 4)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        affine: bool = True,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        num_features = _check_num_features("LayerNorm2d", num_features)
        super().__init__(1, num_features, eps=eps, affine=affine, device=device, dtype=dtype)
        self.num_features = num_features

    def extra_repr(self) -> str:
        """Constructor arguments in torch style."""
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"


class InstanceNorm2d(nn.InstanceNorm2d):
    r"""Instance normalization, affine by default, so it can replace BatchNorm2d without losing parameters.

    Paper: D. Ulyanov, A. Vedaldi and V. Lempitsky, "Instance Normalization: The Missing Ingredient for Fast
    Stylization", 2016, https://arxiv.org/abs/1607.08022

    .. math::
        y_{nchw} = \frac{x_{nchw} - \mu_{nc}}{\sqrt{\sigma^2_{nc} + \epsilon}} \cdot \gamma_c + \beta_c

    Note:
        Identical to :class:`torch.nn.InstanceNorm2d` except that ``affine`` defaults to ``True`` (so a model keeps
        its ``weight``/``bias`` parameters when BN is swapped for IN). Running statistics are off by default;
        with ``track_running_stats=True`` torch's momentum convention applies:
        ``running = (1 - momentum) * running + momentum * batch``. In training, each channel needs more than one
        spatial element.

    Args:
        num_features: Number of channels ``C``.
        eps: Value added to the variance for numerical stability. Default: ``1e-5``.
        momentum: Running-statistics update factor (only with ``track_running_stats``). Default: ``0.1``.
        affine: Learn a per-channel ``weight`` and ``bias`` of shape ``(C,)``. Default: ``True``.
        track_running_stats: Keep running mean/variance and use them in eval mode. Default: ``False``.
        device: Device of the parameters and buffers.
        dtype: Dtype of the parameters and buffers.

    Shape:
        - Input: :math:`(N, C, H, W)` or :math:`(C, H, W)`
        - Output: same shape as input

    Example:
        >>> m = InstanceNorm2d(8)
        >>> m(torch.randn(2, 8, 4, 4)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = False,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        num_features = _check_num_features("InstanceNorm2d", num_features)
        super().__init__(
            num_features,
            eps=eps,
            # torch annotates momentum as float but accepts None (a cumulative average), as its BatchNorm does
            momentum=cast(float, momentum),
            affine=affine,
            track_running_stats=track_running_stats,
            device=device,
            dtype=dtype,
        )
