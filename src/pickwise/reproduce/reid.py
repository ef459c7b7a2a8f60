"""``pickwise reproduce reid``: MSTAT vs frame-averaged baselines and MSTAT's ablations, in miniature on reid-synth.

Arms (all trained with the same PK batches, losses, optimizer, schedule and number of steps, unless noted):

- ``mstat``: ``mstat_tiny`` at reproduction size (D = 64, 3 blocks = 1 + 1 + 1, 2 heads; 3 stages with AAP, IAP and
  AAP+IAP heads; divided space-time attention; temporal patch shuffling), trained from scratch;
- ``mstat_mnv2``: the same MSTAT with ``stem="mobilenet_v2"``: its patch tokens are the real ImageNet MobileNetV2's
  block-6 features (stride 8) instead of a patch embedding learned from scratch;
- ``vit_avg``: ``vit_frame_avg_tiny`` at the same size: the ViT per frame, class tokens averaged over time, one BNNeck;
- ``vit_avg_mnv2``: the same frame-average ViT on the MobileNetV2 stem (separates the stem's gain from MSTAT's);
- ``mnv2_imagenet``: ``reid_mobilenet_v2`` **untrained**: ImageNet MobileNetV2 features averaged over frames
  (evaluation only);
- ``mnv2_ft``: the same, fine-tuned (blocks 0-13 of 19 frozen);
- ablations of ``mstat``: ``no_aap`` (``use_aap=False``), ``no_iap`` (``use_iap=False``), ``no_shuffle``
  (``shuffle_prob=0``), ``one_stage`` (``num_stages=1``), ``joint`` (joint space-time attention instead of STA).

The benchmark is a reid-synth generated into ``<output-dir>/data`` (50 train and 50 test identities, 3-5 tracklets
of 6-10 frames at 64×32 over 6 cameras, 20 distractor tracklets; ``--data-dir`` uses another folder). Every
(arm, seed) is one engine run under ``<output-dir>/runs/`` (resumable from its checkpoints); its summary goes
atomically to ``<output-dir>/results/<arm>-s<seed>.json`` and a finished one is skipped on a rerun. The table
(``reid_table.md``: mean ± standard error over seeds of rank-1/5, mAP, mINP), the figure (``reid_reproduction.png``:
R1 and mAP bars with standard errors, mean CMC curves) and ``reid_results.json`` are written at the end.

Defaults: 64×32 frames, T = 4, P×K = 8×4, AdamW 1e-3 with a cosine schedule, 100 steps per run, 2 seeds.
``--quick`` runs a tiny benchmark and tiny models in seconds (for tests).
"""

from __future__ import annotations

import argparse
import io
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["ARMS", "add_arguments", "run", "run_reproduction", "summarize"]

# arm -> (label, model name, model kwargs, trained)
ARMS: dict[str, tuple[str, str, dict[str, Any], bool]] = {
    "mstat": ("MSTAT (tiny)", "mstat_tiny", {}, True),
    "mstat_mnv2": ("MSTAT, MobileNetV2 stem", "mstat_tiny", {"stem": "mobilenet_v2"}, True),
    "vit_avg": ("ViT frame average", "vit_frame_avg_tiny", {}, True),
    "vit_avg_mnv2": ("ViT frame average, MobileNetV2 stem", "vit_frame_avg_tiny", {"stem": "mobilenet_v2"}, True),
    "mnv2_imagenet": ("MobileNetV2 ImageNet, untrained", "reid_mobilenet_v2", {}, False),
    "mnv2_ft": ("MobileNetV2 fine-tuned", "reid_mobilenet_v2", {}, True),
    "no_aap": ("MSTAT w/o AAP", "mstat_tiny", {"use_aap": False}, True),
    "no_iap": ("MSTAT w/o IAP", "mstat_tiny", {"use_iap": False}, True),
    "no_shuffle": ("MSTAT w/o shuffle", "mstat_tiny", {"shuffle_prob": 0.0}, True),
    "one_stage": ("MSTAT 1 stage", "mstat_tiny", {"num_stages": 1}, True),
    "joint": ("MSTAT joint attention", "mstat_tiny", {"attention": "joint"}, True),
}
_VIT_MODELS = ("mstat_tiny", "vit_frame_avg_tiny")
# the ViT arms at reproduction size: D = 64, 3 blocks (1 + 1 + 1 for the 3-stage MSTAT), 2 heads
_REPRO_VIT = {"embed_dim": 64, "depth": 3, "num_heads": 2}
# fine-tuned MobileNetV2: blocks 0-13 of 19 stay frozen (halves the step; the usual partial fine-tuning)
_MNV2_FROZEN = [f"features.{i}." for i in range(14)]
# the generated benchmark of the reproduction (reid-synth parameters; half the default identities)
_REPRO_DATA = {
    "num_train_ids": 50,
    "num_test_ids": 50,
    "num_distractors": 20,
    "num_junk": 5,
    "num_cameras": 6,
    "tracklets_per_id": (3, 5),
    "seq_len_range": (6, 10),
    "size": (64, 32),
}

