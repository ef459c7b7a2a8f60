"""``pickwise reproduce isp``: classical ISP vs U-Net, PyNET, MW-ISPNet- and AWNet-style nets on embedded RAW pairs.

Trains the CPU-size learned ISPs (``isp_unet_tiny``, ``pynet_tiny`` with its coarse-to-fine level schedule,
``mwisp_tiny``, ``awnet_tiny``) with the same loss (L1 + 0.15 (1 - MS-SSIM), MW-ISPNet's fidelity loss without the
VGG term, which needs weights that do not ship offline), optimiser (Adam, cosine schedule), crops and number of
optimizer steps, for every seed, on the ``isp-synth`` benchmark (real bundled photos rendered through a simulated
phone sensor, :mod:`pickwise.tasks.isp.synth`), and scores them with the classical pipeline calibrated to the
simulated phone (:func:`~pickwise.tasks.isp.synth.synth_classical_isp`) as the non-learned row.

Reported per model: PSNR, SSIM, MS-SSIM (kept apart) and the colour-invariant PSNR as a separate column, mean and
standard error over seeds, plus parameters, MACs and training time. Each run lives in
``<output-dir>/runs/<model>-s<seed>/`` (resumable; a finished run is skipped on rerun), the summary in
``isp_results.json`` / ``isp_results.md`` and an example figure (full-resolution test photo, tiled inference) in
``isp_examples.png``; every file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["DEFAULT_MODELS", "METRICS", "add_arguments", "run", "run_reproduction", "summarize"]

DEFAULT_MODELS = ("isp_classical", "isp_unet_tiny", "pynet_tiny", "mwisp_tiny", "awnet_tiny")
METRICS = ("psnr", "ssim", "ms_ssim", "psnr_color_invariant")
# share of the step budget per PyNET level (5 -> 0): the fine levels cost most and matter most (reconstructed;
# the paper trains 8/8/17/17/25/50 epochs at levels 5..0, i.e. about 7/7/14/14/20/40 %)
PYNET_SHARE = (0.07, 0.07, 0.13, 0.13, 0.2, 0.4)

_PRESETS: dict[str, dict[str, Any]] = {
    "default": {"steps": 500, "batch_size": 8, "crop": 32, "train_subset": None, "test_subset": None, "seeds": "0,1"},
    "quick": {"steps": 2, "batch_size": 2, "crop": 16, "train_subset": 8, "test_subset": 2, "seeds": "0"},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``reproduce isp`` options."""
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated registered models")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1; quick: 0)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per model (default 500)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--crop", type=int, default=None, help="training crop side in packed pixels (default 32)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--test-subset", type=int, default=None)
    parser.add_argument("--data", default="isp-synth", help="isp-synth (generated on first use) or a ZRR folder")
    parser.add_argument("--data-root", default=None, help="where isp-synth is generated")
    parser.add_argument("--quick", action="store_true", help="a few steps on a few pairs, one seed (seconds)")
    parser.add_argument("--no-figure", action="store_true", help="skip the example figure")
    parser.add_argument("--output-dir", default="runs/reproduce-isp")
    parser.set_defaults(handler=run)


