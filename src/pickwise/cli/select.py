"""``pickwise select``: rank candidate models for a dataset with EMMS, LogME and the other metrics."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError
from ._format import format_table

__all__ = ["add_parser", "run_select"]


def add_parser(subparsers: Any) -> None:
    """Register ``pickwise select``."""
    p = subparsers.add_parser(
        "select",
        help="rank candidate models for a dataset (EMMS, LogME, ...)",
        description="Score every candidate model's features on a dataset with transferability metrics and print "
        "a ranked table; writes select.json (and select.png with --verify).",
    )
    p.add_argument("--data", required=True, help="dataset name (pickwise datasets) or image folder path")
    p.add_argument("--split", default="train", help="split scored by the metrics (default: train)")
    p.add_argument("--subset", type=int, default=None, help="score a class-stratified subset of N samples")
    p.add_argument(
        "--models",
        required=True,
        help="comma-separated candidates: registered names, .onnx paths, timm:NAME, torchvision:NAME",
    )
    p.add_argument("--pretrained", action="store_true", help="load the registered models' pretrained weights")
    p.add_argument(
        "--metrics",
        default="emms,logme,knn_accuracy",
        help="comma-separated metric names (default: emms,logme,knn_accuracy)",
    )
    p.add_argument(
        "--encoder",
        default="minilm",
        help="label encoder(s) for EMMS, comma-separated: minilm, hashing, hashing:DIM, hf:MODEL",
    )
    p.add_argument("--template", default=None, help="prompt template for class names, e.g. 'a photo of a {}.'")
    p.add_argument(
        "--verify",
        nargs="?",
        const="probe",
        choices=["probe"],
        default=None,
        help="measure real transfer with a linear probe (train split -> test split) and report "
        "each metric's weighted tau against it",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-dir", default=None, help="feature and label-embedding cache directory")
    p.add_argument("--output-dir", default="runs/select", help="where select.json / select.png are written")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    result = run_select(args)
    print(result["table"])
    print(f"recommended model: {result['recommended']} (by {result['metrics'][0]})")
    if result.get("verify"):
        rows = [[m, v["weighted_tau"], v["top1_regret"]] for m, v in result["verify"]["evaluation"].items()]
        print(format_table(["metric", "weighted_tau", "top1_regret"], rows))
    print(f"wrote {result['json_path']}")
    return 0


def _probe_accuracy(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> float:
    x, y = train[0].astype(np.float64), train[1]
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 0, std, 1.0)
    xs = (x - mean) / std
    classes = np.unique(y)
    targets = (y[:, None] == classes[None, :]).astype(np.float64)
    a = xs.T @ xs
    a.flat[:: a.shape[0] + 1] += 1e-2 * x.shape[0]
    w = np.linalg.solve(a, xs.T @ (targets - targets.mean(0)))
    pred = ((test[0] - mean) / std) @ w
    return float(np.mean(classes[pred.argmax(1)] == test[1]))


def run_select(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``pickwise select`` for parsed ``args``; returns the JSON-able result (also written to disk)."""
    from ..data import create_dataset
    from ..selection import LabelEmbedder, evaluate_ranking, get_metric
    from ..selection.features import extract_features

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    metrics = [get_metric(m.strip()).name for m in args.metrics.split(",") if m.strip()]
    if not models or not metrics:
        raise InvalidParameterError("select: --models and --metrics must name at least one entry each.")
    for name in metrics:
        if get_metric(name).input not in ("features", "label_embeddings"):
            raise InvalidParameterError(
                f"select: metric '{name}' needs source-head outputs, which `pickwise select` does not extract yet; "
                "use the Python API (pickwise.selection) for it."
            )
    dataset = create_dataset(args.data, args.split, subset=args.subset)
    cache = Path(args.cache_dir) if args.cache_dir else None
    label_emb = None
    if "emms" in metrics:
        embedder = LabelEmbedder(
            [e.strip() for e in args.encoder.split(",") if e.strip()],
            template=args.template,
            cache_dir=cache / "labels" if cache else None,
        )
        class_emb = embedder.embed_classes(list(dataset.info.class_names))
        label_emb = {i: class_emb[i] for i in range(class_emb.shape[0])}
    progress = not args.no_progress
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for model in models:
        feats[model] = extract_features(
            model,
            dataset,
            pretrained=args.pretrained,
            batch_size=args.batch_size,
            device=args.device,
            cache_dir=cache / "features" if cache else None,
            progress=progress,
        )
    scores: dict[str, dict[str, float]] = {m: {} for m in metrics}
    seconds: dict[str, dict[str, float]] = {m: {} for m in metrics}
    for metric in metrics:
        spec = get_metric(metric)
        for model, (x, y) in feats.items():
            t0 = time.perf_counter()
            if spec.input == "label_embeddings":
                value = spec.func(x, label_emb, labels=y)
            else:
                value = spec.func(x, y)
            seconds[metric][model] = time.perf_counter() - t0
            scores[metric][model] = float(value)
    first = get_metric(metrics[0])
    order = sorted(models, key=lambda m: scores[metrics[0]][m], reverse=first.higher_is_better)
    headers = ["rank", "model"] + [f"{m}" for m in metrics] + [f"{m} s" for m in metrics]
    rows = [
        [i + 1, m] + [scores[k][m] for k in metrics] + [seconds[k][m] for k in metrics] for i, m in enumerate(order)
    ]
    result: dict[str, Any] = {
        "data": args.data,
        "split": args.split,
        "num_samples": len(dataset),
        "models": models,
        "metrics": metrics,
        "encoder": args.encoder,
        "scores": scores,
        "seconds": seconds,
        "ranking": order,
        "recommended": order[0],
        "table": format_table(headers, rows),
    }
    if args.verify:
        test = create_dataset(args.data, "test")
        acc = {}
        for model in models:
            test_feats = extract_features(
                model,
                test,
                pretrained=args.pretrained,
                batch_size=args.batch_size,
                device=args.device,
                cache_dir=cache / "features" if cache else None,
                progress=progress,
            )
            acc[model] = _probe_accuracy(feats[model], test_feats)
        evaluation = {}
        if len(models) >= 2:
            for metric in metrics:
                evaluation[metric] = evaluate_ranking(
                    scores[metric], acc, higher_is_better=get_metric(metric).higher_is_better
                )
        result["verify"] = {"mode": args.verify, "accuracy": acc, "evaluation": evaluation}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "select.json"
    result["json_path"] = str(json_path)
    json_path.write_text(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2) + "\n")
    if args.verify:
        _figure(result, out / "select.png")
    return result


def _figure(result: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - optional dependency
        return
    acc = result["verify"]["accuracy"]
    metrics = result["metrics"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        xs = [result["scores"][metric][m] for m in result["models"]]
        ys = [acc[m] for m in result["models"]]
        ax.scatter(xs, ys)
        for m, x, y in zip(result["models"], xs, ys):
            ax.annotate(m, (x, y), fontsize=7)
        tau = result["verify"]["evaluation"].get(metric, {}).get("weighted_tau", float("nan"))
        ax.set_title(f"{metric} (tau_w={tau:.2f})")
        ax.set_xlabel("score")
        ax.set_ylabel("probe accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
