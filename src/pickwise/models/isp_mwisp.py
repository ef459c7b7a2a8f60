"""MW-ISPNet-style network: multi-level Haar wavelet U-Net with residual channel-attention groups.

MW-ISPNet (Ignatov et al., "AIM 2020 Challenge on Learned Image Signal Processing Pipeline", ECCV Workshops 2020,
arXiv:2011.04994; team MW-ISPNet, winner of the fidelity track; code ``cszhilu1998/MW-ISPNet``, ``MWRCAN``) is a
multi-level wavelet CNN (MWCNN, Liu et al., CVPR-W 2018) whose levels hold residual channel attention groups
(RCAN, Zhang et al., ECCV 2018):

- head: Haar DWT of the packed 4-channel RAW (16 channels at h/2);
- three levels with DWT down-sampling and IWT up-sampling, conv + PReLU at every transition, an RCAGroup of
  ``n_blocks`` RCABs per level (channels ``c1/c2/c3`` = 64/128/128 in the winning entry, 20 blocks), two RCAGroups in
  the middle, additive skips;
- tail: IWT back to 4 channels at h, conv 4 → 12, PixelShuffle(2) → RGB at 2h (no output activation).

The Haar transform is implemented exactly (orthonormal, so :func:`haar_iwt` inverts :func:`haar_dwt` up to float
rounding) with MWCNN's band-major channel layout ``cat(LL, HL, LH, HH)``: each band is ``C`` consecutive channels.
(MW-ISPNet's own conv-based DWT interleaves the bands per channel; the layout only matters for importing weights.)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..exceptions import InvalidParameterError, ShapeError
from ._base import check_int
from ._registry import register_model
from .isp_unet import ISPModel, _check_no_pretrained

MODEL_TASK = "isp"  # what the registry lists these models under (``list_models(task=...)``)

__all__ = [
    "CALayer",
    "HaarDWT",
    "HaarIWT",
    "MWISPNet",
    "RCAB",
    "RCAGroup",
    "haar_dwt",
    "haar_iwt",
    "mwisp",
    "mwisp_tiny",
]


def haar_dwt(x: torch.Tensor) -> torch.Tensor:
    """One level of the orthonormal 2-D Haar transform: ``[B, C, 2h, 2w]`` → ``[B, 4C, h, w]``.

    With ``a, b, c, d`` the top-left, top-right, bottom-left and bottom-right pixels of each 2x2 cell:
    ``LL = (a+b+c+d)/2``, ``HL = (-a+b-c+d)/2`` (horizontal detail), ``LH = (-a-b+c+d)/2`` (vertical detail),
    ``HH = (a-b-c+d)/2``; output ``cat(LL, HL, LH, HH)`` along channels.

    Example:
        >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)  # a=0, b=1, c=2, d=3
        >>> haar_dwt(x).flatten().tolist()
        [3.0, 1.0, 2.0, 0.0]
    """
    if x.ndim != 4 or x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ShapeError(f"haar_dwt: expected [B, C, H, W] with even H and W; got {tuple(x.shape)}")
    a = x[..., 0::2, 0::2]
    b = x[..., 0::2, 1::2]
    c = x[..., 1::2, 0::2]
    d = x[..., 1::2, 1::2]
    ll = (a + b + c + d) * 0.5
    hl = (-a + b - c + d) * 0.5
    lh = (-a - b + c + d) * 0.5
    hh = (a - b - c + d) * 0.5
    return torch.cat([ll, hl, lh, hh], dim=1)


def haar_iwt(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`haar_dwt`: ``[B, 4C, h, w]`` → ``[B, C, 2h, 2w]`` (the transform is orthonormal).

    Example:
        >>> x = torch.randn(2, 3, 4, 6, dtype=torch.float64)
        >>> torch.allclose(haar_iwt(haar_dwt(x)), x, rtol=0, atol=1e-12)
        True
    """
    if y.ndim != 4 or y.shape[1] % 4:
        raise ShapeError(f"haar_iwt: expected [B, 4C, h, w]; got {tuple(y.shape)}")
    ll, hl, lh, hh = torch.chunk(y, 4, dim=1)
    a = (ll - hl - lh + hh) * 0.5
    b = (ll + hl - lh - hh) * 0.5
    c = (ll - hl + lh - hh) * 0.5
    d = (ll + hl + lh + hh) * 0.5
    bsz, ch, h, w = ll.shape
    out = y.new_empty(bsz, ch, 2 * h, 2 * w)
    out[..., 0::2, 0::2] = a
    out[..., 0::2, 1::2] = b
    out[..., 1::2, 0::2] = c
    out[..., 1::2, 1::2] = d
    return out


class HaarDWT(nn.Module):
    """Module form of :func:`haar_dwt` (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:func:`haar_dwt` of ``x``."""
        return haar_dwt(x)


class HaarIWT(nn.Module):
    """Module form of :func:`haar_iwt` (no parameters)."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """:func:`haar_iwt` of ``y``."""
        return haar_iwt(y)


class CALayer(nn.Module):
    """RCAN channel attention: ``x * sigmoid(W2 relu(W1 avgpool(x)))`` with a ``reduction`` bottleneck."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` scaled per channel."""
        return x * self.fc(x.mean(dim=(-2, -1), keepdim=True))


