r"""Exemplar Normalization (EN): per-sample importance ratios from a small ratio network.

Paper: ``zhang2020exemplar``: R. Zhang, Z. Peng, L. Wu, Z. Li and P. Luo, "Exemplar Normalization for Learning Deep
Representation", CVPR 2020, https://arxiv.org/abs/2003.08761

No official code is public; the ratio network below is a reconstruction (see :class:`ExemplarNorm2d` and
``docs/layers.md``) whose uncertain choices are keyword arguments.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._validation import check_int, one_of, positive_float, positive_int
from ..functional.exemplar import exemplar_norm, exemplar_ratios
from ._base import LearnedNormBase
from .registry import register_norm_layer

__all__ = ["ExemplarNorm2d"]


class ExemplarNorm2d(LearnedNormBase):
    r"""Exemplar Normalization for 4-D inputs: SN-style normalizers mixed with *per-sample* ratios.

    Paper: R. Zhang et al., "Exemplar Normalization for Learning Deep Representation", CVPR 2020,
    https://arxiv.org/abs/2003.08761

    .. math::
        y_{nc} = \gamma_c \sum_k \lambda_{nk} \frac{x_{nc} - \mu_k}{\sqrt{\sigma_k^2 + \epsilon}} + \beta_c,
        \qquad \lambda_n = \operatorname{softmax}\bigl((\lambda^{0} + f_\theta(x_n)) / T\bigr)

    EN mixes normalized *outputs* with one ratio vector per sample (no separate mean/variance ratios). The output
    is computed as one affine map per (n, c) (``a = γ Σ_k λ_nk / s_k``, ``b = β - γ Σ_k λ_nk μ_k / s_k``), never
    materialising the K normalized maps; the same instance-moment engine as :class:`~pickwise.nn.SwitchNorm2d`
    provides all statistics (BN branch: batch statistics in training, running statistics in eval).

    Ratio network :math:`f_\theta` (reconstructed - the paper's exact layout is not public):

    1. Descriptors from statistics only: for each normalizer k, the global average pool of its standardized map,
       :math:`(\mu_{in} - \mu_k)/s_k`, and (``descriptor="mean_std"``) its RMS spread :math:`s_{in}/s_k`;
       ``(N, K, D, C)``.
    2. A 1-D convolution over channels (``kernel_size``, ECA-like), shared by all normalizers: ``D -> 1`` channel,
       giving embeddings :math:`e_{nk} \in \mathbb R^C`.
    3. Relations: the scaled Gram matrix :math:`R_n = E_n E_n^\top / C` (``K x K``).
    4. A two-layer MLP ``K*K -> ratio_hidden -> K`` (ReLU) gives logit offsets, added to the static logits
       ``ratio_weight`` (init 1: uniform, like SN) and divided by ``temperature``; softmax over K.

    The last MLP layer is zero-initialised, so at initialisation EN equals SN with uniform (tied) ratios, and
    setting ``ratio_weight`` (e.g. ``[0, 0, 6]``) initialises it towards a single normalizer (conversion from BN).
    About ``2*kernel_size + K*K*h + h*K + 2K + h + 1`` parameters (~220 for K=3, h=16).

    Args:
        num_features: Number of channels ``C``.
        eps: Added to every variance. Default: ``1e-5``.
        momentum: Running-average factor (PyTorch convention). Default: ``0.1``.
        affine: Learn ``weight``/``bias``. Default: ``True``.
        track_running_stats: Running statistics for the BN branch. Default: ``True``.
        normalizers: Default: ``("in", "ln", "bn")``.
        using_bn: ``False`` drops ``"bn"``. Default: ``True``.
        ratio_hidden: Hidden width ``h`` of the relation MLP. Default: ``16``.
        kernel_size: Kernel of the shared channel convolution (odd). Default: ``3``.
        temperature: Softmax temperature ``T``. Default: ``1.0``.
        descriptor: ``"mean_std"`` or ``"mean"`` (the literal "pool the standardized maps", whose IN descriptor is
            identically zero). Default: ``"mean_std"``.
        device: Factory keyword.
        dtype: Factory keyword.

    Shape:
        - Input: ``(N, C, H, W)``
        - Output: same shape, dtype and memory format.

    Attributes:
        last_sample_ratios: ``(N, K)`` ratios of the last forward (eager mode only), or ``None``.
    """

    _input_ranks = (4,)
    _shape_hint = "(N, C, H, W)"
    last_ratios: Tensor

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
        ratio_hidden: int = 16,
        kernel_size: int = 3,
        temperature: float = 1.0,
        descriptor: str = "mean_std",
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
        where = type(self).__name__
        ratio_hidden = positive_int(where, "ratio_hidden", ratio_hidden)
        kernel_size = check_int(where, "kernel_size", kernel_size, odd=True)
        temperature = positive_float(where, "temperature", temperature)
        one_of(where, "descriptor", descriptor, ("mean_std", "mean"))
        self.ratio_hidden = ratio_hidden
        self.kernel_size = kernel_size
        self.temperature = float(temperature)
        self.descriptor = descriptor
        k = len(self.normalizers)
        fk = {"device": device, "dtype": dtype}
        self.ratio_weight = nn.Parameter(torch.empty(k, **fk))
        self.embed = nn.Conv1d(2 if descriptor == "mean_std" else 1, 1, kernel_size, padding=kernel_size // 2, **fk)
        self.relation_fc1 = nn.Linear(k * k, ratio_hidden, **fk)
        self.relation_fc2 = nn.Linear(ratio_hidden, k, **fk)
        self.register_buffer("last_ratios", torch.empty(k, device=device), persistent=False)
        self.last_sample_ratios: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BN-like reset, static logits 1, default init of the conv/first MLP layer, zeros for the last layer."""
        super().reset_parameters()
        nn.init.ones_(self.ratio_weight)
        self.embed.reset_parameters()
        self.relation_fc1.reset_parameters()
        nn.init.zeros_(self.relation_fc2.weight)
        nn.init.zeros_(self.relation_fc2.bias)
        self.last_ratios.fill_(float("nan"))  # "no forward yet": ratios() then reports the static ratios
        self.last_sample_ratios = None

    def _ratio_params(self) -> tuple[Tensor | None, ...]:
        return (
            self.ratio_weight,
            self.embed.weight,
            self.embed.bias,
            self.relation_fc1.weight,
            self.relation_fc1.bias,
            self.relation_fc2.weight,
            self.relation_fc2.bias,
        )

    def ratio_network(self, descriptors: Tensor) -> Tensor:
        """Map descriptors ``(N, K, D, C)`` to per-sample ratios ``(N, K)`` (softmax over K)."""
        return exemplar_ratios(descriptors, *self._ratio_params(), temperature=self.temperature)  # type: ignore[arg-type]

    def _run(
        self, input: Tensor, running_mean: Tensor | None, running_var: Tensor | None, factor: Any
    ) -> tuple[Tensor, Tensor]:
        return exemplar_norm(
            input,
            running_mean,
            running_var,
            self.weight,
            self.bias,
            functools.partial(exemplar_ratios, temperature=self.temperature),
            self._ratio_params(),
            self.training,
            factor,
            self.eps,
            normalizers=self.normalizers,
            channel_last=self.channel_last,
            batch_stats=self._batch_stats_fn(),
            descriptor=self.descriptor,
        )

    def forward(self, input: Tensor) -> Tensor:
        """Normalize ``input`` and record the ratios (``last_ratios``; ``last_sample_ratios`` in eager mode)."""
        self._check_input(input)
        factor = self._update_factor()
        running_mean, running_var = self._running()
        out, ratios = self._run(input, running_mean, running_var, factor)
        with torch.no_grad():
            self.last_ratios.copy_(ratios.detach().mean(0))
        if not torch.compiler.is_compiling():
            self.last_sample_ratios = ratios.detach()
        return out

    @torch.no_grad()
    def sample_ratios(self, input: Tensor) -> Tensor:
        """Per-sample ratios ``(N, K)`` for ``input`` in the current mode, without touching any buffer."""
        self._check_input(input)
        running_mean, running_var = self._running()
        if running_mean is not None and running_var is not None:
            running_mean, running_var = running_mean.clone(), running_var.clone()
        return self._run(input, running_mean, running_var, 0.0)[1]

    @torch.no_grad()
    def ratios(self) -> dict[str, Tensor]:
        """Batch-averaged ratios of the last forward (before any: ``softmax(ratio_weight / T)``) as ``{"mean", "var"}``.

        EN has one ratio vector per sample for means and variances alike, so both entries hold the same values.
        """
        r = self.last_ratios.clone()
        if bool(torch.isnan(r).any()):
            r = torch.softmax(self.ratio_weight.detach().float() / self.temperature, 0)
        return {"mean": r, "var": r.clone()}

    def extra_repr(self) -> str:
        """Constructor arguments, torch style."""
        return (
            super().extra_repr()
            + f", ratio_hidden={self.ratio_hidden}, kernel_size={self.kernel_size}, temperature={self.temperature}"
            + ("" if self.descriptor == "mean_std" else f", descriptor={self.descriptor!r}")
        )


register_norm_layer(
    "en",
    ExemplarNorm2d,
    aliases=("exemplarnorm", "exemplarnorm2d"),
    description="Exemplar Normalization: per-sample IN/LN/BN ratios from a small network (Zhang et al., CVPR 2020)",
    family="mixture",
    batch_dependent=True,
    learned_mixture=True,
    convertible=True,
    sync="syncen",
)
