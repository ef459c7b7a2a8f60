"""Figures of active domain adaptation (matplotlib imported inside each function; PNGs written atomically).

- :func:`selection_figure`: the pixels selected in each round over a few target images;
- :func:`budget_curves`: mIoU against the labelled fraction, one line per strategy (mean +- standard error);
- :func:`per_class_bars`: per-class IoU of a few methods side by side.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ...utils.io import atomic_write_bytes

__all__ = ["budget_curves", "per_class_bars", "selection_figure"]

_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]  # IMAGENET_MEAN / STD (the loaders' normalisation)
_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
_ROUND_COLOURS = ("#ff1744", "#ffea00", "#00e5ff", "#76ff03", "#d500f9", "#ff9100")


def _save(fig: Any, path: str | Path, dpi: int = 90) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def selection_figure(run_dir: str | Path, pool: Any, path: str | Path, max_images: int = 4) -> Path | None:
    """Target images with the pixels picked in each round marked (one colour per round); None if no selection."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .oracle import load_selection

    files = sorted((Path(run_dir) / "selection").glob("round_*.pt"))
    if not files:
        return None
    states = [load_selection(f) for f in files]
    n = min(max_images, states[-1].labelled.shape[0])
    fig, axes = plt.subplots(1, n, figsize=(3 * n, 3), squeeze=False)
    for i in range(n):
        img = (pool[i][0].float() * _STD + _MEAN).clamp(0, 1).permute(1, 2, 0).numpy()
        ax = axes[0, i]
        ax.imshow(img, interpolation="nearest")
        prev = torch.zeros_like(states[0].labelled[i])
        for r, st in enumerate(states):
            new = st.labelled[i] & ~prev
            ys, xs = new.nonzero().T.tolist() if bool(new.any()) else ([], [])
            ax.scatter(
                xs,
                ys,
                s=4,
                c=_ROUND_COLOURS[r % len(_ROUND_COLOURS)],
                marker="s",
                linewidths=0,
                label=f"round {r + 1}" if i == 0 else None,
            )
            prev = st.labelled[i]
        ax.set_axis_off()
        ax.set_title(f"target image {i}", fontsize=8)
    if n:
        axes[0, 0].legend(fontsize=6, loc="lower left", markerscale=3)
    return _save(fig, path)


def budget_curves(
    rows: Sequence[Mapping[str, Any]], path: str | Path, references: Mapping[str, float] | None = None, title: str = ""
) -> Path:
    """Target mIoU against the labelled fraction, one line per method.

    Args:
        rows: ``{"method", "labelled_fraction", "miou", "sem"}`` per point (fractions, not percents).
        path: Output PNG.
        references: Horizontal lines (e.g. ``{"source only": 0.31, "target supervised": 0.72}``).
        title: Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for m in methods:
        pts = sorted((r for r in rows if r["method"] == m), key=lambda r: r["labelled_fraction"])
        xs = [100 * r["labelled_fraction"] for r in pts]
        ys = [100 * r["miou"] for r in pts]
        es = [100 * (r.get("sem") or 0.0) for r in pts]
        ax.errorbar(xs, ys, yerr=es, marker="o", ms=4, capsize=3, label=m)
    for i, (name, value) in enumerate((references or {}).items()):
        ax.axhline(100 * value, ls="--", lw=1, color=f"C{len(methods) + i}", label=name)
    ax.set_xlabel("labelled target pixels (%)")
    ax.set_ylabel("target mIoU (%)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def per_class_bars(
    per_class: Mapping[str, Sequence[float | None]], class_names: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Grouped bars of per-class IoU (``None``/NaN drawn as 0) for each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(class_names)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * k + 2), 3.4))
    width = 0.8 / max(len(per_class), 1)
    for j, (name, values) in enumerate(per_class.items()):
        vals = [100 * v if v is not None and v == v else 0.0 for v in values]
        ax.bar([i + (j - (len(per_class) - 1) / 2) * width for i in range(k)], vals, width, label=name)
    ax.set_xticks(range(k))
    ax.set_xticklabels(class_names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("IoU (%)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
