"""``pickwise transfer``: select the best candidate for a target with a transferability metric, then fine-tune it.

The main job of model selection (:func:`pickwise.selection.job.transfer`): score every candidate on the target
(as ``pickwise select``), fine-tune the top-ranked one (optionally converting its BatchNorm to SN/EN for
small-batch fine-tuning) and report its accuracy next to the prediction; with ``--runner-up`` the second-ranked
candidate is fine-tuned the same way, which shows whether the pick was right.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..utils.validation import count_or_all
from ._format import format_transfer
from .select import candidate_options, finetune_options_parser, runtime_options, scoring_options, selection_kwargs

__all__ = ["DEFAULT_TARGET", "add_parser"]

#: The embedded default target (candidates trained on different sources differ clearly on it).
DEFAULT_TARGET = "mnist-5k"


def add_parser(subparsers: Any) -> None:
    """Register ``pickwise transfer``."""
    p = subparsers.add_parser(
        "transfer",
        help="pick the best candidate model for a dataset and fine-tune it",
        description="Rank candidate models on a target dataset with a transferability metric (EMMS by default), "
        "fine-tune the top-ranked one and report its accuracy next to the prediction (with the pick's "
        "stability and any tie or failed candidate); writes transfer.json and select.json.",
        epilog="examples:\n  pickwise zoo build --quick && pickwise transfer --zoo --runner-up\n"
        "  pickwise transfer --data textures --models mobilenet_v2:pretrained,craft_vgg16_bn:pretrained "
        "--runner-up",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[
            candidate_options(
                models_help="comma-separated candidates (NAME, NAME:pretrained, NAME:random, zoo:NAME, ckpt:RUN_DIR, "
                ".onnx, timm:NAME, torchvision:NAME); default: every built zoo entry"
            ),
            scoring_options(
                metrics_help="metrics to report; the first one picks the model (default: emms,logme,knn_accuracy)"
            ),
            finetune_options_parser(subset=2000),
            runtime_options(output_dir="runs/transfer"),
        ],
    )
    p.add_argument("--data", default=DEFAULT_TARGET, help=f"target dataset or image folder (default: {DEFAULT_TARGET})")
    p.add_argument(
        "--subset",
        type=int,
        default=2000,
        help="score the candidates on N training samples (default: 2000; 0: all). Keep N well above the widest "
        "candidate's feature count: EMMS and LogME fit in-sample, and with N <= D every candidate fits perfectly",
    )
    p.add_argument(
        "--convert-norm",
        default=None,
        metavar="NORM",
        help="convert the picked model's BatchNorm layers before fine-tuning (small batches): a learned norm the "
        "converter can produce (sn, ssn, en, pn; see 'pickwise norms')",
    )
    p.add_argument("--runner-up", action="store_true", help="also fine-tune the second-ranked candidate")
    p.add_argument("--test-subset", type=int, default=1000, help="evaluate on N test samples (default: 1000; 0: all)")
    p.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    from ..selection.job import transfer

    result = transfer(
        args.data,
        args.models,
        zoo=True if args.zoo is not None else None,
        subset=count_or_all("subset (--subset)", args.subset),
        test_subset=count_or_all("test_subset (--test-subset)", args.test_subset),
        runner_up=args.runner_up,
        convert_norm=args.convert_norm,
        **selection_kwargs(args),
    )
    print(format_transfer(result))
    return 0
