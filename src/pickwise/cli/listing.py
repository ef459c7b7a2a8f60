"""``pickwise models``, ``pickwise datasets`` and ``pickwise norms``: what is registered."""

from __future__ import annotations

import argparse
from typing import Any

from ._format import format_table

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    """Register the listing subcommands."""
    p = subparsers.add_parser("models", help="list registered models", description="List registered models.")
    p.add_argument("pattern", nargs="?", help="fnmatch pattern, e.g. 'resnet*'")
    p.add_argument("--task", help="only this task's models: classification, reid, segmentation, isp")
    p.set_defaults(handler=_models)
    p = subparsers.add_parser("datasets", help="list embedded datasets", description="List registered datasets.")
    p.set_defaults(handler=_datasets)
    p = subparsers.add_parser("norms", help="list normalization layers", description="List norm-factory names.")
    p.set_defaults(handler=_norms)


def _models(args: argparse.Namespace) -> int:
    from ..models import create_model, get_model_task, list_models

    rows = []
    for name in list_models(args.pattern, task=getattr(args, "task", None)):
        model = create_model(name)
        cfg = getattr(model, "pretrained_cfg", None)
        has_weights = bool(cfg and getattr(cfg, "sha256", None))
        params = sum(p.numel() for p in model.parameters()) / 1e6
        width = getattr(model, "num_features", getattr(model, "embed_dim", "-"))
        rows.append([name, get_model_task(name), f"{params:.2f}M", width, "yes" if has_weights else "-"])
    print(format_table(["model", "task", "params", "num_features", "pretrained"], rows))
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from ..data import get_dataset_info, list_datasets
    from ..exceptions import PickwiseUserError

    rows: list[list[Any]] = []
    for name in list_datasets():
        try:
            info = get_dataset_info(name)
        except PickwiseUserError as err:
            rows.append([name, "-", "-", "-", f"unavailable: {str(err)[:70]}"])
            continue
        size = "x".join(str(s) for s in info.image_size)
        rows.append(
            [name, info.num_classes, f"{info.in_chans}x{size}", f"{info.num_train}/{info.num_test}", info.license]
        )
    print(format_table(["dataset", "classes", "shape", "train/test", "license"], rows))
    return 0


def _norms(args: argparse.Namespace) -> int:
    from ..nn.norm import get_norm_layer, list_norm_layers

    rows = []
    for name in list_norm_layers():
        layer = get_norm_layer(name)
        rows.append([name, getattr(layer, "__name__", type(layer).__name__)])
    print(format_table(["name", "layer"], rows))
    return 0
