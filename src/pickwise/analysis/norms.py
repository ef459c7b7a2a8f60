"""Which normalizer each layer learns to pick, versus depth and versus batch size (the SN papers' ratio figures)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..nn.norm.report import norm_ratio_report, summarize_ratios
from ..utils.io import atomic_write_json
from .runs import find_runs, load_run

__all__ = ["analyze_norm_runs", "plot_ratios_vs_batch_size", "plot_ratios_vs_depth"]

_COLORS = {"in": "#4C72B0", "ln": "#55A868", "bn": "#C44E52", "gn": "#8172B2"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ratios_vs_depth(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Stacked bars of the mean and variance weights of every learned layer, in depth order."""
    plt = _pyplot()
    names = rows[0]["normalizers"]
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.35 * len(rows) + 2), 5.5), sharex=True)
    for ax, key in zip(axes, ("mean", "var")):
        bottom = [0.0] * len(rows)
        for name in names:
            values = [r[key][name] for r in rows]
            ax.bar(range(len(rows)), values, bottom=bottom, color=_COLORS.get(name), label=name.upper(), width=0.85)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_ylabel(f"{'mean' if key == 'mean' else 'variance'} weight")
        ax.set_ylim(0, 1)
    axes[0].legend(ncol=len(names), loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    axes[0].set_title(title, loc="left")
    axes[1].set_xlabel("layer (input → output)")
    axes[1].set_xticks(range(len(rows)))
    axes[1].set_xticklabels([str(i) for i in range(len(rows))], fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_ratios_vs_batch_size(points: dict[str, list[tuple[int, dict[str, dict[str, float]]]]], path: Path) -> None:
    """Average weight of each normalizer (over layers) versus batch size, one panel per layer type (SN, SSN, EN)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(points), figsize=(4.5 * len(points), 3.6), squeeze=False)
    for ax, (norm, series) in zip(axes[0], sorted(points.items())):
        series = sorted(series)
        sizes = [b for b, _ in series]
        for name in series[0][1]["mean"]:
            for key, style in (("mean", "-"), ("var", "--")):
                ax.plot(
                    sizes,
                    [s[key][name] for _, s in series],
                    style,
                    marker="o",
                    color=_COLORS.get(name),
                    label=f"{name.upper()} {key}",
                )
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(s) for s in sizes])
        ax.set_xlabel("batch size")
        ax.set_ylabel("average weight over layers")
        ax.set_ylim(0, 1)
        ax.set_title(norm.upper())
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def calibrate_dynamic_ratios(model: Any, cfg: Any, num_images: int = 512) -> bool:
    """Run test images through a model whose layers pick per sample (EN).

    Afterwards their ``ratios()`` report the average over those ``num_images`` images. Returns False when the model
    has no such layer.
    """
    import torch

    if not any(callable(getattr(m, "sample_ratios", None)) for m in model.modules()):
        return False
    from ..data import create_dataset

    size = (cfg.data.image_size, cfg.data.image_size) if cfg.data.image_size else None
    test = create_dataset(cfg.data.name, "test", root=cfg.data.root, image_size=size)
    images, _ = test.tensors(torch.arange(min(num_images, len(test))))
    with torch.no_grad():
        model.eval()(images)
    return True


def analyze_norm_runs(paths: list[str | Path], output_dir: str | Path | None = None) -> dict[str, Any]:
    """Ratio reports and figures for every run with learned normalizers under ``paths``.

    Writes ``norm_ratios.json``, one ``ratios_vs_depth_<run>.png`` per run and, when runs of one layer type differ in
    batch size, ``ratios_vs_batch_size.png`` into ``output_dir`` (default: ``<first path>/analysis``).

    Returns:
        ``{"runs": [...], "figures": [...]}`` with the per-run reports and the written figure paths.
    """
    runs = find_runs(list(paths))
    out = Path(output_dir) if output_dir else Path(paths[0]) / "analysis"
    records, figures = [], []
    by_norm: dict[str, list[tuple[int, dict[str, dict[str, float]]]]] = defaultdict(list)
    for run_dir in runs:
        model, cfg, results = load_run(run_dir)
        calibrate_dynamic_ratios(model, cfg)
        rows = norm_ratio_report(model)
        if not rows:
            continue
        summary = summarize_ratios(rows)
        records.append(
            {
                "run": str(run_dir),
                "norm": cfg.model.norm,
                "batch_size": cfg.data.batch_size,
                "metrics": results.get("metrics", {}),
                "summary": summary,
                "layers": rows,
            }
        )
        figure = out / f"ratios_vs_depth_{run_dir.name}.png"
        plot_ratios_vs_depth(rows, figure, f"{cfg.model.name} {cfg.model.norm.upper()} (batch {cfg.data.batch_size})")
        figures.append(str(figure))
        by_norm[cfg.model.norm].append((cfg.data.batch_size, summary))
    varying = {n: s for n, s in by_norm.items() if len({b for b, _ in s}) > 1}
    if varying:
        figure = out / "ratios_vs_batch_size.png"
        plot_ratios_vs_batch_size(varying, figure)
        figures.append(str(figure))
    report = {"runs": records, "figures": figures}
    atomic_write_json(out / "norm_ratios.json", report)
    return report
