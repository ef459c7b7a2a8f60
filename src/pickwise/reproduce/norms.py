"""``pickwise reproduce norms``: the learning-to-normalize papers' claims, in miniature, on Fashion-MNIST.

The same small CIFAR-style ResNet is trained with BN, GN, SN, SSN, EN and PN + gamma decay at several batch sizes
(learning rate scaled linearly with the batch, 0.1 per 128 by default), and the job reports test accuracy per
(normalizer, batch size), the learned SN/SSN/EN ratios versus depth and versus batch size, and whether each claim holds
at this scale:

1. SN ≥ BN at the smallest batch size (SN paper);
2. SN ≥ GN at the largest batch size (SN paper);
3. SN's BN weight falls as the batch shrinks (SN paper, ratio analysis);
4. EN ≥ SN, on average over batch sizes (EN paper).

Finished runs are reused and unfinished ones resume from their checkpoints, so an interrupted job can be restarted
with the same command.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import sys
import time
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write_json, atomic_write_text
from ..utils.table import format_table

__all__ = ["add_arguments", "evaluate_claims", "run"]


def _is_learned(norm: str) -> bool:
    """Whether ``norm`` is a learned mixture (SN, SSN, EN): the norm registry's metadata decides."""
    from ..nn.norm.registry import norm_layer_info

    return norm_layer_info(norm).learned_mixture


