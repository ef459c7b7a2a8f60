"""``pickwise reid train | evaluate | extract | make-data``: thin wrappers (parse, call one library function, print).

User errors are :class:`~pickwise.exceptions.PickwiseUserError` and become one line and exit status 2 in
:func:`pickwise.cli.main.main`. ``pickwise reid train`` runs under ``torchrun`` unchanged (the engine handles
distribution; the PK sampler gives every process whole identities).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from ...exceptions import ConfigError
from ...utils.io import strict_json_dumps

__all__ = ["add_parser"]

# command-line shortcut -> config key
_SHORTCUTS = {
    "model": "model.name",
    "data": "data.name",
    "data_dir": "data.root",
    "epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "seq_len": "data.seq_len",
    "lr": "optim.lr",
    "seed": "train.seed",
    "device": "train.device",
    "name": "name",
    "output_dir": "output_dir",
}


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train and evaluate a video re-ID model (MSTAT or a baseline)",
        description="Train a video re-ID model with PK batches and per-stage ID + triplet losses, then evaluate "
        "CMC/mAP/mINP on the query/gallery split. Settings: defaults, then --config files, then the shortcut "
        "flags, then --set overrides. Writes results.json, metrics.md, cmc.png, ranked.png and checkpoints.",
    )
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML config (repeatable; _base_ ok)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. --set sampler.num_identities=16 (repeatable)",
    )
    p.add_argument("--model", help="mstat_tiny, mstat_small, mstat_base, vit_frame_avg_tiny, reid_mobilenet_v2")
    p.add_argument("--data", help="reid-synth, mars, lsvid, ilidsvid, prid2011, dukev")
    p.add_argument("--data-dir", help="dataset folder")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--seq-len", type=int, help="frames per clip T")
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--name", help="run name (folder under --output-dir)")
    p.add_argument("--output-dir", help="parent folder of runs (default: runs)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CKPT",
        help="continue the run --name from its newest valid checkpoint, or from the folder CKPT",
    )
    p.add_argument("--overwrite", action="store_true", help="delete a previous run's outputs in the folder first")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from .config import reid_config_to_dict, resolve_reid_config
    from .run import run_reid

    overrides = [
        f"{key}={_yaml_value(getattr(args, attr))}"
        for attr, key in _SHORTCUTS.items()
        if getattr(args, attr, None) is not None
    ]
    if args.no_progress:
        overrides.append("train.progress=false")
    cfg = resolve_reid_config(args.config, overrides + list(args.overrides))
    if args.print_config:
        print(yaml.safe_dump(reid_config_to_dict(cfg), sort_keys=False), end="")
        return 0
    result = run_reid(cfg, resume=args.resume, overwrite=args.overwrite)
    if result.rank == 0:
        from .run import metrics_table

        print(
            f"\n{cfg.model.name} on {cfg.data.name} ({cfg.eval.metric} distance"
            f"{', re-ranked' if cfg.eval.rerank else ''}; test frames: {cfg.data.test_frames}, T={cfg.data.seq_len})"
        )
        print(metrics_table({cfg.name or cfg.model.name: result.metrics}), end="")
        print(f"steps {result.steps}, epochs {result.epochs}, train seconds {result.train_seconds:.1f}")
        print(f"outputs: {result.run_dir}")
    return 0


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained re-ID run on its query/gallery split",
        description="Re-evaluate a finished `pickwise reid train` folder; evaluation settings can change "
        "(--rerank, --metric, --set data.test_frames=...). Writes evaluation.json, eval-metrics.md, eval-cmc.png, "
        "eval-ranked.png.",
    )
    p.add_argument("run_dir", help="folder written by `pickwise reid train`")
    p.add_argument("--weights", help="backbone weights (default: RUN_DIR/model.safetensors)")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking")
    p.add_argument("--metric", choices=("cosine", "euclidean"), help="query-gallery distance")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="evaluation override: eval.*, data.test_frames, data.root, data.eval_batch_size, train.device",
    )
    p.add_argument("--output-dir", help="where the evaluation files go (default: RUN_DIR)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from .run import evaluate_reid, metrics_table

    overrides = list(args.overrides)
    if args.rerank:
        overrides.append("eval.rerank=true")
    if args.metric:
        overrides.append(f"eval.metric={args.metric}")
    payload = evaluate_reid(
        args.run_dir,
        weights=args.weights,
        overrides=overrides,
        output_dir=args.output_dir,
        progress=not args.no_progress,
    )
    print(metrics_table({payload["model"]: payload["metrics"]}), end="")
    m = payload["metrics"]
    print(f"valid queries {int(m['num_valid_queries'])}, skipped {int(m['num_skipped_queries'])}")
    print(f"outputs: {Path(args.output_dir or args.run_dir)}")
    return 0


def _add_extract(sub: Any) -> None:
    p = sub.add_parser(
        "extract",
        help="cut person tracklets out of a video into a MARS-layout folder (--demo: retrieval demo)",
        description="Detect and track people in a video and write their crops as MARS-layout tracklets "
        "(pickwise.tasks.reid.video.extract_tracklets). With --demo, also embed the tracklets with ImageNet "
        "features and rank first-half queries against the second half (demo_video_retrieval; not a benchmark).",
    )
    p.add_argument("video", help="input video file (any format OpenCV decodes)")
    p.add_argument("out_root", help="output folder")
    p.add_argument("--demo", action="store_true", help="run the retrieval demo (ranked_gallery.png, summary.json)")
    p.add_argument("--every", type=int, help="process every N-th frame")
    p.add_argument("--max-frames", type=int, help="read at most this many frames")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="other keyword argument of the library function (YAML value), repeatable",
    )
    p.set_defaults(handler=_extract)


def _options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"option '{item}' must look like key=value")
        key, raw = item.split("=", 1)
        if not key.strip().isidentifier():
            raise ConfigError(f"option name {key.strip()!r} is not a valid keyword")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def _extract(args: argparse.Namespace) -> int:
    options = _options(args.options)
    for attr in ("every", "max_frames"):
        if getattr(args, attr) is not None:
            options[attr] = getattr(args, attr)
    if args.overwrite:
        options["overwrite"] = True
    from . import video

    if args.demo:
        summary = video.demo_video_retrieval(args.video, args.out_root, **options)
        print(strict_json_dumps(summary, default=str, indent=1))
        return 0
    out = video.extract_tracklets(args.video, args.out_root, **options)
    print(f"tracklets written to {out}")
    return 0


def _add_make_data(sub: Any) -> None:
    p = sub.add_parser(
        "make-data",
        help="generate the reid-synth benchmark (MARS layout) for offline runs and tests",
        description="Write the synthetic video re-ID benchmark reid-synth in MARS layout (atomically; reused when "
        "complete with the same parameters).",
    )
    p.add_argument("--root", help="output folder (default: the reid-synth default location)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="generator parameter (YAML value), repeatable",
    )
    p.set_defaults(handler=_make_data)


def _make_data(args: argparse.Namespace) -> int:
    from .synth import default_reid_synth_root, make_reid_synth

    root = Path(args.root) if args.root else default_reid_synth_root()
    out = make_reid_synth(root, seed=args.seed, **_options(args.options))
    print(f"reid-synth written to {out}")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``reid`` with its subcommands ``train``, ``evaluate``, ``extract`` and ``make-data``."""
    p = subparsers.add_parser(
        "reid",
        help="video person re-identification (MSTAT): train, evaluate, extract, make-data",
        description="Video person re-identification: MSTAT (Tang et al., IEEE TMM 2023) and baselines.",
    )
    sub = p.add_subparsers(dest="reid_command", metavar="COMMAND")
    _add_train(sub)
    _add_evaluate(sub)
    _add_extract(sub)
    _add_make_data(sub)
    p.set_defaults(handler=lambda args: _missing(p))


def _missing(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
