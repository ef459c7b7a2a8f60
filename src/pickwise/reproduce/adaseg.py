"""``pickwise reproduce adaseg``: ADA-MCU vs random / entropy / RIPU-style acquisition at equal pixel budgets.

On the embedded two-domain benchmark (``synth-source`` -> ``synth-target``, :mod:`pickwise.tasks.adaseg.synth`), with
``deeplabv3plus_tiny`` and the same recipe for every arm, per seed:

- ``source_only``: the shared source warm-up, then as many more source-only steps as the active arms train;
- ``target_full``: the warm-up, then source + *every* target pixel labelled (the upper bound of this recipe);
- at each budget (default 1 %, 2.2 %, 5 % of the target pool's pixels, over ``--rounds`` rounds):
  ``random``, ``entropy``, ``ripu`` (RIPU region impurity x uncertainty, region mode) trained with source CE +
  active CE, and ``ada_mcu`` (ADA-MCU's top-k + NMS selection with the multi-level contrastive units);
- ablations of ADA-MCU at ``--ablation-budget``: ``no_mcu`` (same selection, CE only), ``single_level`` (only the
  cross-domain unit), ``no_corr`` (no categories correlation matrix).

Every arm's result is written atomically to ``<output-dir>/arms/<arm>.json`` and skipped on a rerun; every run folder
is resumable. The summary (mean and standard error over seeds, the paper's claim checked: ADA-MCU at about half the
labelled pixels >= the baselines at the full budget) goes to ``adaseg_results.json`` with two figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write_json

__all__ = ["add_arguments", "run", "run_reproduction", "summarize"]

BASELINES = {"random": "random", "entropy": "entropy", "ripu": "ripu_region"}
ABLATIONS = {
    "no_mcu": ["active.mcu=false"],
    "single_level": ["contrastive.levels=[domain]"],
    "no_corr": ["contrastive.correlation=none"],
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``reproduce adaseg`` options."""
    parser.add_argument("--budgets", default="1%,2.2%,5%", help="comma-separated budgets (percent of pool pixels)")
    parser.add_argument("--ablation-budget", default="2.2%", help="budget of the ablations")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (>= 2 for standard errors)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pool-size", type=int, default=200, help="target-train images used as the pool")
    parser.add_argument("--test-size", type=int, default=150, help="target-test images evaluated")
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--round-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=4, help="source images per step (as many target)")
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--model", default="deeplabv3plus_tiny")
    parser.add_argument("--data-root", default=None, help="benchmark folder (default: generated in the cache)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one seed, two arms (a smoke test, seconds)")
    parser.add_argument("--output-dir", default="runs/reproduce-adaseg")
    parser.set_defaults(handler=run)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts = {
        k: getattr(args, k)
        for k in (
            "budgets",
            "ablation_budget",
            "seeds",
            "rounds",
            "pool_size",
            "test_size",
            "warmup_steps",
            "round_steps",
            "batch_size",
            "lr",
            "optimizer",
            "model",
            "data_root",
        )
    }
    if args.quick:
        opts.update(
            budgets="2%,5%",
            ablation_budget="5%",
            seeds="0",
            rounds=1,
            pool_size=12,
            test_size=8,
            warmup_steps=6,
            round_steps=4,
            batch_size=2,
            quick=True,
            strategies=["random", "ada_mcu"],
            ablations=["no_mcu"],
        )
    else:
        opts.update(quick=False, strategies=[*BASELINES, "ada_mcu"], ablations=list(ABLATIONS))
    opts["budgets"] = [b.strip() for b in str(opts["budgets"]).split(",") if b.strip()]
    opts["seeds"] = [int(s) for s in str(opts["seeds"]).split(",") if s.strip()]
    return opts


def _base_overrides(opts: dict[str, Any], seed: int, out: Path) -> list[str]:
    return [
        f"model.name={opts['model']}",
        f"data.batch_size={opts['batch_size']}",
        "data.eval_batch_size=50",
        f"optim.name={opts['optimizer']}",
        f"optim.lr={opts['lr']}",
        "optim.weight_decay=0.0001",
        f"optim.seed={seed}",
        f"optim.warmup_steps={opts['warmup_steps']}",
        f"optim.round_steps={opts['round_steps']}",
        f"optim.checkpoint_every={max(opts['round_steps'], 50)}",
        "optim.device=cpu",
        f"active.rounds={opts['rounds']}",
        f"output_dir={out / 'runs'}",
    ]


