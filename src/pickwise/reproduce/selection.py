"""``pickwise reproduce selection``: does EMMS rank candidate models better than LogME? A controlled miniature.

The experiment (design in ``docs/selection.md``):

* **Candidates**: every built zoo entry (:mod:`pickwise.zoo`): CIFAR ResNets trained here on mnist-5k, digits,
  fashion-mnist and textures at different training lengths, untrained controls, the real ImageNet MobileNetV2, its
  intermediate blocks 3/6/10/13 as candidates of their own, and CRAFT's VGG16-BN. **No candidate trained on a
  target's data is scored on that target** (it is left out of that target's ranking, see ``excluded``).
* **Targets** with meaningful class names: fashion-mnist, photo-patches, textures (absent ones are skipped with a
  note).
* **Width control**: every candidate's features on the ``N`` scored images are reduced by PCA (centred, fit on those
  images, no whitening) to ``k = min(D, pca_dim, N // 5)`` components, so ``N >= 5 k`` for every candidate and no
  candidate wins an in-sample fit by width alone. Candidates with ``D <= k`` are only rotated.
* **Ground truth**: mean test accuracy over ``S >= 3`` fine-tuning seeds (same training/test images for every seed
  and candidate, :func:`pickwise.selection.finetune.finetune`). The seed-to-seed weighted τ (between two seeds'
  accuracy rankings, averaged over seed pairs) is the noise ceiling.
* **Paired bootstrap**: each replicate resamples, per target, the scored images (with replacement, the same rows for
  every candidate and every metric) and the fine-tuning seeds (S draws with replacement, the same seeds for every
  candidate); metrics are recomputed on the resampled rows (the PCA basis stays the one fit on all rows) and the
  ground truth is the mean over the drawn seeds. τw(EMMS) − τw(LogME) is computed within each replicate, so the
  interval is paired. Metrics other than EMMS/LogME get intervals from resampling the seeds only (their scores are
  fixed), which is stated in the output.
* **Label ablation**: EMMS with the real class names (MiniLM F-Labels), with the names assigned to the wrong classes
  (a fixed derangement) and with one-hot labels instead of text embeddings.

Resumable: features are cached, and every finished score table, fine-tune run and bootstrap is kept under
``--output-dir`` (``pieces/``); the same command restarts and only does what is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.io import atomic_write_json, atomic_write_text, strict_json_dumps
from ..utils.table import format_table

__all__ = [
    "BOOTSTRAP_METRICS",
    "DEFAULT_METRICS",
    "DEFAULT_TARGETS",
    "EMMS_VARIANTS",
    "add_arguments",
    "paired_bootstrap",
    "pca_reduce",
    "run",
    "seed_ceiling",
]

DEFAULT_TARGETS = ("fashion-mnist", "photo-patches", "textures")
DEFAULT_METRICS = (
    "emms",
    "logme",
    "h_score",
    "shrinkage_h_score",
    "transrate",
    "gbc",
    "sfda",
    "parc",
    "knn_accuracy",
    "linear_probe_accuracy",
)
# EMMS label ablation: real class names, names given to the wrong classes, one-hot labels
EMMS_VARIANTS = ("emms", "emms_shuffled_names", "emms_one_hot")
# metrics recomputed on every bootstrap replicate (the others get seed-only intervals)
BOOTSTRAP_METRICS = ("emms", "logme", "emms_shuffled_names", "emms_one_hot")
# (full, quick) defaults
SIZES = {
    "score_subset": (1000, 300),
    "finetune_subset": (640, 256),
    "test_subset": (500, 200),
    "seeds": (3, 2),
    "bootstrap": (100, 20),
}
PCA_DIM = 64
# input size overrides by architecture (None: the library's rule, 64 px for ImageNet weights): CRAFT's VGG16-BN at
# 64 px costs ~30x a CIFAR ResNet-20 per image, too slow for 9 fine-tuning runs on 2 shared cores
IMAGE_SIZE = {"craft_vgg16_bn": 32}
MIN_ROWS_PER_DIM = 5


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``pickwise reproduce selection``."""
    p.add_argument(
        "--quick",
        action="store_true",
        help="the quick zoo, 2 seeds and smaller subsets (300 scored, 256 fine-tuned, 200 test images per target)",
    )
    p.add_argument("--zoo-root", default=None, help="zoo folder (default: $PICKWISE_ZOO_DIR or ~/.cache/pickwise/zoo)")
    p.add_argument(
        "--no-build",
        action="store_true",
        help="use the built zoo entries as they are (default: build missing entries first; quick: the quick zoo)",
    )
    p.add_argument("--candidates", default=None, help="comma-separated zoo entries (default: every built entry)")
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help="comma-separated target datasets")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metrics (feature-based)")
    p.add_argument("--encoder", default="minilm", help="F-Label encoder(s) for EMMS (default: minilm)")
    p.add_argument("--score-subset", type=int, help="training images scored per target (default 1000; quick 300)")
    p.add_argument("--pca-dim", type=int, default=PCA_DIM, help="PCA width cap (also capped at N/5; default 64)")
    p.add_argument("--finetune-subset", type=int, help="training images fine-tuned on (default 640; quick 256)")
    p.add_argument("--test-subset", type=int, help="test images per target (default 500; quick 200)")
    p.add_argument("--seeds", type=int, help="fine-tuning seeds per (candidate, target) (default 3; quick 2)")
    p.add_argument("--bootstrap", type=int, help="paired bootstrap replicates (default 100; quick 20)")
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--finetune-lr", type=float, default=0.02)
    p.add_argument("--finetune-batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="seed of the image subsets, the derangement and the bootstrap")
    p.add_argument("--output-dir", default="runs/reproduce-selection")
    p.add_argument("--no-progress", action="store_true")


def _resolve_sizes(args: argparse.Namespace) -> None:
    for key, (full, quick) in SIZES.items():
        if getattr(args, key, None) is None:
            setattr(args, key, quick if args.quick else full)
    if args.seeds < 2:
        from ..exceptions import InvalidParameterError

        raise InvalidParameterError(
            f"reproduce selection: --seeds must be >= 2 (a ceiling needs two); got {args.seeds}"
        )


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(strict_json_dumps(payload, indent=None, sort_keys=True).encode()).hexdigest()[:12]


def _load(path: Path, key: str) -> dict[str, Any] | None:
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if data.get("key") == key:
            return data
    return None


def _log(args: argparse.Namespace, msg: str) -> None:
    if not args.no_progress:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------- pieces


def pca_reduce(x: np.ndarray, dim: int) -> np.ndarray:
    """Centre ``x`` and project it on its top ``min(dim, D)`` principal directions (float64; no whitening).

    With ``D <= dim`` this is a rotation of the centred features (nothing is lost).
    """
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    k = min(int(dim), x.shape[1])
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:k].T


