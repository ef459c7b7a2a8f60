"""Retrieval evaluation for re-identification: distances, k-reciprocal re-ranking, CMC, mAP and mINP.

The protocol is the one of Market-1501/MARS as implemented by torchreid (``eval_market1501``) and fast-reid (mINP):
for each query, gallery items of the **same identity seen by the same camera** are removed (they would be trivial
matches of the same tracklet or camera view); a query with no remaining true match is skipped and counted. For a
query with gallery ranked by ascending distance and binary relevance ``r_1..r_n`` after the removal:

- CMC: ``cmc_q(k) = 1[Σ_{j≤k} r_j ≥ 1]``, averaged over valid queries (rank-1 = ``cmc(1)``);
- AP: ``(1/R) Σ_k r_k · P@k`` with ``R = Σ r_k`` (precision at every true match), mAP its mean;
- INP (Ye et al., TPAMI 2021): ``R / (rank of the hardest true match)``, mINP its mean.

Ties in the distances are broken by gallery index (a stable sort), so results do not depend on the sorting algorithm.

Distances follow torchreid's conventions (``torchreid/metrics/distance.py``): ``"euclidean"`` is the **squared**
Euclidean distance ``‖q‖² + ‖g‖² − 2 q·g`` and ``"cosine"`` is ``1 − cos(q, g)``; :func:`re_ranking` squares its
inputs again exactly as torchreid's ``re_ranking`` does, so feeding it :func:`pairwise_distance` output reproduces
torchreid's re-ranked evaluation. :class:`RetrievalAccumulator` streams embeddings over batches and processes and
evaluates them once at the end.

Example:
    >>> import numpy as np
    >>> d = np.array([[0.1, 0.5, 0.2], [0.9, 0.1, 0.4]])
    >>> r = evaluate_rank(d, q_pids=[1, 2], g_pids=[1, 2, 1], q_camids=[0, 0], g_camids=[1, 1, 1], max_rank=3)
    >>> r.cmc.tolist(), round(r.mAP, 4), round(r.mINP, 4)
    ([1.0, 1.0, 1.0], 1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..exceptions import DataFormatError, InvalidParameterError, ShapeError
from ..utils.distributed import get_world_size, is_dist_avail_and_initialized
from ._base import Accumulator

__all__ = ["RankResult", "RetrievalAccumulator", "evaluate_rank", "pairwise_distance", "re_ranking"]


@dataclass(frozen=True)
class RankResult:
    """Retrieval metrics.

    Attributes:
        cmc: ``(max_rank,)`` cumulative matching characteristic (``cmc[0]`` is rank-1), float64.
        mAP: Mean average precision over valid queries.
        mINP: Mean inverse negative penalty over valid queries.
        num_valid_queries: Queries with at least one true match left after the same-camera removal.
        num_skipped_queries: Queries without one (not counted in any metric).
    """

    cmc: np.ndarray
    mAP: float  # noqa: N815  (the name every re-ID paper and library uses)
    mINP: float  # noqa: N815
    num_valid_queries: int
    num_skipped_queries: int

    def rank(self, k: int) -> float:
        """CMC at rank ``k`` (1-based)."""
        return float(self.cmc[k - 1])


def _as_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor on any device
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise InvalidParameterError(f"evaluate_rank: {name} must be numeric; got objects")
    return arr


def evaluate_rank(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 50,
    *,
    chunk_size: int = 256,
) -> RankResult:
    """CMC, mAP and mINP of a query × gallery distance matrix (smaller is more similar).

    Vectorized over chunks of ``chunk_size`` queries: extra memory is ``O(chunk_size × G)`` (the distances are
    converted to float64 one chunk at a time; a float32 or memory-mapped ``distmat`` is never copied whole), never
    ``Q × G × G``.

    Args:
        distmat: ``(Q, G)`` distances (numpy or torch, any device).
        q_pids: ``(Q,)`` query identities.
        g_pids: ``(G,)`` gallery identities.
        q_camids: ``(Q,)`` query camera ids.
        g_camids: ``(G,)`` gallery camera ids.
        max_rank: Length of the returned CMC (capped at ``G``).
        chunk_size: Queries evaluated at once.

    Returns:
        A :class:`RankResult`.

    Raises:
        ShapeError: Shapes that do not match.
        DataFormatError: NaN distances, or no query with a valid match.
        InvalidParameterError: ``max_rank`` or ``chunk_size`` < 1.
    """
    dist = _as_numpy(distmat, "distmat")  # converted to float64 chunk by chunk (a Q x G float64 copy can be GiBs)
    qp, gp = _as_numpy(q_pids, "q_pids").reshape(-1), _as_numpy(g_pids, "g_pids").reshape(-1)
    qc, gc = _as_numpy(q_camids, "q_camids").reshape(-1), _as_numpy(g_camids, "g_camids").reshape(-1)
    if dist.ndim != 2:
        raise ShapeError(f"evaluate_rank: distmat must be (Q, G); got shape {dist.shape}")
    num_q, num_g = dist.shape
    if num_q == 0 or num_g == 0:
        raise ShapeError(
            f"evaluate_rank: need at least one query and one gallery item; got distmat of shape {dist.shape}"
        )
    if qp.shape[0] != num_q or qc.shape[0] != num_q:
        raise ShapeError(f"evaluate_rank: q_pids/q_camids need {num_q} entries; got {qp.shape[0]} and {qc.shape[0]}")
    if gp.shape[0] != num_g or gc.shape[0] != num_g:
        raise ShapeError(f"evaluate_rank: g_pids/g_camids need {num_g} entries; got {gp.shape[0]} and {gc.shape[0]}")
    for name, value in (("max_rank", max_rank), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidParameterError(f"evaluate_rank: {name} must be an integer >= 1; got {value!r}")
    max_rank = min(int(max_rank), num_g)
    cmc_sum = np.zeros(max_rank, dtype=np.float64)
    ap_sum = inp_sum = 0.0
    valid = 0
    for start in range(0, num_q, chunk_size):
        stop = min(start + chunk_size, num_q)
        block = dist[start:stop].astype(np.float64, copy=False)
        if np.isnan(block).any():
            raise DataFormatError("evaluate_rank: distmat contains NaN; check the features (a NaN embedding?)")
        order = np.argsort(block, axis=1, kind="stable")
        match = gp[order] == qp[start:stop, None]
        keep = ~(match & (gc[order] == qc[start:stop, None]))
        # drop removed items by pushing them to the end of each row, preserving the order of the kept ones
        pos = np.argsort(~keep, axis=1, kind="stable")
        rel = np.take_along_axis(match & keep, pos, axis=1)
        n_rel = rel.sum(1)
        ok = n_rel > 0
        if not ok.any():
            continue
        rel, n_rel = rel[ok], n_rel[ok]
        hits = np.cumsum(rel, axis=1)
        cmc_sum += (hits[:, :max_rank] > 0).sum(0)
        ranks = np.arange(1, rel.shape[1] + 1)
        ap_sum += float((((hits / ranks) * rel).sum(1) / n_rel).sum())
        hardest = rel.shape[1] - np.argmax(rel[:, ::-1], axis=1)  # 1-based rank of the last true match
        inp_sum += float((n_rel / hardest).sum())
        valid += int(ok.sum())
    if valid == 0:
        raise DataFormatError(
            "evaluate_rank: no query has a true match in the gallery from another camera; check the identity and "
            "camera ids (all queries were skipped)"
        )
    return RankResult(
        cmc=cmc_sum / valid,
        mAP=ap_sum / valid,
        mINP=inp_sum / valid,
        num_valid_queries=valid,
        num_skipped_queries=num_q - valid,
    )


# --------------------------------------------------------------------------------------------------------------------
# distances
# --------------------------------------------------------------------------------------------------------------------

_METRICS = ("euclidean", "cosine")


def _as_float_tensor(x: Any, name: str, where: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        arr = np.asarray(x)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InvalidParameterError(f"{where}: {name} must be a numeric array or tensor; got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
        t = t.to(torch.float32)
    return t


def pairwise_distance(q: Any, g: Any, metric: str = "euclidean", *, chunk_size: int = 4096) -> Any:
    """Query × gallery distance matrix, torchreid's conventions.

    - ``"euclidean"``: squared Euclidean distance ``d(q, g) = ‖q‖² + ‖g‖² − 2 q·g`` (torchreid's
      ``euclidean_squared_distance``), clamped at 0 (the expansion can round a true 0 to ``-1e-7``);
    - ``"cosine"``: ``1 − q·g / (‖q‖ ‖g‖)`` (torchreid's ``cosine_distance``; zero vectors are left unnormalised,
      as ``F.normalize`` does, giving distance 1).

    Computed in blocks of ``chunk_size`` query rows (peak extra memory ``O(chunk_size × G)``), in the features'
    floating dtype (float32 for half precision or integer input) and on their device.

    Args:
        q: ``(Q, D)`` query features (numpy or torch, any device).
        g: ``(G, D)`` gallery features (same kind as ``q``).
        metric: ``"euclidean"`` or ``"cosine"``.
        chunk_size: Query rows per block.

    Returns:
        ``(Q, G)`` distances: a tensor on ``q``'s device if ``q`` is a tensor, else a numpy array.

    Raises:
        ShapeError: Features that are not 2-D or whose widths differ.
        InvalidParameterError: Unknown ``metric`` or ``chunk_size`` < 1.

    Example:
        >>> import numpy as np
        >>> pairwise_distance(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[3.0, 4.0]])).tolist()
        [[25.0], [13.0]]
    """
    if metric not in _METRICS:
        raise InvalidParameterError(f"pairwise_distance: metric must be one of {_METRICS}; got {metric!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise InvalidParameterError(f"pairwise_distance: chunk_size must be an integer >= 1; got {chunk_size!r}")
    as_numpy = not isinstance(q, torch.Tensor)
    qt = _as_float_tensor(q, "q", "pairwise_distance")
    gt = _as_float_tensor(g, "g", "pairwise_distance")
    if qt.ndim != 2 or gt.ndim != 2 or qt.shape[1] != gt.shape[1]:
        raise ShapeError(
            f"pairwise_distance: expected q (Q, D) and g (G, D) with the same D; got {tuple(qt.shape)} and "
            f"{tuple(gt.shape)}"
        )
    dtype = torch.promote_types(qt.dtype, gt.dtype)
    qt, gt = qt.to(dtype), gt.to(device=qt.device, dtype=dtype)
    out = torch.empty(qt.shape[0], gt.shape[0], dtype=dtype, device=qt.device)
    if metric == "cosine":
        qt = torch.nn.functional.normalize(qt, p=2, dim=1)
        gt = torch.nn.functional.normalize(gt, p=2, dim=1)
    else:
        g2 = gt.square().sum(1)
    for start in range(0, qt.shape[0], int(chunk_size)):
        block = qt[start : start + int(chunk_size)]
        if metric == "cosine":
            out[start : start + block.shape[0]] = 1 - block @ gt.T
        else:
            d = torch.addmm(block.square().sum(1, keepdim=True) + g2[None, :], block, gt.T, beta=1, alpha=-2)
            out[start : start + block.shape[0]] = d.clamp_min_(0)
    return out.cpu().numpy() if as_numpy else out


# --------------------------------------------------------------------------------------------------------------------
# k-reciprocal re-ranking
# --------------------------------------------------------------------------------------------------------------------


def _check_int(value: Any, name: str, where: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidParameterError(f"{where}: {name} must be an integer >= {low}; got {value!r}")
    return int(value)


def re_ranking(
    q_g_dist: Any,
    q_q_dist: Any,
    g_g_dist: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    chunk_size: int = 512,
    pair_budget: int = 1 << 22,
) -> Any:
    """k-reciprocal re-ranking, exactly as torchreid's ``re_ranking`` (``torchreid/utils/rerank.py``), vectorized.

    Zhong, Zheng, Cao & Li, "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017.

    With ``N = Q + G`` items and ``d`` the stacked distance matrix ``[[q_q, q_g], [q_gᵀ, g_g]]``:

    1. ``d ← d²`` (in the input's dtype), cast to float32, each row ``i`` divided by the maximum of column ``i``
       (torchreid's ``(d / max(d, axis=0))ᵀ``; the same as a row maximum for symmetric inputs);
    2. ``N(i, k)``: the ``k`` nearest items of ``i`` (itself included); ``R(i, k) = {j ∈ N(i, k+1) : i ∈ N(j, k+1)}``
       the k-reciprocal set, with ``k = k1``;
    3. expansion: ``R*(i) = R(i, k1) ∪ R(c, round(k1/2))`` for every ``c ∈ R(i, k1)`` with
       ``|R(c, k1/2) ∩ R(i, k1)| > ⅔ |R(c, k1/2)|``;
    4. ``V[i, j] = exp(−d_ij) / Σ_{j' ∈ R*(i)} exp(−d_ij')`` on ``R*(i)``, 0 elsewhere; local query expansion
       ``V[i] ← mean_{t < k2} V[N(i, k2)_t]`` (skipped for ``k2 = 1``);
    5. Jaccard distance ``d_J(i, j) = 1 − m / (2 − m)`` with ``m = Σ_k min(V[i, k], V[j, k])``;
    6. result ``(1 − λ) d_J + λ d`` for query rows and gallery columns.

    The implementation never forms anything of size ``Q × G × G``: it keeps the float32 ``N × N`` normalized
    distances (as torchreid does), the top-``max(k1+1, k2)`` neighbour lists (``torch.topk``), the k-reciprocal
    sets as boolean masks over those lists, ``V`` as padded sparse rows (at most ``(k1+1)(round(k1/2)+2)`` entries
    each), the expanded ``V`` densified ``chunk_size`` rows at a time, and the Jaccard sums as a sparse join of the
    query rows with the gallery columns of ``V`` in blocks of at most ``pair_budget`` pairs. Floating point work is
    in float32 where torchreid uses float32; results agree with torchreid to about 1e-6 (summation order differs).
    Ties among distances are broken as ``torch.topk`` breaks them (torchreid: ``np.argsort``); they can change
    the neighbour sets, so use tie-free distances when comparing the two.

    Args:
        q_g_dist: ``(Q, G)`` query-gallery distances (numpy or torch, any device), e.g. :func:`pairwise_distance`.
        q_q_dist: ``(Q, Q)`` query-query distances.
        g_g_dist: ``(G, G)`` gallery-gallery distances.
        k1: Neighbourhood size of the k-reciprocal sets (paper and torchreid: 20).
        k2: Neighbours averaged by the local query expansion (paper and torchreid: 6; 1 disables it).
        lambda_value: Weight ``λ`` of the original distance (paper and torchreid: 0.3).
        chunk_size: Rows processed at once (memory ``O(chunk_size × N)``).
        pair_budget: Most (query entry, gallery entry) pairs joined at once in the Jaccard step.

    Returns:
        ``(Q, G)`` float32 re-ranked distances: a tensor on ``q_g_dist``'s device if it is a tensor, else numpy.

    Raises:
        ShapeError: Shapes that do not fit together.
        DataFormatError: NaN distances, or a column of the stacked matrix that is all zero.
        InvalidParameterError: ``k1``/``k2`` < 1, ``lambda_value`` outside ``[0, 1]``.

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> q, g = torch.randn(4, 8), torch.randn(30, 8)
        >>> d = re_ranking(pairwise_distance(q, g), pairwise_distance(q, q), pairwise_distance(g, g), k1=5, k2=2)
        >>> tuple(d.shape), d.dtype
        ((4, 30), torch.float32)
    """
    where = "re_ranking"
    as_numpy = not isinstance(q_g_dist, torch.Tensor)
    qg = _as_float_tensor(q_g_dist, "q_g_dist", where)
    device = qg.device
    qq = _as_float_tensor(q_q_dist, "q_q_dist", where).to(device)
    gg = _as_float_tensor(g_g_dist, "g_g_dist", where).to(device)
    if qg.ndim != 2:
        raise ShapeError(f"{where}: q_g_dist must be (Q, G); got shape {tuple(qg.shape)}")
    num_q, num_g = qg.shape
    if tuple(qq.shape) != (num_q, num_q) or tuple(gg.shape) != (num_g, num_g):
        raise ShapeError(
            f"{where}: with q_g_dist of shape {(num_q, num_g)} expected q_q_dist {(num_q, num_q)} and g_g_dist "
            f"{(num_g, num_g)}; got {tuple(qq.shape)} and {tuple(gg.shape)}"
        )
    if num_q == 0 or num_g == 0:
        raise ShapeError(f"{where}: need at least one query and one gallery item; got q_g_dist {(num_q, num_g)}")
    k1 = _check_int(k1, "k1", where, 1)
    k2 = _check_int(k2, "k2", where, 1)
    chunk_size = _check_int(chunk_size, "chunk_size", where, 1)
    pair_budget = _check_int(pair_budget, "pair_budget", where, 1)
    if not isinstance(lambda_value, (int, float, np.floating)) or not 0.0 <= float(lambda_value) <= 1.0:
        raise InvalidParameterError(f"{where}: lambda_value must be a number in [0, 1]; got {lambda_value!r}")
    for name, t in (("q_g_dist", qg), ("q_q_dist", qq), ("g_g_dist", gg)):
        if torch.isnan(t).any():
            raise DataFormatError(f"{where}: {name} contains NaN; check the features (a NaN embedding?)")

    n = num_q + num_g
    # 1. row i of the normalized matrix = column i of the squared stacked matrix / its maximum
    dist = torch.empty(n, n, dtype=torch.float32, device=device)
    dist[:num_q, :num_q] = qq.T.square()
    dist[:num_q, num_q:] = qg.square()
    dist[num_q:, :num_q] = qg.T.square()
    dist[num_q:, num_q:] = gg.T.square()
    peak = dist.amax(dim=1, keepdim=True)
    if bool((peak == 0).any()):
        raise DataFormatError(f"{where}: an item has distance 0 to every item; the distances cannot be normalized")
    dist /= peak

    # 2. neighbour lists (ascending), k-reciprocal masks over them
    k1p = min(k1 + 1, n)
    hp = min(int(np.around(k1 / 2.0)) + 1, n)
    k2 = min(k2, n)
    kmax = max(k1p, k2)
    rank = torch.empty(n, kmax, dtype=torch.long, device=device)
    for s in range(0, n, chunk_size):
        rank[s : s + chunk_size] = torch.topk(dist[s : s + chunk_size], kmax, dim=1, largest=False).indices
    ar = torch.arange(n, device=device)
    rk, rh = rank[:, :k1p], rank[:, :hp]
    mk = torch.cat([_reciprocal_rows(rk, ar, s, chunk_size) for s in range(0, n, chunk_size)])
    mh = torch.cat([_reciprocal_rows(rh, ar, s, chunk_size) for s in range(0, n, chunk_size)])
    half_size = mh.sum(1).double() * (2.0 / 3)  # torchreid: 2. / 3 * len(candidate_k_reciprocal_index)

    # 3-4. expanded sets R*(i) as padded sorted index rows (sentinel n), weights exp(-d) normalized per row
    width = k1p + k1p * hp
    v_idx = torch.empty(n, width, dtype=torch.long, device=device)
    v_val = torch.empty(n, width, dtype=torch.float32, device=device)
    for s in range(0, n, chunk_size):
        r, m = rk[s : s + chunk_size], mk[s : s + chunk_size]
        cand, cmask = rh[r], mh[r]  # (b, k1+1, hp): each neighbour's own k1/2-reciprocal set
        inter = ((cand[..., None] == r[:, None, None, :]) & cmask[..., None] & m[:, None, None, :]).sum((2, 3))
        accept = m & (inter.double() > half_size[r])
        idx = torch.cat([torch.where(m, r, n), torch.where(cmask & accept[..., None], cand, n).flatten(1)], dim=1)
        idx = idx.sort(dim=1).values
        dup = torch.zeros_like(idx, dtype=torch.bool)
        dup[:, 1:] = idx[:, 1:] == idx[:, :-1]
        idx = idx.masked_fill(dup, n)
        weight = torch.exp(-dist[s : s + chunk_size].gather(1, idx.clamp(max=n - 1))).masked_fill(idx == n, 0.0)
        v_idx[s : s + chunk_size] = idx
        v_val[s : s + chunk_size] = weight / weight.sum(1, keepdim=True)

    # 4. local query expansion, one dense block of rows at a time, kept as COO (row, col, value)
    rows_l, cols_l, vals_l = [], [], []
    for s in range(0, n, chunk_size):
        b = min(chunk_size, n - s)
        buf = torch.zeros(b, n + 1, dtype=torch.float32, device=device)
        if k2 == 1:
            buf.scatter_(1, v_idx[s : s + b], v_val[s : s + b])
        else:
            for col in range(k2):  # summed in neighbour order, then divided: torchreid's np.mean in float32
                nb = rank[s : s + b, col]
                buf.scatter_add_(1, v_idx[nb], v_val[nb])
            buf /= k2
        nz = buf[:, :n].nonzero()
        rows_l.append(nz[:, 0] + s)
        cols_l.append(nz[:, 1])
        vals_l.append(buf[nz[:, 0], nz[:, 1]])
    rows, cols, vals = torch.cat(rows_l), torch.cat(cols_l), torch.cat(vals_l)
    del rows_l, cols_l, vals_l, v_idx, v_val, rank

    # 5. Jaccard sums: join each query row's entries with the gallery entries of the same column
    is_q = rows < num_q
    q_rows, q_cols, q_vals = rows[is_q], cols[is_q], vals[is_q]  # row-major order from nonzero()
    g_rows, g_cols, g_vals = rows[~is_q], cols[~is_q], vals[~is_q]
    order = torch.argsort(g_cols, stable=True)
    g_rows, g_vals = g_rows[order] - num_q, g_vals[order]
    col_count = torch.bincount(g_cols, minlength=n)
    col_start = torch.cumsum(col_count, 0) - col_count
    pairs = col_count[q_cols]  # pairs contributed by each query entry
    row_pairs = torch.zeros(num_q, dtype=torch.long, device=device).index_add_(0, q_rows, pairs)
    row_entries = torch.bincount(q_rows, minlength=num_q)
    entry_end = torch.cumsum(row_entries, 0).tolist()
    out = torch.empty(num_q, num_g, dtype=torch.float32, device=device)
    lam = float(lambda_value)
    s = 0
    cum_pairs = torch.cumsum(row_pairs, 0).tolist()
    while s < num_q:
        # the largest block of query rows within pair_budget (at least one row) and chunk_size
        base = cum_pairs[s - 1] if s else 0
        e = s + 1
        while e < num_q and e - s < chunk_size and cum_pairs[e] - base <= pair_budget:
            e += 1
        lo, hi = (entry_end[s - 1] if s else 0), entry_end[e - 1]
        cnt = pairs[lo:hi]
        total = int(cnt.sum())
        temp = torch.zeros((e - s) * num_g, dtype=torch.float32, device=device)
        if total:
            ent = torch.repeat_interleave(torch.arange(hi - lo, device=device), cnt)
            offset = torch.arange(total, device=device) - (torch.cumsum(cnt, 0) - cnt)[ent]
            pos = col_start[q_cols[lo:hi]][ent] + offset
            contrib = torch.minimum(q_vals[lo:hi][ent], g_vals[pos])
            temp.index_add_(0, (q_rows[lo:hi][ent] - s) * num_g + g_rows[pos], contrib)
        temp = temp.view(e - s, num_g)
        jaccard = 1 - temp / (2.0 - temp)
        # 6. mix with the normalized original distance
        out[s:e] = jaccard * (1 - lam) + dist[s:e, num_q:] * lam
        s = e
    return out.cpu().numpy() if as_numpy else out


def _reciprocal_rows(rank: torch.Tensor, ar: torch.Tensor, start: int, size: int) -> torch.Tensor:
    block = rank[start : start + size]
    return (rank[block] == ar[start : start + size, None, None]).any(-1)


# --------------------------------------------------------------------------------------------------------------------
# accumulator
# --------------------------------------------------------------------------------------------------------------------

_RANKS = (1, 5, 10, 20)


class RetrievalAccumulator(Accumulator):
    """Streams query and gallery embeddings over batches and processes, then evaluates CMC/mAP/mINP once.

    Unlike the additive accumulators, the state is the list of embeddings itself: ``merge`` concatenates,
    ``sync`` all-gathers over the default process group (gloo or nccl; shards of different lengths are padded to
    the longest and trimmed). Every sample carries an index; after ``sync`` the samples are ordered by it, so the
    result does not depend on which process saw which sample. Pass ``index`` (the dataset index of each sample,
    as the evaluation sampler yields it) to make a distributed result equal to the single-process one even where
    distances tie, and to drop the duplicates a padding sampler (``DistributedSampler``) adds: samples with the
    same index and the same ``is_query`` are counted once (a query and a gallery item may share an index).
    Without ``index``, samples are numbered in arrival order (per process, then by rank after ``sync``). Either
    every update passes ``index`` or none does.

    ``compute()`` builds the query × gallery distances (:func:`pairwise_distance`), optionally re-ranks them
    (:func:`re_ranking`, torchreid's ``rerank=True``) and applies :func:`evaluate_rank` (same-identity-same-camera
    removal, skipped queries counted). CMC values and mAP/mINP are fractions in ``[0, 1]``.

    Args:
        metric: ``"euclidean"`` (squared, torchreid's default) or ``"cosine"``.
        rerank: Apply k-reciprocal re-ranking with ``k1``, ``k2``, ``lambda_value``.
        max_rank: Length of the CMC curve in :meth:`result` (rank-1..20 are always in :meth:`compute`).
        k1: Re-ranking neighbourhood (torchreid: 20).
        k2: Re-ranking query expansion (torchreid: 6).
        lambda_value: Re-ranking weight of the original distance (torchreid: 0.3).
        dtype: Storage and communication dtype of the features (float32 as torchreid; float64 for exact tests).

    Example:
        >>> import torch
        >>> acc = RetrievalAccumulator()
        >>> f = torch.tensor([[0.0, 0.0], [5.0, 5.0], [0.1, 0.0], [5.0, 5.1], [9.0, 9.0]])
        >>> acc.update(f, pids=torch.tensor([1, 2, 1, 2, 3]), camids=torch.tensor([0, 0, 1, 1, 1]),
        ...            is_query=torch.tensor([True, True, False, False, False]))
        >>> m = acc.compute()
        >>> m["rank1"], m["mAP"], m["num_valid_queries"]
        (1.0, 1.0, 2.0)
    """

    def __init__(
        self,
        metric: str = "euclidean",
        rerank: bool = False,
        max_rank: int = 50,
        *,
        k1: int = 20,
        k2: int = 6,
        lambda_value: float = 0.3,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if metric not in _METRICS:
            raise InvalidParameterError(f"RetrievalAccumulator: metric must be one of {_METRICS}; got {metric!r}")
        if dtype not in (torch.float32, torch.float64):
            raise InvalidParameterError(f"RetrievalAccumulator: dtype must be torch.float32 or float64; got {dtype}")
        self.metric = metric
        self.rerank = bool(rerank)
        self.max_rank = _check_int(max_rank, "max_rank", "RetrievalAccumulator", 1)
        self.k1 = _check_int(k1, "k1", "RetrievalAccumulator", 1)
        self.k2 = _check_int(k2, "k2", "RetrievalAccumulator", 1)
        if not isinstance(lambda_value, (int, float)) or not 0.0 <= float(lambda_value) <= 1.0:
            raise InvalidParameterError(
                f"RetrievalAccumulator: lambda_value must be a number in [0, 1]; got {lambda_value!r}"
            )
        self.lambda_value = float(lambda_value)
        self.dtype = dtype
        self._comm_device = torch.device("cpu")
        self.reset()

    # -- state ------------------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the empty state."""
        self._feats: list[torch.Tensor] = []
        self._ids: list[torch.Tensor] = []  # (B, 4) long: pid, camid, is_query, index
        self._explicit: bool | None = None
        self._count = 0
        self._cache: tuple[RankResult, torch.Tensor, dict[str, torch.Tensor]] | None = None

    def _config(self) -> tuple:
        return (self.metric, self.rerank, self.max_rank, self.k1, self.k2, self.lambda_value, self.dtype)

    def _set_explicit(self, explicit: bool) -> None:
        if self._explicit is not None and self._explicit != explicit:
            raise InvalidParameterError(
                "RetrievalAccumulator: either every update passes index= or none does; got a mix"
            )
        self._explicit = explicit

    def update(
        self,
        features: torch.Tensor,
        pids: Any,
        camids: Any,
        is_query: Any,
        index: Any = None,
    ) -> None:
        """Add a batch.

        Args:
            features: ``(B, D)`` embeddings (any device; stored on the CPU in ``dtype``).
            pids: ``(B,)`` identities.
            camids: ``(B,)`` camera ids.
            is_query: ``(B,)`` booleans (or one bool for the whole batch): query (True) or gallery (False).
            index: Optional ``(B,)`` global sample indices (e.g. dataset indices) that order the samples.
        """
        feats = torch.as_tensor(features).detach()
        if feats.ndim != 2:
            raise ShapeError(f"RetrievalAccumulator.update: features must be (B, D); got shape {tuple(feats.shape)}")
        b = feats.shape[0]
        if self._feats and feats.shape[1] != self._feats[0].shape[1]:
            raise ShapeError(
                f"RetrievalAccumulator.update: features have width {feats.shape[1]}, earlier batches "
                f"{self._feats[0].shape[1]}"
            )
        if feats.is_floating_point() and not bool(torch.isfinite(feats).all()):
            raise DataFormatError("RetrievalAccumulator.update: features contain NaN or inf (a diverged model?)")
        cols = []
        for name, value in (("pids", pids), ("camids", camids), ("is_query", is_query), ("index", index)):
            if name == "index" and value is None:
                col = torch.arange(self._count, self._count + b, dtype=torch.long)
            else:
                col = torch.as_tensor(value).detach().cpu()
                if name == "is_query" and col.ndim == 0:
                    col = col.expand(b)
                if col.is_floating_point():
                    raise InvalidParameterError(f"RetrievalAccumulator.update: {name} must be integers or booleans")
                col = col.reshape(-1) if col.ndim == 1 else col
                if col.shape != (b,):
                    raise ShapeError(
                        f"RetrievalAccumulator.update: {name} must have shape ({b},) like features; got "
                        f"{tuple(col.shape)}"
                    )
            cols.append(col.to(torch.long))
        self._set_explicit(index is not None)
        self._feats.append(feats.to(device="cpu", dtype=self.dtype))
        self._ids.append(torch.stack(cols, dim=1))
        self._count += b
        self._cache = None

    def _tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._feats:
            return torch.zeros(0, 0, dtype=self.dtype), torch.zeros(0, 4, dtype=torch.long)
        if len(self._feats) > 1:  # consolidate, so that repeated calls are cheap
            self._feats, self._ids = [torch.cat(self._feats)], [torch.cat(self._ids)]
        return self._feats[0], self._ids[0]

    def merge(self, other: Accumulator) -> RetrievalAccumulator:
        """Append ``other``'s samples (same class and configuration); returns ``self``."""
        if (
            not isinstance(other, RetrievalAccumulator)
            or type(other) is not type(self)
            or other._config() != self._config()
        ):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__} (configurations differ)")
        feats, ids = other._tensors()
        if not len(feats):
            return self
        if other._explicit is not None:
            self._set_explicit(other._explicit)
        if self._feats and feats.shape[1] != self._tensors()[0].shape[1]:
            raise ShapeError("RetrievalAccumulator.merge: the two accumulators hold features of different widths")
        ids = ids.clone()
        if not self._explicit:
            ids[:, 3] += self._count
        self._feats.append(feats.clone())
        self._ids.append(ids)
        self._count += len(feats)
        self._cache = None
        return self

    def to(self, device: torch.device | str) -> RetrievalAccumulator:
        """Set the device :meth:`sync` communicates on (storage stays on the CPU); nccl needs a CUDA device."""
        self._comm_device = torch.device(device)
        return self

    def sync(self) -> RetrievalAccumulator:
        """All-gather every process's samples (no-op when not distributed); afterwards every process holds all."""
        if not is_dist_avail_and_initialized():
            return self
        import torch.distributed as dist

        device = self._comm_device
        if dist.get_backend() == "nccl" and device.type != "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        world = get_world_size()
        feats, ids = self._tensors()
        explicit = -1 if self._explicit is None else int(self._explicit)
        header = torch.tensor([len(feats), feats.shape[1], explicit], dtype=torch.long, device=device)
        headers = [torch.empty_like(header) for _ in range(world)]
        dist.all_gather(headers, header)
        sizes = [int(h[0]) for h in headers]
        widths = {int(h[1]) for h in headers if int(h[0]) > 0}
        modes = {int(h[2]) for h in headers if int(h[2]) >= 0}
        if len(widths) > 1 or len(modes) > 1:
            raise ShapeError(
                f"RetrievalAccumulator.sync: processes disagree on the feature width {sorted(widths)} or on passing "
                "index= (every process must do the same)"
            )
        width = widths.pop() if widths else 0
        longest = max(sizes)
        if longest == 0:
            return self
        pad_f = torch.zeros(longest, width, dtype=self.dtype, device=device)
        pad_i = torch.zeros(longest, 4, dtype=torch.long, device=device)
        if len(feats):
            pad_f[: len(feats)] = feats.to(device)
            pad_i[: len(ids)] = ids.to(device)
        all_f = [torch.empty_like(pad_f) for _ in range(world)]
        all_i = [torch.empty_like(pad_i) for _ in range(world)]
        dist.all_gather(all_f, pad_f)
        dist.all_gather(all_i, pad_i)
        explicit_mode = modes == {1}
        offset = 0
        out_f, out_i = [], []
        for r in range(world):
            f, i = all_f[r][: sizes[r]].cpu(), all_i[r][: sizes[r]].cpu()
            if not explicit_mode:
                i[:, 3] += offset  # arrival order within a process, processes by rank
            offset += sizes[r]
            out_f.append(f)
            out_i.append(i)
        self._feats, self._ids = [torch.cat(out_f)], [torch.cat(out_i)]
        self._count = offset
        self._explicit = explicit_mode if modes else None
        self._cache = None
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The samples (features, ids, indices) as tensors, for checkpoints."""
        feats, ids = self._tensors()
        return {
            "features": feats.clone(),
            "ids": ids.clone(),
            "explicit_index": torch.tensor(-1 if self._explicit is None else int(self._explicit)),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        if set(state) != {"features", "ids", "explicit_index"}:
            raise KeyError(f"RetrievalAccumulator: expected keys features, ids, explicit_index; got {sorted(state)}")
        self.reset()
        feats, ids = state["features"].to("cpu", self.dtype), state["ids"].to("cpu", torch.long)
        if len(feats):
            self._feats, self._ids = [feats.clone()], [ids.clone()]
        self._count = len(feats)
        flag = int(state["explicit_index"])
        self._explicit = None if flag < 0 else bool(flag)

    # -- evaluation -------------------------------------------------------------------------------------------------

    def _evaluate(self) -> tuple[RankResult, torch.Tensor, dict[str, torch.Tensor]]:
        if self._cache is not None:
            return self._cache
        feats, ids = self._tensors()
        order = torch.argsort(ids[:, 2], stable=True, descending=True)  # queries first among equal indices
        order = order[torch.argsort(ids[order, 3], stable=True)]
        feats, ids = feats[order], ids[order]
        if len(ids):
            keep = torch.ones(len(ids), dtype=torch.bool)
            # one copy of each (index, is_query) (padding samplers repeat samples); a query and a gallery item may
            # share an index (e.g. separate query and gallery loaders, or the query kept in the gallery)
            keep[1:] = (ids[1:, 3] != ids[:-1, 3]) | (ids[1:, 2] != ids[:-1, 2])
            feats, ids = feats[keep], ids[keep]
        is_q = ids[:, 2].bool()
        if not bool(is_q.any()) or bool(is_q.all()):
            raise DataFormatError(
                f"RetrievalAccumulator: need queries and gallery items; got {int(is_q.sum())} queries and "
                f"{int((~is_q).sum())} gallery items (check is_query)"
            )
        q, g = feats[is_q], feats[~is_q]
        dist = pairwise_distance(q, g, self.metric)
        if self.rerank:
            dist = re_ranking(
                dist,
                pairwise_distance(q, q, self.metric),
                pairwise_distance(g, g, self.metric),
                k1=self.k1,
                k2=self.k2,
                lambda_value=self.lambda_value,
            )
        qi, gi = ids[is_q], ids[~is_q]
        result = evaluate_rank(dist, qi[:, 0], gi[:, 0], qi[:, 1], gi[:, 1], max_rank=max(self.max_rank, *_RANKS))
        info = {
            "q_pids": qi[:, 0],
            "q_camids": qi[:, 1],
            "q_index": qi[:, 3],
            "g_pids": gi[:, 0],
            "g_camids": gi[:, 1],
            "g_index": gi[:, 3],
        }
        self._cache = (result, dist, info)
        return self._cache

    def compute(self) -> dict[str, float]:
        """The metrics as floats.

        Returns:
            ``rank1``, ``rank5``, ``rank10``, ``rank20``, ``mAP``, ``mINP`` (fractions in ``[0, 1]``),
            ``num_valid_queries`` and ``num_skipped_queries`` (counts).
        """
        result = self._evaluate()[0]
        out = {f"rank{k}": result.rank(min(k, len(result.cmc))) for k in _RANKS}
        out.update(
            mAP=float(result.mAP),
            mINP=float(result.mINP),
            num_valid_queries=float(result.num_valid_queries),
            num_skipped_queries=float(result.num_skipped_queries),
        )
        return out

    def result(self) -> RankResult:
        """The full :class:`RankResult` (CMC curve of length ``min(max_rank, G)``)."""
        r = self._evaluate()[0]
        return RankResult(
            cmc=r.cmc[: self.max_rank].copy(),
            mAP=r.mAP,
            mINP=r.mINP,
            num_valid_queries=r.num_valid_queries,
            num_skipped_queries=r.num_skipped_queries,
        )

    def distmat(self) -> torch.Tensor:
        """The ``(Q, G)`` distances evaluated (re-ranked when ``rerank``), rows and columns in index order."""
        return self._evaluate()[1]

    def ids(self) -> dict[str, torch.Tensor]:
        """Identities, cameras and sample indices of the rows (``q_*``) and columns (``g_*``) of :meth:`distmat`."""
        return dict(self._evaluate()[2])