# the tiny benchmark and models of --quick
_QUICK_DATA = {
    "num_train_ids": 8,
    "num_test_ids": 5,
    "num_distractors": 2,
    "num_junk": 1,
    "num_cameras": 2,
    "tracklets_per_id": (2, 3),
    "seq_len_range": (3, 6),
    "size": (32, 16),
}
_QUICK_VIT = {"embed_dim": 32, "depth": 3, "num_heads": 2, "patch_size": 8, "stride": 8}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``reproduce reid`` options."""
    parser.add_argument(
        "--data-dir", help="a reid-synth folder (default: generate the reproduction's one in OUTPUT_DIR/data)"
    )
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated arms (default all: {','.join(ARMS)})")
    parser.add_argument(
        "--seeds", default=None, help="comma-separated seeds, one run of every arm per seed (default 0,1; --quick: 0)"
    )
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per trained run")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=4, help="frames per clip T")
    parser.add_argument("--identities", type=int, default=8, help="P identities per batch")
    parser.add_argument("--instances", type=int, default=4, help="K tracklets per identity")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (cosine, 10%% warm-up)")
    parser.add_argument("--quick", action="store_true", help="tiny benchmark, tiny models, 3 steps, seed 0 (seconds)")
    parser.add_argument("--output-dir", default="runs/reproduce-reid")
    parser.set_defaults(handler=run)


def _run_config(arm: str, seed: int, opts: dict[str, Any], out: Path) -> Any:
    from ..tasks.reid.config import ReIDRunConfig, validate_reid_config

    _, model, kwargs, _ = ARMS[arm]
    cfg = ReIDRunConfig(name=f"{arm}-s{seed}", output_dir=str(out / "runs"))
    cfg.model.name = model
    cfg.model.kwargs = {**(opts["vit_kwargs"] if model in _VIT_MODELS else {}), **kwargs}
    if arm == "mnv2_ft":
        cfg.model.freeze = [f"{opts['mnv2_prefix']}{p}" for p in _MNV2_FROZEN]
    cfg.data.name = "reid-synth"
    cfg.data.root = opts["data_dir"]
    cfg.data.seq_len, cfg.data.height, cfg.data.width = opts["seq_len"], opts["height"], opts["width"]
    cfg.data.eval_batch_size = 64
    cfg.data.cache_frames = True  # every run of the reproduction reads the same frames
    cfg.sampler.num_identities, cfg.sampler.num_instances = opts["identities"], opts["instances"]
    cfg.optim.lr = opts["lr"]
    cfg.train.seed = seed
    cfg.train.device = "cpu"
    cfg.train.epochs = opts["epochs"]
    cfg.train.max_steps = opts["steps"]
    cfg.train.eval_every = 0
    cfg.train.tensorboard = False
    cfg.train.progress = False
    cfg.train.log_every = 10
    cfg.schedule.warmup_epochs = opts["warmup_epochs"]
    cfg.eval.figures = False  # the reproduction draws its own summary figure
    return validate_reid_config(cfg)


def _one_run(arm: str, seed: int, opts: dict[str, Any], out: Path, dataset: Any) -> dict[str, Any]:
    from ..tasks.reid.run import build_reid_model, evaluate_reid, run_reid

    cfg = _run_config(arm, seed, opts, out)
    run_dir = out / "runs" / str(cfg.name)
    start = time.perf_counter()
    if ARMS[arm][3]:
        resume = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
        result = run_reid(cfg, resume=resume or None, overwrite=not resume and run_dir.exists(), dataset=dataset)
        metrics, cmc, steps = result.metrics, result.results.get("cmc", []), result.steps
        seconds = result.train_seconds
    else:  # evaluation of the ImageNet initialisation: save it, then evaluate it like a trained run
        from ..engine.checkpoint import save_weights
        from ..tasks.reid.run import _num_cameras
        from ..utils.seed import seed_everything

        seed_everything(seed)
        net = build_reid_model(cfg, dataset.num_train_pids, _num_cameras(dataset))
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        save_weights(net.backbone, run_dir / "model.safetensors")
        payload = evaluate_reid(
            cfg, weights=run_dir / "model.safetensors", output_dir=run_dir, dataset=dataset, progress=False
        )
        metrics, cmc, steps, seconds = payload["metrics"], payload["cmc"], 0, 0.0
    return {
        "arm": arm,
        "label": ARMS[arm][0],
        "model": cfg.model.name,
        "model_kwargs": cfg.model.kwargs,
        "trained": ARMS[arm][3],
        "seed": seed,
        "metrics": metrics,
        "cmc": cmc,
        "steps": steps,
        "train_seconds": seconds,
        "wall_seconds": time.perf_counter() - start,
    }


def _mean_se(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return float(arr.mean()), math.nan
    return float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(len(arr)))


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per arm: mean and standard error over seeds of every metric, and the mean CMC curve."""
    out: dict[str, dict[str, Any]] = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        runs = [r for r in rows if r["arm"] == arm]
        entry: dict[str, Any] = {"label": runs[0]["label"], "seeds": [r["seed"] for r in runs]}
        for key in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP"):
            entry[key], entry[f"{key}_se"] = _mean_se([r["metrics"][key] for r in runs])
        curves = [r["cmc"] for r in runs if r["cmc"]]
        if curves:
            n = min(len(c) for c in curves)
            stack = np.asarray([c[:n] for c in curves])
            entry["cmc"] = stack.mean(0).tolist()
            entry["cmc_se"] = (stack.std(0, ddof=1) / math.sqrt(len(curves))).tolist() if len(curves) > 1 else None
        entry["train_seconds"] = float(np.mean([r["train_seconds"] for r in runs]))
        out[arm] = entry
    return out


