"""PyNET: the inverted-pyramid RAW-to-RGB network of Ignatov, Van Gool and Timofte (CVPR-W 2020, arXiv:2002.05509).

Structure of the PyTorch port (``aiff22/PyNET-PyTorch:model.py``), with every channel count a multiple of ``width``
(32 in the paper):

- encoder: level 1 at the packed resolution h, then max-pool down to levels 2 (h/2) ... 5 (h/16);
- each level is built from *multi-scale conv blocks* (:class:`ConvMultiBlock`: parallel 3x3/5x5/7x7/9x9 conv pairs,
  concatenated; larger kernels at the finer levels), reflection padding, LeakyReLU(0.2), instance norm in levels
  2–5 (``norm_layer``, default ``"in"``), none in level 1 unless ``norm_level_1``;
- decoding runs coarse to fine: level ℓ receives two up-sampled (bilinear ×2 + conv) feature maps from level ℓ+1
  and emits its own RGB output (conv → sigmoid) at its own scale;
- level 0 up-samples level 1's features to the RAW mosaic's resolution (2h) and emits the final RGB.

Level ℓ's output has side ``2h / 2**ℓ`` (level 0: 2h, level 5: h/16). Training is level by level, 5 → 0: a level-ℓ
model runs levels 5..ℓ only (``forward(x, level=ℓ)``) and is trained against the target resized by ``1 / 2**ℓ``,
starting from the weights of level ℓ+1 (see :mod:`pickwise.tasks.isp.run`). The paper's (TensorFlow) numbering
calls the full-resolution stage "level 1"; the PyTorch port (and this module) split it into level 1 (at h) and
level 0 (at 2h).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import InvalidParameterError
from ._base import check_int
from ._registry import register_model
from .isp_unet import ISPModel, _check_no_pretrained, pad_to_multiple, resolve_optional_norm

MODEL_TASK = "isp"  # what the registry lists these models under (``list_models(task=...)``)

__all__ = ["ConvMultiBlock", "PyNET", "pynet", "pynet_tiny"]

LEVELS = (0, 1, 2, 3, 4, 5)


class _ConvLayer(nn.Module):
    """Reflection pad → conv → (norm) → (LeakyReLU 0.2), PyNET's ``ConvLayer``."""

    def __init__(self, cin: int, cout: int, k: int, norm: Any = None, relu: bool = True) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(k // 2)
        self.conv = nn.Conv2d(cin, cout, k)
        self.norm = norm(cout) if norm is not None else nn.Identity()
        self.act = nn.LeakyReLU(0.2) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(self.pad(x))))


