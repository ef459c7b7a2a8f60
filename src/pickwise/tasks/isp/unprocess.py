"""Unprocessing sRGB images into realistic RAW (Brooks et al., "Unprocessing Images for Learned Raw Denoising", 2019).

The camera pipeline is modelled as ``raw -> white balance -> demosaic -> colour matrix -> gamma -> tone curve -> sRGB``;
:func:`unprocess` inverts it step by step and :func:`process` runs it forward:

========================= ================================================= =========================================
step                      unprocess (sRGB -> RAW)                           process (RAW -> sRGB)
========================= ================================================= =========================================
tone curve                inverse smoothstep ``0.5 - sin(asin(1 - 2y)/3)``  smoothstep ``3x^2 - 2x^3``
gamma                     ``x^2.2``                                         ``x^(1/2.2)``
colour                    ``cam = rgb2cam @ rgb`` (rows sum to 1)           ``rgb = inv(rgb2cam) @ cam``
white balance / exposure  divide by ``(r, 1, b) * rgb_gain``, highlights    multiply by ``(r, 1, b) * rgb_gain``
                          kept (Brooks' ``safe_invert_gains``)
mosaic                    keep one colour per site (CFA pattern)            demosaic (Malvar 2004 by default)
noise                     heteroscedastic Gaussian, variance                (none)
                          ``shot * x + read``
quantisation              ``round(x * (white - black) + black)``            ``(x - black) / (white - black)``
========================= ================================================= =========================================

Unlike Brooks et al.'s ``process`` (which leaves the exposure gain ``rgb_gain`` out), :func:`process_rgb` re-applies
it, so that ``process(unprocess(x))`` returns ``x`` (exactly, up to clipping of highlights, without noise and
mosaicing; tested at >= 40 dB). Parameters are a :class:`CameraParams`; :func:`sample_camera_params` draws Brooks'
random white-balance gains, exposure and ISO-dependent noise.

Reconstructed choices (the paper's code pins the values marked "Brooks"; the rest are ours, all parameters):
the ISO -> noise map (:func:`noise_from_iso`: shot noise linear in ISO, read noise from Brooks' log-linear fit), the
default colour matrix (one of Brooks' four ``xyz2cam`` matrices, from memory, times sRGB's ``rgb2xyz``, rows
normalised to 1), the black/white levels (63/1020, as MW-ISPNet assumes for ZRR's 10-bit Huawei data).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ...exceptions import InvalidParameterError, ShapeError
from .classical import demosaic
from .raw import _check_pattern, cfa_offsets

__all__ = [
    "DEFAULT_RGB2CAM",
    "RGB2XYZ",
    "XYZ2CAMS",
    "CameraParams",
    "add_noise",
    "apply_ccm",
    "gamma_compression",
    "gamma_expansion",
    "inverse_smoothstep",
    "mosaic",
    "noise_from_iso",
    "process",
    "process_rgb",
    "quantize_raw",
    "rgb2cam_from_xyz2cam",
    "safe_invert_gains",
    "sample_camera_params",
    "smoothstep",
    "unprocess",
    "unprocess_rgb",
]

RGB2XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
"""Linear sRGB (D65) -> CIE XYZ."""

XYZ2CAMS = (
    ((1.0234, -0.2969, -0.2266), (-0.5625, 1.6328, -0.0469), (-0.0703, 0.2188, 0.6406)),
    ((0.4913, -0.0541, -0.0202), (-0.613, 1.3513, 0.2906), (-0.1564, 0.2151, 0.7183)),
    ((0.838, -0.263, -0.0639), (-0.2887, 1.0725, 0.2496), (-0.0627, 0.1427, 0.5438)),
    ((0.6596, -0.2079, -0.0562), (-0.4782, 1.3016, 0.1933), (-0.097, 0.1581, 0.5181)),
)
"""XYZ -> camera matrices of four cameras used by Brooks et al. (quoted from memory of their code; reconstructed)."""


def rgb2cam_from_xyz2cam(xyz2cam) -> tuple[tuple[float, ...], ...]:
    """``rgb2cam = xyz2cam @ rgb2xyz`` with rows normalised to sum to 1 (so grey stays grey), as Brooks et al."""
    m = np.asarray(xyz2cam, dtype=np.float64) @ np.asarray(RGB2XYZ)
    m = m / m.sum(axis=1, keepdims=True)
    return tuple(tuple(float(v) for v in row) for row in m)


DEFAULT_RGB2CAM = rgb2cam_from_xyz2cam(XYZ2CAMS[0])


@dataclass(frozen=True)
class CameraParams:
    """Parameters of the simulated camera pipeline.

    Attributes:
        rgb2cam: 3x3 linear-sRGB -> camera-RGB matrix (rows sum to 1).
        red_gain: white-balance gain of red (Brooks: uniform in [1.9, 2.4]).
        blue_gain: white-balance gain of blue (Brooks: uniform in [1.5, 1.9]).
        rgb_gain: global exposure gain (Brooks: ``1 / N(0.8, 0.1)``).
        pattern: CFA pattern.
        shot_noise: variance per unit signal (normalised units); 0 = noise-free.
        read_noise: signal-independent variance (normalised units).
        black_level: black level in digital numbers.
        white_level: white (saturation) level in digital numbers.
        bit_depth: container bit depth (values are clipped to ``2**bit_depth - 1``).
        gamma: power of the gamma curve (Brooks: 2.2).
        highlight_preserve: use Brooks' ``safe_invert_gains`` (keeps highlights from being darkened by the inverse
            white balance, at the cost of an inexact inverse for bright pixels).
        inflection: grey level above which highlights are preserved (Brooks: 0.9).
    """

    rgb2cam: tuple[tuple[float, ...], ...] = DEFAULT_RGB2CAM
    red_gain: float = 2.1
    blue_gain: float = 1.7
    rgb_gain: float = 1.25
    pattern: str = "RGGB"
    shot_noise: float = 0.0
    read_noise: float = 0.0
    black_level: float = 63.0
    white_level: float = 1020.0
    bit_depth: int = 10
    gamma: float = 2.2
    highlight_preserve: bool = True
    inflection: float = 0.9
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_pattern(self.pattern)
        if np.asarray(self.rgb2cam).shape != (3, 3):
            raise InvalidParameterError(f"CameraParams: rgb2cam must be 3x3, got {np.asarray(self.rgb2cam).shape}")
        if min(self.red_gain, self.blue_gain, self.rgb_gain) <= 0:
            raise InvalidParameterError("CameraParams: white-balance and exposure gains must be positive")
        if self.shot_noise < 0 or self.read_noise < 0:
            raise InvalidParameterError("CameraParams: noise variances must be >= 0")
        if not self.white_level > self.black_level:
            raise InvalidParameterError("CameraParams: white_level must exceed black_level")

    def to_dict(self) -> dict:
        """JSON-friendly dict (for metadata files)."""
        d = asdict(self)
        d.pop("extra")
        d["rgb2cam"] = [list(r) for r in self.rgb2cam]
        return d


def noise_from_iso(iso: float, shot_at_iso100: float = 1.9e-4, generator: np.random.Generator | None = None):
    """Shot and read noise variances (normalised units) of a sensor at ``iso`` (reconstructed model).

    Shot noise grows linearly with the analogue gain: ``shot = shot_at_iso100 * iso / 100`` (ISO 100..6400 spans
    Brooks' sampled range [1e-4, 0.012]). Read noise follows Brooks' fit ``log(read) = 2.18 log(shot) + 1.20``
    (+ ``N(0, 0.26)`` when a ``generator`` is given).
    """
    if iso <= 0:
        raise InvalidParameterError(f"noise_from_iso: iso must be positive, got {iso}")
    shot = shot_at_iso100 * iso / 100.0
    log_read = 2.18 * math.log(shot) + 1.20 + (generator.normal(0.0, 0.26) if generator is not None else 0.0)
    return shot, math.exp(log_read)


def sample_camera_params(
    generator: np.random.Generator, base: CameraParams | None = None, iso_range: tuple[float, float] = (100, 1600)
) -> CameraParams:
    """Draw Brooks-style random gains and an ISO (log-uniform in ``iso_range``) on top of ``base``'s sensor."""
    base = CameraParams() if base is None else base
    iso = float(math.exp(generator.uniform(math.log(iso_range[0]), math.log(iso_range[1]))))
    shot, read = noise_from_iso(iso, generator=generator)
    return CameraParams(
        rgb2cam=base.rgb2cam,
        red_gain=float(generator.uniform(1.9, 2.4)),
        blue_gain=float(generator.uniform(1.5, 1.9)),
        rgb_gain=float(1.0 / max(generator.normal(0.8, 0.1), 0.4)),
        pattern=base.pattern,
        shot_noise=shot,
        read_noise=read,
        black_level=base.black_level,
        white_level=base.white_level,
        bit_depth=base.bit_depth,
        gamma=base.gamma,
        highlight_preserve=base.highlight_preserve,
        inflection=base.inflection,
        extra={"iso": iso},
    )


def _check_rgb(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise InvalidParameterError(f"{name}: expected a floating-point tensor [..., 3, H, W] in [0, 1]")
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ShapeError(f"{name}: expected RGB images [..., 3, H, W], got shape {tuple(x.shape)}")


def smoothstep(x: torch.Tensor) -> torch.Tensor:
    """Brooks' global tone curve ``3x^2 - 2x^3`` on ``[0, 1]``."""
    x = x.clamp(0.0, 1.0)
    return 3.0 * x**2 - 2.0 * x**3


def inverse_smoothstep(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`smoothstep` on ``[0, 1]``: ``0.5 - sin(asin(1 - 2y) / 3)``."""
    y = y.clamp(0.0, 1.0)
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * y) / 3.0)


def gamma_expansion(x: torch.Tensor, gamma: float = 2.2) -> torch.Tensor:
    """``max(x, 1e-8)^gamma`` (Brooks)."""
    return x.clamp_min(1e-8) ** gamma


def gamma_compression(x: torch.Tensor, gamma: float = 2.2) -> torch.Tensor:
    """``max(x, 1e-8)^(1/gamma)`` (Brooks)."""
    return x.clamp_min(1e-8) ** (1.0 / gamma)


def apply_ccm(x: torch.Tensor, ccm) -> torch.Tensor:
    """Apply a 3x3 colour matrix to ``[..., 3, H, W]``: ``out_i = sum_j ccm[i, j] x_j``."""
    m = torch.as_tensor(np.asarray(ccm, dtype=np.float64), dtype=x.dtype, device=x.device)
    return torch.einsum("ij,...jhw->...ihw", m, x)


def _wb_gains(params: CameraParams, dtype, device) -> torch.Tensor:
    g = torch.tensor([params.red_gain, 1.0, params.blue_gain], dtype=dtype, device=device) * params.rgb_gain
    return g.view(3, 1, 1)


def safe_invert_gains(x: torch.Tensor, params: CameraParams) -> torch.Tensor:
    """Divide by the white-balance and exposure gains; with ``highlight_preserve`` bright pixels keep their value.

    Brooks' ``safe_invert_gains``: ``mask = (max(grey - t, 0) / (1 - t))^2`` with ``grey`` the channel mean and ``t``
    the inflection; the applied gain is ``max(mask + (1 - mask) / g, 1 / g)``.
    """
    inv = 1.0 / _wb_gains(params, x.dtype, x.device)
    if not params.highlight_preserve:
        return x * inv
    grey = x.mean(dim=-3, keepdim=True)
    t = params.inflection
    mask = ((grey - t).clamp_min(0.0) / (1.0 - t)) ** 2
    return x * torch.maximum(mask + (1.0 - mask) * inv, inv)


def mosaic(x: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """Keep one colour per site: ``[..., 3, H, W]`` -> Bayer mosaic ``[..., H, W]`` (H, W even)."""
    _check_rgb(x, "mosaic")
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        raise ShapeError(f"mosaic: image of {h}x{w} has an odd side; crop it to {h - h % 2}x{w - w % 2}")
    off = cfa_offsets(pattern)
    out = x.new_empty((*x.shape[:-3], h, w))
    for ch, colour in (("R", 0), ("Gb", 1), ("Gr", 1), ("B", 2)):
        r, c = off[ch]
        out[..., r::2, c::2] = x[..., colour, r::2, c::2]
    return out


def add_noise(
    x: torch.Tensor, shot_noise: float, read_noise: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Heteroscedastic Gaussian noise: ``x + N(0, shot * x + read)`` (Brooks' approximation of Poisson-Gaussian)."""
    var = (x.clamp_min(0.0) * shot_noise + read_noise).clamp_min(0.0)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + noise * var.sqrt()


def quantize_raw(x: torch.Tensor, params: CameraParams) -> torch.Tensor:
    """Normalised linear RAW -> digital numbers ``round(x (white - black) + black)`` clipped to ``[0, white]``."""
    dn = torch.round(x * (params.white_level - params.black_level) + params.black_level)
    return dn.clamp(0.0, min(params.white_level, 2**params.bit_depth - 1))


def unprocess_rgb(srgb: torch.Tensor, params: CameraParams) -> torch.Tensor:
    """Map sRGB ``[..., 3, H, W]`` in [0, 1] to linear camera RGB in [0, 1] (inverse tone, gamma, CCM, WB)."""
    _check_rgb(srgb, "unprocess_rgb")
    x = inverse_smoothstep(srgb)
    x = gamma_expansion(x, params.gamma)
    x = apply_ccm(x, params.rgb2cam)
    x = safe_invert_gains(x, params)
    return x.clamp(0.0, 1.0)


def unprocess(
    srgb: torch.Tensor, params: CameraParams, generator: torch.Generator | None = None, quantize: bool = True
) -> torch.Tensor:
    """Map sRGB ``[..., 3, H, W]`` to a RAW mosaic ``[..., H, W]``: unprocess, mosaic, noise, quantisation.

    Returns digital numbers (float tensor of integer values, black level included) when ``quantize``, else the
    normalised noisy linear mosaic.
    """
    x = mosaic(unprocess_rgb(srgb, params), params.pattern)
    if params.shot_noise > 0 or params.read_noise > 0:
        x = add_noise(x, params.shot_noise, params.read_noise, generator)
    return quantize_raw(x, params) if quantize else x


def process_rgb(cam: torch.Tensor, params: CameraParams) -> torch.Tensor:
    """Linear camera RGB -> sRGB: white balance and exposure, CCM ``inv(rgb2cam)``, gamma, smoothstep tone curve."""
    _check_rgb(cam, "process_rgb")
    x = (cam * _wb_gains(params, cam.dtype, cam.device)).clamp(0.0, 1.0)
    x = apply_ccm(x, np.linalg.inv(np.asarray(params.rgb2cam, dtype=np.float64))).clamp(0.0, 1.0)
    x = gamma_compression(x, params.gamma)
    return smoothstep(x)


def process(raw: torch.Tensor, params: CameraParams, demosaic_method: str = "malvar") -> torch.Tensor:
    """RAW mosaic in digital numbers ``[..., H, W]`` -> sRGB ``[..., 3, H, W]`` (the forward camera pipeline)."""
    x = ((raw - params.black_level) / (params.white_level - params.black_level)).clamp(0.0, 1.0)
    return process_rgb(demosaic(x, params.pattern, demosaic_method).clamp(0.0, 1.0), params)