def __getattr__(name: str) -> Any:
    # ``LEARNED`` (the learned-mixture names) is read from the norm registry on first use, so that importing this
    # module for the CLI's argument parser does not import torch
    if name == "LEARNED":
        from ..nn.norm.registry import list_norm_layers

        return tuple(list_norm_layers(learned_mixture=True, synchronized=False))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``pickwise reproduce norms``."""
    p.add_argument("--quick", action="store_true", help="short version (1 epoch on 1,000 images; ~3 min on 2 cores)")
    p.add_argument("--norms", default="bn,gn,sn,ssn,en,pn", help="comma-separated normalizers")
    p.add_argument("--batch-sizes", default="2,8,32", help="comma-separated batch sizes")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--epochs", type=int, help="epochs per run (default 2; quick: 1)")
    p.add_argument("--train-subset", type=int, help="training images (default 4000; quick: 1000)")
    p.add_argument("--test-subset", type=int, help="test images (default 2000; quick: 1000)")
    p.add_argument("--base-lr", type=float, default=0.1, help="learning rate at batch 128")
    p.add_argument(
        "--lr-scaling",
        choices=("sqrt", "linear"),
        default="sqrt",
        help="how the rate follows the batch size: base_lr * (batch/128) ** 0.5 (default; short runs at batch 2 "
        "barely move under the linear rule) or base_lr * batch/128 (the papers' rule for 100-epoch runs)",
    )
    p.add_argument("--gamma-decay", type=float, default=1e-4, help="gamma-decay coefficient for the pn runs")
    p.add_argument(
        "--pn-clip-grad-norm",
        type=float,
        default=1.0,
        help="gradient-norm clip of the pn runs (default 1; 0: none). PN passes no gradient through its statistics, "
        "so the network loses BN's scale invariance: without a clip, PN at batch 32 (lr 0.05) diverged at the "
        "BN-to-PN switch (test accuracy 0.106)",
    )
    p.add_argument(
        "--logit-lr-mult",
        type=float,
        default=10.0,
        help="learning-rate multiplier of the SN/EN mixture logits (default 10 so that the mixtures move within a "
        "few epochs; the official recipe trains 100 epochs at 1; SSN always uses its own recipe, 0.1)",
    )
    p.add_argument("--data", help="dataset (default: fashion-mnist, or mnist-5k when it is not installed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="runs/reproduce-norms")


def _run_config(args: argparse.Namespace, norm: str, batch: int, data: str) -> Any:
    """The typed run config of one (norm, batch size) arm."""
    from ..tasks.classification.config import (
        DataConfig,
        ModelConfig,
        OptimConfig,
        RunConfig,
        ScheduleConfig,
        TrainConfig,
        resolve_run_config,
    )

    model = ModelConfig(name=args.model, norm=norm)
    optim = OptimConfig(lr=_lr(args, batch))
    if norm == "ssn":  # the official SSN recipe: logits at lr/10 without weight decay, logit gradients clipped to 1
        optim = dataclasses.replace(optim, norm_logit_lr_mult=0.1, norm_logit_clip=1.0)
    elif _is_learned(norm):
        optim = dataclasses.replace(optim, norm_logit_lr_mult=args.logit_lr_mult)
    if norm == "pn":  # population statistics lag the weights early on: normalize by the batch for the first epoch
        warmup = args.train_subset // batch
        model = dataclasses.replace(model, gamma_decay=args.gamma_decay, norm_kwargs={"warmup_steps": warmup})
        if args.pn_clip_grad_norm:
            optim = dataclasses.replace(optim, clip_grad_norm=args.pn_clip_grad_norm)
    return resolve_run_config(
        RunConfig(
            name=f"{norm}-bs{batch}",
            output_dir=str(Path(args.output_dir) / "runs"),
            model=model,
            data=DataConfig(name=data, batch_size=batch, train_subset=args.train_subset, test_subset=args.test_subset),
            optim=optim,
            schedule=ScheduleConfig(warmup_epochs=0.1),
            train=TrainConfig(epochs=args.epochs, seed=args.seed, eval_every=0, tensorboard=False, log_every=50),
        )
    )


def _lr(args: argparse.Namespace, batch: int) -> float:
    ratio = batch / 128
    return args.base_lr * (ratio**0.5 if args.lr_scaling == "sqrt" else ratio)


def _train(args: argparse.Namespace, norm: str, batch: int, data: str) -> dict[str, Any]:
    import json

    from ..tasks.classification import run_classification

    cfg = _run_config(args, norm, batch, data)
    run_dir = Path(cfg.output_dir) / str(cfg.name)
    results_file = run_dir / "results.json"
    if results_file.is_file():
        print(f"{norm} batch {batch}: reusing {run_dir}", file=sys.stderr)
        return json.loads(results_file.read_text())
    resume = True if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("ckpt-*")) else None
    start = time.perf_counter()
    # a run killed before its first checkpoint has nothing to resume: start it afresh in its folder
    result = run_classification(cfg, resume=resume, overwrite=resume is None)
    print(
        f"{norm} batch {batch}: test accuracy {result.metrics['acc']:.4f} ({time.perf_counter() - start:.0f} s)",
        file=sys.stderr,
    )
    return json.loads(results_file.read_text())


def _stderr_of_accuracy(acc: float, n: int) -> float:
    return math.sqrt(max(acc * (1 - acc), 1e-12) / max(n, 1))


def evaluate_claims(acc: dict[str, dict[int, float]], bn_weight: dict[int, float], n_test: int) -> list[dict[str, Any]]:
    """Check the papers' four claims on the measured accuracies and SN's average BN weight per batch size."""
    claims = []
    sizes = sorted({b for per in acc.values() for b in per})
    small, large = sizes[0], sizes[-1]

    def compare(text: str, a: str, b: str, batch: int) -> None:
        if batch in acc.get(a, {}) and batch in acc.get(b, {}):
            x, y = acc[a][batch], acc[b][batch]
            noise = math.hypot(_stderr_of_accuracy(x, n_test), _stderr_of_accuracy(y, n_test))
            claims.append(
                {
                    "claim": text,
                    "holds": x >= y,
                    "detail": f"{a.upper()} {x:.4f} vs {b.upper()} {y:.4f} "
                    f"(difference {x - y:+.4f}, ±{noise:.4f} one standard error)",
                }
            )

    compare(f"SN >= BN at batch {small}", "sn", "bn", small)
    compare(f"SN >= GN at batch {large}", "sn", "gn", large)
    if len(bn_weight) > 1:
        ordered = [bn_weight[b] for b in sorted(bn_weight)]
        falls = all(x <= y for x, y in itertools.pairwise(ordered))
        detail = ", ".join(f"batch {b}: {bn_weight[b]:.3f}" for b in sorted(bn_weight))
        claims.append({"claim": "SN's BN weight falls as the batch shrinks", "holds": falls, "detail": detail})
    common = sorted(set(acc.get("en", {})) & set(acc.get("sn", {})))
    if common:
        en = sum(acc["en"][b] for b in common) / len(common)
        sn = sum(acc["sn"][b] for b in common) / len(common)
        claims.append(
            {
                "claim": "EN >= SN (mean over batch sizes)",
                "holds": en >= sn,
                "detail": f"EN {en:.4f} vs SN {sn:.4f} (difference {en - sn:+.4f})",
            }
        )
    return claims


def _plot_accuracy(acc: dict[str, dict[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for norm, per in sorted(acc.items()):
        sizes = sorted(per)
        ax.plot(sizes, [per[b] for b in sizes], marker="o", label=norm.upper())
    ax.set_xscale("log", base=2)
    sizes = sorted({b for per in acc.values() for b in per})
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Handler of ``pickwise reproduce norms``."""
    from ..analysis.norms import analyze_norm_runs
    from ..data import first_available_dataset

    args.epochs = args.epochs or (1 if args.quick else 2)
    args.train_subset = args.train_subset or (1000 if args.quick else 4000)
    args.test_subset = args.test_subset or (1000 if args.quick else 2000)
    from ..nn.norm.registry import norm_layer_info

    # registered names (aliases resolved) are checked before any data are loaded
    norms = [norm_layer_info(n.strip()).name for n in args.norms.split(",") if n.strip()]
    sizes = sorted(int(b) for b in args.batch_sizes.split(",") if b.strip())
    data = args.data or first_available_dataset("fashion-mnist", "mnist-5k")
    out = Path(args.output_dir)
    started = time.perf_counter()
    acc: dict[str, dict[int, float]] = {}
    records = []
    for batch in sizes:
        for norm in norms:
            results = _train(args, norm, batch, data)
            acc.setdefault(norm, {})[batch] = results["metrics"]["acc"]
            records.append(
                {
                    "norm": norm,
                    "batch_size": batch,
                    "acc": results["metrics"]["acc"],
                    "loss": results["metrics"]["loss"],
                    "train_seconds": results["train_seconds"],
                }
            )
    learned_runs: list[str | Path] = [out / "runs" / f"{n}-bs{b}" for n in norms if _is_learned(n) for b in sizes]
    analysis = analyze_norm_runs(learned_runs, out) if learned_runs else {"runs": [], "figures": []}
    bn_weight = {r["batch_size"]: r["summary"]["both"].get("bn", 0.0) for r in analysis["runs"] if r["norm"] == "sn"}
    claims = evaluate_claims(acc, bn_weight, args.test_subset)
    _plot_accuracy(acc, out / "accuracy_vs_batch_size.png")
    summary = {
        "data": data,
        "model": args.model,
        "epochs": args.epochs,
        "train_subset": args.train_subset,
        "test_subset": args.test_subset,
        "base_lr_per_128": args.base_lr,
        "lr_scaling": args.lr_scaling,
        "gamma_decay": args.gamma_decay,
        "logit_lr_mult": args.logit_lr_mult,
        "seed": args.seed,
        "quick": args.quick,
        "runs": records,
        "claims": claims,
        "ratio_summaries": [
            {"norm": r["norm"], "batch_size": r["batch_size"], **r["summary"]} for r in analysis["runs"]
        ],
        "figures": [*analysis["figures"], str(out / "accuracy_vs_batch_size.png")],
        "wall_seconds": time.perf_counter() - started,
    }
    atomic_write_json(out / "reproduce_norms.json", summary)
    table = [[norm.upper(), *(acc[norm].get(b, float("nan")) for b in sizes)] for norm in norms]
    text = [
        f"{args.model} on {data}: {args.train_subset} train / {args.test_subset} test images, {args.epochs} "
        f"epoch(s), lr {args.base_lr} x (batch/128){'^0.5' if args.lr_scaling == 'sqrt' else ''}, seed {args.seed}",
        "",
        format_table(["test acc", *(f"batch {b}" for b in sizes)], table),
        "",
    ]
    text += [f"[{'holds' if c['holds'] else 'does not hold'}] {c['claim']}: {c['detail']}" for c in claims]
    atomic_write_text(out / "summary.txt", "\n".join(text) + "\n")
    print("\n".join(text))
    print(f"\nresults: {out / 'reproduce_norms.json'}\nfigures: {', '.join(summary['figures'])}")
    return 0
