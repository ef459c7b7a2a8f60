"""Acquisition strategies for active domain adaptation in segmentation, behind one registry.

Every strategy maps the model's outputs on a batch of target images to a new boolean selection mask, spending an
exact per-image budget of pixels (or regions)::

    strategy = get_strategy("mcu", radius=1)
    new = strategy(logits, labelled, budget)   # logits [B,K,H,W], labelled bool[B,H,W], budget long[B]
    assert (new & labelled).sum() == 0 and new.sum(dim=(1, 2)).tolist() == budget.tolist()

Strategies (``list_strategies()``):

- ``random``: uniform scores from the caller's generator.
- ``entropy``: top-k of the predictive entropy ``H(p) = -sum_c p_c log p_c``.
- ``margin``: top-k of ``1 - (p_top1 - p_top2)`` (best-vs-second margin, small margin = uncertain).
- ``mcu``: ADA-MCU's "simple pixel selection" (Zhang et al., ACCV 2022), **reconstructed** (no code was released):
  uncertainty top-k under spatial non-maximum suppression: after each pick the ``(2r+1) x (2r+1)`` window around it is
  suppressed, so the picks spread out (diversity comes from the contrastive units, not from the selector). ``radius``
  defaults to 1 (reconstructed; RIPU's pixel mode uses the same greedy window).
- ``ripu_pixel`` / ``ripu_region``: RIPU (Xie et al., CVPR 2022) region impurity x prediction uncertainty: in a
  ``k x k`` window (``k = 2r+1``) the impurity is the entropy of the histogram of predicted classes and the
  uncertainty the mean pixel entropy, both normalised by ``log K``; pixel mode picks pixels greedily with a radius-r
  suppression window, region mode labels whole ``k x k`` squares (suppressing radius ``2r`` so squares do not
  overlap), the last square truncated to its best pixels so the pixel budget is met exactly.

Budgets (:func:`parse_budget`): total pixels (``"5000"``), a fraction of the target pool's pixels (``"2.2%"``), pixels
per image (``"40/img"``), regions per image (``"2reg/img"``) or whole images (``"5img"``). :func:`round_budgets`
splits a total over the rounds exactly and :func:`split_budget` spreads a round's pixels over the images (equal
shares capped by what each image still has unlabelled, the remainder to the lowest indices), so the labelled count
after a round equals the budget exactly, never more. Ties are broken towards the lowest flat index everywhere.

All scoring is vectorized (``avg_pool2d`` / ``topk`` / ``sort``); greedy suppression loops over picks (batched over
the images), never over pixels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ...exceptions import ConfigError, ShapeError

__all__ = [
    "Budget",
    "Strategy",
    "entropy_map",
    "get_strategy",
    "greedy_select",
    "list_strategies",
    "margin_map",
    "parse_budget",
    "region_impurity",
    "register_strategy",
    "round_budgets",
    "select_images",
    "split_budget",
    "topk_select",
]

_NEG = float("-inf")


# ---------------------------------------------------------------------------------------------------- score maps
def entropy_map(logits: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Predictive entropy ``-sum_c p_c log p_c`` per pixel of ``logits [B,K,H,W]`` -> ``[B,H,W]`` (/ log K if asked)."""
    logp = F.log_softmax(logits.float(), dim=1)
    ent = -(logp.exp() * logp).sum(1)
    return ent / math.log(logits.shape[1]) if normalize and logits.shape[1] > 1 else ent


