"""``pickwise select``: rank candidate models for a dataset with EMMS, LogME and the other metrics.

The command parses its flags, calls :func:`pickwise.selection.job.select_models` and prints the result. The flags it
shares with ``pickwise transfer`` come from the parent parsers defined here (:func:`candidate_options`,
:func:`scoring_options`, :func:`finetune_options_parser`, :func:`runtime_options`).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..utils.validation import count_or_all
from ._format import format_selection

__all__ = [
    "CANDIDATE_HELP",
    "add_parser",
    "candidate_options",
    "finetune_from_args",
    "finetune_options_parser",
    "runtime_options",
    "scoring_options",
    "selection_kwargs",
]

CANDIDATE_HELP = (
    "comma-separated candidates: registered names (NAME uses --pretrained; NAME:pretrained / NAME:random choose "
    "per candidate, e.g. mobilenet_v2:pretrained,resnet20:random), zoo:NAME (built zoo entry), ckpt:RUN_DIR (a "
    "finished pickwise run), .onnx paths, timm:NAME, torchvision:NAME"
)


def candidate_options(*, models_help: str = CANDIDATE_HELP) -> argparse.ArgumentParser:
    """Parent parser: which candidates, and how target images are fed to them."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("candidates")
    g.add_argument("--models", default=None, help=models_help)
    g.add_argument(
        "--zoo",
        nargs="?",
        const="",
        default=None,
        metavar="ROOT",
        help="add every built zoo entry as a candidate (ROOT default: $PICKWISE_ZOO_DIR or ~/.cache/pickwise/zoo)",
    )
    g.add_argument("--zoo-root", default=None, help="zoo folder for zoo:NAME candidates (default: the --zoo ROOT)")
    g.add_argument(
        "--pretrained",
        action="store_true",
        help="load the pretrained weights of registered names given without a :pretrained/:random suffix",
    )
    g.add_argument(
        "--image-size",
        type=int,
        default=None,
        metavar="PX",
        help="resize target images to PX x PX (PX >= 1) for every candidate; omit it for each candidate's default "
        "(the native size; ImageNet-pretrained candidates get tiny images upsampled to 64 px)",
    )
    return p


def scoring_options(*, metrics_help: str) -> argparse.ArgumentParser:
    """Parent parser: metrics, ties, label encoders and the pick's stability under resampling."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("scoring")
    g.add_argument("--metrics", default="emms,logme,knn_accuracy", help=metrics_help)
    g.add_argument(
        "--tie-break",
        default=None,
        metavar="METRIC",
        help="metric that orders candidates whose first-metric scores tie (within rtol 1e-6); default: the second "
        "of --metrics, else logme (knn_accuracy when the first metric is logme)",
    )
    g.add_argument(
        "--encoder",
        default="minilm",
        help="label encoder(s) for EMMS, comma-separated: minilm, hashing, hashing:DIM, hf:MODEL_OR_FOLDER",
    )
    g.add_argument("--template", default=None, help="prompt template for class names, e.g. 'a photo of a {}.'")
    g.add_argument(
        "--stability-resamples",
        type=int,
        default=50,
        metavar="B",
        help="resamples (class-stratified 80%% subsamples) of the scored images for the pick's stability (share "
        "of resamples in which it "
        "stays first; default: 50; 0: skip). Each resample re-scores the --stability-top-k best candidates",
    )
    g.add_argument(
        "--stability-top-k",
        type=int,
        default=3,
        metavar="K",
        help="re-score only the K best-ranked candidates in each resample (default: 3; 0: all). EMMS costs about "
        "1-2 s per candidate and resample on one core",
    )
    g.add_argument(
        "--stability-threshold",
        type=float,
        default=0.8,
        metavar="S",
        help="a pick that stays first in fewer than this share of resamples is reported as uncertain (default: 0.8)",
    )
    return p


def finetune_options_parser(*, subset: int) -> argparse.ArgumentParser:
    """Parent parser: fine-tuning options shared by ``select --verify finetune`` and ``transfer``."""
    p = argparse.ArgumentParser(add_help=False)
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
    return p


def runtime_options(*, output_dir: str, batch_help: str = "feature-extraction batch size (default: 256)"):
    """Parent parser: batch size, device, cache, output folder, seed and progress."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("runtime")
    g.add_argument("--batch-size", type=int, default=256, help=batch_help)
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    g.add_argument("--cache-dir", default=None, help="feature and label-embedding cache directory")
    g.add_argument("--output-dir", default=output_dir, help=f"where the JSON results go (default: {output_dir})")
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the subsets, of randomly initialised candidates, of fine-tuning and of the resampling",
    )
    g.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress output (default: a bar on a terminal, a status line every 10 s otherwise)",
    )
    return p


