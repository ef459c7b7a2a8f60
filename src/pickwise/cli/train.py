"""``pickwise train``: train and evaluate a registered model on a registered dataset or an image folder."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from ..tasks.classification.config import config_to_dict, resolve_config
from ._format import format_table

__all__ = ["add_parser", "run"]

# command-line shortcut -> config key
_SHORTCUTS = {
    "model": "model.name",
    "norm": "model.norm",
    "pretrained": "model.pretrained",
    "data": "data.name",
    "data_dir": "data.root",
    "batch_size": "data.batch_size",
    "image_size": "data.image_size",
    "train_subset": "data.train_subset",
    "test_subset": "data.test_subset",
    "augment": "data.augment",
    "workers": "data.num_workers",
    "epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "lr": "optim.lr",
    "optimizer": "optim.name",
    "grad_accum": "train.grad_accum_steps",
    "amp": "train.amp",
    "seed": "train.seed",
    "device": "train.device",
    "checkpoint_every": "checkpoint.every_steps",
    "keep_last": "checkpoint.keep_last",
    "name": "name",
    "output_dir": "output_dir",
}


def add_parser(subparsers: Any) -> None:
    """Register ``train``."""
    p = subparsers.add_parser(
        "train",
        help="train and evaluate a model on a dataset",
        description="Train and evaluate a registered model on a registered dataset or an image folder. Settings come "
        "from defaults, then --config files, then the shortcut flags, then --set overrides.",
    )
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML config (repeatable; _base_ ok)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. --set optim.lr=0.05 (repeatable)",
    )
    p.add_argument("--model", help="registered model name (pickwise models)")
    p.add_argument("--norm", help="normalization layer: bn, gn, ln, in, ... (pickwise norms)")
    p.add_argument("--pretrained", action="store_const", const=True, default=None, help="load shipped weights")
    p.add_argument("--data", help="registered dataset (pickwise datasets) or an image folder root/<class>/<image>")
    p.add_argument("--data-dir", help="folder holding the dataset files (e.g. the four Fashion-MNIST IDX files)")
    p.add_argument("--batch-size", type=int, help="global batch size (split over torchrun processes)")
    p.add_argument("--image-size", type=int, help="resize images to this square size")
    p.add_argument("--train-subset", type=int, help="train on a deterministic random subset of N samples")
    p.add_argument("--test-subset", type=int, help="evaluate on a deterministic random subset of N samples")
    p.add_argument("--augment", help="none, flip or crop_flip")
    p.add_argument("--workers", type=int, help="DataLoader worker processes")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--optimizer", help="sgd or adamw")
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    p.add_argument("--amp", help="none, bf16, fp16 (CUDA) or auto")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--checkpoint-every", type=int, metavar="STEPS", help="also checkpoint every STEPS steps")
    p.add_argument("--keep-last", type=int, help="number of checkpoints to keep")
    p.add_argument("--name", help="run name (output folder under --output-dir)")
    p.add_argument("--output-dir", help="parent folder of runs (default: runs)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CKPT",
        help="continue the run --name from its newest valid checkpoint, or from the folder CKPT",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the outputs of a previous run in the folder --name first (without it, or --resume, an existing "
        "run folder is refused)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress output (a bar on a terminal, else a line every 10 s)"
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve and check everything (names, options, run folder, memory estimate), print the config, "
        "train nothing",
    )
    p.set_defaults(handler=run)


def _overrides(args: argparse.Namespace) -> list[str]:
    items = []
    for attr, key in _SHORTCUTS.items():
        value = getattr(args, attr)
        if value is not None:
            items.append(f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
    if args.no_progress:
        items.append("train.progress=false")
    return items + list(args.overrides)


def _dry_run(cfg: Any, args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..tasks.classification.config import check_run_name
    from ..tasks.classification.run import check_run_dir, default_run_name, preflight, resolve_device

    device = resolve_device(cfg.train.device)
    if cfg.name is None:
        cfg.name = default_run_name(cfg)
        check_run_name(cfg.name, cfg.output_dir)
    estimate = preflight(cfg, device)
    run_dir = Path(cfg.output_dir) / cfg.name
    found = check_run_dir(run_dir, args.resume, args.overwrite)
    if args.resume:
        action = "resume the run in"
    elif found:
        action = "delete the previous run's outputs, then train into"
    else:
        action = "train into"
    print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
    print(f"# dry run: would {action} {run_dir} on {device}")
    print(f"# memory estimate: {estimate.describe()}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Handler of ``pickwise train``."""
    from ..tasks.classification.run import run_classification

    cfg = resolve_config(args.config, _overrides(args))
    if args.print_config:
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return 0
    if args.dry_run:
        return _dry_run(cfg, args)
    result = run_classification(cfg, resume=args.resume, overwrite=args.overwrite)
    if result.rank == 0:
        rows = [[key, value] for key, value in result.metrics.items()]
        rows += [
            ["steps", result.steps],
            ["epochs", result.epochs],
            ["train images/s", round(result.images_per_second, 1)],
            ["train seconds", round(result.train_seconds, 1)],
        ]
        print(f"\n{cfg.model.name} ({cfg.model.norm}) on {cfg.data.name} — test metrics", file=sys.stdout)
        print(format_table(["metric", "value"], rows))
        print(f"outputs: {result.run_dir}")
    return 0
