r"""Switchable Normalization layers ``SwitchNorm1d``, ``SwitchNorm2d`` and ``SwitchNorm3d``.

Paper: ``luo2019switchable``: P. Luo, J. Ren, Z. Peng, R. Zhang and J. Li, "Differentiable Learning-to-Normalize via
Switchable Normalization", ICLR 2019, https://arxiv.org/abs/1806.10779
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..functional.switchable import switch_norm_from_ratios
from ._base import LearnedNormBase
from .registry import register_norm_layer

__all__ = ["SwitchNorm1d", "SwitchNorm2d", "SwitchNorm3d"]


class _SwitchNorm(LearnedNormBase):
    r"""Switchable Normalization (base of the 1d/2d/3d classes; see :class:`SwitchNorm2d` for the full docs)."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        normalizers: Sequence[str] = ("in", "ln", "bn"),
        using_bn: bool = True,
        channel_last: bool = False,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            normalizers=normalizers,
            using_bn=using_bn,
            channel_last=channel_last,
            device=device,
            dtype=dtype,
        )
        k = len(self.normalizers)
        self.mean_weight = nn.Parameter(torch.empty(k, device=device, dtype=dtype))
        self.var_weight = nn.Parameter(torch.empty(k, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Running stats (0, 1), ``weight`` 1, ``bias`` 0, importance logits 1 (uniform ratios, as the paper)."""
        super().reset_parameters()
        nn.init.ones_(self.mean_weight)
        nn.init.ones_(self.var_weight)

    def mixing_ratios(self) -> tuple[Tensor, Tensor]:
        """Differentiable ``(mean ratios, variance ratios)``, each ``(K,)`` on the simplex (softmax, in float32)."""
        mw: Tensor = self.mean_weight
        vw: Tensor = self.var_weight
        if mw.dtype != torch.float64:
            mw, vw = mw.float(), vw.float()
        return torch.softmax(mw, 0), torch.softmax(vw, 0)

    @torch.no_grad()
    def ratios(self) -> dict[str, Tensor]:
        """Importance ratios per normalizer (order :attr:`normalizers`): ``{"mean": (K,), "var": (K,)}``, detached."""
        w_mean, w_var = self.mixing_ratios()
        return {"mean": w_mean.detach().clone(), "var": w_var.detach().clone()}

    def forward(self, input: Tensor) -> Tensor:
        self._check_input(input)
        factor = self._update_factor()
        w_mean, w_var = self.mixing_ratios()
        running_mean, running_var = self._running()
        return switch_norm_from_ratios(
            input,
            running_mean,
            running_var,
            self.weight,
            self.bias,
            w_mean,
            w_var,
            self.training,
            factor,
            self.eps,
            normalizers=self.normalizers,
            channel_last=self.channel_last,
            batch_stats=self._batch_stats_fn(),
        )


_SN_DOC = r"""Switchable Normalization{dims}: a learned softmax mixture of instance, layer and batch statistics.

    Paper: P. Luo et al., "Differentiable Learning-to-Normalize via Switchable Normalization", ICLR 2019,
    https://arxiv.org/abs/1806.10779

    .. math::
        y_{{nc\ell}} = \gamma_c \frac{{x_{{nc\ell}} - \sum_k w_k \mu_k}}
        {{\sqrt{{\sum_k w'_k \sigma_k^2 + \epsilon}}}} + \beta_c,
        \qquad w = \operatorname{{softmax}}(\lambda^{{\mu}}),\; w' = \operatorname{{softmax}}(\lambda^{{\sigma}})

    Instance moments :math:`(\mu_{{in}}, \sigma^2_{{in}})` are computed per (n, c) over the positions :math:`\ell`
    (biased variance, in float32 even for half inputs); layer (``"ln"``: per sample over C and positions), group
    (``"gn:G"``) and batch (``"bn"``: per channel over N and positions) moments are pooled from them without
    cancellation: :math:`\sigma^2_p = \operatorname{{mean}}(\sigma^2_{{in}} + (\mu_{{in}} - \mu_p)^2)`. The output is
    one affine map per (n, c), ``x * a[n, c] + b[n, c]``: one reduction and one pointwise pass, whatever K is.

    In eval mode the batch branch uses the running statistics (when tracked); instance and layer branches always
    use the current sample.

    Note:
        ``momentum`` follows PyTorch: ``running = (1 - momentum) * running + momentum * batch``, and
        ``running_var`` stores the *unbiased* batch variance (as :class:`torch.nn.BatchNorm2d`). The official code
        uses the reverse convention: its 0.9 (2019 devkit) is ``momentum=0.1`` here, its 0.997 (2018 code and
        SSN) is ``momentum=0.003``. Official checkpoints with ``(1, C, 1, 1)``/``(1, C, 1)`` tensors load directly.

    Note:
        Training with a batch of one sample while ``"bn"`` is in the mix warns once: BN statistics then equal IN
        statistics. Use ``using_bn=False`` (the official recipe for one sample per GPU). NaN/Inf in the input
        propagate to the output as in torch's norms (no host-syncing check); the running statistics skip channels
        whose batch statistics are not finite, so one bad batch does not poison evaluation.

    Args:
        num_features: Number of channels ``C``.
        eps: Added to the mixed variance. Default: ``1e-5``.
        momentum: Running-average factor (PyTorch convention), ``None`` for a cumulative average. Default: ``0.1``.
        affine: Learn ``weight`` and ``bias`` of shape ``(C,)``. Default: ``True``.
        track_running_stats: Keep ``running_mean``/``running_var`` for the batch branch. Default: ``True``.
        normalizers: Names of the mixed normalizers, in order: ``"in"``, ``"ln"``, ``"bn"``, ``"gn:G"``. The
            logits ``mean_weight``/``var_weight`` have one entry each. Default: ``("in", "ln", "bn")``.
        using_bn: ``False`` drops ``"bn"`` from ``normalizers``. Default: ``True``.{extra_args}
        device: Factory keyword.
        dtype: Factory keyword.

    Shape:
        - Input: {shape}
        - Output: same shape, dtype and memory format as the input.

    Example:
        >>> m = {name}(8)
        >>> y = m(torch.randn({example}))
        >>> sorted(m.ratios())
        ['mean', 'var']
    """


class SwitchNorm2d(_SwitchNorm):
    """Switchable Normalization (docstring set below)."""

    _input_ranks = (4,)
    _shape_hint = "(N, C, H, W)"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        normalizers: Sequence[str] = ("in", "ln", "bn"),
        using_bn: bool = True,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            normalizers=normalizers,
            using_bn=using_bn,
            device=device,
            dtype=dtype,
        )


class SwitchNorm3d(_SwitchNorm):
    """Switchable Normalization (docstring set below)."""

    _input_ranks = (5,)
    _shape_hint = "(N, C, D, H, W)"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        normalizers: Sequence[str] = ("in", "ln", "bn"),
        using_bn: bool = True,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            normalizers=normalizers,
            using_bn=using_bn,
            device=device,
            dtype=dtype,
        )


class SwitchNorm1d(_SwitchNorm):
    """Switchable Normalization (docstring set below)."""

    _input_ranks = (2, 3)
    _shape_hint = "(N, C) or (N, C, L) ((N, L, C) with channel_last=True)"


SwitchNorm2d.__doc__ = _SN_DOC.format(
    dims=" for 4-D inputs", extra_args="", shape="``(N, C, H, W)``", name="SwitchNorm2d", example="2, 8, 4, 4"
)
SwitchNorm3d.__doc__ = _SN_DOC.format(
    dims=" for 5-D inputs", extra_args="", shape="``(N, C, D, H, W)``", name="SwitchNorm3d", example="2, 8, 2, 4, 4"
)
SwitchNorm1d.__doc__ = _SN_DOC.format(
    dims=" for 2-D/3-D inputs (features, sequences and tokens)",
    extra_args=(
        "\n        channel_last: Take 3-D inputs as tokens ``(N, L, C)`` (transformer layout) instead of ``(N, C, L)``."
        '\n            Default: ``False``. With a 2-D ``(N, C)`` input each (n, c) has one position, so ``"in"`` '
        'statistics are\n            degenerate (variance 0); the official ``SwitchNorm1d`` mixed ``("ln", "bn")`` '
        "only - pass that\n            to load its checkpoints."
    ),
    shape="``(N, C)``, ``(N, C, L)``, or ``(N, L, C)`` with ``channel_last=True``",
    name="SwitchNorm1d",
    example="2, 8, 5",
)

register_norm_layer(
    "sn",
    SwitchNorm2d,
    aliases=("switchnorm", "switchnorm2d", "switchablenorm"),
    description="Switchable Normalization: learned softmax mix of IN/LN/BN statistics (Luo et al., ICLR 2019)",
    family="mixture",
    batch_dependent=True,
    learned_mixture=True,
    convertible=True,
    sync="syncsn",
    variants={1: SwitchNorm1d, 3: SwitchNorm3d},
)
