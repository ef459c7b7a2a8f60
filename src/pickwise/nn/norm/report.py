"""Which normalizer each learned layer picks: a per-layer table of mixture weights (paper-style ratio analysis)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .registry import is_learned_norm

__all__ = ["learned_norm_layers", "norm_ratio_report", "summarize_ratios"]


def learned_norm_layers(model: nn.Module) -> list[tuple[str, Any]]:
    """``(qualified name, module)`` of every SN/SSN/EN layer, in forward-definition (depth) order.

    The modules are typed ``Any``: they are recognised by their interface (:func:`is_learned_norm`), not by class.
    """
    return [(name, m) for name, m in model.named_modules() if is_learned_norm(m)]


def norm_ratio_report(model: nn.Module) -> list[dict[str, Any]]:
    """One plain dict per learned normalizer layer, in depth order.

    Each row has ``layer`` (qualified name), ``depth`` (0-based index among learned layers), ``relative_depth``
    (0 … 1), ``type``, ``num_features``, ``normalizers``, ``mean`` and ``var`` (normalizer → weight), ``mean_pick`` and
    ``var_pick`` (the argmax normalizers) and ``mixed`` (True when the mean and variance picks differ, which no single
    standard layer can express).
    """
    layers = learned_norm_layers(model)
    rows = []
    for depth, (name, module) in enumerate(layers):
        ratios = module.ratios()
        row: dict[str, Any] = {
            "layer": name,
            "depth": depth,
            "relative_depth": depth / max(1, len(layers) - 1),
            "type": type(module).__name__,
            "num_features": int(getattr(module, "num_features", 0)),
            "normalizers": list(module.normalizers),
        }
        for key in ("mean", "var"):
            weights = torch.as_tensor(ratios[key]).detach().float().cpu()
            if weights.ndim > 1:  # per-sample ratios: average over samples
                weights = weights.reshape(-1, weights.shape[-1]).mean(0)
            row[key] = {n: float(w) for n, w in zip(module.normalizers, weights.tolist())}
            row[f"{key}_pick"] = module.normalizers[int(weights.argmax())]
        row["mixed"] = row["mean_pick"] != row["var_pick"]
        rows.append(row)
    return rows


def summarize_ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Average the weights over layers: ``{"mean": {normalizer: w}, "var": {...}, "both": {...}}``."""
    summary: dict[str, dict[str, float]] = {"mean": {}, "var": {}, "both": {}}
    if not rows:
        return summary
    names = rows[0]["normalizers"]
    for name in names:
        for key in ("mean", "var"):
            summary[key][name] = sum(r[key].get(name, 0.0) for r in rows) / len(rows)
        summary["both"][name] = (summary["mean"][name] + summary["var"][name]) / 2
    return summary
