"""``pickwise transfer``: select the best candidate for a target with a transferability metric, then fine-tune it.

The main job of model selection: score every candidate on the target (``pickwise select``), fine-tune the top-ranked
one (optionally converting its BatchNorm to SN/EN for small-batch fine-tuning) and report its accuracy next to the
prediction; with ``--runner-up`` the second-ranked candidate is fine-tuned the same way, which shows whether the
pick was right.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write_text
from ._format import format_table
from .select import add_finetune_arguments, finetune_options, run_select, zoo_root

__all__ = ["DEFAULT_TARGET", "add_parser", "run_transfer"]

#: The embedded default target (candidates trained on different sources differ clearly on it).
DEFAULT_TARGET = "mnist-5k"


def add_parser(subparsers: Any) -> None:
    """Register ``pickwise transfer``."""
    p = subparsers.add_parser(
        "transfer",
        help="pick the best candidate model for a dataset and fine-tune it",
        description="Rank candidate models on a target dataset with a transferability metric (EMMS by default), "
        "fine-tune the top-ranked one and report its accuracy next to the prediction; writes transfer.json.",
        epilog="example (the demo):\n  pickwise zoo build --quick && pickwise transfer --zoo --runner-up",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        "--models",
        default=None,
        help="comma-separated candidates (names, zoo:NAME, ckpt:RUN_DIR, ...); default: every built zoo entry",
    )
    p.add_argument("--zoo", nargs="?", const="", default=None, metavar="ROOT", help="add every built zoo entry")
    p.add_argument("--zoo-root", default=None, help="zoo folder for zoo:NAME candidates")
    p.add_argument("--pretrained", action="store_true", help="load the registered models' pretrained weights")
    p.add_argument("--image-size", type=int, default=None, help="resize target images for every candidate")
    p.add_argument(
        "--metrics",
        default="emms,logme,knn_accuracy",
        help="metrics to report; the first one picks the model (default: emms,logme,knn_accuracy)",
    )
    p.add_argument("--encoder", default="minilm", help="label encoder(s) for EMMS (minilm, hashing[:DIM], hf:MODEL)")
    p.add_argument("--template", default=None, help="prompt template for class names")
    p.add_argument(
        "--convert-norm",
        choices=["sn", "ssn", "en", "pn"],
        default=None,
        help="convert the picked model's BatchNorm layers before fine-tuning (small batches)",
    )
    p.add_argument("--runner-up", action="store_true", help="also fine-tune the second-ranked candidate")
    p.add_argument("--test-subset", type=int, default=1000, help="evaluate on N test samples (default: 1000; 0: all)")
    add_finetune_arguments(p, subset=2000)
    p.add_argument("--batch-size", type=int, default=256, help="feature-extraction batch size")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-dir", default=None, help="feature and label-embedding cache directory")
    p.add_argument("--output-dir", default="runs/transfer", help="where transfer.json / select.json are written")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    result = run_transfer(args)
    print(result["select_table"])
    print(result["table"])
    print(result["summary"])
    print(f"wrote {result['json_path']}")
    return 0


def run_transfer(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``pickwise transfer`` for parsed ``args``; returns the JSON-able result (also written to disk)."""
    from ..selection.pipeline import finetune_candidate

    start = time.perf_counter()
    zoo = args.zoo if (args.zoo is not None or args.models) else ""  # no candidates named: the whole zoo
    select_args = argparse.Namespace(
        data=args.data,
        split="train",
        subset=args.subset or None,
        models=args.models,
        zoo=zoo,
        zoo_root=args.zoo_root,
        pretrained=args.pretrained,
        image_size=args.image_size,
        metrics=args.metrics,
        encoder=args.encoder,
        template=args.template,
        verify=None,
        test_subset=args.test_subset,
        batch_size=args.batch_size,
        device=args.device,
        cache_dir=args.cache_dir,
        output_dir=args.output_dir,
        seed=args.seed,
        no_progress=args.no_progress,
    )
    selection = run_select(select_args)
    select_seconds = time.perf_counter() - start
    metric = selection["metrics"][0]
    ranking = selection["ranking"]
    picks = ranking[: 2 if args.runner_up and len(ranking) > 1 else 1]
    opts = finetune_options(args)
    finetuned: dict[str, dict[str, Any]] = {}
    for i, model in enumerate(picks):
        out = Path(args.output_dir) / "finetune" / model.replace(":", "_").replace("/", "_")
        res = finetune_candidate(
            model,
            args.data,
            zoo_root=zoo_root(select_args),
            convert_norm=args.convert_norm if i == 0 else None,
            run_dir=out,
            **opts,
        )
        finetuned[model] = dict(res)
    top = picks[0]
    rows = []
    for rank, model in enumerate(ranking, start=1):
        acc = finetuned.get(model, {}).get("acc")
        rows.append([rank, model, selection["scores"][metric][model], "-" if acc is None else round(acc, 4)])
    table = format_table(["rank", "model", metric, "fine-tuned test acc"], rows)
    top_acc = finetuned[top]["acc"]
    summary = f"picked {top} by {metric}: fine-tuned test accuracy {top_acc:.4f}"
    if args.convert_norm:
        summary += f" (BN -> {args.convert_norm}: {finetuned[top]['converted_layers']} layers converted)"
    verdict = None
    if len(picks) > 1:
        second = picks[1]
        verdict = "right" if top_acc >= finetuned[second]["acc"] else "wrong"
        summary += f"; runner-up {second}: {finetuned[second]['acc']:.4f} -> the pick was {verdict}"
    result: dict[str, Any] = {
        "data": args.data,
        "metric": metric,
        "metrics": selection["metrics"],
        "ranking": ranking,
        "scores": selection["scores"],
        "seconds": selection["seconds"],
        "picked": top,
        "predicted_score": selection["scores"][metric][top],
        "accuracy": top_acc,
        "finetune": finetuned,
        "convert_norm": args.convert_norm,
        "pick_verdict": verdict,
        "select_seconds": select_seconds,
        "total_seconds": time.perf_counter() - start,
        "summary": summary,
        "table": table,
        "select_table": selection["table"],
    }
    path = Path(args.output_dir) / "transfer.json"
    result["json_path"] = str(path)
    atomic_write_text(
        path,
        json.dumps({k: v for k, v in result.items() if k not in ("table", "select_table")}, indent=2, default=str)
        + "\n",
    )
    return result
