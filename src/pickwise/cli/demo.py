"""``pickwise demo``: the main job on embedded data.

Trains the same small CIFAR-style ResNet on Fashion-MNIST with different normalization layers and prints the test
accuracy of each. Falls back to the pip-bundled MNIST subset when the Fashion-MNIST files are not installed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write_json
from ._format import format_table

__all__ = ["add_parser", "run_demo"]

DEFAULT_NORMS = ("bn", "gn", "ln", "in")


def add_parser(subparsers: Any) -> None:
    """Register ``demo``."""
    p = subparsers.add_parser(
        "demo",
        help="train small models with different normalizers on embedded data",
        description=__doc__.splitlines()[2] if __doc__ else None,
    )
    p.add_argument("--norms", default=",".join(DEFAULT_NORMS), help="comma-separated norm names")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--train-subset", type=int, default=6000, help="training samples per run")
    p.add_argument("--test-subset", type=int, default=2000, help="test samples per run")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="runs/demo")
    p.set_defaults(handler=_run)


def run_demo(
    norms: list[str],
    *,
    model: str,
    train_subset: int,
    test_subset: int,
    epochs: int,
    batch_size: int,
    seed: int,
    output_dir: str,
) -> list[dict[str, Any]]:
    """Train ``model`` once per norm and return one result row per norm."""
    from ..data import first_available_dataset
    from ..engine.config import resolve_config
    from ..engine.run import run_classification

    data = first_available_dataset("fashion-mnist", "mnist-5k")
    rows = []
    for norm in norms:
        cfg = resolve_config(
            overrides=[
                f"model.name={model}",
                f"model.norm={norm}",
                f"data.name={data}",
                f"data.train_subset={train_subset}",
                f"data.test_subset={test_subset}",
                f"data.batch_size={batch_size}",
                f"train.epochs={epochs}",
                f"train.seed={seed}",
                "optim.lr=0.05",
                "schedule.warmup_epochs=0.1",
                f"output_dir={output_dir}",
                f"name={model}-{norm}",
                "train.tensorboard=false",
            ]
        )
        start = time.perf_counter()
        result = run_classification(cfg)
        rows.append(
            {
                "norm": norm,
                "model": model,
                "data": data,
                "acc": result.metrics["acc"],
                "loss": result.metrics["loss"],
                "train_images_per_second": result.images_per_second,
                "seconds": time.perf_counter() - start,
            }
        )
        print(f"{norm}: test accuracy {result.metrics['acc']:.4f}", file=sys.stderr)
    atomic_write_json(
        Path(output_dir) / "demo_results.json",
        {
            "runs": rows,
            "train_subset": train_subset,
            "test_subset": test_subset,
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
        },
    )
    return rows


def _run(args: argparse.Namespace) -> int:
    norms = [n.strip() for n in args.norms.split(",") if n.strip()]
    rows = run_demo(
        norms,
        model=args.model,
        train_subset=args.train_subset,
        test_subset=args.test_subset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        output_dir=args.output_dir,
    )
    print(
        f"\n{rows[0]['model']} on {rows[0]['data']} ({args.train_subset} train / {args.test_subset} test images, "
        f"{args.epochs} epoch(s), batch {args.batch_size}, seed {args.seed})"
    )
    table = [
        [r["norm"], r["acc"], r["loss"], round(r["train_images_per_second"]), round(r["seconds"], 1)] for r in rows
    ]
    print(format_table(["norm", "test acc", "test loss", "train img/s", "seconds"], table))
    print(f"results: {Path(args.output_dir) / 'demo_results.json'}")
    return 0
