"""Which pixels form ADA-MCU's contrastive units in a batch: the integer bookkeeping of the MCU loss.

:class:`~pickwise.tasks.adaseg.contrastive.MultiLevelContrastiveLoss` samples, for every training batch, capped
anchors, the keys of each unit, the (anchor, key) positive pairs and the memory-bank writes. All of that is integer
work on a few thousand labels, but written as tensor operations it takes about a hundred small ops, which cost more
than the loss's arithmetic on CPU-sized batches. This module plans it in one place, in two interchangeable ways:

- :func:`plan_units_torch`: tensor operations (any device);
- a numba kernel (CPU, numba installed: the ``fast`` / ``isp`` / ``all`` extras), about ten times faster.

Both read the same random priorities (:func:`draw_priorities`, one draw from the caller's generator) and make the same
choices element for element (tests compare them), so results do not depend on which one ran.

**Sampling rules** (reconstructed, the paper gives no code). With ``r`` uniform priorities in ``[0, 1)``:

- source anchors: at most ``anchors_per_class`` pixels of each class over the source images, the lowest ``r`` first;
- target anchors: at most ``anchors_per_class`` pixels of each (image, class), the lowest ``r`` first;
- units: one per (level, target image with anchors), level-major; keys: the ``max_keys`` highest-scoring of the unit's
  eligible pool items (all of them if fewer), in pool order (*intra*: the image's own anchors; *cross*: the other
  images' anchors and the memory bank; *domain*: the source anchors); a unit without eligible keys is dropped;
- positive pairs: (anchor, key) of one class, except an anchor with itself;
- memory-bank writes: at most ``bank_size`` target anchors of each class, the lowest ``r`` first, into the class's
  ring buffer from its write pointer on.

Ties in priority keep the lower index first (stable sorts), so both implementations agree even on ties.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...utils._numba import compile_kernel

__all__ = ["PlanInputs", "UnitPlan", "draw_priorities", "numba_planner_available", "plan_units", "plan_units_torch"]


@dataclass
class UnitPlan:
    """Index tables of one batch's contrastive units (pixel indices are flat, image-major, at feature resolution).

    The key pool of the units is ``[target anchors (Na), filled memory-bank slots (Nb), source anchors (Ns)]``.
    """

    src_keep: torch.Tensor  # long[Nk] source pixels with a class label
    src_sel: torch.Tensor  # long[Ns] source anchors (pixel indices), sorted by class
    tgt_sel: torch.Tensor  # long[Na] target anchors (pixel indices), sorted by (image, class)
    ya: torch.Tensor  # long[Na] their classes
    ia: torch.Tensor  # long[Na] their images
    anchor_table: torch.Tensor  # long[Bt,n] anchors of each image, -1 padding
    anchor_row: torch.Tensor  # long[Na] position of each anchor in its image's row
    bank_slots: torch.Tensor  # long[Nb] filled bank slots (class * bank_size + slot), class-major
    pool_y: torch.Tensor  # long[Na+Nb+Ns]
    unit_image: torch.Tensor  # long[U]
    unit_level: torch.Tensor  # long[U] index into LEVELS
    unit_keys: torch.Tensor  # long[U,m] pool indices, -1 padding
    key_y: torch.Tensor  # long[U,m] their classes, -2 padding
    self_row: torch.Tensor  # long[U,m] the key is the unit's anchor in this row (-1: not an anchor of the unit)
    row_y: torch.Tensor  # long[U,n] classes of the unit's anchors, -1 padding
    pair_flat: torch.Tensor  # long[P] positive (anchor, key) pairs as flat indices into [U,n,m] (no self pairs)
    pair_anchor: torch.Tensor  # long[P] their anchor slot in [U*n] (ascending)
    pos_count: torch.Tensor  # long[U*n] positives of each anchor slot
    enq_anchor: torch.Tensor  # long[E] target anchors written to the memory bank
    enq_slot: torch.Tensor  # long[E] their bank slots (class * bank_size + ring position)


@dataclass(frozen=True)
class PlanInputs:
    """What a unit plan is made from.

    Attributes:
        ys: Source labels at feature resolution, flat ``long[Bs*h*w]`` (outside ``[0, K)``: no label).
        yt: Target unit labels, flat ``long[Bt*h*w]``.
        num_images: ``Bt``.
        num_classes: ``K``.
        bank_count: ``long[K]`` filled slots per class of the memory bank.
        bank_ptr: ``long[K]`` ring write pointer per class.
        bank_size: Slots per class.
        anchors_per_class: Cap of anchors per class (source) and per (image, class) (target).
        max_keys: Cap of keys per unit.
        level_ids: Indices into ``LEVELS`` of the configured levels, in order.
        priorities: :func:`draw_priorities`.
    """

    ys: torch.Tensor
    yt: torch.Tensor
    num_images: int
    num_classes: int
    bank_count: torch.Tensor
    bank_ptr: torch.Tensor
    bank_size: int
    anchors_per_class: int
    max_keys: int
    level_ids: Sequence[int]
    priorities: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def draw_priorities(
    n_src: int, n_tgt: int, num_images: int, num_levels: int, num_classes: int, bank_size: int, generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One uniform draw split into the priorities of the source cap, target cap, unit keys and bank writes.

    The key scores are ``[levels * Bt, slots]`` with one slot per potential pool item: target pixel ``p`` is slot
    ``p``, bank slot ``s`` is ``n_tgt + s``, source pixel ``q`` is ``n_tgt + K * bank_size + q``.
    """
    slots = n_tgt + num_classes * bank_size + n_src
    units = num_levels * num_images
    r = torch.rand(n_src + 2 * n_tgt + units * slots, generator=generator)
    r_src, r_tgt, r_enq, r_key = torch.split(r, [n_src, n_tgt, n_tgt, units * slots])
    return r_src, r_tgt, r_key.view(units, slots), r_enq