def _arm_config(opts: dict[str, Any], arm: str, budget: str | None, seed: int, out: Path) -> Any:
    from ..tasks.adaseg.config import resolve_adaseg_config

    over = _base_overrides(opts, seed, out)
    if arm in BASELINES:
        over += [f"active.strategy={BASELINES[arm]}", "active.mcu=false"]
    elif arm == "ada_mcu" or arm in ABLATIONS:
        over += ["active.strategy=mcu", "active.mcu=true", *ABLATIONS.get(arm, [])]
    elif arm == "target_full":
        rs = opts["round_steps"] * opts["rounds"]
        over += ["active.strategy=random", "active.mcu=false", "active.rounds=1", f"optim.round_steps={rs}"]
        budget = "100%"
    over += [f"active.budget={budget}", f"name={_arm_key(arm, budget, seed)}"]
    return resolve_adaseg_config(overrides=over)


def _arm_key(arm: str, budget: str | None, seed: int) -> str:
    b = "" if budget is None else "-" + budget.replace("%", "pct").replace("/", "per")
    return f"{arm}{b}-s{seed}"


class _Data:
    def __init__(self, opts: dict[str, Any]) -> None:
        from torch.utils.data import Subset

        from ..tasks.adaseg.datasets import load_seg_domain

        root = opts["data_root"]
        self.source = load_seg_domain("synth-source", root, split="train")
        pool = load_seg_domain("synth-target", root, split="train")
        test = load_seg_domain("synth-target", root, split="test")
        self.pool = Subset(pool, range(min(opts["pool_size"], len(pool))))
        self.test = Subset(test, range(min(opts["test_size"], len(test))))
        self.num_classes = int(getattr(self.source, "num_classes", 0)) or len(_class_names())


def _benchmark_fingerprint(opts: dict[str, Any]) -> dict[str, Any] | None:
    """The generated benchmark's parameters, content sha256 and package versions (None for other data roots)."""
    from ..tasks.adaseg.synth import synth_fingerprint

    return synth_fingerprint(opts["data_root"])


def _class_names() -> list[str]:
    from ..tasks.adaseg.datasets import class_names

    return list(class_names("synth-source"))


