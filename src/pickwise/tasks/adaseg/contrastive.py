"""ADA-MCU's multi-level contrastive units (Zhang et al., ACCV 2022), **reconstructed** (the paper released no code).

A contrastive unit (CU) is a set of L2-normalised pixel embeddings ``z`` with class labels (source ground truth,
actively labelled target pixels, or target pseudo-labels above a confidence threshold). Three levels are built from a
training batch of source and target images:

- **intra-image**: anchors and keys from the same target image;
- **cross-image**: anchors from one target image, keys from the other target images of the batch and a per-class
  memory bank of earlier target pixels;
- **cross-domain**: anchors from the target images, keys from the source images.

Each level has a *centre-to-centre* loss between the class centres ``c_k = normalize(mean z)`` of the anchor side
``U`` and the key side ``V``::

    L_cc = -1/|K| sum_k log[ exp(c_k^U . c_k^V / tau) / sum_j w_kj exp(c_k^U . c_j^V / tau) ]

and a supervised *pixel-to-pixel* InfoNCE over capped anchors ``A``, positives ``P_i`` and negatives ``N_i``::

    L_pp = -1/|A| sum_i 1/|P_i| sum_p log[ exp(z_i.z_p/tau) / (exp(z_i.z_p/tau) + sum_n w_{y_i y_n} exp(z_i.z_n/tau)) ]

The categories correlation matrix ``M`` (``centre`` estimator: ``M_kj = max(0, c_k . c_j)`` of the EMA centres;
``confusion`` estimator: a running soft confusion ``E[p_j | y = k]``; diagonal zero) reweights negatives with
``w_kj = 1 + alpha M_kj``, so confusable classes are pushed apart harder. Classes missing from a side are skipped in
``L_cc`` (the EMA centres stand in when configured), anchors without positives or negatives are skipped in
``L_pp``, and a level with nothing to contrast contributes an exact zero (never NaN).

Every reconstructed value is a field of :class:`MCUConfig` with its default and the reason for it. Which pixels
become anchors and keys is planned by :mod:`~pickwise.tasks.adaseg.unit_plan` (a numba kernel where available); the
loss's large temporaries live in :mod:`~pickwise.tasks.adaseg.scratch` buffers between steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ...exceptions import ConfigError
from .fast_labels import vote_counts_available, vote_downsample
from .scratch import ScratchBuffers
from .unit_plan import PlanInputs, UnitPlan, _cap_by_priority, draw_priorities, plan_units, positive_pairs

__all__ = [
    "MCUConfig",
    "MultiLevelContrastiveLoss",
    "cap_per_class",
    "centre_contrast",
    "class_centres",
    "correlation_weights",
    "downsample_labels",
    "pixel_info_nce",
]

LEVELS = ("intra", "cross", "domain")


@dataclass
class MCUConfig:
    """Settings of the multi-level contrastive units (all **reconstructed** unless said otherwise).

    Attributes:
        levels: Which units are built (``intra``, ``cross``, ``domain``); all three as in the abstract.
        tau: InfoNCE temperature; 0.1 is the usual supervised-contrastive value (SePiCo, ReCo).
        lambda_cc: Weight of each level's centre-to-centre loss; 0.1 keeps the contrastive terms below the CE.
        lambda_pp: Weight of each level's pixel-to-pixel loss; 0.1 for the same reason.
        alpha: Strength of the correlation reweighting ``w = 1 + alpha M``; 1.0 doubles the pull at full confusion.
        correlation: ``centre`` (EMA-centre similarity), ``confusion`` (running soft confusion) or ``none``.
        momentum: EMA momentum of the class centres and the soft confusion; 0.99 as SePiCo's prototypes.
        bank_size: Memory-bank slots per class (target pixels of earlier batches); 64 fits CPU batches.
        anchors_per_class: Anchors sampled per class and unit (caps memory); 50 as ReCo/RIPU-scale settings.
        max_keys: Keys sampled per unit; 256 negatives as in the reference notes.
        pseudo_threshold: Confidence a target pseudo-label needs to enter a unit; 0.9 (common self-training value).
        use_pseudo: Put thresholded pseudo-labels into the units (else only ground truth and active labels).
        ema_fallback: Classes missing on the key side of ``L_cc`` use the EMA centres of their domain.
    """

    levels: list[str] = field(default_factory=lambda: list(LEVELS))
    tau: float = 0.1
    lambda_cc: float = 0.1
    lambda_pp: float = 0.1
    alpha: float = 1.0
    correlation: str = "centre"
    momentum: float = 0.99
    bank_size: int = 64
    anchors_per_class: int = 50
    max_keys: int = 256
    pseudo_threshold: float = 0.9
    use_pseudo: bool = True
    ema_fallback: bool = True

    def validate(self) -> MCUConfig:
        """Check ranges and choices; raises :class:`ConfigError` naming the field."""
        bad = [lv for lv in self.levels if lv not in LEVELS]
        if bad:
            raise ConfigError(f"config: contrastive.levels must be among {', '.join(LEVELS)}; got {bad}")
        if not self.tau > 0 or not math.isfinite(self.tau):
            raise ConfigError(f"config: contrastive.tau must be > 0; got {self.tau}")
        for name in ("lambda_cc", "lambda_pp", "alpha"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ConfigError(f"config: contrastive.{name} must be a finite number >= 0; got {v}")
        if self.correlation not in ("centre", "confusion", "none"):
            raise ConfigError(
                f"config: contrastive.correlation must be centre, confusion or none; got {self.correlation!r}"
            )
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"config: contrastive.momentum must be in [0, 1); got {self.momentum}")
        for name in ("bank_size", "anchors_per_class", "max_keys"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config: contrastive.{name} must be >= 1; got {getattr(self, name)}")
        if not 0 <= self.pseudo_threshold <= 1:
            raise ConfigError(f"config: contrastive.pseudo_threshold must be in [0, 1]; got {self.pseudo_threshold}")
        return self


# ---------------------------------------------------------------------------------------------------- functions
def downsample_labels(
    labels: torch.Tensor,
    size: tuple[int, int],
    num_classes: int,
    ignore_index: int = 255,
    min_ratio: float = 0.75,
    sparse: bool = False,
) -> torch.Tensor:
    """Majority-vote labels ``long[B,H,W]`` down to ``size``; identity at equal size.

    Dense mode (SePiCo's ``downscale_label_ratio``): ignored pixels vote for an extra class and a cell whose majority
    covers < ``min_ratio`` of it is ignored. Sparse mode (active labels: a few labelled pixels per cell): the vote is
    among the labelled pixels only, so one actively labelled pixel labels its cell unless labelled pixels of that cell
    disagree (majority < ``min_ratio`` of them); cells without labelled pixels are ignored. Ties go to the lower
    class. Where the grid tiles the image the vote compares integer counts (numba on the CPU when installed, the
    same answers); otherwise it uses area fractions (adaptive average pooling).
    """
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    if vote_counts_available(labels, size):
        return vote_downsample(labels, size, num_classes, ignore_index, min_ratio, sparse)
    lab = torch.where((labels < 0) | (labels >= num_classes), torch.full_like(labels, num_classes), labels)
    counts, cell = _class_counts(lab, size, num_classes + 1)
    if sparse:
        known = cell - counts[:, num_classes]
        best, out = counts[:, :num_classes].max(1)
        out[(known <= 0) | (best.double() < min_ratio * known.double())] = ignore_index
        return out
    best, out = counts.max(1)
    out[(out == num_classes) | (best.double() < min_ratio * cell)] = ignore_index
    return out


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Half-precision features (autocast) in float32 for the loss; float32 and float64 as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _class_counts(lab: torch.Tensor, size: tuple[int, int], n: int) -> tuple[torch.Tensor, float]:
    """Pixels of each of ``n`` labels in every cell of the ``size`` grid, ``[B,n,h,w]``, and the cell size.

    Where the grid tiles the image: integer counts from one ``bincount`` (no one-hot image) and the cell's pixel
    count. Otherwise: area fractions by adaptive average pooling, and a cell size of 1.
    """
    b, height, width = lab.shape
    h, w = int(size[0]), int(size[1])
    if height % h or width % w:
        return F.adaptive_avg_pool2d(F.one_hot(lab, n).permute(0, 3, 1, 2).float(), size), 1.0
    rows = torch.arange(height, device=lab.device) // (height // h)
    cols = torch.arange(width, device=lab.device) // (width // w)
    cell = rows[:, None] * w + cols[None, :]  # [H,W]
    image = torch.arange(b, device=lab.device)[:, None, None]
    index = (image * n + lab) * (h * w) + cell
    counts = torch.bincount(index.reshape(-1), minlength=b * n * h * w)
    return counts.view(b, n, h, w), float((height // h) * (width // w))


def class_centres(z: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised mean embedding of each class: ``(centres float[K,D], present bool[K])`` (absent rows zero)."""
    sums = z.new_zeros(num_classes, z.shape[1]).index_add(0, y, z)
    counts = torch.bincount(y, minlength=num_classes)
    present = counts > 0
    return F.normalize(sums, dim=1) * present[:, None], present


def cap_per_class(y: torch.Tensor, cap: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices keeping at most ``cap`` random elements of every class of ``y`` (vectorized, sorted by class).

    Example:
        >>> y = torch.tensor([0, 0, 0, 1, 2, 2])
        >>> torch.bincount(y[cap_per_class(y, 2)]).tolist()
        [2, 1, 2]
    """
    priority = torch.rand(y.numel(), generator=generator, dtype=torch.float64).to(y.device)
    return _cap_by_priority(y, priority, cap)


def pixel_info_nce(
    anchors: torch.Tensor,
    anchor_y: torch.Tensor,
    keys: torch.Tensor,
    key_y: torch.Tensor,
    tau: float,
    weights: torch.Tensor | None = None,
    same: bool = False,
    self_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Supervised pixel-to-pixel InfoNCE with weighted negatives (``L_pp`` above), numerically stable.

    Args:
        anchors: ``float[N,D]`` normalised embeddings.
        anchor_y: ``long[N]`` labels.
        keys: ``float[M,D]``; positives share the anchor's label, negatives do not.
        key_y: ``long[M]``.
        tau: Temperature.
        weights: ``float[K,K]`` negative weights ``w_{y_i y_n}`` (None: all one).
        same: ``keys`` are ``anchors`` (an anchor is not its own positive).
        self_index: ``long[M]``: key ``j`` is anchor ``self_index[j]`` (that pair is not a positive); for keys
            sampled from the anchors. ``same=True`` is ``self_index = arange(N)``.

    Returns:
        Scalar: mean over anchors that have at least one positive (exact zero, with a graph, if none).
    """
    sim = anchors @ keys.T / tau
    pos = anchor_y[:, None] == key_y[None, :]
    if same:
        self_index = torch.arange(anchors.shape[0], device=anchors.device)
    if self_index is not None:
        pos = pos & (self_index[None, :] != torch.arange(anchors.shape[0], device=anchors.device)[:, None])
    neg = anchor_y[:, None] != key_y[None, :]
    logits_neg = sim
    if weights is not None:  # log of the K x K table, then gathered: no N x M log
        log_w = torch.log(weights.clamp_min(1e-12)).to(sim.dtype)
        logits_neg = sim + log_w[anchor_y][:, key_y]
    neg_lse = torch.logsumexp(logits_neg.masked_fill(~neg, float("-inf")), dim=1, keepdim=True)  # -inf: none
    # -log(exp(s_ip) / (exp(s_ip) + exp(neg_lse))) = softplus(neg_lse - s_ip)
    per_pair = F.softplus(neg_lse - sim)
    per_pair = torch.where(pos, per_pair, torch.zeros_like(per_pair))
    npos = pos.sum(1)
    valid = npos > 0
    if not bool(valid.any()):
        return sim.sum() * 0.0
    per_anchor = per_pair.sum(1)[valid] / npos[valid]
    return per_anchor.mean()


def centre_contrast(
    cu: torch.Tensor,
    present_u: torch.Tensor,
    cv: torch.Tensor,
    present_v: torch.Tensor,
    tau: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Centre-to-centre InfoNCE ``L_cc`` between the centres of two units (classes present on both sides only).

    The positive ``j = k`` keeps weight 1; the other present classes ``j`` of ``V`` are negatives with ``w_kj``.
    """
    both = present_u & present_v
    if not bool(both.any()):
        return (cu.sum() + cv.sum()) * 0.0
    sim = cu @ cv.T / tau
    logw = torch.zeros_like(sim)
    if weights is not None:
        logw = torch.log(weights.clamp_min(1e-12)).to(sim.dtype)
        logw = logw - torch.diag(torch.diagonal(logw))
    logits = (sim + logw).masked_fill(~present_v[None, :], float("-inf"))
    ks = both.nonzero().flatten()
    loss = torch.logsumexp(logits[ks], dim=1) - sim[ks, ks]
    return loss.mean()


def correlation_weights(matrix: torch.Tensor, alpha: float) -> torch.Tensor:
    """``w = 1 + alpha M`` with a zero diagonal in ``M`` (negatives of confusable classes weigh more)."""
    m = matrix.clamp_min(0.0)
    m = m - torch.diag(torch.diagonal(m))
    return 1.0 + alpha * m


def _batched_pixel_nce(
    units: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]],
    tau: float,
    weights: torch.Tensor | None,
) -> torch.Tensor:
    """:func:`pixel_info_nce` of several units ``(anchors, anchor_y, keys, key_y, self_index)`` at once (padded).

    Returns ``float[U]``: 0 for a unit with no anchor that has a positive (as the single-unit function).
    """
    from torch.nn.utils.rnn import pad_sequence

    a = pad_sequence([u[0] for u in units], batch_first=True)
    ya = pad_sequence([u[1] for u in units], batch_first=True, padding_value=-1)
    kz = pad_sequence([u[2] for u in units], batch_first=True)
    ky = pad_sequence([u[3] for u in units], batch_first=True, padding_value=-2)
    none = torch.full((0,), -1, dtype=torch.long, device=a.device)
    self_row = pad_sequence(
        [u[4] if u[4] is not None else none.new_full((u[3].numel(),), -1) for u in units],
        batch_first=True,
        padding_value=-1,
    )
    return _pixel_nce_padded(a, ya, kz, ky, self_row, tau, weights)


def _pixel_nce_padded(
    a: torch.Tensor,
    ya: torch.Tensor,
    kz: torch.Tensor,
    ky: torch.Tensor,
    self_row: torch.Tensor,
    tau: float,
    weights: torch.Tensor | None,
    key_onehot_t: torch.Tensor | None = None,
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    scratch: ScratchBuffers | None = None,
) -> torch.Tensor:
    """:func:`pixel_info_nce` of ``U`` padded units in one ``bmm``.

    Args:
        a: Anchors ``float[U,n,D]``; ``ya long[U,n]`` their labels (-1: padding).
        ya: See ``a``.
        kz: Keys ``float[U,m,D]``; ``ky long[U,m]`` their labels (-2: padding).
        ky: See ``kz``.
        self_row: ``long[U,m]``: key ``j`` of unit ``u`` is that unit's anchor ``self_row[u, j]`` (the pair is not a
            positive); -1 for keys that are no anchor of the unit.
        tau: Temperature.
        weights: ``float[K,K]`` negative weights or None.
        key_onehot_t: The keys' classes one-hot, ``float[U,K,m]`` (zero columns for padding), if already built.
        pairs: The positive pairs ``(flat, anchor)`` of :func:`~pickwise.tasks.adaseg.unit_plan.positive_pairs` and
            the positives per anchor slot ``long[U*n]``, if already known (the unit plan has them).
        scratch: Reusable buffers for the ``[U,n,m]`` temporaries (:mod:`~pickwise.tasks.adaseg.scratch`).

    Returns:
        ``float[U]``: 0 for a unit with no anchor that has a positive.
    """
    if 1.0 / tau > 30.0:  # exp(sim) could overflow: the log-sum-exp form over all pairs
        pos = ya[:, :, None] == ky[:, None, :]  # padding (-1 vs -2) never matches
        is_self = self_row >= 0
        unit, key = is_self.nonzero(as_tuple=True)
        pos[unit, self_row[unit, key], key] = False  # an anchor is not its own positive
        return _pixel_nce_padded_lse(a, ya, kz, ky, pos, tau, weights)
    if weights is not None:
        k = int(weights.shape[0])
    elif key_onehot_t is not None:
        k = int(key_onehot_t.shape[1])
    else:
        k = int(max(int(ya.max()), int(ky.max()), 0)) + 1
    w0 = weights.to(a.dtype) if weights is not None else torch.ones(k, k, dtype=a.dtype, device=a.device)
    w0 = w0 * (1 - torch.eye(k, dtype=a.dtype, device=a.device))  # same-class keys are never negatives
    if key_onehot_t is None:
        key_onehot_t = (ky[:, None, :] == torch.arange(k, device=ky.device)[None, :, None]).to(a.dtype)
    if pairs is None:
        flat, anchor = positive_pairs(ya, ky, self_row)
        npos = torch.bincount(anchor, minlength=ya.numel())
    else:
        flat, anchor, npos = pairs
    return _PixelNCE.apply(a, kz, ya, key_onehot_t, flat, anchor, npos, w0.detach(), float(tau), scratch)


class _PixelNCE(torch.autograd.Function):
    """Padded pixel-to-pixel InfoNCE (fast path, ``1/tau <= 30``) with a hand-written backward.

    Forward: the weighted negatives ``v_in = w0[y_i, y_n] exp(s_in)`` (the weights of every pair from one bmm of the
    anchors' weight rows against the keys' one-hot classes; ``w0`` has a zero diagonal, so same-class pairs drop
    out), ``N_i = sum_n v_in``, and ``log(exp(s_ip) + N_i) - s_ip`` on the positive pairs only (a small fraction of
    all pairs). Backward, with ``alpha_i`` the weight of anchor ``i`` in the mean and ``d_ip = exp(s_ip) + N_i``::

        dL/ds_ip = alpha_i (exp(s_ip) / d_ip - 1)                          (positives)
        dL/ds_in = beta_i v_in,  beta_i = alpha_i sum_p 1 / d_ip            (negatives)

    which costs one product and the two gradient bmms, instead of autograd's chain of dense gathers and fills (the
    MCU training step's largest cost). Tests compare it with autograd through the reference forms.
    """

    @staticmethod
    def forward(ctx, a, kz, ya, key_onehot_t, flat, anchor, counts, w0, tau, scratch):
        n_units, n = ya.shape
        shape = (n_units, n, kz.shape[1])
        e = scratch.take(shape, a) if scratch is not None else a.new_empty(shape)
        torch.bmm(a * (1.0 / tau), kz.transpose(1, 2), out=e)  # [U,n,m] similarities s, then exp(s) in place
        s_p = e.view(-1).index_select(0, flat)
        e.exp_()
        v = scratch.take(shape, a, owner=ctx) if scratch is not None else a.new_empty(shape)
        torch.bmm(w0[ya.clamp_min(0)], key_onehot_t, out=v).mul_(e)  # [U,n,m] weighted negatives (0: same class)
        if scratch is not None:
            scratch.give_back(e)
        neg_sum = v.sum(2)  # [U,n]
        e_p = s_p.exp()
        d_p = e_p + neg_sum.view(-1).index_select(0, anchor)
        per_pair = torch.log(d_p) - s_p
        npos = counts.to(a.dtype)  # positives per anchor slot; the pairs are sorted by anchor slot
        per_anchor = torch.segment_reduce(per_pair, "sum", lengths=counts) / npos.clamp_min(1)
        has = (npos > 0).view(n_units, n)
        n_has = has.sum(1).clamp_min(1)
        per_unit = (per_anchor.view(n_units, n) * has).sum(1) / n_has
        ctx.save_for_backward(a, kz, v, flat, anchor, e_p, d_p, npos, counts, has, n_has)
        ctx.tau, ctx.scratch = tau, scratch
        return per_unit

    @staticmethod
    def backward(ctx, grad_unit):
        a, kz, v, flat, anchor, e_p, d_p, npos, counts, has, n_has = ctx.saved_tensors
        n_units, n = v.shape[:2]
        alpha = ((grad_unit / n_has)[:, None] * has).reshape(-1) / npos.clamp_min(1)  # [U*n]
        alpha_p = alpha.index_select(0, anchor)
        beta = torch.segment_reduce(alpha_p / d_p, "sum", lengths=counts).view(n_units, n, 1)
        scale = 1.0 / ctx.tau  # ds/da = k / tau, ds/dk = a / tau, folded into grad_sim
        scratch = ctx.scratch
        grad_sim = scratch.take(v.shape, v) if scratch is not None else torch.empty_like(v)
        torch.mul(v, beta * scale, out=grad_sim)  # negatives
        grad_sim.view(-1).index_add_(0, flat, alpha_p * (e_p / d_p - 1) * scale)  # positives
        grad_a = torch.bmm(grad_sim, kz) if ctx.needs_input_grad[0] else None
        grad_kz = torch.bmm(grad_sim.transpose(1, 2), a) if ctx.needs_input_grad[1] else None
        if scratch is not None:
            scratch.give_back(grad_sim)
        return grad_a, grad_kz, None, None, None, None, None, None, None, None


def _pixel_nce_padded_lse(
    a: torch.Tensor,
    ya: torch.Tensor,
    kz: torch.Tensor,
    ky: torch.Tensor,
    pos: torch.Tensor,
    tau: float,
    weights: torch.Tensor | None,
) -> torch.Tensor:
    """:func:`_pixel_nce_padded` for temperatures below 1/30, where ``exp(z.z / tau)`` may overflow float32."""
    sim = torch.bmm(a, kz.transpose(1, 2)) / tau
    neg = (ya[:, :, None] != ky[:, None, :]) & (ya >= 0)[:, :, None] & (ky >= 0)[:, None, :]
    logits_neg = sim
    if weights is not None:
        log_w = torch.log(weights.clamp_min(1e-12)).to(sim.dtype)
        logits_neg = sim + log_w[ya.clamp_min(0)[:, :, None], ky.clamp_min(0)[:, None, :]]
    neg_lse = torch.logsumexp(logits_neg.masked_fill(~neg, float("-inf")), dim=2, keepdim=True)
    per_pair = torch.where(pos, F.softplus(neg_lse - sim), torch.zeros_like(sim))
    npos = pos.sum(2)
    has = npos > 0
    per_anchor = per_pair.sum(2) / npos.clamp_min(1)
    per_unit = (per_anchor * has).sum(1) / has.sum(1).clamp_min(1)
    return per_unit + sim.sum() * 0.0


def _batched_centre_contrast(
    cu: torch.Tensor, pu: torch.Tensor, cv: torch.Tensor, pv: torch.Tensor, tau: float, weights: torch.Tensor | None
) -> torch.Tensor:
    """:func:`centre_contrast` of ``U`` unit pairs at once.

    ``cu, cv float[U,K,D]``, ``pu, pv bool[U,K]`` -> ``float[U]`` (0 for a pair with no class present on both sides).
    """
    both = pu & pv
    sim = torch.bmm(cu, cv.transpose(1, 2)) / tau
    logw = torch.zeros_like(sim[0])
    if weights is not None:
        logw = torch.log(weights.clamp_min(1e-12)).to(sim.dtype)
        logw = logw - torch.diag(torch.diagonal(logw))
    logits = (sim + logw).masked_fill(~pv[:, None, :], float("-inf"))
    per_class = torch.logsumexp(logits, dim=2) - torch.diagonal(sim, dim1=1, dim2=2)
    per_class = torch.where(both, per_class, torch.zeros_like(per_class))
    return per_class.sum(1) / both.sum(1).clamp_min(1)  # where() keeps the graph even when nothing is on both sides


@dataclass
class _Units:
    """The sampled contrastive units of one batch: the index plan and the embeddings it gathers.

    Target anchors are sorted by image. The key pool is ``[target anchors, memory bank, source anchors]``; a unit is
    one (level, target image) pair with its anchors (the image's anchors) and its keys (indices into the pool).
    """

    plan: UnitPlan
    za: torch.Tensor  # float[Na,D] target anchors (normalised; carry the graph)
    zs_c: torch.Tensor  # float[Ns,D] source anchors (normalised; carry the graph)
    pool_z: torch.Tensor  # float[Na+Nb+Ns,D]

    @property
    def ya(self) -> torch.Tensor:
        """``long[Na]`` classes of the target anchors."""
        return self.plan.ya

    @property
    def ia(self) -> torch.Tensor:
        """``long[Na]`` images of the target anchors."""
        return self.plan.ia

    @property
    def pool_y(self) -> torch.Tensor:
        """``long[M]`` classes of the key pool."""
        return self.plan.pool_y

    @property
    def unit_image(self) -> torch.Tensor:
        """``long[U]`` target image of each unit."""
        return self.plan.unit_image

    @property
    def unit_level(self) -> torch.Tensor:
        """``long[U]`` level of each unit (index into ``LEVELS``)."""
        return self.plan.unit_level

    @property
    def unit_keys(self) -> torch.Tensor:
        """``long[U,m]`` pool indices of each unit's keys, -1 padding."""
        return self.plan.unit_keys


def _sample_units(
    flat_src: torch.Tensor,
    labels_src: torch.Tensor,
    flat_tgt: torch.Tensor,
    labels_tgt: torch.Tensor,
    num_images: int,
    bank: torch.Tensor,
    bank_count: torch.Tensor,
    bank_ptr: torch.Tensor,
    config: MCUConfig,
    generator: torch.Generator | None,
) -> _Units:
    """Sample every unit of a batch at once (:mod:`~pickwise.tasks.adaseg.unit_plan`) and gather its embeddings.

    Args:
        flat_src: Source pixel features ``float[Bs*h*w, D]`` (image-major, not normalised).
        labels_src: Their labels ``long[Bs*h*w]`` (outside ``[0, K)``: no label).
        flat_tgt: Target pixel features ``float[Bt*h*w, D]``.
        labels_tgt: Their unit labels ``long[Bt*h*w]``.
        num_images: ``Bt``.
        bank: The memory bank ``float[K, bank_size, D]``; ``bank_count``, ``bank_ptr`` its fill and write pointers.
        bank_count: See ``bank``.
        bank_ptr: See ``bank``.
        config: Caps and levels.
        generator: Random source.

    Anchors: at most ``anchors_per_class`` random pixels per (image, class). Keys of a unit, at most ``max_keys``
    drawn at random from its eligible pool: *intra* the image's own anchors (an anchor is not its own positive),
    *cross* the other images' anchors and the bank, *domain* the source anchors. Units without anchors or without
    eligible keys are dropped. Only the sampled pixels are normalised.
    """
    k, cap = bank.shape[0], bank.shape[1]
    level_ids = [LEVELS.index(lv) for lv in config.levels]
    priorities = draw_priorities(labels_src.numel(), labels_tgt.numel(), num_images, len(level_ids), k, cap, generator)
    plan = plan_units(
        PlanInputs(
            labels_src, labels_tgt, num_images, k, bank_count, bank_ptr, cap, config.anchors_per_class,
            config.max_keys, level_ids, priorities,
        )
    )  # fmt: skip
    za = F.normalize(_at_least_float32(flat_tgt.index_select(0, plan.tgt_sel)), dim=1)
    zs_c = F.normalize(_at_least_float32(flat_src.index_select(0, plan.src_sel)), dim=1)
    # index_select copies: the bank is updated in place after the loss, while the graph still needs these values
    bank_z = bank.view(k * cap, -1).index_select(0, plan.bank_slots).to(za.dtype)
    return _Units(plan, za, zs_c, torch.cat([za, bank_z, zs_c.to(za.dtype)]))


# ---------------------------------------------------------------------------------------------------- the module
class MultiLevelContrastiveLoss(nn.Module):
    """The MCU loss with its running state as buffers (EMA centres, memory bank, soft confusion).

    The state lives in buffers so the engine's checkpoints carry it (a resumed run continues the same EMA and bank).

    Args:
        num_classes: ``K``.
        dim: Embedding size ``D`` (the projection head's output).
        config: :class:`MCUConfig`.
    """

    centres_src: torch.Tensor
    centres_tgt: torch.Tensor
    seen_src: torch.Tensor
    seen_tgt: torch.Tensor
    confusion: torch.Tensor
    bank: torch.Tensor
    bank_count: torch.Tensor
    bank_ptr: torch.Tensor
    level_ids: torch.Tensor

    def __init__(self, num_classes: int, dim: int, config: MCUConfig | None = None) -> None:
        super().__init__()
        self.num_classes, self.dim = int(num_classes), int(dim)
        self.config = (config or MCUConfig()).validate()
        k, cap = self.num_classes, self.config.bank_size
        self.register_buffer("centres_src", torch.zeros(k, dim))
        self.register_buffer("centres_tgt", torch.zeros(k, dim))
        self.register_buffer("seen_src", torch.zeros(k))
        self.register_buffer("seen_tgt", torch.zeros(k))
        self.register_buffer("confusion", torch.zeros(k, k))
        self.register_buffer("bank", torch.zeros(k, cap, dim))
        self.register_buffer("bank_count", torch.zeros(k, dtype=torch.long))
        self.register_buffer("bank_ptr", torch.zeros(k, dtype=torch.long))
        self._scratch = ScratchBuffers()  # the pixel InfoNCE's large temporaries, kept between steps
        levels = torch.tensor([LEVELS.index(lv) for lv in self.config.levels], dtype=torch.long)
        self.register_buffer("level_ids", levels, persistent=False)  # the configured levels (not state)

    # -------------------------------------------------------------- state
    def correlation(self) -> torch.Tensor:
        """The categories correlation matrix ``M`` of the chosen estimator (zeros for ``none``)."""
        cfg = self.config
        if cfg.correlation == "centre":
            c = F.normalize(0.5 * (self.centres_src + self.centres_tgt), dim=1)
            return (c @ c.T).clamp_min(0.0)
        if cfg.correlation == "confusion":
            return self.confusion.clone()
        return torch.zeros_like(self.confusion)

    def weights(self) -> torch.Tensor:
        """Negative weights ``1 + alpha M`` (diagonal 1)."""
        return correlation_weights(self.correlation(), self.config.alpha)

    @torch.no_grad()
    def _update_centres(self, zs: torch.Tensor, ys: torch.Tensor, zt: torch.Tensor, yt: torch.Tensor) -> None:
        """EMA step of the source centres (from ``zs, ys``) and the target centres (from ``zt, yt``), at once."""
        k = self.num_classes
        centres = torch.cat([self.centres_src, self.centres_tgt])  # [2K,D]: source classes, then target classes
        seen = torch.cat([self.seen_src, self.seen_tgt])
        z = torch.cat([zs.to(centres.dtype), zt.to(centres.dtype)])
        batch, present = class_centres(z, torch.cat([ys, yt + k]), 2 * k)
        m = torch.where(seen > 0, torch.full_like(seen, self.config.momentum), torch.zeros_like(seen))[:, None]
        new = torch.where(present[:, None], F.normalize(m * centres + (1 - m) * batch, dim=1), centres)
        seen = torch.where(present, torch.ones_like(seen), seen)
        self.centres_src.copy_(new[:k])
        self.centres_tgt.copy_(new[k:])
        self.seen_src.copy_(seen[:k])
        self.seen_tgt.copy_(seen[k:])

    @torch.no_grad()
    def _update_confusion(self, probs: torch.Tensor, y: torch.Tensor) -> None:
        k = self.num_classes
        sums = self.confusion.new_zeros(k, k).index_add(0, y, probs.to(self.confusion.dtype))
        counts = torch.bincount(y, minlength=k).to(probs.dtype)
        present = counts > 0
        mean = sums / counts.clamp_min(1)[:, None]
        m = self.config.momentum
        self.confusion.copy_(torch.where(present[:, None], m * self.confusion + (1 - m) * mean, self.confusion))

    @torch.no_grad()
    def _enqueue(self, za: torch.Tensor, plan: UnitPlan) -> None:
        """Write the planned target anchors (at most ``bank_size`` random ones per class) into the ring buffers."""
        if plan.enq_anchor.numel() == 0:
            return
        cap = self.config.bank_size
        self.bank.view(-1, self.dim)[plan.enq_slot] = za.index_select(0, plan.enq_anchor).to(self.bank.dtype)
        added = torch.bincount(plan.ya[plan.enq_anchor], minlength=self.num_classes)
        self.bank_ptr.copy_((self.bank_ptr + added) % cap)
        self.bank_count.copy_(torch.clamp(self.bank_count + added, max=cap))

    def bank_items(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All filled memory-bank slots ``(z float[M,D], y long[M])``."""
        filled = torch.arange(self.config.bank_size, device=self.bank.device)[None, :] < self.bank_count[:, None]
        ys = torch.arange(self.num_classes, device=self.bank.device)[:, None].expand_as(filled)
        return self.bank[filled], ys[filled]

    # -------------------------------------------------------------- loss
    def _centre_terms(
        self,
        units: _Units,
        a: torch.Tensor,
        anchor_onehot_t: torch.Tensor,
        kz: torch.Tensor,
        key_onehot_t: torch.Tensor,
        tau: float,
        w: torch.Tensor | None,
    ) -> torch.Tensor:
        """``L_cc`` of every unit (``float[U]``): the image's class centres against the unit's key side.

        Anchor side: the class centres of the unit's anchors ``a`` (``float[U,n,D]``, classes one-hot in
        ``anchor_onehot_t [U,K,n]``), i.e. of its image. Key side: *intra* the EMA target centres (the image against
        the history of its domain); *cross* and *domain* the centres of the unit's keys ``kz`` (``float[U,m,D]``,
        ``key_onehot_t [U,K,m]``), where a class is missing there the EMA centres of the key domain (target for
        cross, source for domain) when ``ema_fallback`` is on.
        """
        cu = F.normalize(torch.bmm(anchor_onehot_t, a), dim=2)  # [U,K,D]; absent classes stay zero
        pu = anchor_onehot_t.sum(2) > 0
        is_intra = (units.unit_level == 0)[:, None]
        use_keys = (key_onehot_t.sum(2) > 0) & ~is_intra  # [U,K]
        cv = F.normalize(torch.bmm(key_onehot_t, kz), dim=2)
        # EMA fallback of each unit: the target centres (intra, cross) or the source centres (domain)
        domain = (units.unit_level == 2).long()
        ema = torch.stack([self.centres_tgt, self.centres_src]).to(kz.dtype)[domain]  # [U,K,D]
        seen = torch.stack([self.seen_tgt, self.seen_src])[domain] > 0  # [U,K]
        if not self.config.ema_fallback:
            seen = seen & is_intra
        cv = torch.where(use_keys[:, :, None], cv, ema)
        return _batched_centre_contrast(cu, pu, cv, use_keys | seen, tau, w)

    def forward(
        self,
        feats_src: torch.Tensor,
        labels_src: torch.Tensor,
        feats_tgt: torch.Tensor,
        labels_tgt: torch.Tensor,
        probs_src: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        update: bool = True,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted sum over levels of ``lambda_cc L_cc + lambda_pp L_pp`` and its parts.

        Args:
            feats_src: Source projection features ``float[Bs,D,h,w]`` (not normalised).
            labels_src: Source labels at feature resolution ``long[Bs,h,w]`` (255 ignore).
            feats_tgt: Target features ``float[Bt,D,h,w]``.
            labels_tgt: Target unit labels ``long[Bt,h,w]`` (active labels, else confident pseudo-labels; 255 none).
            probs_src: Softmax of the source prediction at feature resolution (the ``confusion`` estimator).
            generator: Random source of the capped sampling.
            update: Update the EMA centres, soft confusion and memory bank after computing the loss.

        Returns:
            ``(loss, parts)`` with ``parts`` holding each level's detached ``cc`` and ``pp`` terms.
        """
        cfg, k = self.config, self.num_classes
        w = None
        if cfg.alpha > 0 and cfg.correlation != "none":
            w = self.weights().to(_at_least_float32(feats_src).dtype)  # computed afresh: no tie to the buffers
        flat_src = feats_src.permute(0, 2, 3, 1).reshape(-1, feats_src.shape[1])
        ys_all = labels_src.reshape(-1)
        units = _sample_units(
            flat_src, ys_all, feats_tgt.permute(0, 2, 3, 1).reshape(-1, feats_tgt.shape[1]), labels_tgt.reshape(-1),
            feats_tgt.shape[0], self.bank, self.bank_count, self.bank_ptr, cfg, generator,
        )  # fmt: skip
        plan = units.plan
        n_units = plan.unit_level.numel()
        pp_vals = cc_vals = None
        if n_units and (cfg.lambda_pp > 0 or cfg.lambda_cc > 0):
            keys, key_y = plan.unit_keys, plan.key_y  # [U,m]
            kz = units.pool_z.index_select(0, keys.clamp_min(0).view(-1)).view(*keys.shape, -1)  # [U,m,D]
            classes = torch.arange(k, device=keys.device)[None, :, None]
            key_onehot_t = (key_y[:, None, :] == classes).to(kz.dtype)  # [U,K,m]; padding (-2) matches no class
            rows = plan.anchor_table.index_select(0, plan.unit_image)  # [U,n]
            a = units.za.index_select(0, rows.clamp_min(0).view(-1)).view(*rows.shape, -1)  # [U,n,D]
            if cfg.lambda_pp > 0:
                pp_vals = _pixel_nce_padded(
                    a,
                    plan.row_y,
                    kz,
                    key_y,
                    plan.self_row,
                    cfg.tau,
                    w,
                    key_onehot_t=key_onehot_t,
                    pairs=(plan.pair_flat, plan.pair_anchor, plan.pos_count),
                    scratch=self._scratch,
                )
            if cfg.lambda_cc > 0:
                anchor_onehot_t = (plan.row_y[:, None, :] == classes).to(kz.dtype)  # [U,K,n]; padding (-1) none
                cc_vals = self._centre_terms(units, a, anchor_onehot_t, kz, key_onehot_t, cfg.tau, w)
        parts: dict[str, torch.Tensor] = {}
        dtype = _at_least_float32(feats_tgt).dtype
        # mean of each level's units (a level without units contributes an exact zero), in two small matmuls
        member = (plan.unit_level[None, :] == self.level_ids[:, None]).to(dtype)  # [L,U]
        member = member / member.sum(1, keepdim=True).clamp_min(1)

        def level_means(values: torch.Tensor | None) -> torch.Tensor:
            if values is not None:
                return member @ values
            return ((feats_src.sum() + feats_tgt.sum()) * 0.0).to(dtype).expand(len(cfg.levels))  # keeps the graph

        cc_level, pp_level = level_means(cc_vals), level_means(pp_vals)
        total = (cfg.lambda_cc * cc_level + cfg.lambda_pp * pp_level).sum()
        for i, (cc, pp) in enumerate(zip(cc_level.detach().unbind(), pp_level.detach().unbind())):
            parts[f"cc_{cfg.levels[i]}"], parts[f"pp_{cfg.levels[i]}"] = cc, pp
        if update:
            ys = ys_all.index_select(0, plan.src_keep)
            zs = F.normalize(_at_least_float32(flat_src.detach().index_select(0, plan.src_keep)), dim=1)
            self._update_centres(zs, ys, units.za.detach(), plan.ya)
            self._enqueue(units.za.detach(), plan)
            if probs_src is not None and ys.numel():
                p = probs_src.permute(0, 2, 3, 1).reshape(-1, k).index_select(0, plan.src_keep)
                self._update_confusion(p.detach(), ys)
        return total, parts
