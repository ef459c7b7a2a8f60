"""Drawing for ``reid-synth``: identities (outfits cut from real photos), walking figures, cameras and nuisances.

Helpers of :mod:`pickwise.tasks.reid.synth`; everything here is a pure function of a ``numpy.random.Generator`` and
the source photos, so the benchmark is byte-identical for a given seed.

Sources (all bundled in scikit-image, loaded offline): clothing textures from the CC0 texture photos ``brick``,
``grass``, ``gravel`` and the photos ``camera`` and ``coins``; printed fabrics and backgrounds from ``astronaut``,
``chelsea``, ``coffee``, ``rocket``, ``immunohistochemistry`` (see :mod:`pickwise.data.photo_patches` for their
licences).

Model of one frame (reconstructed: every constant below is a documented design choice of this benchmark, tuned so
that ImageNet features are far from solving it; see docs/reid_data.md):

- **Identity** (:class:`Identity`): body proportions (height, head size, shoulder/hip width, limb width), skin and
  hair tone (short or long hair), a top (colour from a 16-colour palette, pattern plain / photo texture / stripes /
  printed photo, long or short sleeves, an optional logo visible only from the front), a bottom (trousers, shorts or
  skirt; plain or textured), shoes, and an optional backpack or shoulder bag. Colours come from a small palette, so
  many identities share their main colours and differ in patterns, proportions and accessories.
- **Figure**: head, hair, torso, two arms, two legs, shoes and bag drawn as polygons at twice the resolution and
  downsampled (anti-aliased). Gait: legs and arms swing with a per-tracklet phase and period; the body bobs. Views:
  front, back, left, right (side views are narrower and show the swing; the backpack shows from behind, the logo
  and the face from the front).
- **Camera** (:class:`Camera`): a background scene (a photo region, defocused), person scale, horizontal stretch
  (detector aspect), low resolution (render small, upsample), a colour response (channel gains, cross-talk, gamma,
  brightness), blur, sensor noise, JPEG quality, and a preferred set of views.
- **Per tracklet / frame**: illumination change and shading ramp, detection jitter (shift, scale), an occluder with
  some probability (a photo-textured object from below, a pole, or another pedestrian overlapping from the side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ...exceptions import DataNotFoundError

__all__ = ["PALETTE", "Camera", "Identity", "make_camera", "make_identity", "render_tracklet"]

PALETTE: tuple[tuple[int, int, int], ...] = (
    (20, 20, 22),  # black
    (235, 235, 230),  # white
    (128, 128, 128),  # grey
    (30, 40, 90),  # navy
    (40, 90, 180),  # blue
    (120, 170, 220),  # light blue
    (190, 30, 35),  # red
    (110, 20, 30),  # dark red
    (40, 120, 60),  # green
    (100, 110, 50),  # olive
    (200, 180, 140),  # beige
    (110, 70, 40),  # brown
    (230, 200, 40),  # yellow
    (230, 120, 30),  # orange
    (230, 150, 180),  # pink
    (100, 50, 130),  # purple
)
SKIN = ((255, 220, 190), (235, 190, 150), (200, 150, 110), (160, 110, 75), (110, 75, 50), (80, 55, 40))
HAIR = ((15, 12, 10), (60, 40, 25), (110, 75, 40), (200, 170, 110), (150, 150, 150), (140, 60, 30))
VIEWS = ("front", "back", "left", "right")
SS = 2
"""Supersampling factor of the figure (drawn at twice the size, downsampled)."""

_GREY_TEXTURES = ("brick", "grass", "gravel", "camera", "coins")
_COLOUR_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")
_SCENES = ("rocket", "coffee", "astronaut", "brick", "camera", "gravel", "chelsea", "grass")
_SCENE_TINT = {
    "brick": (1.0, 0.75, 0.6),
    "camera": (0.9, 0.95, 1.0),
    "gravel": (1.0, 0.95, 0.85),
    "grass": (0.8, 1.0, 0.7),
}


@lru_cache(maxsize=1)
def source_images() -> dict[str, np.ndarray]:
    """The bundled scikit-image photos as float32 ``[0, 1]`` arrays (grey: ``(H, W)``, colour: ``(H, W, 3)``)."""
    try:
        from skimage import data
    except ImportError:
        raise DataNotFoundError(
            "reid-synth: drawing needs scikit-image's bundled photos; install it with `pip install scikit-image` "
            "(or `pip install 'pickwise[data]'`)"
        ) from None
    out = {}
    for name in dict.fromkeys(_GREY_TEXTURES + _COLOUR_PHOTOS + _SCENES):
        img = np.asarray(getattr(data, name)(), dtype=np.float32) / 255.0
        if img.ndim == 3:
            img = img[..., :3]
        img.flags.writeable = False
        out[name] = img
    return out


def _crop(img: np.ndarray, rng: np.random.Generator, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    side = min(side, h, w)
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return img[y : y + side, x : x + side]


def _resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float array ``(h, w[, 3])`` to ``size = (H, W)``."""
    from PIL import Image

    if arr.ndim == 2:
        img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32))
        return np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return np.stack([_resize(np.ascontiguousarray(arr[..., c]), size) for c in range(arr.shape[2])], axis=-1)


