"""Learned-ISP building blocks shared by every RAW-to-RGB network, and the small U-Net baseline.

Every ISP network maps a packed Bayer RAW tensor ``float[B, 4, h, w]`` (channels in ZRR's order B, Gb, R, Gr; see
:mod:`pickwise.tasks.isp.raw`) to an RGB image ``float[B, 3, 2h, 2w]``: the output has the resolution of the RAW
mosaic. :class:`ISPModel` checks the input, pads it (reflection) to the multiple of ``size_multiple`` the
architecture needs (pooling / wavelet levels) and crops the output back, so any ``h, w >= 1`` works.

The U-Net (Ronneberger et al., MICCAI 2015, arXiv:1505.04597) is not an AIM 2020 entry: it is the plain learned
baseline that every table carries (double 3x3 conv blocks, max-pool down, bilinear-upsample + conv up, skip
concatenation, then conv → 12 channels → PixelShuffle(2) → RGB). Its sizes are reconstructed (no paper pins them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import InvalidParameterError, ShapeError
from ..nn.norm import get_norm_layer
from ._base import check_int
from ._registry import register_model

MODEL_TASK = "isp"  # what the registry lists these models under (``list_models(task=...)``)

__all__ = ["ISPModel", "ISPUNet", "isp_unet", "isp_unet_tiny", "pad_to_multiple", "resolve_optional_norm"]


def resolve_optional_norm(where: str, norm_layer: Any) -> Callable[[int], nn.Module]:
    """A norm-layer factory; ``None``, ``""`` or ``"none"`` give :class:`torch.nn.Identity` (no normalization).

    Raises:
        UnknownNameError: For an unregistered name (close matches listed).
    """
    if norm_layer is None or (isinstance(norm_layer, str) and norm_layer.strip().lower() in ("", "none")):
        return lambda channels: nn.Identity()
    layer = get_norm_layer(norm_layer)
    if layer is None:  # pragma: no cover - get_norm_layer returns None only for the cases handled above
        return lambda channels: nn.Identity()
    return layer


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 1) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x[..., h, w]`` at the bottom/right to multiples of ``multiple`` (at least ``minimum``).

    Reflection padding where the input is large enough (it keeps image statistics at the border), replication
    otherwise. Returns the padded tensor and the original ``(h, w)``.
    """
    h, w = x.shape[-2:]
    ph, pw = max(minimum - h, 0), max(minimum - w, 0)
    ph, pw = ph + (-(h + ph)) % multiple, pw + (-(w + pw)) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


class ISPModel(nn.Module, ABC):
    """Base class: packed RAW ``[B, 4, h, w]`` → RGB ``[B, 3, 2h, 2w]`` with input checks and size padding.

    Subclasses set ``size_multiple`` (the packed-size multiple their down-sampling needs), ``min_size`` (the smallest
    packed side their padding layers accept) and implement
    ``forward_padded(x)`` on inputs whose sides are multiples of it.
    """

    size_multiple: int = 1
    min_size: int = 1
    in_chans: int = 4

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`ShapeError` unless ``x`` is a float ``[B, 4, h, w]`` tensor."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_chans:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(
                f"{type(self).__name__}: expected packed RAW of shape [B, {self.in_chans}, h, w]; got {shape} "
                "(pack a Bayer mosaic with pickwise.tasks.isp.raw.pack_bayer)"
            )
        if not x.is_floating_point():
            raise ShapeError(f"{type(self).__name__}: expected a float tensor; got {x.dtype} (normalize the RAW first)")

    @abstractmethod
    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """RGB ``[B, 3, 2H, 2W]`` of a padded input ``[B, 4, H, W]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RGB at twice the packed resolution (the RAW mosaic's resolution)."""
        self.check_input(x)
        xp, (h, w) = pad_to_multiple(x, self.size_multiple, self.min_size)
        out = self.forward_padded(xp)
        return out[..., : 2 * h, : 2 * w]


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            norm(cout),
            nn.LeakyReLU(0.2),
            nn.Conv2d(cout, cout, 3, padding=1),
            norm(cout),
            nn.LeakyReLU(0.2),
        )


class ISPUNet(ISPModel):
    """A small U-Net from packed RAW to RGB (the learned baseline of every ISP table).

    Args:
        width: Channels of the first level (doubled at every level).
        depth: Number of down-sampling steps (the packed input is padded to a multiple of ``2**depth``).
        norm_layer: Normalization after every 3x3 conv: a registered name (``"bn"``, ``"gn"``, ``"in"``, ...), a
            class, or ``None``/``"none"`` (default: none, reconstructed: small-batch ISP training).

    Shape:
        ``[B, 4, h, w]`` → ``[B, 3, 2h, 2w]`` (no output activation; evaluation clamps to [0, 1]).

    Example:
        >>> import torch
        >>> ISPUNet(width=4, depth=2)(torch.rand(1, 4, 6, 10)).shape
        torch.Size([1, 3, 12, 20])
    """

    def __init__(self, width: int = 16, depth: int = 3, norm_layer: Any = None) -> None:
        super().__init__()
        width = check_int("ISPUNet", "width", width, 1)
        depth = check_int("ISPUNet", "depth", depth, 1)
        norm = resolve_optional_norm("ISPUNet", norm_layer)
        self.size_multiple = 2**depth
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_DoubleConv(4, chans[0], norm)])
        self.down.extend(_DoubleConv(chans[i], chans[i + 1], norm) for i in range(depth))
        self.up_convs = nn.ModuleList(nn.Conv2d(chans[i + 1], chans[i], 3, padding=1) for i in range(depth))
        self.up_blocks = nn.ModuleList(_DoubleConv(2 * chans[i], chans[i], norm) for i in range(depth))
        self.head = nn.Sequential(nn.Conv2d(chans[0], 12, 3, padding=1), nn.PixelShuffle(2))

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """RGB of a packed input whose sides are multiples of ``2**depth``."""
        skips = [self.down[0](x)]
        for block in self.down[1:]:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for i in reversed(range(len(self.up_convs))):
            y = self.up_convs[i](F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False))
            y = self.up_blocks[i](torch.cat([y, skips[i]], dim=1))
        return self.head(y)


def _check_no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise InvalidParameterError(
            f"{name}: no pretrained ISP weights ship with pickwise (ZRR may not be redistributed); train one with "
            "`pickwise isp train`"
        )


@register_model
def isp_unet_tiny(pretrained: bool = False, **kwargs: Any) -> ISPUNet:
    """CPU-size U-Net ISP baseline (width 16, depth 3, about 0.5 M parameters)."""
    _check_no_pretrained("isp_unet_tiny", pretrained)
    return ISPUNet(**{"width": 16, "depth": 3, **kwargs})


@register_model
def isp_unet(pretrained: bool = False, **kwargs: Any) -> ISPUNet:
    """Larger U-Net ISP baseline (width 32, depth 4, about 7.8 M parameters; reconstructed size)."""
    _check_no_pretrained("isp_unet", pretrained)
    return ISPUNet(**{"width": 32, "depth": 4, **kwargs})