def _shared_warmup(opts: dict[str, Any], data: _Data, seed: int, out: Path) -> Path:
    """Train (or reuse) the seed's source-only warm-up; returns the folder holding ``warmup/``."""
    import torch

    from ..tasks.adaseg.active import PairedDataset, train_stage
    from ..tasks.adaseg.contrastive import MultiLevelContrastiveLoss
    from ..tasks.adaseg.run import net_factory
    from ..tasks.adaseg.task import ADASegModel, ADASegTask

    cfg = _arm_config(opts, "ada_mcu", opts["budgets"][0], seed, out)
    folder = out / "runs" / f"shared-s{seed}"
    if (folder / "warmup" / "weights.safetensors").exists():
        return folder
    factory = net_factory(cfg, data.num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = factory()
    model = ADASegModel(net, MultiLevelContrastiveLoss(data.num_classes, _feature_dim(net), cfg.contrastive))
    h, w = data.pool[0][0].shape[-2:]
    train = PairedDataset(data.source, _images(data.pool), torch.full((len(data.pool), h, w), 255))
    train_stage(
        cfg,
        model,
        train,
        data.test,
        ADASegTask(data.num_classes, source_only=True),
        folder / "warmup",
        cfg.optim.warmup_steps,
        torch.device("cpu"),
    )
    return folder


def _feature_dim(net: Any) -> int:
    """The network's feature width (``feature_channels`` of the DeepLab models)."""
    return int(net.feature_channels)


def _images(pool: Any) -> Any:
    from ..tasks.adaseg.active import ImagesOnly

    return ImagesOnly(pool)


def _run_arm(opts: dict[str, Any], data: _Data, arm: str, budget: str | None, seed: int, out: Path) -> dict[str, Any]:
    import torch

    from ..tasks.adaseg.active import PairedDataset, load_weights, run_active_learning, train_stage
    from ..tasks.adaseg.contrastive import MultiLevelContrastiveLoss
    from ..tasks.adaseg.oracle import DatasetLabelStore, SimulatedOracle
    from ..tasks.adaseg.run import net_factory
    from ..tasks.adaseg.task import ADASegModel, ADASegTask

    start = time.perf_counter()
    final: dict[str, Any]
    shared = _shared_warmup(opts, data, seed, out)
    cfg = _arm_config(opts, arm if arm != "source_only" else "ada_mcu", budget or opts["budgets"][0], seed, out)
    log = lambda msg: print(f"  {arm} {budget or ''} s{seed}: {msg}", file=sys.stderr)  # noqa: E731
    if arm == "source_only":
        net = net_factory(cfg, data.num_classes)()
        model = ADASegModel(net, MultiLevelContrastiveLoss(data.num_classes, _feature_dim(net), cfg.contrastive))
        load_weights(model, shared / "warmup" / "weights.safetensors")
        h, w = data.pool[0][0].shape[-2:]
        train = PairedDataset(data.source, _images(data.pool), torch.full((len(data.pool), h, w), 255))
        res = train_stage(
            cfg,
            model,
            train,
            data.test,
            ADASegTask(data.num_classes, source_only=True),
            out / "runs" / _arm_key(arm, None, seed) / "source",
            opts["round_steps"] * opts["rounds"],
            torch.device("cpu"),
            log,
        )
        final = {
            "mIoU": res.metrics.get("mIoU"),
            "labelled_fraction": 0.0,
            "per_class_iou": [res.metrics.get(f"IoU/{i}") for i in range(data.num_classes)],
        }
    else:
        run_dir = Path(cfg.output_dir) / cfg.run_name()
        results = run_active_learning(
            cfg,
            net_factory(cfg, data.num_classes),
            data.source,
            data.pool,
            data.test,
            SimulatedOracle(DatasetLabelStore(data.pool)),
            run_dir,
            num_classes=data.num_classes,
            resume=run_dir.exists(),
            warmup_from=shared,
            log=log,
        )
        last = results["stages"][-1]
        final = {k: last[k] for k in ("mIoU", "labelled_fraction", "per_class_iou")}
        final["rounds"] = [{k: r[k] for k in ("stage", "labelled_fraction", "mIoU")} for r in results["stages"]]
        if seed == opts["seeds"][0] and arm in ("ada_mcu", "ripu", "entropy", "random"):
            import contextlib

            from ..tasks.adaseg.figures import selection_figure

            with contextlib.suppress(ImportError):
                selection_figure(run_dir, data.pool, run_dir / "figures" / "selection.png")
    return {"arm": arm, "budget": budget, "seed": seed, **final, "seconds": time.perf_counter() - start}


def _arms(opts: dict[str, Any]) -> list[tuple[str, str | None, int]]:
    arms: list[tuple[str, str | None, int]] = []
    for seed in opts["seeds"]:
        arms += [("source_only", None, seed), ("target_full", None, seed)]
        arms += [(s, b, seed) for b in opts["budgets"] for s in opts["strategies"]]
        arms += [(a, opts["ablation_budget"], seed) for a in opts["ablations"]]
    return arms


def _mean_sem(values: list[float]) -> tuple[float, float | None]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return math.nan, None
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, None
    var = sum((v - m) ** 2 for v in vals) / (len(vals) - 1)
    return m, math.sqrt(var / len(vals))


def summarize(rows: list[dict[str, Any]], budgets: list[str]) -> dict[str, Any]:
    """Mean +- standard error per (arm, budget) and the paper's half-budget claim checked pair by pair."""
    groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["arm"], r["budget"]), []).append(r)
    table = []
    for (arm, budget), rs in groups.items():
        m, se = _mean_sem([r["mIoU"] for r in rs])
        table.append(
            {
                "arm": arm,
                "budget": budget,
                "labelled_fraction": sum(r["labelled_fraction"] for r in rs) / len(rs),
                "miou": m,
                "sem": se,
                "seeds": [r["seed"] for r in rs],
                "per_seed": [r["mIoU"] for r in rs],
            }
        )
    by = {(t["arm"], t["budget"]): t for t in table}

    def pct(b: str) -> float:
        return float(b.rstrip("%"))

    claims = []
    for small in budgets:
        for large in budgets:
            ratio = pct(small) / pct(large)
            if not 0.35 <= ratio <= 0.6 or ("ada_mcu", small) not in by:
                continue
            ours = by[("ada_mcu", small)]["miou"]
            base = {a: by[(a, large)]["miou"] for a in BASELINES if (a, large) in by}
            if not base:
                continue
            best = max(base, key=lambda a: base[a])
            claims.append(
                {
                    "ada_mcu_budget": small,
                    "baseline_budget": large,
                    "ada_mcu_miou": ours,
                    "best_baseline": best,
                    "best_baseline_miou": base[best],
                    "holds": bool(ours >= base[best]),
                }
            )
    return {"table": table, "claims": claims}