SWATCH = 64
"""Side of an identity's fabric swatches (pixels, before resizing to the figure)."""


def _fabric(rng: np.random.Generator, colour: np.ndarray, kind: str) -> np.ndarray:
    """A ``SWATCH x SWATCH x 3`` fabric in ``[0, 1]``: plain, photo texture, stripes or printed photo."""
    src = source_images()
    base = np.broadcast_to(colour, (SWATCH, SWATCH, 3)).astype(np.float32)
    if kind == "texture":
        tex = _crop(src[_GREY_TEXTURES[int(rng.integers(len(_GREY_TEXTURES)))]], rng, int(rng.integers(48, 200)))
        tex = _resize(np.ascontiguousarray(tex), (SWATCH, SWATCH))
        tex = (tex - tex.mean()) / (tex.std() + 1e-6)
        return np.clip(base * (1.0 + float(rng.uniform(0.2, 0.45)) * tex[..., None]), 0, 1)
    if kind == "stripes":
        second = np.asarray(PALETTE[int(rng.integers(len(PALETTE)))], dtype=np.float32) / 255.0
        period = float(rng.uniform(6, 16))
        duty = float(rng.uniform(0.3, 0.6))
        coords = np.arange(SWATCH, dtype=np.float32)
        horizontal = rng.random() < 0.7
        band = ((coords / period) % 1.0) < duty
        band2 = band[:, None] if horizontal else band[None, :]
        if rng.random() < 0.2:  # checks
            band2 = band[:, None] ^ band[None, :]
        return np.where(band2[..., None], second, base).astype(np.float32)
    if kind == "print":
        photo = _crop(src[_COLOUR_PHOTOS[int(rng.integers(len(_COLOUR_PHOTOS)))]], rng, int(rng.integers(60, 220)))
        photo = _resize(np.ascontiguousarray(photo), (SWATCH, SWATCH))
        beta = float(rng.uniform(0.45, 0.85))
        return np.clip((1 - beta) * base + beta * photo, 0, 1).astype(np.float32)
    shade = 1.0 + 0.04 * rng.standard_normal((SWATCH, SWATCH, 1)).astype(np.float32)
    return np.clip(base * shade, 0, 1)


@dataclass(frozen=True)
class Identity:
    """Everything that is fixed for one person (see the module docstring)."""

    height: float
    head_r: float
    shoulder: float
    hip: float
    torso_end: float
    limb_w: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_long: bool
    top: np.ndarray  # SWATCH x SWATCH x 3 float
    sleeves_long: bool
    bottom: np.ndarray
    bottom_kind: str  # trousers | shorts | skirt
    shoes: tuple[int, int, int]
    bag: str  # none | backpack | shoulder
    bag_colour: tuple[int, int, int]
    logo: np.ndarray | None  # 16 x 16 x 3 float or None


