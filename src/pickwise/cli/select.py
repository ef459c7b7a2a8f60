"""``pickwise select``: rank candidate models for a dataset with EMMS, LogME and the other metrics."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.io import atomic_write_text
from ._format import format_table

__all__ = ["add_finetune_arguments", "add_parser", "finetune_options", "run_select", "zoo_root"]


def add_parser(subparsers: Any) -> None:
    """Register ``pickwise select``."""
    p = subparsers.add_parser(
        "select",
        help="rank candidate models for a dataset (EMMS, LogME, ...)",
        description="Score every candidate model's features on a dataset with transferability metrics and print "
        "a ranked table; writes select.json (and select.png with --verify).",
        epilog="examples:\n  pickwise select --data mnist-5k --subset 1000 --zoo --metrics emms,logme,knn_accuracy\n"
        "  pickwise select --data textures --models zoo:resnet20-bn-textures,ckpt:runs/my-run --verify finetune",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="dataset name (pickwise datasets) or image folder path")
    p.add_argument("--split", default="train", help="split scored by the metrics (default: train)")
    p.add_argument("--subset", type=int, default=None, help="score a class-stratified subset of N samples")
    p.add_argument(
        "--models",
        default=None,
        help="comma-separated candidates: registered names, zoo:NAME (built zoo entry), ckpt:RUN_DIR (a finished "
        "pickwise run), .onnx paths, timm:NAME, torchvision:NAME",
    )
    p.add_argument(
        "--zoo",
        nargs="?",
        const="",
        default=None,
        metavar="ROOT",
        help="add every built zoo entry as a candidate (ROOT default: $PICKWISE_ZOO_DIR or ~/.cache/pickwise/zoo)",
    )
    p.add_argument("--zoo-root", default=None, help="zoo folder for zoo:NAME candidates (default: the --zoo ROOT)")
    p.add_argument("--pretrained", action="store_true", help="load the registered models' pretrained weights")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="resize target images to this size for every candidate (default: native size; ImageNet-pretrained "
        "candidates get tiny images upsampled to 64 px)",
    )
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
        choices=["probe", "finetune"],
        default=None,
        help="measure real transfer (train split -> test split) with a linear probe on the features (probe, the "
        "default) or by fine-tuning every candidate (finetune), and report each metric's weighted tau against it",
    )
    p.add_argument("--test-subset", type=int, default=None, help="evaluate --verify on N test samples (default: all)")
    add_finetune_arguments(p)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-dir", default=None, help="feature and label-embedding cache directory")
    p.add_argument("--output-dir", default="runs/select", help="where select.json / select.png are written")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets and of fine-tuning")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=_handler)


def add_finetune_arguments(p: argparse.ArgumentParser, *, subset: int = 1000) -> None:
    """Fine-tuning options shared by ``select --verify finetune`` and ``transfer``."""
    g = p.add_argument_group("fine-tuning")
    g.add_argument("--finetune-epochs", type=int, default=1, help="fine-tuning epochs (default: 1)")
    g.add_argument(
        "--finetune-subset",
        type=int,
        default=subset,
        help=f"fine-tune on N target training samples (default: {subset}; 0: all)",
    )
    g.add_argument("--finetune-steps", type=int, default=None, help="stop fine-tuning after N optimizer steps")
    g.add_argument("--finetune-lr", type=float, default=0.02, help="peak SGD learning rate (default: 0.02)")
    g.add_argument("--finetune-batch-size", type=int, default=32, help="fine-tuning batch size (default: 32)")


def finetune_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for :func:`pickwise.selection.pipeline.finetune_candidate` from parsed ``args``."""
    subset = args.finetune_subset if args.finetune_subset and args.finetune_subset > 0 else None
    return {
        "epochs": args.finetune_epochs,
        "max_steps": args.finetune_steps,
        "lr": args.finetune_lr,
        "batch_size": args.finetune_batch_size,
        "train_subset": subset,
        "test_subset": args.test_subset or None,
        "seed": args.seed,
        "device": args.device,
        "progress": not args.no_progress,
        "image_size": args.image_size,
        "pretrained": args.pretrained,
    }


def zoo_root(args: argparse.Namespace) -> str | None:
    """The zoo folder named by ``--zoo-root`` or ``--zoo ROOT`` (None: the default)."""
    return args.zoo_root or args.zoo or None


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
    from ..selection import LabelEmbedder, evaluate_ranking, get_metric
    from ..selection.features import extract_features, preprocess_spec, resolve_candidate
    from ..selection.pipeline import (
        candidate_list,
        finetune_candidate,
        load_split,
        metric_names,
        score_candidates,
    )

    root = zoo_root(args)
    models = candidate_list(args.models, zoo=args.zoo is not None, zoo_root=root)
    metrics = metric_names(args.metrics)
    dataset = load_split(args.data, args.split, args.subset, seed=getattr(args, "seed", 0))
    cache = Path(args.cache_dir) if args.cache_dir else None
    candidates = {m: resolve_candidate(m, pretrained=args.pretrained, zoo_root=root) for m in models}  # fail fast
    class_emb = None
    if any(get_metric(m).input == "label_embeddings" for m in metrics):
        embedder = LabelEmbedder(
            [e.strip() for e in args.encoder.split(",") if e.strip()],
            template=args.template,
            cache_dir=cache / "labels" if cache else None,
        )
        class_emb = embedder.embed_classes(list(dataset.info.class_names))
    progress = not args.no_progress
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    preprocessing: dict[str, dict[str, Any]] = {}
    feature_seconds: dict[str, float] = {}
    for model in models:
        t0 = time.perf_counter()
        feats[model] = extract_features(
            model,
            dataset,
            batch_size=args.batch_size,
            device=args.device,
            image_size=args.image_size,
            cache_dir=cache / "features" if cache else None,
            progress=progress,
            candidate=candidates[model],
        )
        feature_seconds[model] = time.perf_counter() - t0
        preprocessing[model] = preprocess_spec(candidates[model], dataset, image_size=args.image_size)
    scores, seconds = score_candidates(feats, metrics, class_embeddings=class_emb)
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
        "feature_seconds": feature_seconds,
        "preprocessing": preprocessing,
        "ranking": order,
        "recommended": order[0],
        "table": format_table(headers, rows),
    }
    if args.verify:
        acc: dict[str, float] = {}
        details: dict[str, Any] = {}
        if args.verify == "finetune":
            opts = finetune_options(args)
            for model in models:
                out = finetune_candidate(model, args.data, zoo_root=root, **opts)
                acc[model] = out["acc"]
                details[model] = {k: v for k, v in out.items() if k != "preprocessing"}
        else:
            test = load_split(args.data, "test", args.test_subset, seed=getattr(args, "seed", 0))
            for model in models:
                test_feats = extract_features(
                    model,
                    test,
                    batch_size=args.batch_size,
                    device=args.device,
                    image_size=args.image_size,
                    cache_dir=cache / "features" if cache else None,
                    progress=progress,
                    candidate=candidates[model],
                )
                acc[model] = _probe_accuracy(feats[model], test_feats)
        evaluation = {}
        if len(models) >= 2:
            for metric in metrics:
                evaluation[metric] = evaluate_ranking(
                    scores[metric], acc, higher_is_better=get_metric(metric).higher_is_better
                )
        result["verify"] = {"mode": args.verify, "accuracy": acc, "evaluation": evaluation}
        if details:
            result["verify"]["finetune"] = details
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "select.json"
    result["json_path"] = str(json_path)
    atomic_write_text(json_path, json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2) + "\n")
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
        ax.set_ylabel(f"{result['verify']['mode']} accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
