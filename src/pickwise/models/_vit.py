"""Vision-Transformer pieces for video re-ID: patch embedding, position-embedding resampling, STA blocks, proxies.

Module and parameter names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``), so ImageNet ViT weights map one to one
(:mod:`pickwise.models._vit_weights`). The temporal branch of the divided space-time block uses TimeSformer's names
(``temporal_norm``, ``temporal_attn``, ``temporal_fc``).

Papers:

- A. Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale", ICLR 2021,
  https://arxiv.org/abs/2010.11929 (the ViT block: pre-LN residual MSA and MLP).
- S. He et al., "TransReID: Transformer-based Object Re-Identification", ICCV 2021, https://arxiv.org/abs/2102.04378
  (overlapping patch stride 12: grid ``((H - p) // s + 1, (W - p) // s + 1)``; position-embedding resizing).
- G. Bertasius, H. Wang and L. Torresani, "Is Space-Time Attention All You Need for Video Understanding?"
  (TimeSformer), ICML 2021, https://arxiv.org/abs/2102.05095 (divided space-time attention, zero-initialised
  temporal output projection so the start state equals the image model).

Divided space-time attention (STA) on tokens ``X`` of shape ``(B, T, L, D)`` (``L`` = prefix + patch tokens per
frame), with ``MSA`` multi-head self-attention ``softmax(Q K^T / sqrt(d)) V`` over the middle axis::

    X <- X + W_t MSA_time(LN_t(X))      # over (B*L, T, D): each token position attends across the T frames
    X <- X + MSA_space(LN_1(X))         # over (B*T, L, D): each frame's tokens attend to each other
    X <- X + MLP(LN_2(X))

Joint attention replaces the first two lines by one MSA over all ``T*L`` tokens (cost ``O((TL)^2)`` instead of
``O(L T^2 + T L^2)``); ``"space"`` keeps only the spatial MSA (a per-frame image ViT).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import InvalidParameterError, ShapeError

__all__ = [
    "ATTENTION_MODES",
    "Attention",
    "CrossAttention",
    "DropPath",
    "Mlp",
    "PatchEmbed",
    "ProxyAttention",
    "STABlock",
    "patch_grid_size",
    "resample_pos_embed",
]

#: Token-mixing modes of :class:`STABlock`.
ATTENTION_MODES = ("divided", "joint", "space")


def _pair(where: str, name: str, value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
    ):
        raise InvalidParameterError(f"{where}: {name} must be a positive int or a pair of them; got {value!r}")
    return int(value[0]), int(value[1])


def patch_grid_size(
    img_size: int | Sequence[int], patch_size: int | Sequence[int], stride: int | Sequence[int]
) -> tuple[int, int]:
    """Token grid of a patch embedding without padding: ``((H - p) // s + 1, (W - p) // s + 1)`` (TransReID).

    Example:
        >>> patch_grid_size((256, 128), 16, 16), patch_grid_size((256, 128), 16, 12)
        ((16, 8), (21, 10))
    """
    h, w = _pair("patch_grid_size", "img_size", img_size)
    ph, pw = _pair("patch_grid_size", "patch_size", patch_size)
    sh, sw = _pair("patch_grid_size", "stride", stride)
    if h < ph or w < pw:
        raise ShapeError(f"patch_grid_size: the image ({h}x{w}) must be at least one patch ({ph}x{pw})")
    return (h - ph) // sh + 1, (w - pw) // sw + 1


class PatchEmbed(nn.Module):
    """Image to patch tokens by a ``patch_size`` convolution with a configurable (overlapping) ``stride``.

    Args:
        patch_size: Kernel size (16 for ViT-B/16).
        stride: Convolution stride; ``< patch_size`` overlaps patches (TransReID uses 12).
        in_chans: Input channels.
        embed_dim: Token dimension.

    Shape:
        - Input: ``(N, in_chans, H, W)``
        - Output: ``(N, gh * gw, embed_dim)`` with ``(gh, gw) = patch_grid_size((H, W), patch_size, stride)``
    """

    def __init__(self, patch_size: int = 16, stride: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.patch_size = _pair("PatchEmbed", "patch_size", patch_size)
        self.stride = _pair("PatchEmbed", "stride", stride)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.stride)

    def grid_size(self, img_size: Sequence[int]) -> tuple[int, int]:
        """Token grid for an input of ``img_size = (H, W)``."""
        return patch_grid_size(tuple(img_size), self.patch_size, self.stride)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Return the tokens ``(N, gh*gw, D)`` and the grid ``(gh, gw)``."""
        x = self.proj(x)
        grid = (int(x.shape[-2]), int(x.shape[-1]))
        return x.flatten(2).transpose(1, 2), grid


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: Sequence[int],
    old_grid: Sequence[int] | None = None,
    num_prefix_tokens: int = 1,
    mode: str = "bicubic",
    antialias: bool = False,
) -> torch.Tensor:
    """Resize a ViT position embedding ``(1, P + gh*gw, D)`` to a new token grid; prefix tokens are kept.

    The patch part is reshaped to ``(1, D, gh, gw)`` (row-major, as the patch embedding flattens) and resized with
    :func:`torch.nn.functional.interpolate` (``align_corners=False``), as timm's ``resample_abs_pos_embed`` and
    TransReID's ``resize_pos_embed`` do (TransReID uses bilinear; timm and this default use bicubic).

    Args:
        pos_embed: ``(1, num_prefix_tokens + gh*gw, D)``.
        new_grid: Target ``(gh', gw')``.
        old_grid: Source grid; ``None`` assumes a square one (ImageNet checkpoints: 14x14 for 224/16).
        num_prefix_tokens: Leading tokens without a spatial position (1: the class token).
        mode: Interpolation mode passed to ``F.interpolate`` (``"bicubic"``, ``"bilinear"``, ...).
        antialias: Antialiasing when shrinking (``F.interpolate``'s flag).

    Returns:
        ``(1, num_prefix_tokens + gh'*gw', D)``; the input itself when the grid is unchanged.

    Raises:
        ShapeError: If ``pos_embed`` is not 3-d with one row, or its length does not fit ``old_grid``.

    Example:
        >>> pe = torch.randn(1, 1 + 14 * 14, 8)
        >>> resample_pos_embed(pe, (21, 10)).shape
        torch.Size([1, 211, 8])
    """
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise ShapeError(f"resample_pos_embed: expected pos_embed of shape (1, L, D); got {tuple(pos_embed.shape)}")
    n = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(max(n, 0))
        if side * side != n:
            raise ShapeError(
                f"resample_pos_embed: {n} position tokens are not a square grid; pass old_grid=(gh, gw) of the "
                "checkpoint"
            )
        old_grid = (side, side)
    oh, ow = int(old_grid[0]), int(old_grid[1])
    if oh * ow != n:
        raise ShapeError(f"resample_pos_embed: {n} position tokens do not fit old_grid {oh}x{ow}")
    nh, nw = int(new_grid[0]), int(new_grid[1])
    if (nh, nw) == (oh, ow):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    grid = grid.reshape(1, oh, ow, -1).permute(0, 3, 1, 2)
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic", "linear", "trilinear") else {}
    grid = F.interpolate(grid, size=(nh, nw), mode=mode, antialias=antialias, **kwargs)
    grid = grid.permute(0, 2, 3, 1).reshape(1, nh * nw, -1)
    return torch.cat([prefix, grid], dim=1)


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al., ECCV 2016): zero a residual branch with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop whole samples (first axis) in training, rescaling the kept ones by ``1 / (1 - p)``."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """Two-layer MLP with GELU (``fc1``, ``fc2``: timm names)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``fc2(drop(GELU(fc1(x))))``."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def _check_heads(where: str, dim: int, num_heads: int) -> int:
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1 or dim % num_heads:
        raise InvalidParameterError(f"{where}: num_heads must be a positive divisor of dim={dim}; got {num_heads!r}")
    return dim // num_heads