def _jitter_colour(rng: np.random.Generator, rgb: tuple[int, int, int], amount: float) -> np.ndarray:
    c = np.asarray(rgb, dtype=np.float32) / 255.0
    return np.clip(c * float(np.exp(rng.normal(0, amount))) + rng.normal(0, amount / 3, 3), 0, 1).astype(np.float32)


def make_identity(rng: np.random.Generator) -> Identity:
    """Draw one identity's body and outfit."""
    src = source_images()
    top_kind = str(rng.choice(["plain", "texture", "stripes", "print"], p=[0.35, 0.25, 0.2, 0.2]))
    bottom_kind = str(rng.choice(["trousers", "shorts", "skirt"], p=[0.65, 0.2, 0.15]))
    bottom_fabric = str(rng.choice(["plain", "texture", "stripes"], p=[0.6, 0.3, 0.1]))
    top_colour = _jitter_colour(rng, PALETTE[int(rng.integers(len(PALETTE)))], 0.1)
    bottom_colour = _jitter_colour(rng, PALETTE[int(rng.integers(len(PALETTE)))], 0.1)
    logo = None
    if rng.random() < 0.3:
        logo = _resize(np.ascontiguousarray(_crop(src[_COLOUR_PHOTOS[int(rng.integers(5))]], rng, 40)), (16, 16))
    return Identity(
        height=float(rng.uniform(0.86, 1.0)),
        head_r=float(rng.uniform(0.058, 0.072)),
        shoulder=float(rng.uniform(0.13, 0.17)),
        hip=float(rng.uniform(0.095, 0.125)),
        torso_end=float(rng.uniform(0.5, 0.57)),
        limb_w=float(rng.uniform(0.05, 0.065)),
        skin=SKIN[int(rng.integers(len(SKIN)))],
        hair=HAIR[int(rng.integers(len(HAIR)))],
        hair_long=bool(rng.random() < 0.35),
        top=_fabric(rng, top_colour, top_kind),
        sleeves_long=bool(rng.random() < 0.6),
        bottom=_fabric(rng, bottom_colour, bottom_fabric),
        bottom_kind=bottom_kind,
        shoes=PALETTE[int(rng.choice([0, 1, 2, 11, 3, int(rng.integers(len(PALETTE)))]))],
        bag=str(rng.choice(["none", "backpack", "shoulder"], p=[0.55, 0.25, 0.2])),
        bag_colour=PALETTE[int(rng.integers(len(PALETTE)))],
        logo=logo,
    )


@dataclass(frozen=True)
class Camera:
    """One camera's viewpoint, optics and colour response (see the module docstring)."""

    scene: np.ndarray  # (H, W, 3) float background, already scaled for this camera
    ground: np.ndarray  # same shape: the pavement shown below the horizon
    horizon: float  # frame rows below this fraction of the height show the ground
    person_scale: tuple[float, float]  # person height / box height range
    stretch: float  # horizontal stretch of the person in the box
    lowres: float  # render at this fraction of the resolution, then upsample (1 = sharp)
    gains: np.ndarray  # (3,)
    mix: np.ndarray  # (3, 3) colour cross-talk
    gamma: float
    brightness: float
    blur: float  # Gaussian sigma in output pixels
    noise: float  # std in 0..1 units
    jpeg_quality: int
    view_p: np.ndarray  # probabilities of VIEWS