def margin_map(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty ``1 - (p_top1 - p_top2)`` per pixel of ``logits [B,K,H,W]`` -> ``[B,H,W]`` (1 = a tie)."""
    p = F.softmax(logits.float(), dim=1)
    top = p.topk(min(2, p.shape[1]), dim=1).values
    second = top[:, 1] if top.shape[1] > 1 else torch.zeros_like(top[:, 0])
    return 1.0 - (top[:, 0] - second)


def region_impurity(logits: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RIPU's region impurity and region uncertainty of every ``(2r+1) x (2r+1)`` window (zero padding excluded).

    ``impurity = -sum_c q_c log q_c / log K`` with ``q`` the histogram of predicted classes in the window;
    ``uncertainty = mean of the pixel entropies in the window / log K``. Both ``[B,H,W]``.
    """
    k = 2 * radius + 1
    num_classes = logits.shape[1]
    pred = logits.argmax(1)
    one_hot = F.one_hot(pred, num_classes).permute(0, 3, 1, 2).float()
    q = F.avg_pool2d(one_hot, k, stride=1, padding=radius, count_include_pad=False)
    log_k = math.log(num_classes) if num_classes > 1 else 1.0
    impurity = -(q * torch.log(q.clamp_min(1e-12))).sum(1) / log_k
    ent = entropy_map(logits, normalize=True)[:, None]
    uncertainty = F.avg_pool2d(ent, k, stride=1, padding=radius, count_include_pad=False)[:, 0]
    return impurity.clamp_min(0.0), uncertainty


# ---------------------------------------------------------------------------------------------------- selection
def _check(scores: torch.Tensor, labelled: torch.Tensor, budget: torch.Tensor | int) -> torch.Tensor:
    if scores.ndim != 3 or labelled.shape != scores.shape:
        raise ShapeError(
            f"acquisition: scores [B,H,W] and labelled of the same shape expected; got "
            f"{tuple(scores.shape)} and {tuple(labelled.shape)}"
        )
    budget = torch.as_tensor(budget, dtype=torch.long).reshape(-1)
    if budget.numel() == 1 and scores.shape[0] != 1:
        budget = budget.expand(scores.shape[0])
    if budget.numel() != scores.shape[0] or bool((budget < 0).any()):
        raise ShapeError(
            f"acquisition: budget must hold one non-negative count per image ({scores.shape[0]}); got {budget.tolist()}"
        )
    return budget.to(scores.device)


def topk_select(scores: torch.Tensor, labelled: torch.Tensor, budget: torch.Tensor | int) -> torch.Tensor:
    """The ``budget[b]`` highest-scoring unlabelled pixels of every image (ties: lowest flat index first).

    Images with fewer unlabelled pixels than their budget get all of them.

    Example:
        >>> s = torch.tensor([[[0.1, 0.9], [0.9, 0.5]]])
        >>> topk_select(s, torch.zeros(1, 2, 2, dtype=torch.bool), 2).int().tolist()
        [[[0, 1], [1, 0]]]
    """
    budget = _check(scores, labelled, budget)
    b, h, w = scores.shape
    flat = scores.reshape(b, -1).float().nan_to_num(nan=_NEG)
    cand = ~labelled.reshape(b, -1)
    # rank: candidates first, by descending score, stable (lowest index first among ties)
    key = torch.where(cand, flat, torch.full_like(flat, _NEG))
    order = torch.sort(key, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=scores.device).expand(b, -1))
    take = (rank < budget[:, None]) & cand
    return take.reshape(b, h, w)


def _window(rows: torch.Tensor, cols: torch.Tensor, h: int, w: int, radius: int) -> torch.Tensor:
    """``bool[B,H,W]``: the ``(2r+1)^2`` window around ``(rows[b], cols[b])`` of every image."""
    ys = torch.arange(h, device=rows.device)[None, :, None]
    xs = torch.arange(w, device=rows.device)[None, None, :]
    return ((ys - rows[:, None, None]).abs() <= radius) & ((xs - cols[:, None, None]).abs() <= radius)