def _mean_se(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return mean, math.sqrt(var / len(vals))


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: mean and standard error over seeds of every metric, with params, MACs and training seconds."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        runs = [r for r in rows if r["model"] == model]
        entry: dict[str, Any] = {"model": model, "seeds": [r["seed"] for r in runs], "params": runs[0]["params"]}
        entry["macs_per_image"] = runs[0]["macs_per_image"]
        for key in METRICS:
            entry[key], entry[f"{key}_se"] = _mean_se([r["metrics"].get(key, math.nan) for r in runs])
        entry["ms_ssim_scales"] = runs[0]["metrics"].get("ms_ssim_scales")
        entry["train_seconds"], _ = _mean_se([r["seconds"] for r in runs])
        out.append(entry)
    return out


def _config(model: str, seed: int, opts: dict[str, Any], out: Path) -> Any:
    from ..tasks.isp.config import resolve_config

    steps = int(opts["steps"])
    items = {
        "model.name": model,
        "data.name": opts["data"],
        "data.root": opts["data_root"],
        "data.crop": opts["crop"],
        "data.batch_size": opts["batch_size"],
        "data.eval_batch_size": 4,
        "data.train_subset": opts["train_subset"],
        "data.test_subset": opts["test_subset"],
        "data.augment": "d4",
        # the synthetic sensor has black level 63 (MW-ISPNet's reading of ZRR); the calibrated classical pipeline
        # expects PyNET's /1020 normalization
        "data.convention": "pynet" if model == "isp_classical" else "mwisp",
        "loss.l1": 1.0,
        "loss.ms_ssim": 0.15,
        "optim.lr": opts["lr"],
        "train.epochs": 10_000,
        "train.max_steps": steps,
        "train.seed": seed,
        "train.device": "cpu",
        "train.eval_every": 0,
        "train.log_every": 50,
        "train.progress": False,
        "train.tensorboard": False,
        "checkpoint.keep_last": 1,
        "output_dir": str(out / "runs"),
        "name": f"{model}-s{seed}",
    }
    if model.startswith("pynet"):
        items["levels.levels"] = [5, 4, 3, 2, 1, 0]
        items["levels.steps"] = [max(1, round(steps * s)) for s in PYNET_SHARE]
    return resolve_config(
        overrides=[f"{k}={json.dumps(v, allow_nan=False)}" for k, v in items.items() if v is not None]
    )


def _run_one(model: str, seed: int, opts: dict[str, Any], out: Path) -> dict[str, Any]:
    """Train/evaluate one (model, seed), or load its finished results."""
    from ..tasks.isp.run import run_isp

    cfg = _config(model, seed, opts, out)
    run_dir = out / "runs" / str(cfg.name)
    done = run_dir / "results.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    if model == "isp_classical":
        return _run_classical(cfg, run_dir)
    resume = run_dir.is_dir() and any(run_dir.iterdir())
    return run_isp(cfg, resume=resume or None)


def _classical_for(cfg: Any) -> torch.nn.Module:
    """The classical pipeline calibrated to the isp-synth phone (plain defaults for other data)."""
    from ..tasks.isp.run import build_isp_model, dataset_root

    root = dataset_root(cfg)
    if (root / "meta.json").is_file():
        from ..tasks.isp.synth import synth_classical_isp

        return synth_classical_isp(root)
    return build_isp_model(cfg)


def _run_classical(cfg: Any, run_dir: Path) -> dict[str, Any]:
    from ..models.isp import isp_model_stats
    from ..tasks.isp.run import build_isp_datasets, evaluate_isp, make_task

    start = time.perf_counter()
    model = _classical_for(cfg)
    (test,) = build_isp_datasets(cfg, ("test",))
    metrics = evaluate_isp(model, test, make_task(cfg), cfg.data.eval_batch_size)
    stats = isp_model_stats(model, tuple(test[0][0].shape[-2:]))
    payload = {
        "name": cfg.name,
        "model": cfg.model.name,
        "data": cfg.data.name,
        "metrics": metrics,
        "phases": [],
        "trained": False,
        "params": stats["params"],
        "macs_per_image": stats["macs"],
        "num_test": len(test),  # type: ignore[arg-type]
        "seconds": time.perf_counter() - start,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "results.json", payload)
    return payload


def _figure(models: list[str], seed: int, opts: dict[str, Any], out: Path, dpi: int = 48) -> bytes | None:
    """RAW preview / classical / each model / target on a full-resolution test photo (tiled inference)."""
    from ..tasks.isp.figures import comparison_figure
    from ..tasks.isp.raw import ZRRDataset
    from ..tasks.isp.run import _load_weights, build_isp_model, dataset_root
    from ..tasks.isp.tiling import tiled_forward

    cfg = _config(models[0], seed, opts, out)
    root = dataset_root(cfg)
    split = "full" if (root / "full_resolution").is_dir() else "test"
    panels = []
    raw_pynet = target = None
    for model in models:
        cfg = _config(model, seed, opts, out)
        ds = ZRRDataset(root, split, convention=cfg.data.convention, crop=256 if split == "full" else None)
        raw, rgb, _ = ds[0]
        if model == "isp_classical":
            net = _classical_for(cfg)
            raw_pynet = raw
        else:
            net = build_isp_model(cfg)
            weights = out / "runs" / str(cfg.name) / "model.safetensors"
            if not weights.is_file():
                continue
            _load_weights(net, weights)
        with torch.no_grad():
            pred = tiled_forward(net.eval(), raw[None], tile=64, overlap=16)[0].clamp(0, 1)
        panels.append(("classical" if model == "isp_classical" else model, pred))
        target = rgb
        raw_pynet = raw if raw_pynet is None else raw_pynet
    if not panels or target is None or raw_pynet is None:
        return None
    return comparison_figure(raw_pynet, panels, target, dpi=dpi)


def _markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"ISP reproduction on {summary['data']} ({summary['num_train']} train / {summary['num_test']} test pairs, "
        f"{summary['steps']} steps x batch {summary['batch_size']} at {2 * summary['crop']}px RGB crops, "
        f"seeds {summary['seeds']}); mean ± standard error over seeds",
        "",
        "| model | params | GMACs/img | PSNR | SSIM | MS-SSIM | colour-inv. PSNR | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(r: dict[str, Any], key: str, digits: int) -> str:
        m, se = r[key], r[f"{key}_se"]
        if not math.isfinite(m):
            return "n/a"
        return f"{m:.{digits}f}" + ("" if not math.isfinite(se) else f" ± {se:.{digits}f}")

    for r in summary["table"]:
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['macs_per_image'] / 1e9:.2f} | {cell(r, 'psnr', 2)} | "
            f"{cell(r, 'ssim', 4)} | {cell(r, 'ms_ssim', 4)} | {cell(r, 'psnr_color_invariant', 2)} | "
            f"{r['train_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def run_reproduction(
    *,
    models: tuple[str, ...] = DEFAULT_MODELS,
    seeds: tuple[int, ...] = (0, 1),
    steps: int = 500,
    batch_size: int = 8,
    crop: int = 32,
    lr: float = 5e-4,
    train_subset: int | None = None,
    test_subset: int | None = None,
    data: str = "isp-synth",
    data_root: str | None = None,
    figure: bool = True,
    output_dir: str | Path = "runs/reproduce-isp",
) -> dict[str, Any]:
    """Train and evaluate every model for every seed; writes ``isp_results.json``, ``.md`` and the figure."""
    import pickwise.models.isp  # noqa: F401  (registers the ISP models)

    out = Path(output_dir)
    opts = {
        "steps": steps,
        "batch_size": batch_size,
        "crop": crop,
        "lr": lr,
        "train_subset": train_subset,
        "test_subset": test_subset,
        "data": data,
        "data_root": data_root,
    }
    rows = []
    total = len(models) * len(seeds)
    for model in models:
        for seed in seeds if model != "isp_classical" else seeds[:1]:
            start = time.perf_counter()
            row = _run_one(model, seed, opts, out)
            rows.append({**row, "seed": seed})
            m = row["metrics"]
            print(
                f"[{len(rows)}/{total}] {model} seed {seed}: PSNR {m['psnr']:.2f} SSIM {m['ssim']:.4f} "
                f"colour-inv. PSNR {m['psnr_color_invariant']:.2f} ({time.perf_counter() - start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    ref = next((r for r in rows if r.get("num_train") is not None), rows[0])
    summary = {
        "data": data,
        **{k: v for k, v in opts.items() if k not in ("data", "data_root")},
        "seeds": list(seeds),
        "models": list(models),
        "loss": "l1 + 0.15 (1 - ms_ssim)",
        "num_train": ref.get("num_train"),
        "num_test": ref.get("num_test"),
        "table": summarize(rows),
        "runs": rows,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "isp_results.json", summary)
    atomic_write_text(out / "isp_results.md", _markdown(summary))
    if figure:
        png = _figure(list(models), seeds[0], opts, out)
        if png is not None:
            atomic_write_bytes(out / "isp_examples.png", png)
    return summary


def run(args: argparse.Namespace) -> int:
    """Entry point of ``pickwise reproduce isp``."""
    preset = dict(_PRESETS["quick" if args.quick else "default"])
    for key in ("steps", "batch_size", "crop", "train_subset", "test_subset", "seeds"):
        value = getattr(args, key)
        if value is not None:
            preset[key] = value
    try:
        seeds = tuple(int(s) for s in str(preset["seeds"]).split(",") if s.strip())
    except ValueError:
        from ..exceptions import ConfigError

        raise ConfigError(f"reproduce isp: --seeds must be comma-separated integers; got {preset['seeds']!r}") from None
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    summary = run_reproduction(
        models=models,
        seeds=seeds or (0,),
        steps=preset["steps"],
        batch_size=preset["batch_size"],
        crop=preset["crop"],
        lr=args.lr,
        train_subset=preset["train_subset"],
        test_subset=preset["test_subset"],
        data=args.data,
        data_root=args.data_root,
        figure=not args.no_figure,
        output_dir=args.output_dir,
    )
    print(_markdown(summary))
    print(f"results: {Path(args.output_dir) / 'isp_results.json'}")
    return 0