def finetune_from_args(args: argparse.Namespace) -> Any:
    """:class:`~pickwise.selection.job.FinetuneOptions` from parsed fine-tuning flags (0: all samples)."""
    from ..selection.job import FinetuneOptions

    subset = count_or_all("finetune_subset (--finetune-subset)", args.finetune_subset)
    return FinetuneOptions(
        epochs=args.finetune_epochs,
        train_subset=subset,
        max_steps=args.finetune_steps,
        lr=args.finetune_lr,
        batch_size=args.finetune_batch_size,
    )


def selection_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :func:`~pickwise.selection.job.select_models` shared by ``select`` and ``transfer``.

    The device is checked here so that its messages name the flag (``--device``) rather than the parameter.
    """
    from ..selection.job import check_device

    return {
        "zoo_root": args.zoo_root or args.zoo or None,
        "pretrained": args.pretrained,
        "image_size": args.image_size,
        "metrics": args.metrics,
        "tie_break_metric": args.tie_break,
        "encoder": args.encoder,
        "template": args.template,
        "stability_resamples": args.stability_resamples,
        "stability_threshold": args.stability_threshold,
        "stability_top_k": args.stability_top_k,
        "batch_size": args.batch_size,
        "device": check_device(args.device, name="--device"),
        "cache_dir": args.cache_dir,
        "seed": args.seed,
        "finetune": finetune_from_args(args),
        "progress": not args.no_progress,
        "output_dir": args.output_dir,
    }


def add_parser(subparsers: Any) -> None:
    """Register ``pickwise select``."""
    p = subparsers.add_parser(
        "select",
        help="rank candidate models for a dataset (EMMS, LogME, ...)",
        description="Score every candidate model's features on a dataset with transferability metrics and print "
        "a ranked table with the recommended model and how stable that pick is under resampling of the scored "
        "images; candidates that fail (cannot run, non-finite scores) are listed apart, never recommended. Writes "
        "select.json (and select.png with --verify).",
        epilog="examples:\n  pickwise select --data mnist-5k --subset 1000 --zoo --metrics emms,logme,knn_accuracy\n"
        "  pickwise select --data textures --models mobilenet_v2:pretrained,resnet20:random --encoder hashing\n"
        "  pickwise select --data textures --models zoo:resnet20-bn-textures,ckpt:runs/my-run --verify finetune",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[
            candidate_options(),
            scoring_options(
                metrics_help="comma-separated metric names; the first ranks (default: emms,logme,knn_accuracy)"
            ),
            finetune_options_parser(subset=1000),
            runtime_options(output_dir="runs/select"),
        ],
    )
    p.add_argument("--data", required=True, help="dataset name (pickwise datasets) or image folder path")
    p.add_argument("--split", default="train", help="split scored by the metrics (default: train)")
    p.add_argument("--subset", type=int, default=None, help="score a class-stratified subset of N samples")
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
    p.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    from ..selection.job import select_models

    result = select_models(
        args.data,
        args.models,
        zoo=args.zoo is not None,
        split=args.split,
        subset=args.subset,
        verify=args.verify,
        test_subset=args.test_subset,
        **selection_kwargs(args),
    )
    print(format_selection(result))
    return 0
