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

Every reconstructed value is a field of :class:`MCUConfig` with its default and the reason for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ...exceptions import ConfigError

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
    disagree (majority < ``min_ratio`` of them); cells without labelled pixels are ignored.
    """
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    lab = labels.clone()
    lab[(lab < 0) | (lab >= num_classes)] = num_classes
    one_hot = F.one_hot(lab, num_classes + 1).permute(0, 3, 1, 2).float()
    frac = F.adaptive_avg_pool2d(one_hot, size)
    if sparse:
        known = frac[:, :num_classes].sum(1)
        ratio, out = frac[:, :num_classes].max(1)
        out[(known <= 0) | (ratio < min_ratio * known)] = ignore_index
        return out
    ratio, out = frac.max(1)
    out[(out == num_classes) | (ratio < min_ratio)] = ignore_index
    return out


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
    if y.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=y.device)
    rnd = torch.rand(y.numel(), generator=generator).to(y.device)
    order = torch.argsort(y.double() * 2.0 + rnd.double())  # by class, random within class
    ys = y[order]
    start = torch.searchsorted(ys, ys, right=False)
    rank = torch.arange(ys.numel(), device=y.device) - start
    return order[rank < cap]


def _subsample(n: int, cap: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    if n <= cap:
        return torch.arange(n, device=device)
    return torch.randperm(n, generator=generator)[:cap].to(device)


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
    """:func:`pixel_info_nce` of several units of L2-normalised embeddings at once (padded, one ``bmm``).

    Returns ``float[U]``: 0 for a unit with no anchor that has a positive (as the single-unit function).
    """
    from torch.nn.utils.rnn import pad_sequence

    a = pad_sequence([u[0] for u in units], batch_first=True)
    ya = pad_sequence([u[1] for u in units], batch_first=True, padding_value=-1)
    kz = pad_sequence([u[2] for u in units], batch_first=True)
    ky = pad_sequence([u[3] for u in units], batch_first=True, padding_value=-2)
    n = a.shape[1]
    default = torch.full((0,), -1, dtype=torch.long, device=a.device)
    si = pad_sequence(
        [u[4] if u[4] is not None else default.new_full((u[3].numel(),), -1) for u in units],
        batch_first=True,
        padding_value=-1,
    )
    sim = torch.bmm(a, kz.transpose(1, 2)) / tau
    va, vk = ya >= 0, ky >= 0
    valid_pair = va[:, :, None] & vk[:, None, :]
    same = ya[:, :, None] == ky[:, None, :]
    arange = torch.arange(n, device=a.device)
    pos = same & valid_pair & (si[:, None, :] != arange[None, :, None])
    neg = ~same & valid_pair
    if 1.0 / tau <= 30.0:  # |z.z| <= 1, so exp(sim) cannot overflow: one exp, no logsumexp (the fast path)
        e = torch.exp(sim)
        neg_e = torch.where(neg, e, torch.zeros_like(e))
        if weights is not None:
            neg_e = neg_e * weights.to(sim.dtype)[ya.clamp_min(0)[:, :, None], ky.clamp_min(0)[:, None, :]]
        per_pair = torch.log(e + neg_e.sum(2, keepdim=True)) - sim  # = softplus(log(neg sum) - sim)
    else:
        logits_neg = sim
        if weights is not None:
            log_w = torch.log(weights.clamp_min(1e-12)).to(sim.dtype)
            logits_neg = sim + log_w[ya.clamp_min(0)[:, :, None], ky.clamp_min(0)[:, None, :]]
        neg_lse = torch.logsumexp(logits_neg.masked_fill(~neg, float("-inf")), dim=2, keepdim=True)
        per_pair = F.softplus(neg_lse - sim)
    per_pair = torch.where(pos, per_pair, torch.zeros_like(sim))
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
    return per_class.sum(1) / both.sum(1).clamp_min(1) + (cu.sum() + cv.sum()) * 0.0


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
    def _update_centres(self, which: str, z: torch.Tensor, y: torch.Tensor) -> None:
        centres: torch.Tensor = getattr(self, f"centres_{which}")
        seen: torch.Tensor = getattr(self, f"seen_{which}")
        batch, present = class_centres(z.float(), y, self.num_classes)
        m = torch.where(seen > 0, torch.full_like(seen, self.config.momentum), torch.zeros_like(seen))[:, None]
        new = F.normalize(m * centres + (1 - m) * batch, dim=1)
        centres.copy_(torch.where(present[:, None], new, centres))
        seen.copy_(torch.where(present, torch.ones_like(seen), seen))

    @torch.no_grad()
    def _update_confusion(self, probs: torch.Tensor, y: torch.Tensor) -> None:
        k = self.num_classes
        sums = probs.new_zeros(k, k).index_add(0, y, probs.float())
        counts = torch.bincount(y, minlength=k).to(probs.dtype)
        present = counts > 0
        mean = sums / counts.clamp_min(1)[:, None]
        m = self.config.momentum
        self.confusion.copy_(torch.where(present[:, None], m * self.confusion + (1 - m) * mean, self.confusion))

    @torch.no_grad()
    def _enqueue(self, z: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None) -> None:
        cap = self.config.bank_size
        for k in torch.unique(y).tolist():  # a loop over classes, not pixels
            zk = z[y == k]
            zk = zk[_subsample(zk.shape[0], cap, generator, z.device)]
            n = zk.shape[0]
            slots = (self.bank_ptr[k] + torch.arange(n, device=z.device)) % cap
            self.bank[k, slots] = zk.float()
            self.bank_ptr[k] = (self.bank_ptr[k] + n) % cap
            self.bank_count[k] = torch.clamp(self.bank_count[k] + n, max=cap)

    def bank_items(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All filled memory-bank slots ``(z float[M,D], y long[M])``."""
        filled = torch.arange(self.config.bank_size, device=self.bank.device)[None, :] < self.bank_count[:, None]
        ys = torch.arange(self.num_classes, device=self.bank.device)[:, None].expand_as(filled)
        return self.bank[filled], ys[filled]

    # -------------------------------------------------------------- loss
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
        zs = F.normalize(feats_src.permute(0, 2, 3, 1).reshape(-1, feats_src.shape[1]).float(), dim=1)
        ys = labels_src.reshape(-1)
        zt_all = F.normalize(feats_tgt.permute(0, 2, 3, 1).float(), dim=-1)  # [Bt,h,w,D]
        keep_s = (ys >= 0) & (ys < k)
        zs, ys = zs[keep_s], ys[keep_s]
        si = cap_per_class(ys, cfg.anchors_per_class, generator)
        zs_c, ys_c = zs[si], ys[si]
        weights = self.weights().detach().clone().to(zs.dtype)
        w = weights if cfg.alpha > 0 and cfg.correlation != "none" else None
        per_img: list[tuple[torch.Tensor, torch.Tensor]] = []
        for b in range(feats_tgt.shape[0]):
            yb = labels_tgt[b].reshape(-1)
            zb = zt_all[b].reshape(-1, zt_all.shape[-1])
            ok = (yb >= 0) & (yb < k)
            zb, yb = zb[ok], yb[ok]
            idx = cap_per_class(yb, cfg.anchors_per_class, generator)
            per_img.append((zb[idx], yb[idx]))
        zero = (feats_src.sum() + feats_tgt.sum()) * 0.0
        parts: dict[str, torch.Tensor] = {}
        total = zero
        bank_z, bank_y = (t.clone() for t in self.bank_items())
        # clones: the buffers are updated in place after the loss, while the graph still needs these values
        ema_t = (self.centres_tgt.detach().clone(), self.seen_tgt > 0)
        ema_s = (self.centres_src.detach().clone(), self.seen_src > 0)
        # every (level, image) unit is gathered first (same sampling order as a per-unit loop), then all
        # pixel-to-pixel and centre-to-centre terms are computed in two batched calls
        pp_units: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        cc_units: list[tuple[int, torch.Tensor, torch.Tensor, str]] = []  # (image, key z, key y, level)
        unit_level: list[str] = []
        for level in cfg.levels:
            for b, (za, ya) in enumerate(per_img):
                if za.shape[0] == 0:
                    continue
                if level == "intra":
                    kz, ky = za, ya
                elif level == "cross":
                    others = [p for j, p in enumerate(per_img) if j != b]
                    kz = torch.cat([p[0] for p in others] + [bank_z.to(za.dtype)])
                    ky = torch.cat([p[1] for p in others] + [bank_y])
                else:
                    kz, ky = zs_c, ys_c
                if ky.numel() == 0:
                    continue
                self_index = torch.arange(ky.numel(), device=za.device) if level == "intra" else None
                if ky.numel() > cfg.max_keys:  # capped keys at every level (intra: a subset of the anchors)
                    sel = _subsample(ky.numel(), cfg.max_keys, generator, za.device)
                    kz, ky = kz[sel], ky[sel]
                    self_index = sel if level == "intra" else None
                unit_level.append(level)
                pp_units.append((za, ya, kz, ky, self_index))
                cc_units.append((b, kz, ky, level))
        pp_vals = _batched_pixel_nce(pp_units, cfg.tau, w) if pp_units and cfg.lambda_pp > 0 else None
        cc_vals = None
        if cc_units and cfg.lambda_cc > 0:
            img = [class_centres(za, ya, k) for za, ya in per_img]  # the same at every level
            cu = torch.stack([img[b][0] for b, _, _, _ in cc_units])
            pu = torch.stack([img[b][1] for b, _, _, _ in cc_units])
            cvs, pvs = [], []
            for _, kz, ky, level in cc_units:
                if level == "intra":  # the image's centres against the history of its domain
                    cv, pv = ema_t
                else:
                    cv, pv = class_centres(kz, ky, k)
                    if cfg.ema_fallback:
                        ec, ep = ema_t if level == "cross" else ema_s
                        cv = torch.where(pv[:, None], cv, ec.to(cv.dtype))
                        pv = pv | ep
                cvs.append(cv.to(cu.dtype))
                pvs.append(pv)
            cc_vals = _batched_centre_contrast(cu, pu, torch.stack(cvs), torch.stack(pvs), cfg.tau, w)
        for level in cfg.levels:
            of_level = [i for i, lv in enumerate(unit_level) if lv == level]
            cc = cc_vals[of_level].mean() if cc_vals is not None and of_level else zero
            pp = pp_vals[of_level].mean() if pp_vals is not None and of_level else zero
            parts[f"cc_{level}"], parts[f"pp_{level}"] = cc.detach(), pp.detach()
            total = total + cfg.lambda_cc * cc + cfg.lambda_pp * pp
        if update:
            zt = torch.cat([p[0] for p in per_img]) if per_img else zs[:0]
            yt = torch.cat([p[1] for p in per_img]) if per_img else ys[:0]
            self._update_centres("src", zs.detach(), ys)
            if yt.numel():
                self._update_centres("tgt", zt.detach(), yt)
                self._enqueue(zt.detach(), yt, generator)
            if probs_src is not None and ys.numel():
                p = probs_src.permute(0, 2, 3, 1).reshape(-1, k)[keep_s]
                self._update_confusion(p.detach(), ys)
        return total, parts
