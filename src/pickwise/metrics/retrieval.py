"""Retrieval evaluation for re-identification: CMC, mAP and mINP, exact and vectorized.

The protocol is the one of Market-1501/MARS as implemented by torchreid (``eval_market1501``) and fast-reid (mINP):
for each query, gallery items of the **same identity seen by the same camera** are removed (they would be trivial
matches of the same tracklet or camera view); a query with no remaining true match is skipped and counted. For a
query with gallery ranked by ascending distance and binary relevance ``r_1..r_n`` after the removal:

- CMC: ``cmc_q(k) = 1[Σ_{j≤k} r_j ≥ 1]``, averaged over valid queries (rank-1 = ``cmc(1)``);
- AP: ``(1/R) Σ_k r_k · P@k`` with ``R = Σ r_k`` (precision at every true match), mAP its mean;
- INP (Ye et al., TPAMI 2021): ``R / (rank of the hardest true match)``, mINP its mean.

Ties in the distances are broken by gallery index (a stable sort), so results do not depend on the sorting algorithm.

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

from ..exceptions import DataFormatError, InvalidParameterError, ShapeError

__all__ = ["RankResult", "evaluate_rank"]


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

    Vectorized over chunks of ``chunk_size`` queries: memory is ``O(chunk_size × G)``, never ``Q × G × G``.

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
    dist = _as_numpy(distmat, "distmat").astype(np.float64, copy=False)
    qp, gp = _as_numpy(q_pids, "q_pids").reshape(-1), _as_numpy(g_pids, "g_pids").reshape(-1)
    qc, gc = _as_numpy(q_camids, "q_camids").reshape(-1), _as_numpy(g_camids, "g_camids").reshape(-1)
    if dist.ndim != 2:
        raise ShapeError(f"evaluate_rank: distmat must be (Q, G); got shape {dist.shape}")
    num_q, num_g = dist.shape
    if qp.shape[0] != num_q or qc.shape[0] != num_q:
        raise ShapeError(f"evaluate_rank: q_pids/q_camids need {num_q} entries; got {qp.shape[0]} and {qc.shape[0]}")
    if gp.shape[0] != num_g or gc.shape[0] != num_g:
        raise ShapeError(f"evaluate_rank: g_pids/g_camids need {num_g} entries; got {gp.shape[0]} and {gc.shape[0]}")
    for name, value in (("max_rank", max_rank), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidParameterError(f"evaluate_rank: {name} must be an integer >= 1; got {value!r}")
    if np.isnan(dist).any():
        raise DataFormatError("evaluate_rank: distmat contains NaN; check the features (a NaN embedding?)")
    max_rank = min(int(max_rank), num_g)
    cmc_sum = np.zeros(max_rank, dtype=np.float64)
    ap_sum = inp_sum = 0.0
    valid = 0
    for start in range(0, num_q, chunk_size):
        stop = min(start + chunk_size, num_q)
        order = np.argsort(dist[start:stop], axis=1, kind="stable")
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