class _UpConv(nn.Module):
    """Bilinear ×2 up-sampling (align_corners=True, as in the port) → reflection pad → 3x3 conv → LeakyReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = _ConvLayer(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True))


class ConvMultiBlock(nn.Module):
    """Parallel conv pairs with kernels 3, 5, ... up to ``max_kernel``, concatenated (``out * n_kernels`` channels).

    Args:
        cin: Input channels.
        cout: Output channels of each branch.
        max_kernel: Largest kernel (3, 5, 7 or 9).
        norm: Norm factory applied after every conv, or None.
    """

    def __init__(self, cin: int, cout: int, max_kernel: int, norm: Any = None) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(_ConvLayer(cin, cout, k, norm), _ConvLayer(cout, cout, k, norm))
            for k in range(3, max_kernel + 1, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated branch outputs."""
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class PyNET(ISPModel):
    """PyNET (Ignatov et al., CVPR-W 2020) with level-wise outputs.

    Args:
        width: Channels of level 1 (level ℓ has ``width * 2**(ℓ-1)``); 32 in the paper.
        level: Default output level of ``forward`` (0 = full resolution; 5 = coarsest).
        norm_layer: Normalization of levels 2–5 (default ``"in"``, the paper's instance norm; ``"none"`` for none).
        norm_level_1: Also normalize level 1's inner blocks (the port's ``instance_norm_level_1``; default False,
            the port's default).

    Shape:
        ``[B, 4, h, w]`` → ``[B, 3, 2h / 2**level, 2w / 2**level]`` (inputs padded to a multiple
        of 16, at least 32, inside).

    Example:
        >>> import torch
        >>> net = PyNET(width=2)
        >>> net(torch.rand(1, 4, 16, 16)).shape, net(torch.rand(1, 4, 16, 16), level=3).shape
        (torch.Size([1, 3, 32, 32]), torch.Size([1, 3, 4, 4]))
    """

    size_multiple = 16
    min_size = 32  # level 5 (h/16) must be at least 2x2 for its reflection-padded 3x3 convs

    def __init__(self, width: int = 32, level: int = 0, norm_layer: Any = "in", norm_level_1: bool = False) -> None:
        super().__init__()
        w = check_int("PyNET", "width", width, 1)
        self.level = self._check_level(level)
        n = resolve_optional_norm("PyNET", norm_layer)
        n1 = n if norm_level_1 else None
        self.l1_d1 = ConvMultiBlock(4, w, 3)
        self.l2_d1 = ConvMultiBlock(w, 2 * w, 3, n)
        self.l3_d1 = ConvMultiBlock(2 * w, 4 * w, 3, n)
        self.l4_d1 = ConvMultiBlock(4 * w, 8 * w, 3, n)
        # level 5
        self.l5_d1 = ConvMultiBlock(8 * w, 16 * w, 3, n)
        self.l5_d2 = ConvMultiBlock(16 * w, 16 * w, 3, n)
        self.l5_d3 = ConvMultiBlock(16 * w, 16 * w, 3, n)
        self.l5_d4 = ConvMultiBlock(16 * w, 16 * w, 3, n)
        self.t4a, self.t4b = _UpConv(16 * w, 8 * w), _UpConv(16 * w, 8 * w)
        self.l5_out = _ConvLayer(16 * w, 3, 3, relu=False)
        # level 4
        self.l4_d3 = ConvMultiBlock(16 * w, 8 * w, 3, n)
        self.l4_d4 = ConvMultiBlock(8 * w, 8 * w, 3, n)
        self.l4_d5 = ConvMultiBlock(8 * w, 8 * w, 3, n)
        self.l4_d6 = ConvMultiBlock(8 * w, 8 * w, 3, n)
        self.l4_d8 = ConvMultiBlock(16 * w, 8 * w, 3, n)
        self.t3a, self.t3b = _UpConv(8 * w, 4 * w), _UpConv(8 * w, 4 * w)
        self.l4_out = _ConvLayer(8 * w, 3, 3, relu=False)
        # level 3
        self.l3_d3 = ConvMultiBlock(8 * w, 4 * w, 5, n)
        self.l3_d4 = ConvMultiBlock(8 * w, 4 * w, 5, n)
        self.l3_d5 = ConvMultiBlock(8 * w, 4 * w, 5, n)
        self.l3_d6 = ConvMultiBlock(8 * w, 4 * w, 5, n)
        self.l3_d8 = ConvMultiBlock(16 * w, 4 * w, 3, n)
        self.t2a, self.t2b = _UpConv(4 * w, 2 * w), _UpConv(4 * w, 2 * w)
        self.l3_out = _ConvLayer(4 * w, 3, 3, relu=False)
        # level 2
        self.l2_d3 = ConvMultiBlock(4 * w, 2 * w, 5, n)
        self.l2_d5 = ConvMultiBlock(6 * w, 2 * w, 7, n)
        self.l2_d6 = ConvMultiBlock(6 * w, 2 * w, 7, n)
        self.l2_d7 = ConvMultiBlock(6 * w, 2 * w, 7, n)
        self.l2_d8 = ConvMultiBlock(6 * w, 2 * w, 7, n)
        self.l2_d10 = ConvMultiBlock(8 * w, 2 * w, 5, n)
        self.l2_d12 = ConvMultiBlock(6 * w, 2 * w, 3, n)
        self.t1a, self.t1b = _UpConv(2 * w, w), _UpConv(2 * w, w)
        self.l2_out = _ConvLayer(2 * w, 3, 3, relu=False)
        # level 1
        self.l1_d3 = ConvMultiBlock(2 * w, w, 5)
        self.l1_d5 = ConvMultiBlock(3 * w, w, 7, n1)
        self.l1_d6 = ConvMultiBlock(3 * w, w, 9, n1)
        self.l1_d7 = ConvMultiBlock(4 * w, w, 9, n1)
        self.l1_d8 = ConvMultiBlock(4 * w, w, 9, n1)
        self.l1_d9 = ConvMultiBlock(4 * w, w, 9, n1)
        self.l1_d10 = ConvMultiBlock(4 * w, w, 7, n1)
        self.l1_d12 = ConvMultiBlock(4 * w, w, 5, n1)
        self.l1_d14 = ConvMultiBlock(4 * w, w, 3)
        self.l1_out = _ConvLayer(w, 3, 3, relu=False)
        # level 0
        self.t0 = _UpConv(w, max(1, w // 2))
        self.l0_out = _ConvLayer(max(1, w // 2), 3, 3, relu=False)

    @staticmethod
    def _check_level(level: Any) -> int:
        if isinstance(level, bool) or not isinstance(level, int) or level not in LEVELS:
            raise InvalidParameterError(f"PyNET: level must be one of 0..5 (0 = full resolution); got {level!r}")
        return level

    def forward_levels(self, x: torch.Tensor, level: int = 0) -> dict[int, torch.Tensor]:
        """Outputs of levels 5 down to ``level`` (sigmoid RGB, level ℓ at side ``2h / 2**ℓ``), keyed by level.

        Inputs whose sides are not multiples of 16 are padded inside and every output is cropped back to
        ``ceil(2h / 2**ℓ)``.
        """
        level = self._check_level(level)
        self.check_input(x)
        xp, (h, w) = pad_to_multiple(x, self.size_multiple, self.min_size)
        outs = self._levels(xp, level)
        return {lv: o[..., : -(-2 * h // 2**lv), : -(-2 * w // 2**lv)] for lv, o in outs.items()}

    def forward(self, x: torch.Tensor, level: int | None = None) -> torch.Tensor:
        """The RGB output of ``level`` (default: ``self.level``, 0 = full resolution)."""
        lv = self.level if level is None else level
        return self.forward_levels(x, lv)[lv]

    def _levels(self, x: torch.Tensor, level: int) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        l1 = self.l1_d1(x)
        l2 = self.l2_d1(F.max_pool2d(l1, 2))
        l3 = self.l3_d1(F.max_pool2d(l2, 2))
        l4 = self.l4_d1(F.max_pool2d(l3, 2))
        d = self.l5_d4(self.l5_d3(self.l5_d2(self.l5_d1(F.max_pool2d(l4, 2)))))
        out[5] = torch.sigmoid(self.l5_out(d))
        if level >= 5:
            return out
        ta, tb = self.t4a(d), self.t4b(d)
        d3 = self.l4_d3(torch.cat([l4, ta], 1))
        d4 = self.l4_d4(d3) + d3
        d5 = self.l4_d5(d4) + d4
        d8 = self.l4_d8(torch.cat([self.l4_d6(d5), tb], 1))
        out[4] = torch.sigmoid(self.l4_out(d8))
        if level >= 4:
            return out
        ta, tb = self.t3a(d8), self.t3b(d8)
        d2 = torch.cat([l3, ta], 1)
        d3 = self.l3_d3(d2) + d2
        d4 = self.l3_d4(d3) + d3
        d5 = self.l3_d5(d4) + d4
        d8 = self.l3_d8(torch.cat([self.l3_d6(d5), l3, tb], 1))
        out[3] = torch.sigmoid(self.l3_out(d8))
        if level >= 3:
            return out
        ta, tb = self.t2a(d8), self.t2b(d8)
        d4 = torch.cat([self.l2_d3(torch.cat([l2, ta], 1)), l2], 1)
        d5 = self.l2_d5(d4) + d4
        d6 = self.l2_d6(d5) + d5
        d7 = self.l2_d7(d6) + d6
        d10 = self.l2_d10(torch.cat([self.l2_d8(d7), l2], 1))
        d12 = self.l2_d12(torch.cat([d10, tb], 1))
        out[2] = torch.sigmoid(self.l2_out(d12))
        if level >= 2:
            return out
        ta, tb = self.t1a(d12), self.t1b(d12)
        d4 = torch.cat([self.l1_d3(torch.cat([l1, ta], 1)), l1], 1)
        d6 = self.l1_d6(self.l1_d5(d4))
        d7 = self.l1_d7(d6) + d6
        d8 = self.l1_d8(d7) + d7
        d9 = self.l1_d9(d8) + d8
        d12 = self.l1_d12(torch.cat([self.l1_d10(d9), l1], 1))
        d14 = self.l1_d14(torch.cat([d12, tb, l1], 1))
        out[1] = torch.sigmoid(self.l1_out(d14))
        if level >= 1:
            return out
        out[0] = torch.sigmoid(self.l0_out(self.t0(d14)))
        return out

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The output of ``self.level`` on a padded input."""
        return self._levels(x, self.level)[self.level]


@register_model
def pynet_tiny(pretrained: bool = False, **kwargs: Any) -> PyNET:
    """CPU-size PyNET (width 4 instead of 32: every channel count divided by 8; same depth and kernels)."""
    _check_no_pretrained("pynet_tiny", pretrained)
    return PyNET(**{"width": 4, **kwargs})


@register_model
def pynet(pretrained: bool = False, **kwargs: Any) -> PyNET:
    """Paper-size PyNET (width 32, instance norm in levels 2–5; about 47.5 M parameters)."""
    _check_no_pretrained("pynet", pretrained)
    return PyNET(**{"width": 32, **kwargs})
