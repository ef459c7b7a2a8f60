"""Figures for learned-ISP results: RAW preview, classical ISP, model and target side by side, with error maps.

matplotlib is imported inside the functions (optional dependency). Figures are returned as PNG bytes and written
atomically by the caller (:func:`pickwise.utils.io.atomic_write_bytes`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["comparison_figure", "raw_preview", "to_image"]


def to_image(x: torch.Tensor) -> np.ndarray:
    """RGB tensor ``[3, H, W]`` in [0, 1] → ``uint8 [H, W, 3]``."""
    return (x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def raw_preview(raw: torch.Tensor) -> torch.Tensor:
    """A quick look at packed RAW ``[4, h, w]``: (R, mean G, B) planes at the packed resolution, brightness-normalized.

    No white balance or tone curve: it shows what the network starts from (dark and green-tinted on real sensors).
    """
    rgb = torch.stack([raw[2], 0.5 * (raw[1] + raw[3]), raw[0]]).float()
    return (rgb / rgb.flatten().quantile(0.99).clamp_min(1e-6)).clamp(0, 1)


def comparison_figure(
    raw: torch.Tensor,
    panels: Sequence[tuple[str, torch.Tensor]],
    target: torch.Tensor,
    *,
    error_maps: bool = True,
    dpi: int = 80,
) -> bytes:
    """One row per example: RAW preview, each ``(title, rgb [3, H, W])`` panel and the target; optional error row.

    Args:
        raw: Packed RAW ``[4, h, w]``.
        panels: Named predictions (e.g. ``[("classical", ...), ("pynet_tiny", ...)]``), each ``[3, 2h, 2w]``.
        target: Ground truth ``[3, 2h, 2w]``.
        error_maps: Add a row with the per-pixel mean absolute error of each panel (same colour scale).
        dpi: Output resolution.

    Returns:
        PNG bytes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...metrics.image import psnr

    cols = 2 + len(panels)
    rows = 2 if error_maps else 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.3 * rows), squeeze=False)
    axes[0, 0].imshow(to_image(raw_preview(raw)))
    axes[0, 0].set_title("RAW (preview)", fontsize=8)
    errors = []
    for i, (title, pred) in enumerate(panels, start=1):
        value = float(psnr(pred.clamp(0, 1)[None].float(), target[None].float()))
        axes[0, i].imshow(to_image(pred))
        axes[0, i].set_title(f"{title}\n{value:.2f} dB", fontsize=8)
        errors.append((pred.clamp(0, 1) - target).abs().mean(0).cpu().numpy())
    axes[0, cols - 1].imshow(to_image(target))
    axes[0, cols - 1].set_title("target", fontsize=8)
    if error_maps:
        top = max(float(np.quantile(e, 0.99)) for e in errors) if errors else 1.0
        for i, err in enumerate(errors, start=1):
            axes[1, i].imshow(err, cmap="magma", vmin=0.0, vmax=max(top, 1e-6))
            axes[1, i].set_title("|error|", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
