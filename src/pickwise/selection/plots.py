"""Figures of model selection: every metric's scores against the measured transfer accuracy."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_scores_vs_accuracy"]


def plot_scores_vs_accuracy(
    scores: Mapping[str, Mapping[str, float | None]],
    accuracy: Mapping[str, float | None],
    path: str | os.PathLike[str],
    *,
    metrics: Sequence[str] | None = None,
    evaluation: Mapping[str, Mapping[str, Any]] | None = None,
    ylabel: str = "accuracy",
) -> Path | None:
    """One scatter panel per metric (score on x, accuracy on y, candidates annotated) saved to ``path``.

    Candidates without a finite score or accuracy are left out of a panel. The title carries the metric's
    weighted tau from ``evaluation`` when given.

    Returns:
        ``path``, or ``None`` when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - optional dependency
        return None
    import math

    metrics = list(metrics or scores)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        pts = [
            (m, s, a)
            for m, s in scores[metric].items()
            if s is not None and math.isfinite(s) and (a := accuracy.get(m)) is not None and math.isfinite(a)
        ]
        ax.scatter([p[1] for p in pts], [p[2] for p in pts])
        for m, x, y in pts:
            ax.annotate(m, (x, y), fontsize=7)
        tau = ((evaluation or {}).get(metric) or {}).get("weighted_tau")
        ax.set_title(f"{metric} (tau_w={tau:.2f})" if tau is not None and math.isfinite(tau) else metric)
        ax.set_xlabel("score")
        ax.set_ylabel(ylabel)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
