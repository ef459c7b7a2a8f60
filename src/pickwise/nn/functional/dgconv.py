r"""Pure functions of dynamic-grouping convolution (DGConv): channel factorization, gates, the mask U, the conv.

Paper ``zhang2019differentiable``: Z. Zhang, J. Li, W. Shao, Z. Peng, R. Zhang, X. Wang and P. Luo,
"Differentiable Learning-to-Group Channels via Groupable Convolutional Neural Networks", ICCV 2019,
https://arxiv.org/abs/1908.05867

A DGConv layer multiplies a dense convolution weight ``W`` of shape ``(C_out, C_in, k, k)`` by a binary mask

.. math::
    U = U_1 \otimes U_2 \otimes \cdots \otimes U_K \otimes \mathbf{1}_{r_{out} \times r_{in}},
    \qquad U_k = (1 - g_k)\, I_{c_k} + g_k\, \mathbf{1}_{c_k \times c_k},

with binary gates :math:`g_k = [\tilde g_k > 0]` computed from real logits :math:`\tilde g_k`. The groupable part
:math:`P = \prod_k c_k` divides both channel counts (``C_in = r_in * P``, ``C_out = r_out * P``); the trailing
all-ones factor is always dense. For ``C_in = C_out = 2^K`` with all ``c_k = 2`` this is exactly the paper's
construction. The layer is then a grouped convolution with :math:`G = \prod_{k: g_k = 0} c_k` groups after a
permutation of the channels (see :func:`group_permutation`), and :math:`\mathrm{nnz}(U) = C_{in} C_{out} / G`.

Gradients reach the logits through a straight-through estimator (STE) written as
``hard + (soft - soft.detach())``: the forward value is the binary gate, the backward pass uses the derivative of
``soft`` (``soft = logit`` for the paper's identity STE, ``clamp(logit, -1, 1)`` for the clipped variant). No
``.data`` swapping is involved, so the functions are safe under ``torch.compile`` and autograd-based DDP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ...exceptions import InvalidParameterError
from .._validation import is_int

__all__ = [
    "STE_MODES",
    "binary_gates",
    "dgconv2d",
    "dgconv_complexity",
    "dgconv_mask",
    "factorize_channels",
    "group_permutation",
    "num_groups_from_gates",
    "prime_factors",
    "ste_gates",
]

#: Straight-through estimator variants accepted by :func:`ste_gates`.
STE_MODES = ("identity", "clipped")


def prime_factors(n: int) -> list[int]:
    """Prime factorization of ``n >= 1`` in ascending order (``[]`` for 1).

    Example:
        >>> prime_factors(96), prime_factors(1), prime_factors(97)
        ([2, 2, 2, 2, 2, 3], [], [97])
    """
    out: list[int] = []
    p = 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def factorize_channels(
    in_channels: int, out_channels: int, factors: Sequence[int] | None = None, *, where: str = "dgconv"
) -> tuple[tuple[int, ...], int, int]:
    """Split ``(C_in, C_out)`` into groupable factors ``c_1..c_K`` and dense remainders ``(r_in, r_out)``.

    By default the groupable part is ``P = gcd(C_in, C_out)`` factorized into primes in ascending order, so
    ``C = 2^K`` gives ``K`` factors of 2 (the paper) and e.g. ``C = 96`` gives ``(2, 2, 2, 2, 2, 3)``.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        factors: Explicit factors ``c_k >= 2`` whose product must divide both channel counts (``None``: primes).
        where: Layer name used in error messages.

    Returns:
        ``(factors, r_in, r_out)`` with ``C_in = r_in * prod(factors)`` and ``C_out = r_out * prod(factors)``.

    Raises:
        InvalidParameterError: If no factorization exists (``gcd(C_in, C_out) == 1``) or ``factors`` does not fit.
    """
    common = math.gcd(in_channels, out_channels)
    if factors is None:
        fs = tuple(prime_factors(common))
        if not fs:
            raise InvalidParameterError(
                f"{where}: in_channels={in_channels} and out_channels={out_channels} share no factor > 1, so no "
                "grouping is possible; use channel counts with a common factor (e.g. powers of two)"
            )
    else:
        fs = tuple(factors)
        if not fs or not all(is_int(c, minimum=2) for c in fs):
            raise InvalidParameterError(f"{where}: factors must be a non-empty sequence of ints >= 2; got {factors!r}")
        prod = math.prod(fs)
        if in_channels % prod or out_channels % prod:
            raise InvalidParameterError(
                f"{where}: factors {fs!r} (product {prod}) must divide both in_channels={in_channels} and "
                f"out_channels={out_channels}; gcd is {common} = {' x '.join(map(str, prime_factors(common))) or 1}"
            )
    prod = math.prod(fs)
    return fs, in_channels // prod, out_channels // prod


def binary_gates(logits: torch.Tensor) -> torch.Tensor:
    """Hard gates ``g = [logit > 0]`` as floats (``logit <= 0``: identity factor, ``> 0``: all-ones factor).

    The reference code uses ``(sign(logit) + 1) / 2``, which gives 0.5 at exactly 0; here 0 maps to the identity so
    the gates are always binary.
    """
    return (logits > 0).to(logits.dtype)


def ste_gates(logits: torch.Tensor, mode: str = "identity") -> torch.Tensor:
    """Binary gates in the forward pass, straight-through gradients in the backward pass.

    ``mode="identity"`` (the paper): d gate / d logit = 1. ``mode="clipped"``: 1 for ``|logit| <= 1``, else 0.
    """
    hard = binary_gates(logits)
    soft = logits if mode == "identity" else logits.clamp(-1.0, 1.0)
    return hard + (soft - soft.detach())


def _kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # explicit broadcast form of torch.kron for 2-D inputs (plain mul + reshape: compile friendly)
    return (a[:, None, :, None] * b[None, :, None, :]).reshape(a.shape[0] * b.shape[0], a.shape[1] * b.shape[1])


def dgconv_mask(
    gates: torch.Tensor, factors: Sequence[int], r_in: int = 1, r_out: int = 1, *, dtype: torch.dtype | None = None
) -> torch.Tensor:
    r"""Build ``U = U_1 ⊗ ... ⊗ U_K ⊗ 1_{r_out x r_in}`` with ``U_k = (1 - g_k) I + g_k 1`` (shape ``(C_out, C_in)``).

    ``gates`` may be binary (the layer's forward), straight-through (gradients to the logits) or real-valued (the
    relaxed function used by gradcheck): ``U`` is multilinear in the gates.

    Args:
        gates: Gate values, shape ``(K,)``.
        factors: Factor sizes ``c_1..c_K`` (``c_1`` is the most significant digit of the channel index).
        r_in: Dense input remainder.
        r_out: Dense output remainder.
        dtype: Mask dtype (default: the gates' dtype).
    """
    dtype = dtype or gates.dtype
    mats = []
    for k, c in enumerate(factors):
        eye = torch.eye(c, dtype=dtype, device=gates.device)
        mats.append(eye + gates[k].to(dtype) * (1.0 - eye))
    if r_in != 1 or r_out != 1:
        mats.append(torch.ones(r_out, r_in, dtype=dtype, device=gates.device))
    # pairwise tree (as the reference ``aggregate``): only the last Kronecker product is C_out x C_in, which makes
    # the backward pass several times cheaper than a left-to-right chain
    while len(mats) > 1:
        paired = [_kron(mats[i], mats[i + 1]) for i in range(0, len(mats) - 1, 2)]
        mats = paired + mats[len(paired) * 2 :]
    return mats[0]


def dgconv_complexity(gates: torch.Tensor, factors: Sequence[int], r_in: int = 1, r_out: int = 1) -> torch.Tensor:
    r"""Differentiable ``nnz(U) = C_in C_out / G``, the paper's per-layer complexity (Eq. 9).

    .. math:: \zeta = r_{in} r_{out} \prod_k \left(c_k + g_k (c_k^2 - c_k)\right)

    For ``c_k = 2`` this is ``C \prod_k (1 + g_k) = 2^{K + \sum g}``, the reference ``U_regularizer``.
    """
    sizes = torch.tensor(factors, dtype=gates.dtype, device=gates.device)
    return (sizes + gates * (sizes * sizes - sizes)).prod() * float(r_in * r_out)


def num_groups_from_gates(gates: Sequence[float] | torch.Tensor, factors: Sequence[int]) -> int:
    """``G = prod of c_k over the identity factors (gate 0)``; ``gates`` are binary values."""
    vals = gates.tolist() if isinstance(gates, torch.Tensor) else list(gates)
    return math.prod(c for c, g in zip(factors, vals, strict=True) if g < 0.5)


def group_permutation(gates: Sequence[float] | torch.Tensor, factors: Sequence[int], r: int = 1) -> torch.Tensor:
    """Channel permutation ``perm`` that makes ``U`` block diagonal: ``U[perm_out][:, perm_in] = I_G ⊗ 1``.

    Channel indices are mixed-radix numbers with digits ``(d_1, ..., d_K, d_r)`` (``d_1`` most significant). The new
    order puts the identity digits first (in their original order), then the dense digits and ``d_r``; position
    ``p`` of the permuted tensor holds original channel ``perm[p]``. Channels of a group are contiguous in the new
    order, and group ``i`` holds the channels whose identity digits spell ``i``.

    Args:
        gates: Binary gates, length ``K``.
        factors: Factor sizes ``c_1..c_K``.
        r: The dense remainder (``r_in`` for the input side, ``r_out`` for the output side).
    """
    vals = gates.tolist() if isinstance(gates, torch.Tensor) else list(gates)
    sizes = [*factors, r]
    total = math.prod(sizes)
    # digits of every original channel index, most significant first: (..., K + 1)
    idx = torch.arange(total)
    digits = []
    for s in reversed(sizes):
        digits.append(idx % s)
        idx = idx // s
    digits = digits[::-1]
    ident = [k for k, g in enumerate(vals) if g < 0.5]
    dense = [k for k, g in enumerate(vals) if g >= 0.5] + [len(factors)]
    order = ident + dense
    new_index = torch.zeros(total, dtype=torch.long)
    for k in order:
        new_index = new_index * sizes[k] + digits[k]
    # new_index[c] is where original channel c goes; perm is its inverse
    return torch.argsort(new_index)


def dgconv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    gates: torch.Tensor,
    factors: Sequence[int],
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    *,
    r_in: int = 1,
    r_out: int = 1,
) -> torch.Tensor:
    """Masked dense convolution ``conv2d(input, weight * U[:, :, None, None], bias)`` (zero padding).

    ``gates`` are used as given (binary, straight-through or relaxed real values); see :func:`ste_gates`.
    """
    mask = dgconv_mask(gates, factors, r_in, r_out, dtype=weight.dtype)
    return F.conv2d(input, weight * mask[:, :, None, None], bias, stride, padding, dilation)
