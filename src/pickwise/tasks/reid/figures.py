"""Re-ID figures: CMC curves (matplotlib, imported inside) and a ranked-gallery image (PIL).

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
    border: int = 3,
) -> bytes:
    """A ranked-gallery image: per query, its frame then the top-ranked gallery frames, framed green or red.

    One row per query: the query frame (black frame), then its top-ranked gallery frames framed green (same
    identity) or red (different), with an optional caption under each; drawn with PIL (fast, no matplotlib).

    Args:
        queries: One ``uint8 [H, W, 3]`` frame per query (all frames the same size).
        galleries: Per query, the frames of its top-k gallery tracklets in rank order.
        matches: Per query, whether each of those is the query's identity.
        query_labels: Caption under each query (e.g. ``"pid 3 cam 1"``).
        gallery_labels: Caption under each gallery frame (e.g. the distance).
        title: Line of text above the grid.
        border: Frame width in pixels.
    """
    from PIL import Image, ImageDraw

    if not queries:
        raise ValueError("ranked_gallery_figure: no queries")
    h, w = queries[0].shape[:2]
    cols = 1 + max((len(g) for g in galleries), default=0)
    gap, caption, top = 6, 12, 14 if title else 2
    cell_w, cell_h = w + 2 * border + gap, h + 2 * border + caption
    canvas = Image.new("RGB", (cols * cell_w + gap, top + len(queries) * cell_h + gap), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap, 1), title, fill="black")
    colours: dict[bool | None, tuple[int, int, int]] = {None: (0, 0, 0), True: (26, 158, 26), False: (214, 32, 32)}
    for r, query in enumerate(queries):
        row: list[tuple[np.ndarray, bool | None, str]] = [(query, None, query_labels[r] if query_labels else "query")]
        for c, (frame, match) in enumerate(zip(galleries[r], matches[r])):
            row.append((frame, bool(match), gallery_labels[r][c] if gallery_labels else ""))
        for c, (frame, hit, text) in enumerate(row):
            x0 = gap + c * cell_w + (gap if c else 0) // 2
            y0 = top + r * cell_h
            draw.rectangle([x0, y0, x0 + w + 2 * border - 1, y0 + h + 2 * border - 1], fill=colours[hit])
            canvas.paste(Image.fromarray(np.ascontiguousarray(frame[:h, :w, :3])), (x0 + border, y0 + border))
            if text:
                draw.text((x0, y0 + h + 2 * border), text[: max(4, (w + 2 * border) // 6)], fill="black")
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
