"""Re-ID figures: CMC curves and a ranked-gallery image (matplotlib is imported inside each function).

Both return PNG bytes; callers write them atomically (:func:`pickwise.utils.io.atomic_write_bytes`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["cmc_figure", "ranked_gallery_figure"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any, dpi: int = 100) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def cmc_figure(
    curves: Mapping[str, Sequence[float]],
    *,
    max_rank: int = 20,
    title: str = "CMC",
    errors: Mapping[str, Sequence[float]] | None = None,
) -> bytes:
    """CMC curves (matching rate in % against rank 1..``max_rank``), one line per label, optional error bands.

    Args:
        curves: ``label -> cmc`` with ``cmc[k-1]`` the rank-k matching rate as a fraction.
        max_rank: Last rank drawn.
        title: Figure title.
        errors: ``label -> standard error`` per rank (fractions), drawn as a shaded band.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for label, cmc in curves.items():
        values = np.asarray(cmc, dtype=float)[:max_rank] * 100.0
        ranks = np.arange(1, len(values) + 1)
        (line,) = ax.plot(ranks, values, marker="o", markersize=2.5, linewidth=1.2, label=label)
        if errors is not None and label in errors:
            err = np.asarray(errors[label], dtype=float)[: len(values)] * 100.0
            ax.fill_between(ranks, values - err, values + err, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_xlim(1, max_rank)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def ranked_gallery_figure(
    queries: Sequence[np.ndarray],
    galleries: Sequence[Sequence[np.ndarray]],
    matches: Sequence[Sequence[bool]],
    *,
    query_labels: Sequence[str] | None = None,
    gallery_labels: Sequence[Sequence[str]] | None = None,
    title: str = "",
) -> bytes:
    """One row per query: the query frame, then its top-ranked gallery frames framed green (match) or red (not).

    Args:
        queries: One ``uint8 [H, W, 3]`` frame per query.
        galleries: Per query, the frames of its top-k gallery tracklets in rank order.
        matches: Per query, whether each of those is the query's identity.
        query_labels: Text under each query (e.g. ``"pid 3 / cam 1"``).
        gallery_labels: Text under each gallery frame (e.g. the distance).
        title: Figure title.
    """
    plt = _pyplot()
    rows = max(1, len(queries))
    cols = 1 + max((len(g) for g in galleries), default=0)
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 2.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for r, query in enumerate(queries):
        ax = axes[r, 0]
        ax.imshow(query)
        for spine in ax.spines.values():
            spine.set_visible(True)
            spine.set_edgecolor("black")
            spine.set_linewidth(2)
        ax.set_xlabel(query_labels[r] if query_labels else "query", fontsize=6)
        for c, (frame, hit) in enumerate(zip(galleries[r], matches[r])):
            ax = axes[r, c + 1]
            ax.imshow(frame)
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_edgecolor("#1a9e1a" if hit else "#d62020")
                spine.set_linewidth(3)
            if gallery_labels:
                ax.set_xlabel(gallery_labels[r][c], fontsize=6)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _png(fig, dpi=90)