class RCAB(nn.Module):
    """Residual channel attention block: ``x + CA(conv(relu(conv(x))))``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, 3, padding=1),
            CALayer(channels, reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus the residual branch."""
        return x + self.body(x)


class RCAGroup(nn.Module):
    """``n_blocks`` RCABs and a 3x3 conv, with a residual connection around the group."""

    def __init__(self, channels: int, n_blocks: int, reduction: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = [RCAB(channels, reduction) for _ in range(n_blocks)]
        layers.append(nn.Conv2d(channels, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus the residual branch."""
        return x + self.body(x)


class MWISPNet(ISPModel):
    """MW-ISPNet-style multi-level wavelet RCAN (``MWRCAN`` of the AIM 2020 winner, channel sizes as options).

    Args:
        c1, c2, c3: Channels of the three levels (64/128/128 in the winning entry).
        n_blocks: RCABs per RCAGroup (20 in the winning entry).
        reduction: Channel-attention bottleneck ratio (16 in RCAN and the entry).

    Shape:
        ``[B, 4, h, w]`` → ``[B, 3, 2h, 2w]`` (inputs padded to a multiple of 8 inside).

    Example:
        >>> import torch
        >>> MWISPNet(c1=8, c2=8, c3=8, n_blocks=1, reduction=4)(torch.rand(1, 4, 8, 12)).shape
        torch.Size([1, 3, 16, 24])
    """

    size_multiple = 8

    def __init__(self, c1: int = 64, c2: int = 128, c3: int = 128, n_blocks: int = 20, reduction: int = 16) -> None:
        super().__init__()
        for name, value in (("c1", c1), ("c2", c2), ("c3", c3), ("reduction", reduction)):
            check_int("MWISPNet", name, value, 1)
        n_blocks = check_int("MWISPNet", "n_blocks", n_blocks, 0)
        self.head = HaarDWT()
        self.down1 = nn.Sequential(nn.Conv2d(16, c1, 3, padding=1), nn.PReLU(), RCAGroup(c1, n_blocks, reduction))
        self.down2 = nn.Sequential(
            HaarDWT(), nn.Conv2d(4 * c1, c2, 3, padding=1), nn.PReLU(), RCAGroup(c2, n_blocks, reduction)
        )
        self.down3 = nn.Sequential(HaarDWT(), nn.Conv2d(4 * c2, c3, 3, padding=1), nn.PReLU())
        self.middle = nn.Sequential(RCAGroup(c3, n_blocks, reduction), RCAGroup(c3, n_blocks, reduction))
        self.up1 = nn.Sequential(nn.Conv2d(c3, 4 * c2, 3, padding=1), nn.PReLU(), HaarIWT())
        self.up2 = nn.Sequential(
            RCAGroup(c2, n_blocks, reduction), nn.Conv2d(c2, 4 * c1, 3, padding=1), nn.PReLU(), HaarIWT()
        )
        self.up3 = nn.Sequential(RCAGroup(c1, n_blocks, reduction), nn.Conv2d(c1, 16, 3, padding=1))
        self.tail = nn.Sequential(HaarIWT(), nn.Conv2d(4, 12, 3, padding=1), nn.PixelShuffle(2))

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """RGB of a packed input whose sides are multiples of 8."""
        c1 = self.head(x)
        c2 = self.down1(c1)
        c3 = self.down2(c2)
        m = self.middle(self.down3(c3))
        c5 = self.up1(m) + c3
        c6 = self.up2(c5) + c2
        c7 = self.up3(c6) + c1
        return self.tail(c7)


def _reject_norm(name: str, kwargs: dict[str, Any]) -> None:
    """MW-ISPNet has no normalization layers: ``norm_layer`` may only be None/"none"."""
    norm = kwargs.pop("norm_layer", None)
    if norm is not None and not (isinstance(norm, str) and norm.strip().lower() in ("", "none")):
        raise InvalidParameterError(f"{name}: the architecture has no normalization layers; got norm_layer={norm!r}")


@register_model
def mwisp_tiny(pretrained: bool = False, **kwargs: Any) -> MWISPNet:
    """CPU-size MW-ISPNet-style network (channels 16/32/32, 2 RCABs per group, reduction 4)."""
    _check_no_pretrained("mwisp_tiny", pretrained)
    _reject_norm("mwisp_tiny", kwargs)
    return MWISPNet(**{"c1": 16, "c2": 32, "c3": 32, "n_blocks": 2, "reduction": 4, **kwargs})


@register_model
def mwisp(pretrained: bool = False, **kwargs: Any) -> MWISPNet:
    """Paper-size MW-ISPNet (MWRCAN of the AIM 2020 winner: channels 64/128/128, 20 RCABs per group)."""
    _check_no_pretrained("mwisp", pretrained)
    _reject_norm("mwisp", kwargs)
    return MWISPNet(**{"c1": 64, "c2": 128, "c3": 128, "n_blocks": 20, "reduction": 16, **kwargs})
