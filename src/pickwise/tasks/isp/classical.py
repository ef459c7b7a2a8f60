"""A classical (non-learned) ISP with the learned models' interface: packed RAW ``[B,4,h,w]`` -> RGB ``[B,3,2h,2w]``.

Stages (each a pure function, composed by :class:`ClassicalISP`):

1. **Linearisation**: the packed input (normalised by one of the ZRR conventions, see
   :func:`pickwise.tasks.isp.raw.normalize_raw`) is mapped back to digital numbers, the sensor black level is
   subtracted and the result divided by ``white - black``.
2. **Demosaicing**: Malvar, He & Cutler, "High-quality linear interpolation for demosaicing of Bayer-patterned color
   images" (ICASSP 2004): bilinear interpolation plus a scaled Laplacian of the known colour (gradient correction),
   as four fixed 5x5 convolutions; borders are mirrored half-sample ("symmetric", scipy's ``reflect``) so that the
   result equals ``colour_demosaicing.demosaicing_CFA_Bayer_Malvar2004``. Also plain bilinear (torch) and Menon
   et al. 2007 (DDFAPD, through ``colour_demosaicing`` on CPU numpy, not differentiable).
3. **White balance**: grey-world (per image, gains ``mean(G)/mean(R)`` and ``mean(G)/mean(B)``) or given gains.
4. **Colour correction**: a 3x3 camera-RGB -> linear-sRGB matrix (identity by default).
5. **Tone**: sRGB gamma (IEC 61966-2-1) or a power law, optionally followed by Brooks et al.'s smoothstep tone curve,
   and a clamp to ``[0, 1]``.

Everything runs in torch and is differentiable except Menon demosaicing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...exceptions import InvalidParameterError, ShapeError
from .raw import RawLevels, _check_pattern, _levels, cfa_offsets, denormalize_raw, unpack_bayer

__all__ = [
    "ZRR_SENSOR_LEVELS",
    "ClassicalISP",
    "bayer_masks",
    "demosaic",
    "demosaic_bilinear",
    "demosaic_malvar",
    "demosaic_menon",
    "grey_world_gains",
    "linear_to_srgb",
    "srgb_to_linear",
]

ZRR_SENSOR_LEVELS = RawLevels(63.0, 1020.0)
"""Black/white level of ZRR's 10-bit Huawei data as MW-ISPNet/LiteISPNet assume (and of the isp-synth benchmark)."""

# Malvar 2004 filters (Fig. 2 of the paper; the same coefficients as colour_demosaicing), all divided by 8.
_G_AT_RB = ((0, 0, -1, 0, 0), (0, 0, 2, 0, 0), (-1, 2, 4, 2, -1), (0, 0, 2, 0, 0), (0, 0, -1, 0, 0))
_RB_AT_G_ROW = ((0, 0, 0.5, 0, 0), (0, -1, 0, -1, 0), (-1, 4, 5, 4, -1), (0, -1, 0, -1, 0), (0, 0, 0.5, 0, 0))
_RB_AT_BR = ((0, 0, -1.5, 0, 0), (0, 2, 0, 2, 0), (-1.5, 0, 6, 0, -1.5), (0, 2, 0, 2, 0), (0, 0, -1.5, 0, 0))