def _cap_by_priority(group: torch.Tensor, priority: torch.Tensor, cap: int) -> torch.Tensor:
    """Indices keeping the ``cap`` lowest-priority elements of every group, sorted by (group, priority)."""
    if group.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=group.device)
    order = torch.argsort(group.double() * 2.0 + priority, stable=True)
    gs = group[order]
    rank = torch.arange(gs.numel(), device=gs.device) - torch.searchsorted(gs, gs)
    return order[rank < cap]


def plan_units_torch(inputs: PlanInputs) -> UnitPlan:
    """The plan with tensor operations (the reference, and the path off the CPU or without numba)."""
    ys, yt, num_images, num_classes = inputs.ys, inputs.yt, inputs.num_images, inputs.num_classes
    bank_size, anchors_per_class, max_keys = inputs.bank_size, inputs.anchors_per_class, inputs.max_keys
    level_ids, bank_ptr = inputs.level_ids, inputs.bank_ptr
    k, device = num_classes, yt.device
    r_src, r_tgt, r_key, r_enq = (r.to(device) for r in inputs.priorities)
    src_keep = ((ys >= 0) & (ys < k)).nonzero().flatten()
    ys_keep = ys[src_keep]
    src_sel = src_keep[_cap_by_priority(ys_keep, r_src[src_keep], anchors_per_class)]
    per_image = yt.numel() // max(num_images, 1)
    image = torch.arange(num_images, device=device).repeat_interleave(per_image)
    ok = ((yt >= 0) & (yt < k)).nonzero().flatten()
    tgt_sel = ok[_cap_by_priority(image[ok] * k + yt[ok], r_tgt[ok], anchors_per_class)]
    ya, ia = yt[tgt_sel], image[tgt_sel]
    counts = torch.bincount(ia, minlength=num_images)
    width = int(counts.max()) if ia.numel() else 0
    anchor_row = torch.arange(ia.numel(), device=device) - (torch.cumsum(counts, 0) - counts)[ia]
    anchor_table = torch.full((num_images, width), -1, dtype=torch.long, device=device)
    anchor_table[ia, anchor_row] = torch.arange(ia.numel(), device=device)

    filled = torch.arange(bank_size, device=device)[None, :] < inputs.bank_count.to(device)[:, None]
    bank_slots = filled.reshape(-1).nonzero().flatten()
    na, nb, ns = tgt_sel.numel(), bank_slots.numel(), src_sel.numel()
    n_tgt = yt.numel()
    pool_y = torch.cat([ya, torch.div(bank_slots, bank_size, rounding_mode="floor"), ys[src_sel]])
    pool_slot = torch.cat([tgt_sel, n_tgt + bank_slots, n_tgt + k * bank_size + src_sel])
    kind = torch.cat([torch.full((n,), i, dtype=torch.long, device=device) for i, n in enumerate((na, nb, ns))])
    pool_image = torch.cat([ia, torch.full((nb + ns,), -1, dtype=torch.long, device=device)])
    levels = torch.tensor(list(level_ids), dtype=torch.long, device=device)
    unit_row = (torch.arange(len(level_ids), device=device)[:, None] * num_images + torch.arange(num_images)).view(-1)
    unit_level = levels.repeat_interleave(num_images)
    unit_image = torch.arange(num_images, device=device).repeat(len(level_ids))
    has_anchors = counts[unit_image] > 0
    unit_row, unit_level, unit_image = unit_row[has_anchors], unit_level[has_anchors], unit_image[has_anchors]
    same_image = pool_image[None, :] == unit_image[:, None]
    lv, kd = unit_level[:, None], kind[None, :]
    eligible = (
        ((lv == 0) & (kd == 0) & same_image)
        | ((lv == 1) & (((kd == 0) & ~same_image) | (kd == 1)))
        | ((lv == 2) & (kd == 2))
    )
    n_eligible = eligible.sum(1)
    keep = n_eligible > 0
    unit_row, unit_level, unit_image, eligible = unit_row[keep], unit_level[keep], unit_image[keep], eligible[keep]
    m = min(max_keys, int(n_eligible.max())) if bool(keep.any()) else 0
    score = torch.where(eligible, r_key[unit_row][:, pool_slot], torch.full_like(eligible, -1.0, dtype=r_key.dtype))
    top = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :m]  # ties: lower pool index first
    npool = score.shape[1]
    top = torch.sort(torch.where(eligible.gather(1, top), top, top + npool), dim=1).values  # pool order, padding last
    unit_keys = torch.where(top < npool, top, torch.full_like(top, -1))

    key_ok = unit_keys >= 0
    key_y = torch.where(key_ok, pool_y[unit_keys.clamp_min(0)], torch.full_like(unit_keys, -2))
    anchor_key = unit_keys.clamp(0, max(na - 1, 0))
    own = key_ok & (unit_keys < na) & (ia[anchor_key] == unit_image[:, None]) if na else key_ok & False
    self_row = torch.where(own, anchor_row[anchor_key], torch.full_like(unit_keys, -1)) if na else unit_keys * 0 - 1
    rows = anchor_table[unit_image]
    row_y = torch.where(rows >= 0, ya[rows.clamp_min(0)], torch.full_like(rows, -1)) if na else rows
    pair_flat, pair_anchor = positive_pairs(row_y, key_y, self_row)
    pos_count = torch.bincount(pair_anchor, minlength=row_y.numel())

    e_idx = _cap_by_priority(ya, r_enq[tgt_sel], bank_size) if na else torch.zeros(0, dtype=torch.long)
    ye = ya[e_idx]
    rank = torch.arange(ye.numel(), device=device) - torch.searchsorted(ye, ye)
    enq_slot = ye * bank_size + (bank_ptr.to(device)[ye] + rank) % bank_size
    return UnitPlan(
        src_keep, src_sel, tgt_sel, ya, ia, anchor_table, anchor_row, bank_slots, pool_y, unit_image, unit_level,
        unit_keys, key_y, self_row, row_y, pair_flat, pair_anchor, pos_count, e_idx, enq_slot,
    )  # fmt: skip