def greedy_select(
    scores: torch.Tensor,
    labelled: torch.Tensor,
    budget: torch.Tensor | int,
    radius: int = 1,
    *,
    region_radius: int | None = None,
    pixel_scores: torch.Tensor | None = None,
    count: str = "pixels",
) -> torch.Tensor:
    """Greedy top-k with spatial non-maximum suppression, batched over images (one loop step per pick).

    Pixel mode (``region_radius=None``): pick the best candidate, suppress the ``(2 radius + 1)^2`` window around it,
    repeat until ``budget[b]`` pixels are picked. When suppression has covered every candidate, the remaining picks
    ignore suppression (best unsuppressed first, then best suppressed), so the budget is always met.

    Region mode (``region_radius=r``): each pick labels the unlabelled pixels of the ``(2r+1)^2`` square around the
    best centre; centres within ``radius`` of a pick are suppressed. With ``count="pixels"`` ``budget`` counts pixels
    and the last square is truncated to its best ``pixel_scores`` pixels (exactly the budget); with
    ``count="regions"`` it counts squares (each square's unlabelled pixels, possibly fewer than ``(2r+1)^2``).

    Returns:
        bool[B,H,W]: the new picks (disjoint from ``labelled``).
    """
    budget = _check(scores, labelled, budget)
    if count not in ("pixels", "regions"):
        raise ConfigError(f"acquisition: count must be 'pixels' or 'regions'; got {count!r}")
    b, h, w = scores.shape
    dev = scores.device
    score = scores.float().nan_to_num(nan=_NEG)
    chosen = torch.zeros_like(labelled)
    suppressed = torch.zeros_like(labelled)
    spent = torch.zeros(b, dtype=torch.long, device=dev)
    picks = torch.zeros(b, dtype=torch.long, device=dev)
    ps = (pixel_scores if pixel_scores is not None else scores).float().nan_to_num(nan=_NEG)
    batch = torch.arange(b, device=dev)
    region = region_radius is not None
    rr = int(region_radius or 0)
    centre_ok = torch.ones_like(labelled)  # region mode: centres not picked yet
    while True:
        taken = labelled | chosen
        cand = ~taken if not region else centre_ok
        if region:
            free = F.max_pool2d((~taken)[:, None].float(), 2 * rr + 1, 1, rr)[:, 0] > 0
            cand = cand & free
        progress = spent if count == "pixels" else picks
        active = (progress < budget) & cand.reshape(b, -1).any(1)
        if not bool(active.any()):
            break
        flat = score.reshape(b, -1)
        unsup = cand & ~suppressed
        best_unsup = torch.where(unsup.reshape(b, -1), flat, torch.full_like(flat, _NEG)).argmax(1)
        best_any = torch.where(cand.reshape(b, -1), flat, torch.full_like(flat, _NEG)).argmax(1)
        has_unsup = unsup.reshape(b, -1).any(1)
        idx = torch.where(has_unsup, best_unsup, best_any)
        rows, cols = idx // w, idx % w
        sup = _window(rows, cols, h, w, radius) & active[:, None, None]
        suppressed |= sup
        if not region:
            new = torch.zeros_like(chosen)
            new.reshape(b, -1)[batch, idx] = active
        else:
            new = _window(rows, cols, h, w, rr) & ~taken & active[:, None, None]
            centre_ok.reshape(b, -1)[batch[active], idx[active]] = False
            if count == "pixels":
                left = (budget - spent).clamp_min(0)
                over = new.reshape(b, -1).sum(1) > left
                if bool(over.any()):
                    trimmed = topk_select(torch.where(new, ps, torch.full_like(ps, _NEG)), ~new, left)
                    new = torch.where(over[:, None, None], trimmed, new)
        chosen |= new
        spent += new.reshape(b, -1).sum(1)
        picks += active.long()
    return chosen