def run_reproduction(opts: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run (or reuse) every arm, then summarize; returns the summary written to ``adaseg_results.json``."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    data = _Data(opts)
    arms = _arms(opts)
    rows = []
    start = time.perf_counter()
    for i, (arm, budget, seed) in enumerate(arms, 1):
        path = out / "arms" / f"{_arm_key(arm, budget, seed)}.json"
        if path.exists():
            rows.append(json.loads(path.read_text()))
            continue
        row = _run_arm(opts, data, arm, budget, seed, out)
        atomic_write_json(path, row)
        rows.append(row)
        print(
            f"[{i}/{len(arms)}] {arm} {budget or ''} seed {seed}: mIoU {100 * (row['mIoU'] or float('nan')):.2f} "
            f"({row['seconds']:.0f} s, {time.perf_counter() - start:.0f} s total)",
            file=sys.stderr,
        )
    summary = summarize(rows, opts["budgets"])
    summary.update(
        settings=dict(opts),
        rows=rows,
        wall_seconds_this_call=time.perf_counter() - start,
        arm_seconds_total=sum(r["seconds"] for r in rows),
        machine={
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        num_classes=data.num_classes,
        benchmark=_benchmark_fingerprint(opts),
    )
    atomic_write_json(out / "adaseg_results.json", summary)
    _figures(summary, out)
    return summary


def _figures(summary: dict[str, Any], out: Path) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    from ..tasks.adaseg.figures import budget_curves, per_class_bars

    table = summary["table"]
    labels = {"random": "random", "entropy": "entropy", "ripu": "RIPU-style (region)", "ada_mcu": "ADA-MCU (recon.)"}
    pts = [
        {"method": labels[t["arm"]], "labelled_fraction": t["labelled_fraction"], "miou": t["miou"], "sem": t["sem"]}
        for t in table
        if t["arm"] in labels
    ]
    refs = {
        n: t["miou"]
        for t in table
        for a, n in (("source_only", "source only"), ("target_full", "target fully labelled"))
        if t["arm"] == a
    }
    budget_curves(pts, out / "adaseg_budget.png", refs, title="synth-source -> synth-target, deeplabv3plus_tiny")
    budgets = summary["settings"]["budgets"]
    top = budgets[-1]
    rows = summary["rows"]
    k = summary["num_classes"]
    per_class = {}
    for arm, budget, name in (
        ("source_only", None, "source only"),
        ("random", top, f"random {top}"),
        ("ripu", top, f"RIPU-style {top}"),
        ("ada_mcu", top, f"ADA-MCU {top}"),
        ("target_full", None, "target fully labelled"),
    ):
        rs = [r for r in rows if r["arm"] == arm and r["budget"] == budget]
        if rs:
            per_class[name] = [_mean_sem([r["per_class_iou"][c] for r in rs])[0] for c in range(k)]
    try:
        names = _class_names()
    except Exception:
        names = [str(i) for i in range(k)]
    per_class_bars(per_class, names[:k], out / "adaseg_per_class.png", title="per-class IoU (mean over seeds)")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``pickwise reproduce adaseg``."""
    opts = _options(args)
    if len(opts["seeds"]) < 1 or opts["rounds"] < 1:
        from ..exceptions import ConfigError

        raise ConfigError("reproduce adaseg: need at least one seed and one round")
    out = Path(args.output_dir)
    summary = run_reproduction(opts, out)
    for t in sorted(summary["table"], key=lambda t: (t["budget"] or "", t["arm"])):
        se = "" if t["sem"] is None else f" +- {100 * t['sem']:.2f}"
        print(
            f"{t['arm']:>13} {t['budget'] or '':>6}  labelled {100 * t['labelled_fraction']:6.2f}%  "
            f"mIoU {100 * t['miou']:.2f}{se}"
        )
    for c in summary["claims"]:
        print(
            f"claim: ADA-MCU at {c['ada_mcu_budget']} ({100 * c['ada_mcu_miou']:.2f}) >= best baseline "
            f"{c['best_baseline']} at {c['baseline_budget']} ({100 * c['best_baseline_miou']:.2f}): "
            f"{'holds' if c['holds'] else 'does not hold'}"
        )
    print(f"results: {out / 'adaseg_results.json'}")
    return 0