def make_camera(
    rng: np.random.Generator, index: int, size: tuple[int, int], strength: float, background: float = 0.45
) -> Camera:
    """Draw camera ``index`` (0-based) for frames of ``size = (H, W)``.

    ``strength`` scales every nuisance; ``background`` is the mean contrast of the background photo (1 = as shot,
    0 = flat grey of the photo's mean colour), drawn per camera in ``background * [0.7, 1.3]``.
    """
    from PIL import Image, ImageFilter

    s = float(strength)
    name = _SCENES[index % len(_SCENES)]
    img = source_images()[name]
    if img.ndim == 2:
        img = img[..., None] * np.asarray(_SCENE_TINT.get(name, (1.0, 1.0, 1.0)), dtype=np.float32)
    # scale the scene so that a frame covers 1/3..1/2 of its height
    scale = size[0] / (img.shape[0] * float(rng.uniform(0.3, 0.5)))
    scene = _resize(
        np.ascontiguousarray(img),
        (max(size[0] + 1, round(img.shape[0] * scale)), max(size[1] + 1, round(img.shape[1] * scale))),
    )
    contrast = float(np.clip(background * rng.uniform(0.7, 1.3), 0.0, 1.0))
    # a muted scene: contrast and saturation reduced, mean colour pulled halfway to grey
    mean = scene.mean((0, 1))
    grey = scene.mean(2, keepdims=True)
    sat = float(rng.uniform(0.3, 0.6))
    scene = 0.5 * mean + 0.25 + contrast * ((grey + sat * (scene - grey)) - mean)
    # a ground band (pavement: a low-contrast grey texture) under the walkers' feet, in frame coordinates
    ground_src = source_images()[str(rng.choice(["gravel", "brick", "grass", "coins"]))]
    ground = _resize(np.ascontiguousarray(_crop(ground_src, rng, 256)), (scene.shape[0], scene.shape[1]))
    tint = np.asarray(PALETTE[int(rng.choice([2, 10, 11, 9, 1]))], dtype=np.float32) / 255.0
    ground = 0.5 * tint + 0.25 + 0.6 * contrast * (ground[..., None] - ground.mean())
    blur = ImageFilter.GaussianBlur(float(rng.uniform(0.8, 1.6)))
    scene, ground = (
        np.asarray(Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8)).filter(blur), dtype=np.float32) / 255
        for a in (scene, ground)
    )
    lo = float(rng.uniform(0.8, 0.9))
    views = np.ones(4) * 0.1
    views[rng.permutation(4)[:2]] += np.array([0.6, 0.2])
    mix = np.eye(3) + rng.normal(0, 0.04 * s, (3, 3)) * (1 - np.eye(3))
    return Camera(
        scene=scene,
        ground=ground,
        horizon=float(rng.uniform(0.6, 0.8)),
        person_scale=(lo, min(0.98, lo + 0.08)),
        stretch=float(np.exp(rng.normal(0, 0.08 * s))),
        lowres=float(rng.choice([1.0, 0.75, 0.5], p=[0.5, 0.3, 0.2])) if s > 0 else 1.0,
        gains=np.exp(rng.normal(0, 0.08 * s, 3)).astype(np.float32),
        mix=(mix / mix.sum(1, keepdims=True)).astype(np.float32),
        gamma=float(np.exp(rng.normal(0, 0.1 * s))),
        brightness=float(np.exp(rng.normal(0, 0.12 * s))),
        blur=float(rng.uniform(0.0, 1.0) * s),
        noise=float(rng.uniform(0.004, 0.025) * s),
        jpeg_quality=int(rng.integers(60, 95)),
        view_p=views / views.sum(),
    )


# ------------------------------------------------------------------------------------------------------ figure


def _limb(p0: tuple[float, float], p1: tuple[float, float], w0: float, w1: float) -> list[tuple[float, float]]:
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    n = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / n, dx / n
    return [
        (p0[0] + nx * w0 / 2, p0[1] + ny * w0 / 2),
        (p1[0] + nx * w1 / 2, p1[1] + ny * w1 / 2),
        (p1[0] - nx * w1 / 2, p1[1] - ny * w1 / 2),
        (p0[0] - nx * w0 / 2, p0[1] - ny * w0 / 2),
    ]


def _lerp(a: tuple[float, float], b: tuple[float, float], t: float) -> tuple[float, float]:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