def select_images(image_scores: torch.Tensor, fully_labelled: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` best-scoring images not yet fully labelled (ties: lowest index), for image budgets."""
    key = torch.where(fully_labelled, torch.full_like(image_scores.float(), _NEG), image_scores.float())
    order = torch.sort(key, descending=True, stable=True).indices
    order = order[~fully_labelled[order]]
    return order[:n]


# ---------------------------------------------------------------------------------------------------- strategies
@dataclass
class Strategy:
    """A named acquisition strategy: a score map plus a selection rule.

    Attributes:
        name: Registry name.
        score_fn: ``(logits, features, generator) -> float[B,H,W]`` (higher = more worth labelling).
        radius: Suppression radius of greedy selection (0: plain top-k).
        region_radius: Square half-size of region mode (None: pixel mode).
    """

    name: str
    score_fn: Callable[[torch.Tensor, torch.Tensor | None, torch.Generator | None], torch.Tensor]
    radius: int = 0
    region_radius: int | None = None

    def score(
        self, logits: torch.Tensor, features: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Per-pixel acquisition score ``[B,H,W]``."""
        if logits.ndim != 4:
            raise ShapeError(f"acquisition: logits must be [B,K,H,W]; got {tuple(logits.shape)}")
        return self.score_fn(logits, features, generator)

    def __call__(
        self,
        logits: torch.Tensor,
        labelled: torch.Tensor,
        budget: torch.Tensor | int,
        *,
        features: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        count: str = "pixels",
    ) -> torch.Tensor:
        """New picks ``bool[B,H,W]`` spending ``budget[b]`` pixels (or regions) in every image."""
        scores = self.score(logits, features, generator)
        if self.region_radius is not None:
            pixel = entropy_map(logits)
            return greedy_select(
                scores,
                labelled,
                budget,
                self.radius,
                region_radius=self.region_radius,
                pixel_scores=pixel,
                count=count,
            )
        if count == "regions":
            raise ConfigError(f"acquisition: strategy {self.name!r} selects pixels; region budgets need ripu_region")
        if self.radius > 0:
            return greedy_select(scores, labelled, budget, self.radius)
        return topk_select(scores, labelled, budget)


_REGISTRY: dict[str, Callable[..., Strategy]] = {}


def register_strategy(name: str, factory: Callable[..., Strategy] | None = None) -> Any:
    """Register ``factory(**params) -> Strategy`` under ``name`` (usable as a decorator)."""

    def deco(fn: Callable[..., Strategy]) -> Callable[..., Strategy]:
        _REGISTRY[name] = fn
        return fn

    return deco(factory) if factory is not None else deco


def list_strategies() -> list[str]:
    """Registered strategy names, sorted."""
    return sorted(_REGISTRY)


def get_strategy(name: str, **params: Any) -> Strategy:
    """The strategy ``name`` built with ``params``.

    Raises:
        ConfigError: Unknown name (with the known ones) or an option the strategy does not take.

    Example:
        >>> get_strategy("mcu", radius=2).radius
        2
    """
    if name not in _REGISTRY:
        from ..._registry import close_matches_hint

        hint = close_matches_hint(name, list(_REGISTRY))
        raise ConfigError(
            f"unknown acquisition strategy {name!r}; {hint or 'choose one of ' + ', '.join(list_strategies())}"
        )
    try:
        return _REGISTRY[name](**params)
    except TypeError as err:
        raise ConfigError(f"acquisition strategy {name!r}: {err}") from None


def _radius(radius: int) -> int:
    if int(radius) != radius or radius < 0:
        raise ConfigError(f"acquisition: radius must be an integer >= 0; got {radius!r}")
    return int(radius)


@register_strategy("random")
def _random() -> Strategy:
    def score(logits: torch.Tensor, features: Any, generator: torch.Generator | None) -> torch.Tensor:
        b, _, h, w = logits.shape
        return torch.rand(b, h, w, generator=generator).to(logits.device)

    return Strategy("random", score)


@register_strategy("entropy")
def _entropy() -> Strategy:
    return Strategy("entropy", lambda logits, f, g: entropy_map(logits))


@register_strategy("margin")
def _margin() -> Strategy:
    return Strategy("margin", lambda logits, f, g: margin_map(logits))


@register_strategy("mcu")
def _mcu(radius: int = 1, uncertainty: str = "entropy") -> Strategy:
    if uncertainty not in ("entropy", "margin"):
        raise ConfigError(f"acquisition: mcu uncertainty must be entropy or margin; got {uncertainty!r}")
    fn = entropy_map if uncertainty == "entropy" else margin_map
    return Strategy("mcu", lambda logits, f, g: fn(logits), radius=_radius(radius))


@register_strategy("ripu_pixel")
def _ripu_pixel(radius: int = 1) -> Strategy:
    r = _radius(radius)

    def score(logits: torch.Tensor, features: Any, generator: Any) -> torch.Tensor:
        impurity, _ = region_impurity(logits, r)
        return entropy_map(logits) * impurity

    return Strategy("ripu_pixel", score, radius=r)


@register_strategy("ripu_region")
def _ripu_region(radius: int = 1) -> Strategy:
    r = _radius(radius)

    def score(logits: torch.Tensor, features: Any, generator: Any) -> torch.Tensor:
        impurity, uncertainty = region_impurity(logits, r)
        return impurity * uncertainty

    return Strategy("ripu_region", score, radius=2 * r, region_radius=r)


# ---------------------------------------------------------------------------------------------------- budgets
@dataclass(frozen=True)
class Budget:
    """A labelling budget over the whole run (all rounds together).

    Attributes:
        kind: ``pixels`` (total), ``percent`` (of the target pool's pixels), ``per_image`` (pixels per image),
            ``regions`` (squares per image) or ``images`` (whole images).
        value: The amount in that unit.
        text: The spelling it was parsed from (recorded with the selection state).
    """

    kind: str
    value: float
    text: str

    def total_pixels(self, num_images: int, height: int, width: int) -> int:
        """The budget in pixels for a pool of ``num_images`` images of ``height x width`` (regions/images: 0)."""
        if self.kind == "pixels":
            return int(self.value)
        if self.kind == "percent":
            return math.floor(self.value / 100.0 * num_images * height * width + 1e-9)
        if self.kind == "per_image":
            return int(self.value) * num_images
        return 0


_BUDGET_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>%|/img|reg/img|img|px)?\s*$")


def parse_budget(text: str | int | float) -> Budget:
    """Parse ``"5000"`` / ``"5000px"`` (pixels), ``"2.2%"``, ``"40/img"``, ``"2reg/img"`` or ``"5img"``.

    Raises:
        ConfigError: Anything else, a zero budget, a percentage above 100 or a fractional count.

    Example:
        >>> parse_budget("2.2%").kind, parse_budget("40/img").value, parse_budget("5img").kind
        ('percent', 40.0, 'images')
    """
    s = str(text)
    m = _BUDGET_RE.match(s)
    if not m:
        raise ConfigError(
            f"budget: expected pixels ('5000'), a percentage ('2.2%'), pixels per image ('40/img'), regions per "
            f"image ('2reg/img') or images ('5img'); got {s!r}"
        )
    value, unit = float(m.group("num")), m.group("unit") or "px"
    kind = {"px": "pixels", "%": "percent", "/img": "per_image", "reg/img": "regions", "img": "images"}[unit]
    if value <= 0:
        raise ConfigError(f"budget: must be positive; got {s!r}")
    if kind == "percent" and value > 100:
        raise ConfigError(f"budget: a percentage must be at most 100%; got {s!r}")
    if kind != "percent" and value != int(value):
        raise ConfigError(f"budget: {kind} must be a whole number; got {s!r}")
    return Budget(kind, value, s.strip())


def round_budgets(total: int, rounds: int) -> list[int]:
    """Split ``total`` over ``rounds`` rounds exactly: round r gets ``floor(T(r+1)/R) - floor(Tr/R)``.

    Example:
        >>> round_budgets(10, 3)
        [3, 3, 4]
    """
    if int(rounds) < 1:
        raise ConfigError(f"active: rounds must be >= 1; got {rounds}")
    return [(total * (r + 1)) // rounds - (total * r) // rounds for r in range(rounds)]


def split_budget(total: int, available: torch.Tensor) -> torch.Tensor:
    """Spread ``total`` picks over images with ``available[i]`` free slots: equal shares capped by availability.

    Water-filling: the largest level ``L`` with ``sum(min(available, L)) <= total`` gives every image
    ``min(available, L)``; the remaining picks go one each to the lowest-index images that still have room.

    Raises:
        ConfigError: ``total`` exceeds the pool (``available.sum()``).

    Example:
        >>> split_budget(7, torch.tensor([1, 5, 5])).tolist()
        [1, 3, 3]
    """
    available = torch.as_tensor(available, dtype=torch.long).clamp_min(0)
    pool = int(available.sum())
    if total > pool:
        raise ConfigError(
            f"budget: {total} labels requested but only {pool} unlabelled remain in the target pool; "
            "lower --budget or the number of rounds"
        )
    if total <= 0 or available.numel() == 0:
        return torch.zeros_like(available)
    lo, hi = 0, int(available.max())
    while lo < hi:  # largest L with sum(min(avail, L)) <= total
        mid = (lo + hi + 1) // 2
        if int(available.clamp(max=mid).sum()) <= total:
            lo = mid
        else:
            hi = mid - 1
    share = available.clamp(max=lo)
    left = total - int(share.sum())
    room = (available > share).nonzero().flatten()[:left]
    share[room] += 1
    return share
