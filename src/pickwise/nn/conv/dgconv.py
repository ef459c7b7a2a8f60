r"""``DGConv2d``: a convolution that learns its channel grouping (dynamic grouping convolution).

Paper ``zhang2019differentiable``: Z. Zhang, J. Li, W. Shao, Z. Peng, R. Zhang, X. Wang and P. Luo,
"Differentiable Learning-to-Group Channels via Groupable Convolutional Neural Networks", ICCV 2019,
https://arxiv.org/abs/1908.05867. Reference code: ``d-li14/dgconv.pytorch`` (C = 2^K only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair, _reverse_repeat_tuple

from ...exceptions import CheckpointError, InvalidParameterError, ShapeError
from .._validation import one_of, positive_float, positive_int
from ..functional.dgconv import (
    STE_MODES,
    binary_gates,
    dgconv_complexity,
    dgconv_mask,
    factorize_channels,
    num_groups_from_gates,
    ste_gates,
)

__all__ = ["DGConv2d"]

#: ``padding_mode`` values, as :class:`torch.nn.Conv2d`'s.
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
_PADDING_MODES: tuple[PaddingMode, ...] = ("zeros", "reflect", "replicate", "circular")


class DGConv2d(nn.Module):
    r"""2-D convolution whose channel groups are learned through binary gates (DGConv, Zhang et al., ICCV 2019).

    Paper: Z. Zhang et al., "Differentiable Learning-to-Group Channels via Groupable Convolutional Neural
    Networks", ICCV 2019, https://arxiv.org/abs/1908.05867

    .. math::
        y = W \circledast_{U} x = \mathrm{conv2d}\big(x,\; W \odot U\big),\qquad
        U = U_1 \otimes \cdots \otimes U_K \otimes \mathbf{1}_{r_{out}\times r_{in}},\qquad
        U_k = (1-g_k) I_{c_k} + g_k \mathbf{1}_{c_k\times c_k},\quad g_k = [\tilde g_k > 0]

    The channel counts are factorized as ``C_in = r_in * c_1 ... c_K`` and ``C_out = r_out * c_1 ... c_K`` with
    ``c_1 ... c_K`` the prime factors of ``gcd(C_in, C_out)`` by default (``C = 2^K`` gives the paper's ``K``
    binary 2x2 factors). A gate logit ``gate[k] <= 0`` makes factor ``k`` an identity (it splits the channels into
    ``c_k`` groups); ``gate[k] > 0`` makes it all-ones (dense). The layer is a grouped convolution with
    ``groups = prod(c_k for gate[k] <= 0)`` groups after a channel permutation;
    :func:`~pickwise.nn.conv.export.dgconv_to_conv` returns that grouped convolution.

    Note:
        Gradients reach ``gate`` through a straight-through estimator written as ``hard + (soft - soft.detach())``
        (no ``.data`` swapping, so the layer compiles with ``fullgraph=True``). Training cost is a dense
        convolution plus an ``O(C_in C_out)`` mask: learning the groups saves no FLOPs until export. Gate logits
        are initialized to ``±1e-8`` with a random sign (the reference code's fix ``bfb0146``), never exactly 0.
        ``gate`` is 1-D, so the engine's ``no_decay_norm_and_bias`` already exempts it from weight decay.

    Args:
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out``.
        kernel_size: Kernel size.
        stride: Stride. Default: ``1``.
        padding: Padding (int, pair, ``"same"`` or ``"valid"``). Default: ``0``.
        dilation: Dilation. Default: ``1``.
        bias: Learn an output bias. Default: ``False``.
        factors: Explicit groupable factors ``c_k >= 2`` whose product divides both channel counts (``None``: the
            prime factors of ``gcd(C_in, C_out)``). Default: ``None``.
        ste: Straight-through estimator: ``"identity"`` (the paper) or ``"clipped"`` (no gradient for
            ``|logit| > 1``). Default: ``"identity"``.
        gate_init: Magnitude of the initial gate logits. Default: ``1e-8``.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``. Default: ``"zeros"``.
        groups: Not supported: the group count is learned. Passing any value raises an error.
        name: Layer name for error messages (models set it to the module path). Default: ``None``.
        device: Device of the parameters.
        dtype: Dtype of the parameters.

    Shape:
        - Input: :math:`(N, C_{in}, H, W)`
        - Output: :math:`(N, C_{out}, H', W')` as for :class:`torch.nn.Conv2d`

    Example:
        >>> m = DGConv2d(8, 8, 3, padding=1)
        >>> m.gate.shape, m(torch.randn(2, 8, 5, 5)).shape
        (torch.Size([3]), torch.Size([2, 8, 5, 5]))
        >>> with torch.no_grad():
        ...     _ = m.gate.copy_(torch.tensor([-1.0, 1.0, -1.0]))
        >>> m.groups
        4
    """

    _version = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = False,
        *,
        factors: Sequence[int] | None = None,
        ste: str = "identity",
        gate_init: float = 1e-8,
        padding_mode: str = "zeros",
        groups: int | None = None,
        name: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        where = f"DGConv2d({in_channels}, {out_channels})" if name is None else f"DGConv2d {name!r}"
        in_channels = positive_int(where, "in_channels", in_channels)
        out_channels = positive_int(where, "out_channels", out_channels)
        if groups is not None:
            raise InvalidParameterError(
                f"{where}: groups={groups!r} cannot be combined with learned grouping; DGConv2d learns its group "
                "count from the gates (read it from .groups). For a fixed group count use "
                f"torch.nn.Conv2d(..., groups={groups!r})"
            )
        one_of(where, "ste", ste, STE_MODES)
        one_of(where, "padding_mode", padding_mode, _PADDING_MODES)
        gate_init = positive_float(where, "gate_init", gate_init)
        self.factors, self.r_in, self.r_out = factorize_channels(in_channels, out_channels, factors, where=where)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding: tuple[int, int] | str = padding if isinstance(padding, str) else _pair(padding)
        if isinstance(self.padding, str):
            if self.padding not in ("same", "valid"):
                raise InvalidParameterError(
                    f"{where}: padding must be an int, a pair, 'same' or 'valid'; got {padding!r}"
                )
            if self.padding == "same" and any(s != 1 for s in self.stride):
                raise InvalidParameterError(f"{where}: padding='same' is not supported for strided convolutions")
        self.dilation = _pair(dilation)
        self.padding_mode: PaddingMode = cast(PaddingMode, padding_mode)  # checked against _PADDING_MODES above
        self.ste = ste
        self.gate_init = float(gate_init)
        self.name = name
        if isinstance(self.padding, str):
            self._reversed_padding_repeated_twice = [0, 0, 0, 0]
            if self.padding == "same":
                for d, k, i in zip(self.dilation, self.kernel_size, range(1, -1, -1), strict=True):
                    total = d * (k - 1)
                    self._reversed_padding_repeated_twice[2 * i] = total // 2
                    self._reversed_padding_repeated_twice[2 * i + 1] = total - total // 2
        else:
            self._reversed_padding_repeated_twice = list(_reverse_repeat_tuple(self.padding, 2))
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, *self.kernel_size, device=device, dtype=dtype)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.gate = nn.Parameter(torch.empty(len(self.factors), device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weight and uniform bias (as :class:`torch.nn.Conv2d`); gate logits ``±gate_init``."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)
        with torch.no_grad():
            if self.gate.is_meta:
                return
            sign = torch.randint(0, 2, self.gate.shape, device=self.gate.device).to(self.gate.dtype) * 2 - 1
            self.gate.copy_(sign * self.gate_init)

    # ----------------------------------------------------------------------------------------------- gates / mask
    def hard_gates(self) -> torch.Tensor:
        """Binary gates ``[gate > 0]`` (no gradient)."""
        return binary_gates(self.gate.detach())

    def gates(self) -> torch.Tensor:
        """Straight-through gates: binary values in the forward pass, gradient to ``gate`` (see ``ste_gates``)."""
        return ste_gates(self.gate, self.ste)

    def mask(self) -> torch.Tensor:
        """The binary mask ``U`` of shape ``(C_out, C_in)``, differentiable w.r.t. ``gate`` through the STE."""
        return dgconv_mask(self.gates(), self.factors, self.r_in, self.r_out, dtype=self.weight.dtype)

    def complexity(self) -> torch.Tensor:
        """Differentiable ``nnz(U) = C_in * C_out / groups`` (paper Eq. 9), a 0-d tensor."""
        return dgconv_complexity(self.gates(), self.factors, self.r_in, self.r_out)

    @property
    def groups(self) -> int:
        """The learned number of groups, ``prod(c_k for gate[k] <= 0)`` (read-only; reads the gates to the host)."""
        return num_groups_from_gates(self.hard_gates(), self.factors)

    # ------------------------------------------------------------------------------------------------- forward
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Convolve with the masked weight ``weight * U``."""
        if input.ndim != 4:
            raise ShapeError(
                f"{self._where()}: input must be 4D (N, C, H, W); got {input.ndim}D input of shape {tuple(input.shape)}"
            )
        weight = self.weight * self.mask()[:, :, None, None]
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(input, weight, self.bias, self.stride, 0, self.dilation)
        return F.conv2d(input, weight, self.bias, self.stride, self.padding, self.dilation)

    # ------------------------------------------------------------------------------------------------ plumbing
    def _where(self, prefix: str = "") -> str:
        name = self.name or prefix.rstrip(".")
        return f"DGConv2d {name!r}" if name else f"DGConv2d({self.in_channels}, {self.out_channels})"

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        key = prefix + "gate"
        if key in state_dict:
            got = state_dict[key]
            if tuple(got.shape) != tuple(self.gate.shape):
                raise CheckpointError(
                    f"{self._where(prefix)} (in_channels={self.in_channels}, out_channels={self.out_channels}, "
                    f"factors={self.factors}): checkpoint entry {key!r} has {got.numel()} gate(s), shape "
                    f"{tuple(got.shape)}; this layer has {self.gate.numel()} (one per factor). The checkpoint was "
                    "saved with different channel counts or factors"
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        """Constructor arguments in torch style, plus the factorization."""
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        s += f", factors={self.factors}"
        if self.ste != "identity":
            s += f", ste={self.ste!r}"
        return s