class _Painter:
    """Draws filled polygons/ellipses on an RGBA canvas with a solid colour or a fabric image."""

    def __init__(self, width: int, height: int, fabrics: dict[str, Any]) -> None:
        from PIL import Image, ImageDraw

        self.Image, self.ImageDraw = Image, ImageDraw
        self.canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.canvas)
        self.size = (width, height)
        self.fabrics = fabrics

    def poly(self, pts: list[tuple[float, float]], fill: str | tuple[int, int, int]) -> None:
        if isinstance(fill, tuple):
            self.draw.polygon(pts, fill=(*fill, 255))
            return
        mask = self.Image.new("L", self.size, 0)
        self.ImageDraw.Draw(mask).polygon(pts, fill=255)
        self.canvas.paste(self.fabrics[fill], (0, 0), mask)

    def ellipse(self, box: tuple[float, float, float, float], fill: tuple[int, int, int]) -> None:
        self.draw.ellipse(box, fill=(*fill, 255))

    def line(self, pts: list[tuple[float, float]], fill: tuple[int, int, int], width: float) -> None:
        self.draw.line(pts, fill=(*fill, 255), width=max(1, round(width)))


def draw_figure(ident: Identity, view: str, phase: float, height: int, fabrics: dict[str, Any] | None) -> Any:
    """The figure as an RGBA PIL image of ``height x round(0.6 height)`` pixels (feet at the bottom row)."""
    width = round(0.6 * height)
    p = _Painter(width, height, fabrics or {})
    s = ident.height * height
    side = view in ("left", "right")
    xc = width / 2
    bob = abs(math.sin(phase)) * 0.012 * s
    y0 = height - s + bob
    hr = ident.head_r * s
    ys = y0 + 2.15 * hr
    yh = y0 + ident.torso_end * s
    yf = height - 1.0
    wfac = 0.55 if side else 1.0
    sw, hw = ident.shoulder * s * wfac, ident.hip * s * wfac
    lw = ident.limb_w * s
    leg_len = yf - yh
    arm_len = 0.37 * s
    swing = 0.38 * math.sin(phase)
    arm_swing = 0.45 * math.sin(phase)
    skin, top_fill, bottom_fill = ident.skin, "top", "bottom"

    def leg(k: int) -> None:
        if side:
            angle = swing if k == 0 else -swing
            hip = (xc + (k - 0.5) * lw * 0.3, yh)
            foot = (hip[0] + leg_len * math.sin(angle), hip[1] + leg_len * math.cos(angle))
        else:
            lift = max(0.0, math.sin(phase + k * math.pi)) * 0.05 * s
            hip = (xc + (k - 0.5) * hw * 1.1, yh)
            foot = (hip[0] + (k - 0.5) * lw * 0.4, yf - lift)
        if ident.bottom_kind == "trousers":
            p.poly(_limb(hip, foot, lw * 1.15, lw * 0.95), bottom_fill)
        else:
            p.poly(_limb(hip, foot, lw * 1.0, lw * 0.8), skin)
            if ident.bottom_kind == "shorts":
                p.poly(_limb(hip, _lerp(hip, foot, 0.45), lw * 1.3, lw * 1.2), bottom_fill)
        p.ellipse((foot[0] - lw * 0.75, foot[1] - lw * 0.5, foot[0] + lw * 0.75, foot[1] + lw * 0.2), ident.shoes)

    def arm(k: int, front: bool) -> None:
        sx = xc + (k - 0.5) * 2 * sw * 0.92
        shoulder = (sx, ys + 0.2 * hr)
        if side:
            angle = arm_swing if front else -arm_swing
            hand = (shoulder[0] + arm_len * math.sin(angle), shoulder[1] + arm_len * math.cos(angle))
        else:
            out = (k - 0.5) * 2 * 0.12
            fore = 1.0 - 0.08 * abs(math.sin(phase))
            hand = (shoulder[0] + arm_len * math.sin(out), shoulder[1] + arm_len * math.cos(out) * fore)
        sleeve_end = 1.0 if ident.sleeves_long else 0.42
        p.poly(_limb(shoulder, hand, lw * 0.9, lw * 0.7), skin)
        p.poly(_limb(shoulder, _lerp(shoulder, hand, sleeve_end), lw * 1.05, lw * 0.85), top_fill)
        p.ellipse((hand[0] - lw * 0.45, hand[1] - lw * 0.45, hand[0] + lw * 0.45, hand[1] + lw * 0.45), skin)

    torso = [(xc - sw, ys), (xc + sw, ys), (xc + hw * 1.08, yh + lw * 0.3), (xc - hw * 1.08, yh + lw * 0.3)]
    if side:
        arm(0, front=False)
        if ident.bag == "backpack":
            p.poly(
                [
                    (xc - sw - lw * 1.6, ys + hr * 0.3),
                    (xc - sw * 0.6, ys + hr * 0.3),
                    (xc - sw * 0.6, yh - hr * 0.5),
                    (xc - sw - lw * 1.6, yh - hr * 0.5),
                ],
                ident.bag_colour,
            )
    if ident.hair_long and view == "front":
        p.poly(
            [
                (xc - hr * 1.05, y0 + hr),
                (xc + hr * 1.05, y0 + hr),
                (xc + hr * 1.05, ys + hr * 1.2),
                (xc - hr * 1.05, ys + hr * 1.2),
            ],
            ident.hair,
        )
    leg(0)
    leg(1)
    if ident.bottom_kind == "skirt":
        p.poly(
            [
                (xc - hw * 1.05, yh - lw * 0.2),
                (xc + hw * 1.05, yh - lw * 0.2),
                (xc + hw * 1.6 + lw, yh + leg_len * 0.45),
                (xc - hw * 1.6 - lw, yh + leg_len * 0.45),
            ],
            bottom_fill,
        )
    elif not side:
        p.poly(
            [
                (xc - hw * 1.1, yh - lw * 0.2),
                (xc + hw * 1.1, yh - lw * 0.2),
                (xc + hw * 1.1, yh + lw * 0.8),
                (xc - hw * 1.1, yh + lw * 0.8),
            ],
            bottom_fill,
        )
    p.poly(torso, top_fill)
    if not side:
        arm(0, front=True)
        arm(1, front=True)
    if view == "front" and ident.logo is not None:
        side_px = max(2, round(sw * 0.7))
        from PIL import Image

        logo = Image.fromarray((ident.logo * 255).astype(np.uint8)).resize(
            (side_px, side_px), Image.Resampling.BILINEAR
        )
        p.canvas.paste(logo, (round(xc - side_px / 2), round(ys + hr * 0.5)))
    if ident.bag == "backpack":
        if view == "back":
            p.poly(
                [
                    (xc - sw * 0.75, ys + hr * 0.25),
                    (xc + sw * 0.75, ys + hr * 0.25),
                    (xc + sw * 0.7, yh - hr * 0.4),
                    (xc - sw * 0.7, yh - hr * 0.4),
                ],
                ident.bag_colour,
            )
        elif view == "front":
            for k in (-1, 1):
                p.line([(xc + k * sw * 0.55, ys), (xc + k * sw * 0.6, yh - hr)], ident.bag_colour, lw * 0.35)
    elif ident.bag == "shoulder":
        p.line([(xc - sw * 0.9, ys), (xc + hw * 1.2, yh - hr * 0.2)], ident.bag_colour, lw * 0.3)
        bx = xc + hw * 1.2 if view != "left" else xc - hw * 1.2
        p.poly(
            [
                (bx - lw, yh - hr * 0.6),
                (bx + lw * 1.2, yh - hr * 0.6),
                (bx + lw * 1.2, yh + hr * 0.9),
                (bx - lw, yh + hr * 0.9),
            ],
            ident.bag_colour,
        )
    if side:
        arm(1, front=True)
    # head: hair cap, face; from behind the hair covers the head
    hx = xc + (hr * 0.15 if side else 0.0)
    p.ellipse((hx - hr * 0.95, y0 - hr * 0.02, hx + hr * 0.95, y0 + 2.05 * hr), ident.hair)
    if view != "back":
        fx = hx + (hr * 0.25 if side else 0.0)
        top = y0 + (0.45 if view == "front" else 0.55) * hr
        p.ellipse((fx - hr * 0.8, top, fx + hr * 0.8, y0 + 2.1 * hr), skin)
    if ident.hair_long and view != "front":
        p.poly(
            [
                (hx - hr * 0.95, y0 + hr),
                (hx + hr * (0.2 if side else 0.95), y0 + hr),
                (hx + hr * (0.2 if side else 0.95), ys + hr * 1.3),
                (hx - hr * 0.95, ys + hr * 1.3),
            ],
            ident.hair,
        )
    if view == "right":  # drawn facing left; mirror for the other direction
        p.canvas = p.canvas.transpose(p.Image.FLIP_LEFT_RIGHT)
    return p.canvas


