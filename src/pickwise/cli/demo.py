"""``pickwise demo``: the main job on embedded data.

``pickwise demo`` (``transfer``, the default): builds the quick model zoo (candidates trained on different embedded
sources, plus an untrained control and the real ImageNet MobileNetV2), ranks the candidates on a target with EMMS,
LogME and k-NN accuracy, fine-tunes the top-ranked candidate and the runner-up, and prints the prediction next to the
fine-tuned accuracies (``pickwise transfer``). ``pickwise demo norms``: trains the same small CIFAR-style ResNet on
Fashion-MNIST with different normalization layers (falls back to the pip-bundled MNIST subset when the Fashion-MNIST
files are not installed).
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
#: Target of the transfer demo.
DEMO_TARGET = "mnist-5k"


def add_parser(subparsers: Any) -> None:
    """Register ``demo``."""
    p = subparsers.add_parser(
        "demo",
        help="the main job on embedded data: pick a model for a task and fine-tune it (or: demo norms)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("job", nargs="?", choices=("transfer", "norms"), default="transfer", help="default: transfer")
    p.add_argument("--data", default=None, help=f"transfer: target dataset (default: {DEMO_TARGET})")
    p.add_argument("--zoo-root", default="runs/demo/zoo", help="transfer: zoo folder (default: runs/demo/zoo)")
    p.add_argument("--norms", default=",".join(DEFAULT_NORMS), help="norms: comma-separated norm names")
    p.add_argument("--model", default="resnet20", help="norms: the model")
    p.add_argument("--train-subset", type=int, default=6000, help="norms: training samples per run")
    p.add_argument("--test-subset", type=int, default=2000, help="norms: test samples per run")
    p.add_argument("--epochs", type=int, default=1, help="norms: epochs")
    p.add_argument("--batch-size", type=int, default=32, help="norms: batch size")
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
    if args.job == "transfer":
        return _run_transfer(args)
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


def _run_transfer(args: argparse.Namespace) -> int:
    from ..data import get_dataset_info
    from ..zoo import QUICK_ZOO, build_zoo
    from . import transfer
    from .main import build_parser

    get_dataset_info(args.data or DEMO_TARGET)  # a bad target fails now, not after minutes of zoo training
    start = time.perf_counter()
    print(f"building the quick zoo in {args.zoo_root} (kept between runs)", file=sys.stderr)
    build_zoo(args.zoo_root, QUICK_ZOO)
    zoo_seconds = time.perf_counter() - start
    transfer_args = build_parser().parse_args(
        [
            "transfer",
            "--data",
            args.data or DEMO_TARGET,
            "--zoo-root",
            args.zoo_root,
            "--runner-up",
            "--finetune-epochs",
            "2",
            "--seed",
            str(args.seed),
            "--output-dir",
            str(Path(args.output_dir) / "transfer"),
        ]
    )
    code = transfer._handler(transfer_args)
    print(f"zoo {zoo_seconds:.0f} s, total {time.perf_counter() - start:.0f} s")
    return code
