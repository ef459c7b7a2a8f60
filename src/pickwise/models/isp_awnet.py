"""AWNet-style attentive wavelet network for learned ISP (AIM 2020 runner-up).

Dai et al., "AWNet: Attentive Wavelet Network for Image ISP", ECCV-W 2020, arXiv:2008.09228 (team MacAI); code
``Charlie0215/AWNet-Attentive-Wavelet-Network-for-Image-ISP``, ``models/model_4channel.py`` and ``modules_4channel.py``.

A 5-level U-Net over the packed RAW:

- encoder levels of *global-context residual dense blocks* (:class:`GCRDB`: dense 3x3 conv layers with
  ``norm_layer``, a 1x1 fusion and a GCNet context block, Cao et al., ICCV-W 2019), each preceded by squeeze-and-
  excitation attention (:class:`SENet`) and followed by :class:`WaveletDown` (a strided conv stem concatenated with a
  1x1 conv of the Haar LL band; the full DWT is kept for the decoder) — channels ``base`` → ``16 * base``;
- decoder levels :class:`WaveletUp`: PixelShuffle stem with context-block attention, plus the IWT of the encoder's
  DWT features, fused by 1x1 convs, plus an attention shortcut from the encoder;
- side outputs (conv → sigmoid) at scales 1–5 (h ... h/16) for the multi-scale loss, and the full-resolution head:
  PixelShuffle(2) → pyramid pooling (PSPNet) → SE → conv → sigmoid at 2h.

``branch`` selects the input: ``"raw"`` (AWNet-R: the 4 packed planes), ``"demosaic"`` (AWNet-D: a bilinear
pseudo-demosaic to RGB at 2h, G = (Gb + Gr) / 2, folded back to 12 channels at h by pixel-unshuffle — the fold is
reconstructed; the original 3-channel model's stem differs) or ``"both"`` (the final entry's average of the two).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import InvalidParameterError
from ._base import check_int
from ._registry import register_model
from .isp_mwisp import haar_dwt, haar_iwt
from .isp_unet import ISPModel, _check_no_pretrained, pad_to_multiple, resolve_optional_norm

MODEL_TASK = "isp"  # what the registry lists these models under (``list_models(task=...)``)

__all__ = [
    "AWNet",
    "ContextBlock",
    "GCRDB",
    "SENet",
    "WaveletDown",
    "WaveletUp",
    "awnet",
    "awnet_tiny",
    "pseudo_demosaic",
]

BRANCHES = ("raw", "demosaic", "both")


def pseudo_demosaic(packed: torch.Tensor) -> torch.Tensor:
    """AWNet's pseudo-demosaic of packed ``(B, Gb, R, Gr)`` planes: bilinear ×2 per plane, ``G = (Gb + Gr) / 2``.

    Returns RGB ``[B, 3, 2h, 2w]`` (channels R, G, B).
    """
    up = F.interpolate(packed, scale_factor=2.0, mode="bilinear", align_corners=False)
    return torch.stack([up[:, 2], 0.5 * (up[:, 1] + up[:, 3]), up[:, 0]], dim=1)


class SENet(nn.Module):
    """AWNet's ``SE_net``: ``x_red(x) * sigmoid(conv_out(relu(conv_mid(relu(conv_in(avgpool(x)))))))``."""

    def __init__(self, cin: int, cout: int, reduction: int = 4) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(cin, cin, 1)
        self.conv_mid = nn.Conv2d(cin, max(1, cin // reduction), 1)
        self.conv_out = nn.Conv2d(max(1, cin // reduction), cout, 1)
        self.x_red = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Channel-reweighted 1x1 projection of ``x``."""
        y = x.mean(dim=(-2, -1), keepdim=True)
        y = torch.sigmoid(self.conv_out(F.relu(self.conv_mid(F.relu(self.conv_in(y))))))
        return self.x_red(x) * y


class ContextBlock(nn.Module):
    """GCNet context block with attention pooling and the additive channel transform.

    ``x + W2 PReLU(LN(W1 Σ_p softmax(conv_mask(x))_p x_p))``; the bottleneck has ``planes // ratio`` channels.
    """

    def __init__(self, channels: int, planes: int | None = None, ratio: int = 4) -> None:
        super().__init__()
        hidden = max(1, (planes or channels) // ratio)
        self.conv_mask = nn.Conv2d(channels, 1, 1)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.LayerNorm([hidden, 1, 1]), nn.PReLU(), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus the transformed global context."""
        b, c = x.shape[:2]
        mask = torch.softmax(self.conv_mask(x).reshape(b, 1, -1), dim=-1)  # [B, 1, HW]
        context = torch.bmm(x.reshape(b, c, -1), mask.transpose(1, 2)).reshape(b, c, 1, 1)
        return x + self.transform(context)


class _MakeDense(nn.Module):
    def __init__(self, cin: int, growth: int, norm: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, growth, 3, padding=1)
        self.norm = norm(growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.norm(F.relu(self.conv(x)))], dim=1)


class GCRDB(nn.Module):
    """Global-context residual dense block: ``x + GC(conv1x1(dense(x)))``."""

    def __init__(self, channels: int, n_dense: int = 6, growth: int = 16, norm: Any = nn.BatchNorm2d) -> None:
        super().__init__()
        layers, c = [], channels
        for _ in range(n_dense):
            layers.append(_MakeDense(c, growth, norm))
            c += growth
        self.dense = nn.Sequential(*layers)
        self.fuse = nn.Conv2d(c, channels, 1)
        self.att = ContextBlock(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual dense features with context attention."""
        return x + self.att(self.fuse(self.dense(x)))


class WaveletDown(nn.Module):
    """AWNet's ``GCWTResDown``: ``cat(stem(x), conv1x1(LL(x)))`` (2C channels at half size) and the full DWT of x."""

    def __init__(self, channels: int, norm: Any = nn.BatchNorm2d) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            norm(channels),
            nn.PReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            norm(channels),
            nn.PReLU(),
        )
        self.conv1x1 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(down-sampled features [B, 2C, h/2, w/2], DWT of x [B, 4C, h/2, w/2])``."""
        dwt = haar_dwt(x)
        ll = dwt[:, : x.shape[1]]
        return torch.cat([self.stem(x), self.conv1x1(ll)], dim=1), dwt


class WaveletUp(nn.Module):
    """AWNet's ``GCIWTResUp(cin)``: input ``cin/2`` channels and the ``cin``-channel DWT; output ``cin/4`` at 2x.

    As in the released model, the stem's "norm" slots hold context blocks (``GCIWTResUp(c, ContextBlock2d)``).
    """

    def __init__(self, cin: int) -> None:
        super().__init__()
        q = cin // 4
        self.pre_conv_stem = nn.Conv2d(cin // 2, cin, 1)
        self.stem = nn.Sequential(
            nn.PixelShuffle(2),
            nn.Conv2d(q, q, 3, padding=1),
            ContextBlock(q, planes=32),
            nn.PReLU(),
            nn.Conv2d(q, q, 3, padding=1),
            ContextBlock(q, planes=32),
            nn.PReLU(),
        )
        self.pre_conv = nn.Conv2d(cin, cin, 1)
        self.post_conv = nn.Conv2d(q, q, 1)
        self.last_conv = nn.Conv2d(2 * q, q, 1)

    def forward(self, x: torch.Tensor, dwt: torch.Tensor) -> torch.Tensor:
        """Up-sampled features fused with the IWT of the encoder's DWT."""
        stem = self.stem(self.pre_conv_stem(x))
        iwt = self.post_conv(haar_iwt(self.pre_conv(dwt)))
        return self.last_conv(torch.cat([stem, iwt], dim=1))


class _Shortcut(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.se = SENet(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(F.relu(self.conv2(F.relu(self.conv1(x)))))


class _PSP(nn.Module):
    def __init__(self, channels: int, out: int, sizes: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.sizes = tuple(sizes)
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 1, bias=False) for _ in self.sizes)
        self.bottleneck = nn.Conv2d(channels * (len(self.sizes) + 1), out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        priors = [
            F.interpolate(conv(F.adaptive_avg_pool2d(x, s)), size=(h, w), mode="bilinear", align_corners=False)
            for s, conv in zip(self.sizes, self.convs)
        ]
        return F.relu(self.bottleneck(torch.cat([*priors, x], dim=1)))


class _LastUpsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        q = max(1, channels // 4)
        self.up = nn.PixelShuffle(2)
        self.pre = nn.Conv2d(q, q, 3, padding=1)
        self.psp = _PSP(q, q)
        self.post = nn.Conv2d(2 * q, 2 * q, 3, padding=1)
        self.se = SENet(2 * q, 2 * q)
        self.final = nn.Conv2d(2 * q, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(self.up(x))
        x = torch.cat([self.psp(x), x], dim=1)
        return torch.sigmoid(self.final(self.se(self.post(x))))


class _Trunk(nn.Module):
    def __init__(self, in_chans: int, base: int, blocks: Sequence[int], n_dense: int, growth: int, norm: Any) -> None:
        super().__init__()
        ch = [base * 2**i for i in range(5)]
        self.conv1 = nn.Conv2d(in_chans, base, 3, padding=1)
        self.se = nn.ModuleList(SENet(c, c) for c in ch)
        self.enc = nn.ModuleList(
            nn.Sequential(*[GCRDB(ch[i], n_dense, growth, norm) for _ in range(blocks[i])]) for i in range(5)
        )
        self.down = nn.ModuleList(WaveletDown(ch[i], norm) for i in range(4))
        self.up = nn.ModuleList(WaveletUp(4 * ch[i]) for i in range(4))  # up[i]: level i+1 -> level i
        self.shortcut = nn.ModuleList(_Shortcut(ch[i]) for i in range(4))
        self.side = nn.ModuleList(nn.Conv2d(c, 3, 3, padding=1) for c in ch)
        self.last = _LastUpsample(base)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, dwts = [self.conv1(x)], []
        for i in range(4):
            y, dwt = self.down[i](self.enc[i](self.se[i](feats[-1])))
            feats.append(y)
            dwts.append(dwt)
        y = self.enc[4](self.se[4](feats[4]))
        sides = [torch.sigmoid(self.side[4](y))]
        for i in reversed(range(4)):
            y = self.up[i](y, dwts[i]) + self.shortcut[i](feats[i])
            sides.append(torch.sigmoid(self.side[i](y)))
        return [self.last(y), *reversed(sides)]


class AWNet(ISPModel):
    """AWNet-style attentive wavelet ISP network.

    Args:
        base: Channels of the first level (64 in the paper; level ℓ has ``base * 2**ℓ``).
        blocks: GCRDBs per level (``[2, 2, 2, 3, 4]`` in training, ``[3, 3, 3, 4, 4]`` in the final entry).
        n_dense: Dense layers per GCRDB (6 in the paper).
        growth: Growth rate of the dense layers (16 in the paper).
        norm_layer: Normalization of the dense layers and wavelet down-sampling stems (default ``"bn"``, the
            paper's BatchNorm; any registered name, or ``"none"``).
        branch: ``"raw"`` (AWNet-R), ``"demosaic"`` (AWNet-D) or ``"both"`` (their average, the final entry).

    Shape:
        ``[B, 4, h, w]`` → ``[B, 3, 2h, 2w]``; :meth:`forward_outputs` also returns the five side outputs.

    Example:
        >>> import torch
        >>> net = AWNet(base=8, blocks=(1, 1, 1, 1, 1), n_dense=1, growth=4).eval()
        >>> [tuple(o.shape[-2:]) for o in net.forward_outputs(torch.rand(1, 4, 32, 32))]
        [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    """

    size_multiple = 16
    min_size = 32  # BatchNorm in training needs more than one value per channel at h/16

    def __init__(
        self,
        base: int = 64,
        blocks: Sequence[int] = (2, 2, 2, 3, 4),
        n_dense: int = 6,
        growth: int = 16,
        norm_layer: Any = "bn",
        branch: str = "raw",
    ) -> None:
        super().__init__()
        base = check_int("AWNet", "base", base, 4)
        if base % 4:
            raise InvalidParameterError(f"AWNet: base must be a multiple of 4 (PixelShuffle heads); got {base}")
        blocks = tuple(blocks)
        if len(blocks) != 5:
            raise InvalidParameterError(f"AWNet: blocks must list 5 per-level counts; got {list(blocks)}")
        for b in blocks:
            check_int("AWNet", "blocks[i]", b, 0)
        n_dense = check_int("AWNet", "n_dense", n_dense, 0)
        growth = check_int("AWNet", "growth", growth, 1)
        if branch not in BRANCHES:
            raise InvalidParameterError(f"AWNet: branch must be one of {', '.join(BRANCHES)}; got {branch!r}")
        norm = resolve_optional_norm("AWNet", norm_layer)
        self.branch = branch
        self.raw = _Trunk(4, base, blocks, n_dense, growth, norm) if branch in ("raw", "both") else None
        self.demosaic = _Trunk(12, base, blocks, n_dense, growth, norm) if branch in ("demosaic", "both") else None

    def _outputs_padded(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        if self.raw is not None:
            outs.append(self.raw(x))
        if self.demosaic is not None:
            outs.append(self.demosaic(F.pixel_unshuffle(pseudo_demosaic(x), 2)))
        if len(outs) == 1:
            return outs[0]
        return [0.5 * (a + b) for a, b in zip(*outs)]

    def forward_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[full (2h), scale 1 (h), scale 2 (h/2), ..., scale 5 (h/16)]``, each cropped to ``ceil(2h / 2**s)``."""
        self.check_input(x)
        xp, (h, w) = pad_to_multiple(x, self.size_multiple, self.min_size)
        outs = self._outputs_padded(xp)
        return [o[..., : -(-2 * h // 2**s), : -(-2 * w // 2**s)] for s, o in enumerate(outs)]

    def forward(self, x: torch.Tensor, all_outputs: bool = False) -> Any:
        """RGB ``[B, 3, 2h, 2w]``; with ``all_outputs`` the list of :meth:`forward_outputs` (for the side losses)."""
        return self.forward_outputs(x) if all_outputs else super().forward(x)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The full-resolution output on a padded input."""
        return self._outputs_padded(x)[0]


@register_model
def awnet_tiny(pretrained: bool = False, **kwargs: Any) -> AWNet:
    """CPU-size AWNet-style network (base 8, one GCRDB per level, 2 dense layers of growth 8, RAW branch)."""
    _check_no_pretrained("awnet_tiny", pretrained)
    return AWNet(**{"base": 8, "blocks": (1, 1, 1, 1, 1), "n_dense": 2, "growth": 8, **kwargs})


@register_model
def awnet(pretrained: bool = False, **kwargs: Any) -> AWNet:
    """Paper-size AWNet (base 64, blocks [2, 2, 2, 3, 4], 6 dense layers of growth 16, RAW branch)."""
    _check_no_pretrained("awnet", pretrained)
    return AWNet(**{"base": 64, "blocks": (2, 2, 2, 3, 4), "n_dense": 6, "growth": 16, **kwargs})
