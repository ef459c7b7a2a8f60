"""``pickwise reproduce selection``: EMMS, LogME and the baselines ranked against fine-tuned accuracy, in miniature.

Every zoo candidate (:mod:`pickwise.zoo`: source data, depth, width and normalizer differ, plus an untrained control
and the real ImageNet MobileNetV2) is scored on the training split of each embedded target by every metric that works
from features (EMMS with MiniLM F-Labels, LogME, NLEEP, H-score, shrinkage H-score, TransRate, GBC, SFDA, PARC, k-NN
and linear-probe accuracy), then fine-tuned on the target (short schedule: the ground truth). The job reports each
metric's weighted Kendall τ (τw) against the fine-tuned accuracy per target and on average, and the wall-clock of each
metric (features preloaded).

Resumable: features are cached, and every finished score table and fine-tune run is kept under ``--output-dir``
(``pieces/``), so an interrupted job restarts with the same command and only does what is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..cli._format import format_table
from ..utils.io import atomic_write_json, atomic_write_text

__all__ = ["DEFAULT_METRICS", "DEFAULT_TARGETS", "add_arguments", "run"]

DEFAULT_TARGETS = ("digits", "mnist-5k", "textures")
DEFAULT_METRICS = (
    "emms",
    "logme",
    "nleep",
    "h_score",
    "shrinkage_h_score",
    "transrate",
    "gbc",
    "sfda",
    "parc",
    "knn_accuracy",
    "linear_probe_accuracy",
)
# (full, quick) defaults
SIZES = {"score_subset": (1000, 500), "finetune_subset": (1000, 400), "test_subset": (1000, 400)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``pickwise reproduce selection``."""
    p.add_argument(
        "--quick",
        action="store_true",
        help="the quick zoo and smaller subsets (500 scored, 400 fine-tuned, 400 test images per target)",
    )
    p.add_argument("--zoo-root", default=None, help="zoo folder (default: $PICKWISE_ZOO_DIR or ~/.cache/pickwise/zoo)")
    p.add_argument(
        "--no-build",
        action="store_true",
        help="use the built zoo entries as they are (default: build missing entries first; quick: the quick zoo)",
    )
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help="comma-separated target datasets")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metrics (feature-based)")
    p.add_argument("--encoder", default="minilm", help="F-Label encoder(s) for EMMS (default: minilm)")
    p.add_argument("--score-subset", type=int, help="training images scored per target (default 1000; quick 500)")
    p.add_argument("--finetune-subset", type=int, help="training images fine-tuned on (default 1000; quick 400)")
    p.add_argument("--test-subset", type=int, help="test images per target (default 1000; quick 400)")
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--finetune-lr", type=float, default=0.02)
    p.add_argument("--finetune-batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="runs/reproduce-selection")
    p.add_argument("--no-progress", action="store_true")


def _resolve_sizes(args: argparse.Namespace) -> None:
    for key, (full, quick) in SIZES.items():
        if getattr(args, key, None) is None:
            setattr(args, key, quick if args.quick else full)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _load(path: Path, key: str) -> dict[str, Any] | None:
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if data.get("key") == key:
            return data
    return None


def _scores_for_target(
    args: argparse.Namespace, target: str, candidates: list[str], metrics: list[str], root: Path, out: Path
) -> dict[str, Any]:
    from ..selection import LabelEmbedder, get_metric
    from ..selection.features import extract_features
    from ..selection.pipeline import load_split, score_candidates

    records = {c: _zoo_record(root, c) for c in candidates}
    key = _key(
        {
            "target": target,
            "subset": args.score_subset,
            "seed": args.seed,
            "metrics": metrics,
            "encoder": args.encoder,
            "weights": {c: r.get("sha256") for c, r in records.items()},
        }
    )
    path = out / "pieces" / _slug(target) / "scores.json"
    cached = _load(path, key)
    if cached is not None:
        return cached
    dataset = load_split(target, "train", args.score_subset, seed=args.seed)
    class_emb = None
    if any(get_metric(m).input == "label_embeddings" for m in metrics):
        embedder = LabelEmbedder([e for e in args.encoder.split(",") if e], cache_dir=out / "cache" / "labels")
        class_emb = embedder.embed_classes(list(dataset.info.class_names))
    feats = {}
    for cand in candidates:
        feats[cand] = extract_features(
            cand, dataset, zoo_root=root, cache_dir=out / "cache" / "features", progress=not args.no_progress
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores, seconds = score_candidates(feats, metrics, class_embeddings=class_emb)
    data = {
        "key": key,
        "target": target,
        "num_samples": len(dataset),
        "scores": scores,
        "seconds": seconds,
        "feature_dims": {c: int(f[0].shape[1]) for c, f in feats.items()},
        "warnings": sorted({str(w.message).splitlines()[0] for w in caught}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, data)
    return data


def _zoo_record(root: Path, candidate: str) -> dict[str, Any]:
    meta = root / candidate.removeprefix("zoo:") / "entry.json"
    return json.loads(meta.read_text()) if meta.is_file() else {}


def _finetune_piece(args: argparse.Namespace, target: str, cand: str, root: Path, out: Path) -> dict[str, Any]:
    from ..selection.pipeline import finetune_candidate

    key = _key(
        {
            "target": target,
            "candidate": cand,
            "weights": _zoo_record(root, cand).get("sha256"),
            "train": args.finetune_subset,
            "test": args.test_subset,
            "epochs": args.finetune_epochs,
            "lr": args.finetune_lr,
            "batch": args.finetune_batch_size,
            "seed": args.seed,
        }
    )
    path = out / "pieces" / _slug(target) / f"finetune-{_slug(cand)}.json"
    cached = _load(path, key)
    if cached is not None:
        return cached
    res = finetune_candidate(
        cand,
        target,
        zoo_root=root,
        train_subset=args.finetune_subset,
        test_subset=args.test_subset,
        seed=args.seed,
        epochs=args.finetune_epochs,
        lr=args.finetune_lr,
        batch_size=args.finetune_batch_size,
        progress=False,
    )
    data = {"key": key, **{k: v for k, v in res.items() if k != "preprocessing"}, "preprocessing": res["preprocessing"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, data)
    return data


def _markdown(result: dict[str, Any]) -> str:
    targets, metrics = result["targets"], result["metrics"]
    tau = result["weighted_tau"]
    lines = [
        "# Model selection in miniature: weighted τ against fine-tuned accuracy",
        "",
        f"{len(result['candidates'])} zoo candidates × {len(targets)} embedded targets; ground truth = test accuracy "
        f"after fine-tuning every candidate ({result['settings']['finetune_epochs']} epoch(s) on "
        f"{result['settings']['finetune_subset']} training images, SGD lr {result['settings']['finetune_lr']}, "
        f"batch {result['settings']['finetune_batch_size']}, tested on {result['settings']['test_subset']} images); "
        f"metrics scored on {result['settings']['score_subset']} training images per target. "
        "Seconds = the metric alone, summed over the candidates of a target, averaged over targets (features "
        "preloaded; machine shared with other jobs, so timings are noisy).",
        "",
        "| metric | " + " | ".join(f"τw {t}" for t in targets) + " | mean τw | top-1 hits | seconds / target |",
        "|---|" + "---:|" * (len(targets) + 3),
    ]
    for m in metrics:
        cells = [f"{tau[m][t]:+.3f}" for t in targets]
        hits = sum(result["top1_hit"][m][t] for t in targets)
        lines.append(
            f"| {m} | " + " | ".join(cells) + f" | {result['mean_weighted_tau'][m]:+.3f} | {hits}/{len(targets)} | "
            f"{result['seconds_per_target'][m]:.3f} |"
        )
    lines += ["", "Fine-tuned test accuracy (ground truth):", ""]
    lines.append("| candidate | " + " | ".join(targets) + " |")
    lines.append("|---|" + "---:|" * len(targets))
    for c in result["candidates"]:
        lines.append(f"| {c} | " + " | ".join(f"{result['accuracy'][t][c]:.3f}" for t in targets) + " |")
    lines += ["", f"Regenerate: `{result['command']}` ({result['total_seconds']:.0f} s for this run).", ""]
    return "\n".join(lines)


def _figure(result: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - optional dependency
        return
    metrics, targets = result["metrics"], result["targets"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(metrics)), 3.6))
    width = 0.8 / len(targets)
    xs = np.arange(len(metrics))
    for i, t in enumerate(targets):
        ax.bar(xs + i * width - 0.4 + width / 2, [result["weighted_tau"][m][t] for m in metrics], width, label=t)
    ax.plot(xs, [result["mean_weighted_tau"][m] for m in metrics], "k_", markersize=18, label="mean")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(xs, metrics, rotation=35, ha="right")
    ax.set_ylabel("weighted τ vs fine-tuned acc")
    ax.set_ylim(-1, 1)
    ax.legend(fontsize=7, ncol=len(targets) + 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Run the miniature reproduction; writes ``results.json``, ``results.md`` and ``selection.png``."""
    from ..selection import evaluate_ranking, get_metric
    from ..selection.pipeline import metric_names
    from ..zoo import DEFAULT_ZOO, QUICK_ZOO, build_zoo, default_zoo_dir, list_zoo

    start = time.perf_counter()
    _resolve_sizes(args)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(args.zoo_root) if args.zoo_root else default_zoo_dir()
    if not args.no_build:
        build_zoo(root, QUICK_ZOO if args.quick else DEFAULT_ZOO)
    candidates = [f"zoo:{r['name']}" for r in list_zoo(root)]
    if len(candidates) < 2:
        from ..exceptions import DataNotFoundError

        raise DataNotFoundError(f"reproduce selection: fewer than 2 zoo entries in {root}; run `pickwise zoo build`")
    metrics = metric_names(args.metrics)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    scores: dict[str, Any] = {}
    accuracy: dict[str, dict[str, float]] = {}
    for target in targets:
        print(f"[{target}] scoring {len(candidates)} candidates with {len(metrics)} metrics", file=sys.stderr)
        scores[target] = _scores_for_target(args, target, candidates, metrics, root, out)
        accuracy[target] = {}
        for cand in candidates:
            res = _finetune_piece(args, target, cand, root, out)
            accuracy[target][cand] = res["acc"]
            print(f"[{target}] fine-tuned {cand}: acc {res['acc']:.4f} ({res['seconds']:.1f} s)", file=sys.stderr)
    tau: dict[str, dict[str, float]] = {m: {} for m in metrics}
    evaluation: dict[str, dict[str, Any]] = {m: {} for m in metrics}
    top1: dict[str, dict[str, int]] = {m: {} for m in metrics}
    for m in metrics:
        hib = get_metric(m).higher_is_better
        for t in targets:
            ev = evaluate_ranking(scores[t]["scores"][m], accuracy[t], higher_is_better=hib)
            evaluation[m][t] = ev
            tau[m][t] = float(ev["weighted_tau"])
            top1[m][t] = int(ev["top1_regret"] <= 1e-12)
    result: dict[str, Any] = {
        "candidates": candidates,
        "targets": targets,
        "metrics": metrics,
        "weighted_tau": tau,
        "mean_weighted_tau": {m: float(np.mean([tau[m][t] for t in targets])) for m in metrics},
        "top1_hit": top1,
        "evaluation": evaluation,
        "seconds_per_target": {
            m: float(np.mean([sum(scores[t]["seconds"][m].values()) for t in targets])) for m in metrics
        },
        "accuracy": accuracy,
        "scores": {t: scores[t]["scores"] for t in targets},
        "warnings": {t: scores[t]["warnings"] for t in targets},
        "settings": {
            k: getattr(args, k)
            for k in (
                "quick",
                "score_subset",
                "finetune_subset",
                "test_subset",
                "finetune_epochs",
                "finetune_lr",
                "finetune_batch_size",
                "encoder",
                "seed",
            )
        },
        "zoo_root": str(root),
        "command": "pickwise reproduce selection" + (" --quick" if args.quick else ""),
        "total_seconds": time.perf_counter() - start,
    }
    atomic_write_json(out / "results.json", result)
    md = _markdown(result)
    atomic_write_text(out / "results.md", md)
    _figure(result, out / "selection.png")
    rows = [[m, *[round(tau[m][t], 3) for t in targets], round(result["mean_weighted_tau"][m], 3)] for m in metrics]
    print(format_table(["metric", *[f"tau_w {t}" for t in targets], "mean"], rows))
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'selection.png'}")
    return 0