def _table(summary: dict[str, dict[str, Any]]) -> str:
    def cell(entry: dict[str, Any], key: str) -> str:
        se = entry[f"{key}_se"]
        return f"{100 * entry[key]:.1f}" + ("" if math.isnan(se) else f" ± {100 * se:.1f}")

    lines = ["| arm | R1 | R5 | mAP | mINP | train s |", "|---|---|---|---|---|---|"]
    for entry in summary.values():
        lines.append(
            f"| {entry['label']} | {cell(entry, 'rank1')} | {cell(entry, 'rank5')} | {cell(entry, 'mAP')} | "
            f"{cell(entry, 'mINP')} | {entry['train_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _figure(summary: dict[str, dict[str, Any]], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(summary)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 3.8), gridspec_kw={"width_ratios": [1.5, 1]})
    x = np.arange(len(arms))
    for offset, key, colour in ((-0.2, "rank1", "#3b75af"), (0.2, "mAP", "#ef8636")):
        vals = [100 * summary[a][key] for a in arms]
        errs = [0.0 if math.isnan(summary[a][f"{key}_se"]) else 100 * summary[a][f"{key}_se"] for a in arms]
        ax1.bar(x + offset, vals, 0.4, yerr=errs, capsize=2, color=colour, label="R1" if key == "rank1" else key)
    ax1.set_xticks(x)
    ax1.set_xticklabels([summary[a]["label"] for a in arms], rotation=35, ha="right", fontsize=7)
    ax1.set_ylabel("%")
    ax1.legend(fontsize=7)
    ax1.grid(axis="y", alpha=0.3)
    ax1.set_title("rank-1 and mAP (mean ± s.e. over seeds)", fontsize=9)
    for arm in arms:
        if arm in ("mstat", "vit_avg", "mnv2_imagenet", "mnv2_ft") and "cmc" in summary[arm]:
            cmc = 100 * np.asarray(summary[arm]["cmc"])
            ranks = np.arange(1, len(cmc) + 1)
            (line,) = ax2.plot(ranks, cmc, marker="o", markersize=2, linewidth=1.2, label=summary[arm]["label"])
            if summary[arm].get("cmc_se"):
                se = 100 * np.asarray(summary[arm]["cmc_se"])
                ax2.fill_between(ranks, cmc - se, cmc + se, color=line.get_color(), alpha=0.15, linewidth=0)
    ax2.set_xlabel("rank")
    ax2.set_ylabel("matching rate (%)")
    ax2.set_title("CMC (mean over seeds)", fontsize=9)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def run_reproduction(
    *,
    arms: tuple[str, ...] = tuple(ARMS),
    seeds: tuple[int, ...] = (0, 1),
    steps: int = 100,
    height: int = 64,
    width: int = 32,
    seq_len: int = 4,
    identities: int = 8,
    instances: int = 4,
    lr: float = 1e-3,
    data_dir: str | Path | None = None,
    quick: bool = False,
    output_dir: str | Path = "runs/reproduce-reid",
) -> dict[str, Any]:
    """Run every (arm, seed) not finished yet, then write the table, the figure and ``reid_results.json``.

    Raises:
        ConfigError: An unknown arm or a bad setting.
    """
    from ..exceptions import ConfigError
    from ..tasks.reid.datasets import load_reid_dataset
    from ..tasks.reid.samplers import PKSampler

    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise ConfigError(f"reproduce reid: unknown arm(s) {unknown or '(none)'}; choose from {', '.join(ARMS)}")
    out = Path(output_dir)
    vit_kwargs: dict[str, Any] = dict(_QUICK_VIT if quick else _REPRO_VIT)
    if data_dir is None:
        from ..tasks.reid.synth import make_reid_synth

        data_dir = make_reid_synth(out / "data", seed=0, progress=not quick, **(_QUICK_DATA if quick else _REPRO_DATA))
    dataset = load_reid_dataset("reid-synth", data_dir)
    batches = PKSampler([t.pid for t in dataset.train], identities, instances).num_batches
    opts = {
        "data_dir": None if data_dir is None else str(data_dir),
        "steps": steps,
        "epochs": max(1, math.ceil(steps / batches)),
        "warmup_epochs": 0.1 * steps / batches,
        "height": height,
        "width": width,
        "seq_len": seq_len,
        "identities": identities,
        "instances": instances,
        "lr": lr,
        "vit_kwargs": vit_kwargs,
        "mnv2_prefix": "backbone.",
    }
    start = time.perf_counter()
    rows = []
    todo = [(arm, seed) for seed in seeds for arm in arms]
    for i, (arm, seed) in enumerate(todo, 1):
        path = out / "results" / f"{arm}-s{seed}.json"
        if path.is_file():
            import json

            rows.append(json.loads(path.read_text(encoding="utf-8")))
            print(f"[{i}/{len(todo)}] {arm} seed {seed}: done before, skipped", file=sys.stderr)
            continue
        row = _one_run(arm, seed, opts, out, dataset)
        atomic_write_json(path, row)
        rows.append(row)
        m = row["metrics"]
        print(
            f"[{i}/{len(todo)}] {arm} seed {seed}: R1 {100 * m['rank1']:.1f} mAP {100 * m['mAP']:.1f} "
            f"({row['wall_seconds']:.0f} s; {time.perf_counter() - start:.0f} s so far)",
            file=sys.stderr,
            flush=True,
        )
    summary = summarize(rows)
    setting = (
        f"reid-synth ({len(dataset.train)} train / {len(dataset.query)} query / {len(dataset.gallery)} gallery "
        f"tracklets), {height}x{width}, T={seq_len}, P x K = {identities} x {instances}, {steps} steps, "
        f"seeds {list(seeds)}"
    )
    payload = {
        "setting": setting,
        "options": dict(opts),
        "arms": list(arms),
        "seeds": list(seeds),
        "summary": summary,
        "runs": rows,
        "wall_seconds_this_call": time.perf_counter() - start,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "reid_results.json", payload)
    atomic_write_text(out / "reid_table.md", f"{setting}\n\n{_table(summary)}")
    try:
        atomic_write_bytes(out / "reid_reproduction.png", _figure(summary, f"MSTAT reproduction: {setting}"))
    except ImportError:
        print("note: matplotlib is not installed; no figure", file=sys.stderr)
    return payload


def run(args: argparse.Namespace) -> int:
    """Entry point of ``pickwise reproduce reid``."""
    from ..exceptions import ConfigError

    default_seeds = "0" if args.quick else "0,1"
    try:
        seeds = tuple(int(s) for s in str(args.seeds or default_seeds).split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"reproduce reid: --seeds must be comma-separated integers; got {args.seeds!r}") from None
    arms = tuple(a.strip() for a in str(args.arms).split(",") if a.strip())
    kwargs: dict[str, Any] = {
        "steps": args.steps,
        "height": args.height,
        "width": args.width,
        "seq_len": args.seq_len,
        "identities": args.identities,
        "instances": args.instances,
    }
    if args.quick:
        kwargs = {"steps": 3, "height": 32, "width": 16, "seq_len": 3, "identities": 4, "instances": 2}
    for key in ("steps", "height", "width", "seq_len", "identities", "instances"):
        if kwargs[key] < 1:
            raise ConfigError(f"reproduce reid: --{key.replace('_', '-')} must be >= 1; got {kwargs[key]}")
    payload = run_reproduction(
        arms=arms,
        seeds=seeds or (0,),
        lr=args.lr,
        data_dir=args.data_dir,
        quick=args.quick,
        output_dir=args.output_dir,
        **kwargs,
    )
    out = Path(args.output_dir)
    print(f"\nMSTAT reproduction: {payload['setting']}")
    print(_table(payload["summary"]), end="")
    print(
        f"results: {out / 'reid_results.json'}, table: {out / 'reid_table.md'}, figure: {out / 'reid_reproduction.png'}"
    )
    return 0