class Attention(nn.Module):
    """Multi-head self-attention through :func:`torch.nn.functional.scaled_dot_product_attention`.

    ``out = proj(concat_h softmax(Q_h K_h^T / sqrt(d_h)) V_h)`` with ``[Q, K, V] = qkv(x)`` (timm layout).

    Shape:
        - Input/Output: ``(N, L, dim)``
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.head_dim = _check_heads("Attention", dim, num_heads)
        self.num_heads = num_heads
        self.attn_drop = float(attn_drop)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention over the middle axis."""
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class CrossAttention(nn.Module):
    """Multi-head attention of a query set onto a key/value set (``q``, ``kv``, ``proj`` linears).

    Shape:
        - Input: queries ``(N, K, dim)``, context ``(N, M, dim)``
        - Output: ``(N, K, dim)``
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.head_dim = _check_heads("CrossAttention", dim, num_heads)
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``proj(softmax(q(P) k(X)^T / sqrt(d)) v(X))`` per head."""
        n, k_len, dim = queries.shape
        m = context.shape[1]
        q = self.q(queries).reshape(n, k_len, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.kv(context).reshape(n, m, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.proj(out.transpose(1, 2).reshape(n, k_len, dim))


class ProxyAttention(nn.Module):
    """``K`` learnable proxy tokens that read a token set by cross-attention (the AAP/IAP building block).

    ``Z = P + CA(LN_q(P), X)``, ``Z <- Z + MLP(LN_2(Z))``, ``Z <- LN_out(Z)``; the pooled feature is
    ``mean_k Z[:, k]``. The proxies ``P`` (``(K, D)``) are shared by all clips, so each proxy learns a fixed query
    ("which part / attribute / identity cue to look for"); the attention map says where in the clip it was found.

    Args:
        dim: Token dimension.
        num_heads: Attention heads.
        num_proxies: ``K``.
        mlp_ratio: Hidden width of the MLP as a multiple of ``dim``; ``0`` drops the MLP.

    Shape:
        - Input: ``(N, M, dim)`` context tokens
        - Output: ``(feature (N, dim), proxies (N, K, dim))``
    """

    def __init__(self, dim: int, num_heads: int, num_proxies: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if isinstance(num_proxies, bool) or not isinstance(num_proxies, int) or num_proxies < 1:
            raise InvalidParameterError(f"ProxyAttention: num_proxies must be an int >= 1; got {num_proxies!r}")
        self.proxies = nn.Parameter(torch.zeros(num_proxies, dim))
        nn.init.trunc_normal_(self.proxies, std=0.02)
        self.norm_q = nn.LayerNorm(dim, eps=1e-6)
        self.attn = CrossAttention(dim, num_heads)
        hidden = int(dim * mlp_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6) if hidden else nn.Identity()
        self.mlp = Mlp(dim, hidden) if hidden else None
        self.norm_out = nn.LayerNorm(dim, eps=1e-6)

    @property
    def num_proxies(self) -> int:
        """``K``."""
        return int(self.proxies.shape[0])

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the pooled feature ``(N, D)`` and the proxy tokens ``(N, K, D)``."""
        p = self.proxies.unsqueeze(0).expand(context.shape[0], -1, -1)
        z = p + self.attn(self.norm_q(p), context)
        if self.mlp is not None:
            z = z + self.mlp(self.norm2(z))
        z = self.norm_out(z)
        return z.mean(dim=1), z


class STABlock(nn.Module):
    """Pre-LN transformer block over clip tokens ``(B, T, L, D)`` with divided, joint or spatial-only attention.

    ``attention="divided"`` (STA, TimeSformer): temporal MSA over ``(B*L, T, D)`` with a zero-initialised output
    projection ``temporal_fc`` (so the block starts as the image block), then spatial MSA over ``(B*T, L, D)``,
    then the MLP. ``"joint"``: one MSA over ``(B, T*L, D)``. ``"space"``: spatial MSA only (frames independent).
    The temporal branch covers every token position, class tokens included, so per-frame class tokens exchange
    information across time.

    Args:
        dim: Token dimension.
        num_heads: Attention heads (both attentions).
        mlp_ratio: MLP hidden width / ``dim``.
        qkv_bias: Bias in the ``qkv`` projections.
        drop_path: Stochastic-depth probability of every residual branch.
        attention: One of :data:`ATTENTION_MODES`.
        attn_drop: Attention-probability dropout.

    Shape:
        - Input/Output: ``(B, T, L, dim)``
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        attention: str = "divided",
        attn_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise InvalidParameterError(f"STABlock: attention must be one of {ATTENTION_MODES}; got {attention!r}")
        self.attention = attention
        if attention == "divided":
            self.temporal_norm = nn.LayerNorm(dim, eps=1e-6)
            self.temporal_attn = Attention(dim, num_heads, qkv_bias, attn_drop)
            self.temporal_fc = nn.Linear(dim, dim)
            nn.init.zeros_(self.temporal_fc.weight)
            nn.init.zeros_(self.temporal_fc.bias)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix tokens across time and space, then apply the MLP."""
        b, t, length, dim = x.shape
        if self.attention == "divided":
            xt = self.temporal_norm(x).transpose(1, 2).reshape(b * length, t, dim)
            xt = self.temporal_fc(self.temporal_attn(xt)).reshape(b, length, t, dim).transpose(1, 2)
            x = x + self.drop_path(xt)
        if self.attention == "joint":
            xs = self.attn(self.norm1(x).reshape(b, t * length, dim))
        else:
            xs = self.attn(self.norm1(x).reshape(b * t, length, dim))
        x = x + self.drop_path(xs.reshape(b, t, length, dim))
        return x + self.drop_path(self.mlp(self.norm2(x)))