def positive_pairs(ya: torch.Tensor, ky: torch.Tensor, self_row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (anchor, key) pairs with equal labels of padded units, except an anchor with itself.

    Args:
        ya: ``long[U,n]`` anchor labels (-1 padding).
        ky: ``long[U,m]`` key labels (-2 padding).
        self_row: ``long[U,m]``: key ``j`` is the unit's anchor ``self_row[u, j]`` (-1: none).

    Returns:
        Flat pair indices into ``[U,n,m]`` and their anchor slots in ``[U*n]``, ordered by anchor slot, then key
        column. Built from each unit's keys sorted by label (a ``searchsorted`` range per anchor), without the
        ``U x n x m`` comparison mask: positives are a small fraction of the pairs.
    """
    n_units, n = ya.shape
    m = ky.shape[1]
    ky_sorted, order = torch.sort(ky, dim=1, stable=True)
    lo = torch.searchsorted(ky_sorted, ya, right=False)
    count = (torch.searchsorted(ky_sorted, ya, right=True) - lo).view(-1)  # padding: -1 is never a key label
    slots = torch.arange(n_units * n, device=ya.device)
    anchor = torch.repeat_interleave(slots, count)
    # per anchor slot: the offset of its first positive in the sorted keys (minus its first pair's index), the start
    # of its unit's keys, and its row in the unit; gathered per pair (no integer division over the pairs)
    unit_base = torch.div(slots, n, rounding_mode="floor") * m
    shift = lo.view(-1) - (torch.cumsum(count, 0) - count) + unit_base
    sorted_at = shift.index_select(0, anchor) + torch.arange(anchor.numel(), device=ya.device)
    key = order.view(-1).index_select(0, sorted_at)  # column of the key in its unit
    key_self_row = self_row.view(-1).index_select(0, unit_base.index_select(0, anchor) + key)
    not_self = key_self_row != slots.remainder(n).index_select(0, anchor)  # the key is not this very anchor
    return (anchor * m + key)[not_self], anchor[not_self]


# ------------------------------------------------------------------------------------------------ the numba kernel
_KERNEL: Callable | None = None
_TRIED = False


def _build() -> Callable | None:
    try:
        import numba  # noqa: F401 - the kernels are compiled only where numba imports
    except ImportError:
        return None

    def cap_order(group, priority, cap):  # pragma: no cover - compiled by numba
        """Positions (into group) kept by the cap, sorted by (group, priority), stable on ties."""
        key = np.empty(group.shape[0], np.float64)
        for i in range(group.shape[0]):
            key[i] = group[i] * 2.0 + priority[i]
        order = np.argsort(key, kind="mergesort")
        out = np.empty(order.shape[0], np.int64)
        n = 0
        prev = -1
        rank = 0
        for o in order:
            g = group[o]
            rank = rank + 1 if g == prev else 0
            prev = g
            if rank < cap:
                out[n] = o
                n += 1
        return out[:n]

    cap_order_jit = compile_kernel(cap_order)

    def plan(ys, yt, num_images, k, bank_count, bank_ptr, bank_size, cap, max_keys, level_ids, r_src, r_tgt, r_key,
             r_enq):  # fmt: skip  # pragma: no cover - compiled by numba
        # source anchors
        nk = 0
        for p in range(ys.shape[0]):
            if 0 <= ys[p] < k:
                nk += 1
        src_keep = np.empty(nk, np.int64)
        nk = 0
        for p in range(ys.shape[0]):
            if 0 <= ys[p] < k:
                src_keep[nk] = p
                nk += 1
        src_sel = src_keep[cap_order_jit(ys[src_keep], r_src[src_keep], cap)]
        # target anchors, capped per (image, class)
        n_tgt = yt.shape[0]
        per_image = n_tgt // max(num_images, 1)
        no = 0
        for p in range(n_tgt):
            if 0 <= yt[p] < k:
                no += 1
        ok = np.empty(no, np.int64)
        grp = np.empty(no, np.int64)
        no = 0
        for p in range(n_tgt):
            if 0 <= yt[p] < k:
                ok[no] = p
                grp[no] = (p // per_image) * k + yt[p]
                no += 1
        tgt_sel = ok[cap_order_jit(grp, r_tgt[ok], cap)]
        na = tgt_sel.shape[0]
        ya = np.empty(na, np.int64)
        ia = np.empty(na, np.int64)
        counts = np.zeros(num_images, np.int64)
        anchor_row = np.empty(na, np.int64)
        for a in range(na):
            ya[a] = yt[tgt_sel[a]]
            ia[a] = tgt_sel[a] // per_image
            anchor_row[a] = counts[ia[a]]
            counts[ia[a]] += 1
        width = 0
        for i in range(num_images):
            width = max(width, counts[i])
        anchor_table = np.full((num_images, width), -1, np.int64)
        for a in range(na):
            anchor_table[ia[a], anchor_row[a]] = a
        # the key pool: target anchors, filled bank slots, source anchors
        nb = 0
        for c in range(k):
            nb += bank_count[c]
        bank_slots = np.empty(nb, np.int64)
        nb = 0
        for c in range(k):
            for s in range(bank_count[c]):
                bank_slots[nb] = c * bank_size + s
                nb += 1
        ns = src_sel.shape[0]
        npool = na + nb + ns
        pool_y = np.empty(npool, np.int64)
        pool_slot = np.empty(npool, np.int64)
        for a in range(na):
            pool_y[a] = ya[a]
            pool_slot[a] = tgt_sel[a]
        for b in range(nb):
            pool_y[na + b] = bank_slots[b] // bank_size
            pool_slot[na + b] = n_tgt + bank_slots[b]
        for s in range(ns):
            pool_y[na + nb + s] = ys[src_sel[s]]
            pool_slot[na + nb + s] = n_tgt + k * bank_size + src_sel[s]
        # units: (level, image) with anchors and eligible keys; keys by descending score
        n_cand = level_ids.shape[0] * num_images
        cand_keys = np.full((n_cand, min(max_keys, max(npool, 1))), -1, np.int64)
        cand_n = np.zeros(n_cand, np.int64)
        cand_ok = np.zeros(n_cand, np.bool_)
        elig = np.empty(npool, np.int64)
        for li in range(level_ids.shape[0]):
            lv = level_ids[li]
            for img in range(num_images):
                u = li * num_images + img
                if counts[img] == 0:
                    continue
                ne = 0
                for j in range(npool):
                    if j < na:
                        take = (lv == 0 and ia[j] == img) or (lv == 1 and ia[j] != img)
                    elif j < na + nb:
                        take = lv == 1
                    else:
                        take = lv == 2
                    if take:
                        elig[ne] = j
                        ne += 1
                if ne == 0:
                    continue
                if ne <= max_keys:  # every eligible item, in pool order
                    for e in range(ne):
                        cand_keys[u, e] = elig[e]
                    cand_n[u] = ne
                else:  # the max_keys highest scores (ties: lower pool index first), in pool order
                    score = np.empty(ne, np.float64)
                    for e in range(ne):
                        score[e] = r_key[u, pool_slot[elig[e]]]
                    thr = np.partition(score.copy(), ne - max_keys)[ne - max_keys]
                    n_eq = max_keys
                    for e in range(ne):
                        if score[e] > thr:
                            n_eq -= 1
                    t = 0
                    for e in range(ne):
                        if score[e] > thr or (score[e] == thr and n_eq > 0):
                            if score[e] == thr:
                                n_eq -= 1
                            cand_keys[u, t] = elig[e]
                            t += 1
                    cand_n[u] = max_keys
                cand_ok[u] = True
        n_units = 0
        m = 0
        for u in range(n_cand):
            if cand_ok[u]:
                n_units += 1
                m = max(m, cand_n[u])
        unit_image = np.empty(n_units, np.int64)
        unit_level = np.empty(n_units, np.int64)
        unit_keys = np.full((n_units, m), -1, np.int64)
        key_y = np.full((n_units, m), -2, np.int64)
        self_row = np.full((n_units, m), -1, np.int64)
        row_y = np.full((n_units, width), -1, np.int64)
        # positive pairs: each unit's key columns bucketed by class (ascending within a class)
        key_start = np.zeros((n_units, k + 1), np.int64)
        pos_count = np.zeros(n_units * width, np.int64)
        key_cols = np.empty((n_units, m), np.int64)
        uu = 0
        n_pairs = 0
        for u in range(n_cand):
            if not cand_ok[u]:
                continue
            img = u % num_images
            unit_image[uu] = img
            unit_level[uu] = level_ids[u // num_images]
            for j in range(cand_n[u]):
                key = cand_keys[u, j]
                unit_keys[uu, j] = key
                key_y[uu, j] = pool_y[key]
                key_start[uu, pool_y[key] + 1] += 1
                if key < na and ia[key] == img:
                    self_row[uu, j] = anchor_row[key]
            for c in range(k):
                key_start[uu, c + 1] += key_start[uu, c]
            fill = key_start[uu, :k].copy()
            for j in range(cand_n[u]):
                c = key_y[uu, j]
                key_cols[uu, fill[c]] = j
                fill[c] += 1
            for i in range(counts[img]):
                y = ya[anchor_table[img, i]]
                row_y[uu, i] = y
                pos_count[uu * width + i] = key_start[uu, y + 1] - key_start[uu, y]
            for j in range(cand_n[u]):
                if self_row[uu, j] >= 0:  # an anchor is not its own positive
                    pos_count[uu * width + self_row[uu, j]] -= 1
            for i in range(counts[img]):
                n_pairs += pos_count[uu * width + i]
            uu += 1
        pair_flat = np.empty(n_pairs, np.int64)
        pair_anchor = np.empty(n_pairs, np.int64)
        q = 0
        for u in range(n_units):
            for i in range(width):
                y = row_y[u, i]
                if y < 0:
                    continue
                slot = u * width + i
                for t in range(key_start[u, y], key_start[u, y + 1]):
                    j = key_cols[u, t]
                    if self_row[u, j] != i:
                        pair_flat[q] = slot * m + j
                        pair_anchor[q] = slot
                        q += 1
        # memory-bank writes
        e_pos = cap_order_jit(ya, r_enq[tgt_sel], bank_size)
        enq_slot = np.empty(e_pos.shape[0], np.int64)
        prev = -1
        rank = 0
        for e in range(e_pos.shape[0]):
            c = ya[e_pos[e]]
            rank = rank + 1 if c == prev else 0
            prev = c
            enq_slot[e] = c * bank_size + (bank_ptr[c] + rank) % bank_size
        return (
            src_keep, src_sel, tgt_sel, ya, ia, anchor_table, anchor_row, bank_slots, pool_y, unit_image,
            unit_level, unit_keys, key_y, self_row, row_y, pair_flat, pair_anchor, pos_count, e_pos, enq_slot,
        )  # fmt: skip

    return compile_kernel(plan)


def _kernel() -> Callable | None:
    global _KERNEL, _TRIED
    if not _TRIED:
        _TRIED = True
        _KERNEL = _build()
    return _KERNEL


def numba_planner_available() -> bool:
    """Whether the numba kernel can plan units in this process (numba installed)."""
    return _kernel() is not None


def plan_units(inputs: PlanInputs, use_numba: bool | None = None) -> UnitPlan:
    """:func:`plan_units_torch`'s plan, through the numba kernel on the CPU when numba is installed.

    ``use_numba``: None picks (CPU tensors and numba installed), True requires the kernel, False forces torch.
    """
    kernel = _kernel() if use_numba is not False and inputs.yt.device.type == "cpu" else None
    if use_numba and kernel is None:
        raise RuntimeError("adaseg: the numba unit planner needs numba (pip install 'pickwise[fast]') and CPU tensors")
    if kernel is None:
        return plan_units_torch(inputs)
    args: list[Any] = [
        inputs.ys.contiguous().numpy(),
        inputs.yt.contiguous().numpy(),
        int(inputs.num_images),
        int(inputs.num_classes),
        inputs.bank_count.contiguous().numpy(),
        inputs.bank_ptr.contiguous().numpy(),
        int(inputs.bank_size),
        int(inputs.anchors_per_class),
        int(inputs.max_keys),
        np.asarray(list(inputs.level_ids), dtype=np.int64),
        *(r.contiguous().numpy() for r in inputs.priorities),
    ]
    return UnitPlan(*(torch.from_numpy(a) for a in kernel(*args)))