def _derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point (every class gets another class's name)."""
    rng = np.random.default_rng(seed)
    if n < 2:
        return np.arange(n)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def _label_variants(class_emb: np.ndarray, seed: int) -> tuple[dict[str, np.ndarray], list[int]]:
    c = class_emb.shape[0]
    perm = _derangement(c, seed)
    return (
        {
            "emms": class_emb,
            "emms_shuffled_names": class_emb[perm],
            "emms_one_hot": np.eye(c)[:, :, None],
        },
        perm.tolist(),
    )


def _metric_value(name: str, x: np.ndarray, y: np.ndarray, variants: dict[str, np.ndarray]) -> tuple[float, str]:
    """A metric's score, or NaN with the reason (a failing candidate is reported, not ranked)."""
    from ..selection import emms, get_metric

    try:
        if name in EMMS_VARIANTS:
            value = emms(x, variants[name], labels=y)
        else:
            spec = get_metric(name)
            value = spec.func(x, y)
        value = float(value)
        return value, "" if math.isfinite(value) else "non-finite score"
    except Exception as err:  # any failure of one candidate is recorded, the job goes on
        return float("nan"), f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def _scores_for_target(
    args: argparse.Namespace, target: str, candidates: list[str], metrics: list[str], root: Path, out: Path
) -> dict[str, Any]:
    from ..selection import LabelEmbedder
    from ..selection.features import extract_features
    from ..selection.pipeline import load_split

    records = {c: _zoo_record(root, c) for c in candidates}
    all_metrics = list(dict.fromkeys([*metrics, *EMMS_VARIANTS]))
    key = _key(
        {
            "target": target,
            "subset": args.score_subset,
            "pca": args.pca_dim,
            "seed": args.seed,
            "metrics": all_metrics,
            "encoder": args.encoder,
            "weights": {c: r.get("sha256") or r.get("settings") for c, r in records.items()},
        }
    )
    folder = out / "pieces" / _slug(target)
    path = folder / "scores.json"
    cached = _load(path, key)
    if cached is not None and (folder / "features.npz").is_file():
        return cached
    dataset = load_split(target, "train", args.score_subset, seed=args.seed)
    y = dataset.targets.numpy().astype(np.int64)
    n = len(y)
    dim = max(1, min(args.pca_dim, n // MIN_ROWS_PER_DIM))
    embedder = LabelEmbedder([e for e in args.encoder.split(",") if e], cache_dir=out / "cache" / "labels")
    class_names = [str(c) for c in dataset.info.class_names]
    class_emb = np.asarray(embedder.embed_classes(class_names), dtype=np.float64)
    variants, perm = _label_variants(class_emb, args.seed)
    reduced: dict[str, np.ndarray] = {}
    dims: dict[str, int] = {}
    for cand in candidates:
        t0 = time.perf_counter()
        feats, _ = extract_features(
            cand,
            dataset,
            zoo_root=root,
            image_size=IMAGE_SIZE.get(records[cand].get("model", "")),
            cache_dir=out / "cache" / "features",
            progress=False,
        )
        dims[cand] = int(feats.shape[1])
        reduced[cand] = pca_reduce(feats, dim)
        _log(
            args,
            f"[{target}] features {cand}: {feats.shape[1]} -> {reduced[cand].shape[1]} dims "
            f"({time.perf_counter() - t0:.1f} s)",
        )
    scores: dict[str, dict[str, float | None]] = {m: {} for m in all_metrics}
    failures: dict[str, dict[str, str]] = {m: {} for m in all_metrics}
    seconds: dict[str, float] = {}
    for m in all_metrics:
        t0 = time.perf_counter()
        for cand in candidates:
            value, reason = _metric_value(m, reduced[cand], y, variants)
            scores[m][cand] = value if math.isfinite(value) else None
            if reason:
                failures[m][cand] = reason
        seconds[m] = time.perf_counter() - t0
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {
        "labels": y,
        **{f"emb_{v}": e for v, e in variants.items()},
        **{f"x_{i}": reduced[c] for i, c in enumerate(candidates)},
    }
    np.savez(folder / "features.npz", **arrays)
    data = {
        "key": key,
        "target": target,
        "num_samples": n,
        "class_names": class_names,
        "shuffled_names": [class_names[p] for p in perm],
        "pca_dim": dim,
        "candidates": candidates,
        "feature_dims": dims,
        "reduced_dims": {c: int(r.shape[1]) for c, r in reduced.items()},
        "scores": scores,
        "failures": failures,
        "seconds": seconds,
    }
    atomic_write_json(path, data)
    return data


def _emms_mode() -> str:
    """The mode ``emms`` uses by default (the one this experiment scores with)."""
    import inspect

    from ..selection import emms

    return str(inspect.signature(emms).parameters["mode"].default)


def _zoo_record(root: Path, candidate: str) -> dict[str, Any]:
    meta = root / candidate.removeprefix("zoo:") / "entry.json"
    return json.loads(meta.read_text()) if meta.is_file() else {}


def _finetune_piece(
    args: argparse.Namespace, target: str, cand: str, seed: int, root: Path, out: Path, splits: dict[str, Any]
) -> dict[str, Any]:
    rec = _zoo_record(root, cand)
    key = _key(
        {
            "target": target,
            "candidate": cand,
            "weights": rec.get("sha256") or rec.get("settings"),
            "train": args.finetune_subset,
            "test": args.test_subset,
            "epochs": args.finetune_epochs,
            "lr": args.finetune_lr,
            "batch": args.finetune_batch_size,
            "data_seed": args.seed,
            "image_size": IMAGE_SIZE.get(rec.get("model", "")),
            "seed": seed,
        }
    )
    path = out / "pieces" / _slug(target) / f"finetune-{_slug(cand)}-seed{seed}.json"
    cached = _load(path, key)
    if cached is not None:
        return cached
    from ..selection.features import preprocess_spec, resolve_candidate
    from ..selection.finetune import finetune
    from ..selection.pipeline import load_split

    if target not in splits:  # the same training and test images for every seed and candidate
        splits[target] = (
            load_split(target, "train", args.finetune_subset, seed=args.seed),
            load_split(target, "test", args.test_subset, seed=args.seed),
        )
    train, test = splits[target]
    cand_obj = resolve_candidate(cand, zoo_root=root)
    prep = preprocess_spec(cand_obj, train, image_size=IMAGE_SIZE.get(rec.get("model", "")))
    res = finetune(
        cand_obj.model,
        train,
        test,
        preprocess=prep,
        epochs=args.finetune_epochs,
        lr=args.finetune_lr,
        batch_size=args.finetune_batch_size,
        seed=seed,
    )
    data = {"key": key, "seed": seed, **res, "train_samples": len(train), "test_samples": len(test)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, data)
    return data


# ------------------------------------------------------------------------------------------------------ statistics


def _tau(scores: dict[str, float | None], acc: dict[str, float]) -> float:
    """Weighted τ over the candidates with a finite score (NaN when fewer than 2 or one side is constant)."""
    from ..selection import weighted_tau

    names = [c for c, v in scores.items() if v is not None and math.isfinite(v) and c in acc]
    if len(names) < 2:
        return float("nan")
    return float(weighted_tau([scores[c] for c in names], [acc[c] for c in names]))


def seed_ceiling(acc_by_seed: dict[str, list[float]]) -> dict[str, Any]:
    """Seed-to-seed weighted τ: τw between the accuracy rankings of every pair of fine-tuning seeds.

    Args:
        acc_by_seed: ``{candidate: [acc of seed 0, acc of seed 1, ...]}``.

    Returns:
        ``{"pairs": [τw of each pair], "mean": mean over pairs}``.
    """
    from ..selection import weighted_tau

    names = sorted(acc_by_seed)
    n_seeds = min(len(v) for v in acc_by_seed.values())
    pairs = [
        float(weighted_tau([acc_by_seed[c][i] for c in names], [acc_by_seed[c][j] for c in names]))
        for i, j in combinations(range(n_seeds), 2)
    ]
    return {"pairs": pairs, "mean": float(np.nanmean(pairs)) if pairs else float("nan")}


def paired_bootstrap(
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    acc_by_seed: dict[str, list[float]],
    metric_fns: dict[str, Any],
    *,
    replicates: int,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Paired bootstrap of weighted τ for several metrics on one target.

    Each replicate draws ``N`` scored rows with replacement (the same rows for every candidate and every metric) and
    ``S`` fine-tuning seeds with replacement (the same seeds for every candidate); every metric is recomputed on the
    drawn rows and compared (weighted τ) with the mean accuracy over the drawn seeds. Differences between metrics
    taken within a replicate are paired.

    Args:
        features: ``{candidate: (N, k) features}`` (rows aligned with ``labels``).
        labels: ``(N,)`` class labels.
        acc_by_seed: ``{candidate: [acc per seed]}`` (same number of seeds for all).
        metric_fns: ``{metric: f(x, y) -> score}`` (higher is better; failures return NaN).
        replicates: Number of bootstrap replicates.
        seed: Seed of the draws.

    Returns:
        ``{metric: [τw per replicate]}``; a replicate whose τw is undefined is NaN.
    """
    rng = np.random.default_rng(seed)
    names = sorted(features)
    n = len(labels)
    n_seeds = min(len(acc_by_seed[c]) for c in names)
    acc_mat = np.array([acc_by_seed[c][:n_seeds] for c in names], dtype=np.float64)
    out: dict[str, list[float]] = {m: [] for m in metric_fns}
    for _ in range(replicates):
        rows = rng.integers(0, n, size=n)
        seeds = rng.integers(0, n_seeds, size=n_seeds)
        acc = dict(zip(names, acc_mat[:, seeds].mean(axis=1).tolist(), strict=True))
        y = labels[rows]
        for m, fn in metric_fns.items():
            scores: dict[str, float | None] = {}
            for c in names:
                try:
                    v = float(fn(features[c][rows], y))
                except Exception:  # a failing candidate is left out of this replicate
                    v = float("nan")
                scores[c] = v if math.isfinite(v) else None
            out[m].append(_tau(scores, acc))
    return out


def _seed_bootstrap(
    scores: dict[str, float | None], acc_by_seed: dict[str, list[float]], replicates: int, seed: int
) -> list[float]:
    """Weighted τ of fixed scores against the mean accuracy over resampled seeds."""
    rng = np.random.default_rng(seed)
    names = sorted(acc_by_seed)
    n_seeds = min(len(v) for v in acc_by_seed.values())
    acc_mat = np.array([acc_by_seed[c][:n_seeds] for c in names], dtype=np.float64)
    taus = []
    for _ in range(replicates):
        seeds = rng.integers(0, n_seeds, size=n_seeds)
        taus.append(_tau(scores, dict(zip(names, acc_mat[:, seeds].mean(axis=1).tolist(), strict=True))))
    return taus


def _round3(value: float | None) -> float | str:
    """``value`` rounded to 3 decimals for a table, ``"n/a"`` for a missing one."""
    return "n/a" if value is None else round(value, 3)


def _interval(values: list[float] | np.ndarray) -> list[float | None]:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return [None, None]
    lo, hi = np.percentile(arr, [2.5, 97.5])
    return [float(lo), float(hi)]


def _bootstrap_piece(
    args: argparse.Namespace, target: str, score_data: dict[str, Any], acc_by_seed: dict[str, list[float]], out: Path
) -> dict[str, Any]:
    from ..selection import emms, logme

    key = _key({"scores": score_data["key"], "acc": acc_by_seed, "replicates": args.bootstrap, "seed": args.seed})
    path = out / "pieces" / _slug(target) / "bootstrap.json"
    cached = _load(path, key)
    if cached is not None:
        return cached
    t0 = time.perf_counter()
    npz = np.load(out / "pieces" / _slug(target) / "features.npz")
    cands = score_data["candidates"]
    feats = {c: npz[f"x_{i}"] for i, c in enumerate(cands) if c in acc_by_seed}
    labels = npz["labels"]
    fns: dict[str, Any] = {"logme": logme}
    for v in EMMS_VARIANTS:
        emb = npz[f"emb_{v}"]
        fns[v] = lambda x, y, emb=emb: emms(x, emb, labels=y)
    reps = paired_bootstrap(feats, labels, acc_by_seed, fns, replicates=args.bootstrap, seed=args.seed)
    data = {"key": key, "replicates": reps, "seconds": time.perf_counter() - t0}
    atomic_write_json(path, data)
    return data


# --------------------------------------------------------------------------------------------------------- report


def _num(v: float | None, fmt: str = "+.3f") -> str:
    return "n/a" if v is None or not math.isfinite(v) else format(v, fmt)


def _ci_text(v: float | None, interval: list[float | None]) -> str:
    if v is None:
        return "n/a"
    lo, hi = interval
    return f"{v:+.3f}" if lo is None else f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _markdown(result: dict[str, Any]) -> str:
    targets, metrics = result["targets"], result["metrics"]
    s = result["settings"]
    tau, ci = result["weighted_tau"], result["weighted_tau_interval"]
    per_target = ", ".join(f"{t} {len(result['candidates_per_target'][t])}" for t in targets)
    lines = [
        "# Model selection in miniature: weighted τ against fine-tuned accuracy",
        "",
        f"Targets: {', '.join(targets)}"
        + (f" (skipped: {'; '.join(result['skipped_targets'])})" if result["skipped_targets"] else "")
        + f". Candidates per target: {per_target} "
        "(a candidate trained on the target is left out). "
        f"Ground truth: mean test accuracy over {s['seeds']} fine-tuning seeds ({s['finetune_epochs']} epoch on "
        f"{s['finetune_subset']} training images, SGD lr {s['finetune_lr']}, batch {s['finetune_batch_size']}, "
        f"{s['test_subset']} test images). Metrics on {s['score_subset']} scored training images per target, "
        f"features PCA-reduced to ≤ {s['pca_dim']} dims (N ≥ 5·k for every candidate). Intervals: 95% bootstrap "
        f"({s['bootstrap']} replicates; images + seeds for {', '.join(BOOTSTRAP_METRICS)}, seeds only for the "
        "others).",
        "",
        "| metric | " + " | ".join(f"τw {t}" for t in targets) + " | mean τw [95% CI] | top-1 hits |",
        "|---|" + "---:|" * (len(targets) + 2),
    ]

    def cell(m: str, t: str) -> str:
        v = tau[m][t]
        return "n/a" if v is None else f"{v:+.3f}"

    def mean_cell(m: str) -> str:
        return _ci_text(result["mean_weighted_tau"][m], ci[m]["mean"])

    for m in [*metrics, *[v for v in EMMS_VARIANTS if v not in metrics]]:
        hits = sum(result["top1_hit"][m][t] for t in targets)
        lines.append(
            f"| {m} | " + " | ".join(cell(m, t) for t in targets) + f" | {mean_cell(m)} | {hits}/{len(targets)} |"
        )
    ceil = result["ceiling"]
    lines.append(
        "| *seed-to-seed ceiling* | "
        + " | ".join(_num(ceil[t]["mean"]) for t in targets)
        + f" | {_num(ceil['mean'])} | |"
    )
    d = result["emms_minus_logme"]
    lines += [
        "",
        f"**τw(EMMS) − τw(LogME)** (paired bootstrap, mean over targets): {_ci_text(d['mean'], d['interval'])}, "
        f"P(Δ > 0) = {_num(d['p_positive'], '.2f')}; per target: "
        + ", ".join(f"{t} {_ci_text(d['per_target'][t]['value'], d['per_target'][t]['interval'])}" for t in targets)
        + ".",
        "",
        "**EMMS label ablation** (mean τw over targets, paired differences with the real names):",
        "",
        "| labels | mean τw [95% CI] | real − this [95% CI] |",
        "|---|---:|---:|",
    ]
    for v in EMMS_VARIANTS:
        ab = result["ablation"][v]
        diff = "—" if v == "emms" else _ci_text(ab["real_minus"], ab["real_minus_interval"])
        lines.append(f"| {v} | {mean_cell(v)} | {diff} |")
    lines += ["", "Fine-tuned test accuracy (mean ± sd over seeds; '—': trained on this target, left out):", ""]
    lines.append("| candidate | features (PCA) | " + " | ".join(targets) + " |")
    lines.append("|---|---:|" + "---:|" * len(targets))
    for c in result["candidates"]:
        dims = next((result["dims"][t][c] for t in targets if c in result["dims"][t]), None)
        dim_text = "" if dims is None else f"{dims[0]} ({dims[1]})"
        cells = []
        for t in targets:
            accs = result["accuracy_by_seed"][t].get(c)
            cells.append("—" if accs is None else f"{np.mean(accs):.3f} ± {np.std(accs):.3f}")
        lines.append(f"| {c} | {dim_text} | " + " | ".join(cells) + " |")
    ps = result["piece_seconds"]
    lines += [
        "",
        f"Regenerate: `{result['command']}`. Wall-clock of the pieces (summed, whichever run computed them): "
        f"fine-tuning {ps['finetune'] / 60:.1f} min, metrics {ps['metrics'] / 60:.1f} min, bootstrap "
        f"{ps['bootstrap'] / 60:.1f} min; this invocation {result['total_seconds']:.0f} s (finished pieces reused).",
        "",
    ]
    return "\n".join(lines)


def _figure(result: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - optional dependency
        return
    metrics = [*result["metrics"], *[v for v in EMMS_VARIANTS if v not in result["metrics"]]]
    targets = result["targets"]
    fig, ax = plt.subplots(figsize=(max(7.0, 0.75 * len(metrics)), 3.8))
    xs = np.arange(len(metrics))
    means = [np.nan if result["mean_weighted_tau"][m] is None else result["mean_weighted_tau"][m] for m in metrics]
    lo = [result["weighted_tau_interval"][m]["mean"][0] for m in metrics]
    hi = [result["weighted_tau_interval"][m]["mean"][1] for m in metrics]
    err = np.array(
        [
            [0 if a is None else max(0.0, v - a) for v, a in zip(means, lo, strict=True)],
            [0 if b is None else max(0.0, b - v) for v, b in zip(means, hi, strict=True)],
        ]
    )
    colors = ["tab:red" if m.startswith("emms") else "tab:blue" if m == "logme" else "tab:gray" for m in metrics]
    ax.bar(xs, means, color=colors, alpha=0.7, yerr=err, capsize=3, label="mean over targets (95% CI)")
    markers = "o^sDv"
    for i, t in enumerate(targets):
        vals = [np.nan if result["weighted_tau"][m][t] is None else result["weighted_tau"][m][t] for m in metrics]
        ax.plot(xs, vals, markers[i % len(markers)], color="k", ms=4, alpha=0.7, linestyle="none", label=t)
    ax.axhline(result["ceiling"]["mean"], color="green", ls="--", lw=1, label="seed-to-seed ceiling")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(xs, metrics, rotation=35, ha="right")
    ax.set_ylabel("weighted τ vs fine-tuned acc")
    low = np.nanmin([*means, *[v for m in metrics for v in result["weighted_tau"][m].values() if v is not None]])
    ax.set_ylim(min(-0.1, float(low) - 0.1) if np.isfinite(low) else -1.0, 1.0)
    ax.legend(fontsize=7, ncol=3, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------------------ run


def run(args: argparse.Namespace) -> int:
    """Run the reproduction; writes ``results.json``, ``results.md`` and ``selection.png`` under ``--output-dir``."""
    from ..data import get_dataset_info
    from ..exceptions import DataNotFoundError, InvalidParameterError
    from ..selection import get_metric
    from ..selection.pipeline import metric_names
    from ..zoo import DEFAULT_ZOO, QUICK_ZOO, build_zoo, default_zoo_dir, list_zoo

    start = time.perf_counter()
    _resolve_sizes(args)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(args.zoo_root) if args.zoo_root else default_zoo_dir()
    if not args.no_build:
        build_zoo(root, QUICK_ZOO if args.quick else DEFAULT_ZOO, progress=not args.no_progress)
    built = {r["name"]: r for r in list_zoo(root)}
    if args.candidates:
        wanted = [c.strip().removeprefix("zoo:") for c in args.candidates.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in built]
        if unknown:
            raise DataNotFoundError(f"reproduce selection: zoo entries {unknown} are not built in {root}")
        names = wanted
    else:
        names = sorted(built)
    if len(names) < 3:
        raise DataNotFoundError(f"reproduce selection: fewer than 3 zoo entries in {root}; run `pickwise zoo build`")
    metrics = [m for m in metric_names(args.metrics) if m not in EMMS_VARIANTS[1:]]
    for m in metrics:
        if not get_metric(m).higher_is_better:
            raise InvalidParameterError(f"reproduce selection: metric '{m}' is lower-is-better; not supported here")
    targets, skipped = [], []
    for t in [t.strip() for t in args.targets.split(",") if t.strip()]:
        try:
            get_dataset_info(t)
            from ..selection.pipeline import load_split

            load_split(t, "test", 2, seed=args.seed)  # the files are there, not only the registry entry
            targets.append(t)
        except DataNotFoundError as err:
            skipped.append(f"{t}: {str(err).splitlines()[0]}")
            _log(args, f"note: skipping target {t}: {err}")
    if not targets:
        raise DataNotFoundError("reproduce selection: none of the targets is available: " + "; ".join(skipped))
    seeds = list(range(args.seeds))
    cand_per_target: dict[str, list[str]] = {}
    excluded: dict[str, list[str]] = {}
    for t in targets:
        cand_per_target[t] = [f"zoo:{n}" for n in names if built[n].get("source_data") != t]
        excluded[t] = [f"zoo:{n}" for n in names if built[n].get("source_data") == t]
        if len(cand_per_target[t]) < 3:
            raise InvalidParameterError(f"reproduce selection: fewer than 3 candidates left for target {t}")
    n_ft = sum(len(c) for c in cand_per_target.values()) * len(seeds)
    _log(args, f"reproduce selection: {len(names)} candidates, targets {targets}, {n_ft} fine-tuning runs")

    scores: dict[str, Any] = {}
    acc_by_seed: dict[str, dict[str, list[float]]] = {}
    splits: dict[str, Any] = {}
    done = 0
    finetune_seconds = 0.0
    for t in targets:
        cands = cand_per_target[t]
        _log(args, f"[{t}] scoring {len(cands)} candidates")
        scores[t] = _scores_for_target(args, t, cands, metrics, root, out)
        acc_by_seed[t] = {}
        for cand in cands:
            accs = []
            for s in seeds:
                res = _finetune_piece(args, t, cand, s, root, out, splits)
                accs.append(float(res["acc"]))
                finetune_seconds += float(res.get("seconds") or 0.0)
                done += 1
                _log(
                    args,
                    f"[{t}] {done}/{n_ft} fine-tuned {cand} seed {s}: acc {res['acc']:.4f} ({res['seconds']:.1f} s)",
                )
            acc_by_seed[t][cand] = accs
        splits.pop(t, None)

    boot: dict[str, dict[str, list[float]]] = {}
    bootstrap_seconds = 0.0
    for t in targets:
        _log(args, f"[{t}] paired bootstrap ({args.bootstrap} replicates)")
        piece = _bootstrap_piece(args, t, scores[t], acc_by_seed[t], out)
        boot[t] = piece["replicates"]
        bootstrap_seconds += float(piece.get("seconds") or 0.0)

    all_metrics = [*metrics, *[v for v in EMMS_VARIANTS if v not in metrics]]
    mean_acc = {t: {c: float(np.mean(a)) for c, a in acc_by_seed[t].items()} for t in targets}
    tau: dict[str, dict[str, float | None]] = {}
    tau_ci: dict[str, dict[str, Any]] = {}
    top1: dict[str, dict[str, int]] = {}
    mean_tau: dict[str, float | None] = {}
    seed_boot: dict[str, dict[str, list[float]]] = {}
    for m in all_metrics:
        tau[m], tau_ci[m], top1[m], seed_boot[m] = {}, {}, {}, {}
        for t in targets:
            sc = scores[t]["scores"][m]
            v = _tau(sc, mean_acc[t])
            tau[m][t] = v if math.isfinite(v) else None
            finite = {c: x for c, x in sc.items() if x is not None}
            best = max(mean_acc[t].values())
            top1[m][t] = int(bool(finite) and mean_acc[t][max(finite, key=finite.__getitem__)] >= best - 1e-12)
            reps = (
                boot[t][m] if m in BOOTSTRAP_METRICS else _seed_bootstrap(sc, acc_by_seed[t], args.bootstrap, args.seed)
            )
            seed_boot[m][t] = reps
            tau_ci[m][t] = _interval(reps)
        vals = [x for t in targets if (x := tau[m][t]) is not None]
        mean_tau[m] = float(np.mean(vals)) if len(vals) == len(targets) else None
        rep_mean = np.nanmean(np.array([seed_boot[m][t] for t in targets], dtype=np.float64), axis=0)
        tau_ci[m]["mean"] = _interval(rep_mean)

    def paired(a: str, b: str) -> dict[str, Any]:
        per_t = {}
        diffs = []
        for t in targets:
            d = np.array(boot[t][a], dtype=np.float64) - np.array(boot[t][b], dtype=np.float64)
            diffs.append(d)
            va, vb = tau[a][t], tau[b][t]
            per_t[t] = {"value": None if va is None or vb is None else va - vb, "interval": _interval(d)}
        mean_d = np.nanmean(np.array(diffs), axis=0)
        ma, mb = mean_tau[a], mean_tau[b]
        fin = mean_d[np.isfinite(mean_d)]
        return {
            "mean": None if ma is None or mb is None else ma - mb,
            "interval": _interval(mean_d),
            "p_positive": float(np.mean(fin > 0)) if fin.size else None,
            "per_target": per_t,
        }

    ceiling = {t: seed_ceiling(acc_by_seed[t]) for t in targets}
    ceiling_mean = float(np.mean([ceiling[t]["mean"] for t in targets]))
    ablation: dict[str, Any] = {}
    for variant in EMMS_VARIANTS:
        ablation[variant] = {"mean_weighted_tau": mean_tau[variant], "interval": tau_ci[variant]["mean"]}
        if variant != "emms":
            p = paired("emms", variant)
            ablation[variant].update(
                real_minus=p["mean"], real_minus_interval=p["interval"], per_target=p["per_target"]
            )
    result: dict[str, Any] = {
        "candidates": [f"zoo:{n}" for n in names],
        "candidate_records": {
            f"zoo:{n}": {
                k: built[n].get(k)
                for k in ("model", "norm", "kwargs", "source_data", "epochs", "train_subset", "source_test_acc")
            }
            for n in names
        },
        "targets": targets,
        "skipped_targets": skipped,
        "candidates_per_target": cand_per_target,
        "excluded_trained_on_target": excluded,
        "metrics": metrics,
        "weighted_tau": tau,
        "weighted_tau_interval": tau_ci,
        "interval_kind": {m: "images+seeds" if m in BOOTSTRAP_METRICS else "seeds" for m in all_metrics},
        "mean_weighted_tau": mean_tau,
        "top1_hit": top1,
        "ceiling": {**ceiling, "mean": ceiling_mean},
        "emms_minus_logme": paired("emms", "logme"),
        "ablation": ablation,
        "shuffled_names": {t: scores[t]["shuffled_names"] for t in targets},
        "accuracy_by_seed": acc_by_seed,
        "accuracy": mean_acc,
        "scores": {t: scores[t]["scores"] for t in targets},
        "failures": {t: scores[t]["failures"] for t in targets},
        "dims": {
            t: {c: [scores[t]["feature_dims"][c], scores[t]["reduced_dims"][c]] for c in cand_per_target[t]}
            for t in targets
        },
        "metric_seconds": {t: scores[t]["seconds"] for t in targets},
        "settings": {
            k: getattr(args, k)
            for k in (
                "quick",
                "score_subset",
                "pca_dim",
                "finetune_subset",
                "test_subset",
                "finetune_epochs",
                "finetune_lr",
                "finetune_batch_size",
                "seeds",
                "bootstrap",
                "encoder",
                "seed",
            )
        },
        "emms_mode": _emms_mode(),
        "zoo_root": str(root),
        "command": "pickwise reproduce selection" + (" --quick" if args.quick else ""),
        "total_seconds": time.perf_counter() - start,
        "piece_seconds": {
            "finetune": finetune_seconds,
            "metrics": float(sum(sum(scores[t]["seconds"].values()) for t in targets)),
            "bootstrap": bootstrap_seconds,
        },
    }
    atomic_write_json(out / "results.json", result)
    atomic_write_text(out / "results.md", _markdown(result))
    _figure(result, out / "selection.png")
    rows = [
        [
            m,
            *[_round3(tau[m][t]) for t in targets],
            _round3(mean_tau[m]),
        ]
        for m in all_metrics
    ]
    rows.append(["ceiling", *[round(ceiling[t]["mean"], 3) for t in targets], round(ceiling_mean, 3)])
    print(format_table(["metric", *[f"tau_w {t}" for t in targets], "mean"], rows))
    d = result["emms_minus_logme"]
    if d["mean"] is not None and d["interval"][0] is not None:
        print(f"tau_w(EMMS) - tau_w(LogME): {d['mean']:+.3f} [{d['interval'][0]:+.3f}, {d['interval'][1]:+.3f}]")
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'selection.png'}")
    return 0