def _as_mosaic(mosaic: torch.Tensor, name: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    if not isinstance(mosaic, torch.Tensor) or not mosaic.is_floating_point():
        raise InvalidParameterError(f"{name}: expected a floating-point tensor mosaic [..., H, W]")
    if mosaic.ndim < 2:
        raise ShapeError(f"{name}: expected a mosaic [..., H, W], got shape {tuple(mosaic.shape)}")
    h, w = mosaic.shape[-2:]
    if h % 2 or w % 2 or h < 4 or w < 4:
        raise ShapeError(f"{name}: mosaic of {h}x{w}; sides must be even and at least 4 - crop or pad it")
    lead = tuple(mosaic.shape[:-2])
    return mosaic.reshape(-1, 1, h, w), lead


def bayer_masks(h: int, w: int, pattern: str, device=None, dtype=torch.float32) -> torch.Tensor:
    """``[3, H, W]`` 0/1 masks of the red, green and blue sites of a Bayer ``pattern``."""
    pattern = _check_pattern(pattern)
    masks = torch.zeros(3, h, w, dtype=dtype, device=device)
    for i, ch in enumerate(pattern):
        r, c = divmod(i, 2)
        masks["RGB".index(ch), r::2, c::2] = 1
    return masks


def _symmetric_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Half-sample symmetric padding (``d c b a | a b c d``), scipy.ndimage's ``reflect`` mode."""
    x = torch.cat([x[..., :p, :].flip(-2), x, x[..., -p:, :].flip(-2)], dim=-2)
    return torch.cat([x[..., :p].flip(-1), x, x[..., -p:].flip(-1)], dim=-1)


def demosaic_malvar(mosaic: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """Malvar-He-Cutler (2004) demosaicing of ``[..., H, W]`` -> ``[..., 3, H, W]`` (RGB, not clipped).

    Equals ``colour_demosaicing.demosaicing_CFA_Bayer_Malvar2004`` (mirror borders), checked in the tests.
    """
    x, lead = _as_mosaic(mosaic, "demosaic_malvar")
    h, w = x.shape[-2:]
    kernels = torch.tensor(
        [_G_AT_RB, _RB_AT_G_ROW, np.transpose(_RB_AT_G_ROW).tolist(), _RB_AT_BR], dtype=x.dtype, device=x.device
    )
    est = F.conv2d(_symmetric_pad(x, 2), kernels.unsqueeze(1) / 8.0)  # [N, 4, H, W]
    g_at_rb, rb_row, rb_col, rb_diag = est.unbind(1)
    cfa = x[:, 0]
    off = cfa_offsets(pattern)
    r_row = torch.zeros(h, 1, dtype=torch.bool, device=x.device)
    r_row[off["R"][0] :: 2] = True
    r_col = torch.zeros(1, w, dtype=torch.bool, device=x.device)
    r_col[:, off["R"][1] :: 2] = True
    b_row, b_col = ~r_row, ~r_col
    is_r, is_b = r_row & r_col, b_row & b_col
    g_in_r_row, g_in_b_row = r_row & b_col, b_row & r_col
    green = torch.where(is_r | is_b, g_at_rb, cfa)
    red = torch.where(is_r, cfa, torch.where(g_in_r_row, rb_row, torch.where(g_in_b_row, rb_col, rb_diag)))
    blue = torch.where(is_b, cfa, torch.where(g_in_b_row, rb_row, torch.where(g_in_r_row, rb_col, rb_diag)))
    return torch.stack([red, green, blue], dim=1).reshape(*lead, 3, h, w)


def demosaic_bilinear(mosaic: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """Bilinear demosaicing (``colour_demosaicing.demosaicing_CFA_Bayer_bilinear``'s kernels, mirrored borders)."""
    x, lead = _as_mosaic(mosaic, "demosaic_bilinear")
    h, w = x.shape[-2:]
    masks = bayer_masks(h, w, pattern, device=x.device, dtype=x.dtype)
    k_g = torch.tensor([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=x.dtype, device=x.device) / 4
    k_rb = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=x.dtype, device=x.device) / 4
    planes = _symmetric_pad(x * masks.unsqueeze(0), 1)  # [N, 3, H+2, W+2]
    weight = torch.stack([k_rb, k_g, k_rb]).unsqueeze(1)
    return F.conv2d(planes, weight, groups=3).reshape(*lead, 3, h, w)


def demosaic_menon(mosaic: torch.Tensor, pattern: str = "RGGB", refining_step: bool = True) -> torch.Tensor:
    """Menon, Andriani & Calvagno (2007) DDFAPD demosaicing via ``colour_demosaicing`` (CPU numpy, no gradient)."""
    printoptions = np.get_printoptions()
    try:
        from colour_demosaicing import demosaicing_CFA_Bayer_Menon2007
    except ImportError:
        raise InvalidParameterError(
            "demosaic_menon: needs the optional package 'colour-demosaicing'; install it with "
            "`pip install colour-demosaicing` (or `pip install 'pickwise[isp]'`), or use demosaic='malvar'"
        ) from None
    finally:
        np.set_printoptions(**printoptions)  # importing colour switches numpy to legacy="1.13" printing globally
    x, lead = _as_mosaic(mosaic, "demosaic_menon")
    pattern = _check_pattern(pattern)
    arr = x[:, 0].detach().cpu().double().numpy()
    out = np.stack([demosaicing_CFA_Bayer_Menon2007(a, pattern, refining_step) for a in arr]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(out)).to(mosaic.device, mosaic.dtype).reshape(*lead, 3, *arr.shape[1:])


_DEMOSAIC = {"malvar": demosaic_malvar, "bilinear": demosaic_bilinear, "menon": demosaic_menon}


def demosaic(mosaic: torch.Tensor, pattern: str = "RGGB", method: str = "malvar") -> torch.Tensor:
    """Demosaic ``[..., H, W]`` -> ``[..., 3, H, W]`` with ``method`` in ``"malvar"``, ``"bilinear"``, ``"menon"``."""
    if method not in _DEMOSAIC:
        raise InvalidParameterError(f"unknown demosaicing method {method!r}; use one of {', '.join(_DEMOSAIC)}")
    return _DEMOSAIC[method](mosaic, pattern)


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """The sRGB EOTF (IEC 61966-2-1): ``x / 12.92`` below 0.04045, else ``((x + 0.055) / 1.055)^2.4``."""
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`srgb_to_linear` (input clamped at 0)."""
    x = x.clamp_min(0.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)


def grey_world_gains(rgb: torch.Tensor, saturation: float = 0.98) -> torch.Tensor:
    """Grey-world white-balance gains ``[B, 3]`` = ``(mean G / mean R, 1, mean G / mean B)`` over unsaturated pixels."""
    keep = (rgb.amax(dim=-3, keepdim=True) < saturation).to(rgb.dtype)
    count = keep.sum(dim=(-2, -1)).clamp_min(1.0)
    means = (rgb * keep).sum(dim=(-2, -1)) / count  # [B, 3]
    means = means.clamp_min(1e-6)
    return means[:, 1:2] / means


class ClassicalISP(nn.Module):
    """Hand-designed ISP: linearise -> demosaic -> white balance -> colour matrix -> gamma (-> tone) -> clamp.

    Args:
        pattern: sensor CFA pattern (ZRR: ``"RGGB"``); the input is packed in ZRR order whatever the pattern.
        input_convention: how the packed input was normalised (``"pynet"``, ``"skyb"``, ``"mwisp"`` or a
            :class:`~pickwise.tasks.isp.raw.RawLevels`); used to recover digital numbers.
        sensor_levels: the sensor's true black/white level in digital numbers (default black 63, white 1020: the
            values MW-ISPNet uses for ZRR, and those of the generated ``isp-synth`` benchmark).
        demosaic: ``"malvar"`` (default), ``"bilinear"`` or ``"menon"``.
        white_balance: ``"grey_world"``, ``None`` (no gains) or fixed gains ``(r, g, b)``.
        ccm: 3x3 camera-RGB -> linear-sRGB matrix (rows: output channels); default identity.
        exposure: multiplier applied after the colour matrix (reconstructed default 1.0).
        gamma: ``"srgb"`` or a power (e.g. 2.2, as Brooks et al.).
        tone: apply the smoothstep tone curve ``3x^2 - 2x^3`` after the gamma (Brooks et al.); default False.

    Example:
        >>> import torch
        >>> isp = ClassicalISP()
        >>> isp(torch.rand(2, 4, 8, 8)).shape
        torch.Size([2, 3, 16, 16])
    """

    gains: torch.Tensor
    ccm: torch.Tensor

    def __init__(
        self,
        pattern: str = "RGGB",
        input_convention: str | RawLevels = "pynet",
        sensor_levels: RawLevels = ZRR_SENSOR_LEVELS,
        demosaic: str = "malvar",
        white_balance: str | Sequence[float] | None = "grey_world",
        ccm: Sequence[Sequence[float]] | torch.Tensor | None = None,
        exposure: float = 1.0,
        gamma: str | float = "srgb",
        tone: bool = False,
    ) -> None:
        super().__init__()
        self.pattern = _check_pattern(pattern)
        self.input_convention = input_convention
        _levels(input_convention)
        self.sensor_levels = sensor_levels
        if demosaic not in _DEMOSAIC:
            raise InvalidParameterError(f"unknown demosaicing method {demosaic!r}; use one of {', '.join(_DEMOSAIC)}")
        self.demosaic_method = demosaic
        if isinstance(white_balance, str) and white_balance != "grey_world":
            raise InvalidParameterError(f"white_balance must be 'grey_world', None or 3 gains, got {white_balance!r}")
        self.grey_world = white_balance == "grey_world"
        gains = (1.0, 1.0, 1.0) if white_balance is None or self.grey_world else tuple(white_balance)
        if len(gains) != 3:
            raise InvalidParameterError(f"white_balance gains must be 3 numbers, got {white_balance!r}")
        self.register_buffer("gains", torch.tensor(gains, dtype=torch.float32), persistent=False)
        matrix = torch.eye(3) if ccm is None else torch.as_tensor(ccm, dtype=torch.float32)
        if matrix.shape != (3, 3):
            raise ShapeError(f"ClassicalISP: ccm must be 3x3, got shape {tuple(matrix.shape)}")
        self.register_buffer("ccm", matrix.clone(), persistent=False)
        if not (gamma == "srgb" or (isinstance(gamma, (int, float)) and gamma > 0)):
            raise InvalidParameterError(f"gamma must be 'srgb' or a positive number, got {gamma!r}")
        self.gamma = gamma
        self.exposure = float(exposure)
        self.tone = bool(tone)

    def linearize(self, raw: torch.Tensor) -> torch.Tensor:
        """Packed normalised RAW -> packed linear values in ``[0, ~1]`` (black level removed)."""
        dn = denormalize_raw(raw, self.input_convention)
        lv = self.sensor_levels
        return ((dn - lv.black) / (lv.white - lv.black)).clamp_min(0.0)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """``raw float[B, 4, h, w]`` (ZRR packing) -> ``rgb float[B, 3, 2h, 2w]`` in ``[0, 1]``."""
        if raw.ndim != 4 or raw.shape[1] != 4:
            raise ShapeError(f"ClassicalISP: expected packed RAW [B, 4, h, w], got shape {tuple(raw.shape)}")
        lin = self.linearize(raw)
        mosaic = unpack_bayer(lin, self.pattern)
        rgb = _DEMOSAIC[self.demosaic_method](mosaic, self.pattern).clamp(0.0, 1.0)
        gains = grey_world_gains(rgb) if self.grey_world else self.gains.to(rgb).expand(rgb.shape[0], 3)
        rgb = rgb * gains.view(-1, 3, 1, 1)
        rgb = torch.einsum("ij,bjhw->bihw", self.ccm.to(rgb), rgb) * self.exposure
        rgb = rgb.clamp(0.0, 1.0)
        out = linear_to_srgb(rgb) if self.gamma == "srgb" else rgb.clamp_min(1e-8) ** (1.0 / float(self.gamma))
        if self.tone:
            out = out.clamp(0.0, 1.0)
            out = 3 * out**2 - 2 * out**3
        return out.clamp(0.0, 1.0)