def _fabric_images(ident: Identity, height: int) -> dict[str, Any]:
    from PIL import Image

    width = round(0.6 * height)
    out = {}
    for key, arr in (("top", ident.top), ("bottom", ident.bottom)):
        img = Image.fromarray((arr * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR)
        out[key] = img.convert("RGBA")
    return out


# ---------------------------------------------------------------------------------------------------- tracklet


def render_tracklet(
    ident: Identity | None,
    cam: Camera,
    rng: np.random.Generator,
    num_frames: int,
    size: tuple[int, int],
    *,
    strength: float = 1.0,
    occluder_ident: Identity | None = None,
    partial: str | None = None,
) -> list[bytes]:
    """JPEG bytes of ``num_frames`` consecutive frames of ``ident`` walking past camera ``cam``.

    Args:
        ident: The person (``None``: a false detection that shows only background, and maybe a partial figure of
            ``occluder_ident``).
        cam: The camera.
        rng: Random source of this tracklet (view, gait phase, jitter, illumination, occluder).
        num_frames: Frames to draw.
        size: Output ``(H, W)``.
        strength: Nuisance strength (0 = clean frames, 1 = the calibrated default).
        occluder_ident: The pedestrian used when the occluder is another person.
        partial: ``"upper"``/``"lower"``: a badly placed detection box showing only that half of the person.
    """
    import io

    from PIL import Image, ImageFilter

    h_out, w_out = size
    work_h = max(16, round(h_out * cam.lowres))
    work_w = max(8, round(w_out * cam.lowres))
    s = float(strength)
    view = VIEWS[int(rng.choice(4, p=cam.view_p))]
    phase0, period = float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(6, 11))
    scale = float(rng.uniform(*cam.person_scale))
    person_h = max(12, round(work_h * scale))
    fabrics = _fabric_images(ident, person_h * SS) if ident is not None else None
    # background window: a random place in the scene, drifting as the box follows the walker
    sh, sw_ = cam.scene.shape[:2]
    by, bx = float(rng.uniform(0, sh - h_out)), float(rng.uniform(0, sw_ - w_out))
    drift = rng.normal(0, 1.2, 2) * s
    illum = float(np.exp(rng.normal(0, 0.15 * s))) * cam.brightness
    ramp_dir, ramp_amp = float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 0.25 * s))
    yy, xx = np.mgrid[0:h_out, 0:w_out].astype(np.float32)
    ramp = 1.0 + ramp_amp * ((yy / h_out - 0.5) * math.sin(ramp_dir) + (xx / w_out - 0.5) * math.cos(ramp_dir))
    occ = None
    if s > 0 and rng.random() < 0.25 * min(1.0, s):
        occ = str(rng.choice(["object", "pole", "person"], p=[0.4, 0.25, 0.35]))
        occ_tex = _crop(source_images()[_COLOUR_PHOTOS[int(rng.integers(5))]], rng, 120)
        occ_h = float(rng.uniform(0.2, 0.45))
        occ_x0, occ_v = float(rng.uniform(-0.3, 1.0)), float(rng.normal(0, 0.05))
        occ_side = float(rng.choice([-1.0, 1.0]))
        occ_fabrics = _fabric_images(occluder_ident, person_h * SS) if occluder_ident is not None else None
        if occ == "person" and occluder_ident is None:
            occ = "object"
    ground_rows = (np.arange(h_out) >= cam.horizon * h_out)[:, None, None]
    frames = []
    for t in range(num_frames):
        fy, fx = by + drift[0] * t, bx + drift[1] * t
        fy = min(max(fy, 0.0), sh - h_out - 1.0)
        fx = min(max(fx, 0.0), sw_ - w_out - 1.0)
        win = (slice(int(fy), int(fy) + h_out), slice(int(fx), int(fx) + w_out))
        bg = np.where(ground_rows, cam.ground[win], cam.scene[win])
        frame = Image.fromarray((bg * 255).astype(np.uint8)).resize((work_w, work_h), Image.Resampling.BILINEAR)
        phase = phase0 + 2 * math.pi * t / period
        jit_s = 1.0 + float(rng.normal(0, 0.035 * s))
        ph = max(12, round(person_h * jit_s))
        if ident is not None:
            fig = draw_figure(ident, view, phase, person_h * SS, fabrics)
            pw = max(4, round(fig.width / SS * cam.stretch * jit_s))
            fig = fig.resize((pw, ph), Image.Resampling.BOX)
            cx = work_w / 2 + float(rng.normal(0, 0.045 * s)) * work_w
            top = work_h - ph - round(work_h * 0.02) + round(float(rng.normal(0, 0.03 * s)) * work_h)
            if partial == "upper":
                top += round(ph * 0.45)
            elif partial == "lower":
                top -= round(ph * 0.5)
            frame.paste(fig, (round(cx - pw / 2), top), fig)
        if occ is not None:
            ox = (occ_x0 + occ_v * t) * work_w
            if occ == "object":
                oh = round(occ_h * work_h)
                tex = Image.fromarray((occ_tex * 255).astype(np.uint8)).resize((work_w, oh), Image.Resampling.BILINEAR)
                frame.paste(tex, (round(ox - work_w * 0.5), work_h - oh))
            elif occ == "pole":
                pw_ = max(2, round(work_w * 0.12))
                tex = Image.fromarray((occ_tex * 255).astype(np.uint8)).resize((pw_, work_h), Image.Resampling.BILINEAR)
                frame.paste(tex, (round(ox), 0))
            else:
                assert occluder_ident is not None  # drawn with the occluder kind "person"
                ofig = draw_figure(occluder_ident, view, phase + 1.3, person_h * SS, occ_fabrics)
                ofig = ofig.resize((max(4, round(ofig.width / SS)), person_h), Image.Resampling.BOX)
                frame.paste(
                    ofig, (round(work_w / 2 + occ_side * work_w * 0.55 - ofig.width / 2), work_h - person_h), ofig
                )
        if (work_h, work_w) != (h_out, w_out):
            frame = frame.resize((w_out, h_out), Image.Resampling.BILINEAR)
        sigma = cam.blur * float(rng.uniform(0.7, 1.3))
        if sigma > 0.15:
            frame = frame.filter(ImageFilter.GaussianBlur(sigma))
        x = np.asarray(frame, dtype=np.float32) / 255.0
        x = x @ cam.mix.T * cam.gains
        x = np.clip(x * illum * float(np.exp(rng.normal(0, 0.03 * s))) * ramp[..., None], 0, 1) ** cam.gamma
        if cam.noise > 0:
            x = x + rng.normal(0, cam.noise, x.shape).astype(np.float32)
        out = Image.fromarray(np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        out.save(buf, format="JPEG", quality=cam.jpeg_quality)
        frames.append(buf.getvalue())
    return frames
