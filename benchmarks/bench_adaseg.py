"""Benchmarks of active-DA segmentation: the MCU loss overhead of a training step, and selection time per image.

1. One optimizer step (forward, backward, SGD step) of ``deeplabv3plus_tiny`` on the same paired batch (source +
   target) with the full ADA-MCU objective (source CE + active CE + three contrastive levels, c2c + p2p, correlation
   reweighting, EMA and bank updates) vs plain CE (source + active CE). Target: MCU step <= 1.5x the CE step.
2. Selection over a whole target pool, per strategy (model forward included, as in a real round), reported per image.

Timings are medians of interleaved repeats (A B, B A, ...) after warm-up, so a shared machine's drifts hit both sides;
the step ratio is also given as the median (and quartiles) of the per-repeat ratios of the two adjacent steps, which
is the steadier number on a machine whose speed drifts over seconds.
Results: ``benchmarks/results/adaseg.json`` and ``adaseg.md``.

Usage: ``python benchmarks/bench_adaseg.py [--batch 4] [--size 64] [--repeats 15] [--pool 200] [--threads N]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import pickwise.models.deeplab  # noqa: F401  (registers the DeepLab family)
from pickwise.models import create_model
from pickwise.tasks.adaseg.acquisition import get_strategy, split_budget
from pickwise.tasks.adaseg.contrastive import MCUConfig, MultiLevelContrastiveLoss
from pickwise.tasks.adaseg.task import ADASegModel, ADASegTask
from pickwise.utils.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
K = 11  # the embedded benchmark's classes


def _batch(b: int, size: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, K, (b, 1, size // 8, size // 8), generator=g).float()
    ls = torch.nn.functional.interpolate(blocks, size=(size, size), mode="nearest")[:, 0].long()
    lt = torch.full_like(ls, 255)
    pick = torch.rand(b, size, size, generator=g) < 0.05  # about 5 % active labels
    lt[pick] = ls.roll(1, 0)[pick]
    return (
        torch.randn(b, 3, size, size, generator=g),
        ls,
        torch.randn(b, 3, size, size, generator=g),
        lt,
        torch.arange(b),
    )


def bench_step(batch: int, size: int, repeats: int, model_name: str = "deeplabv3plus_tiny") -> dict[str, float]:
    """Median seconds of one optimizer step with the MCU objective vs plain CE (same model weights and batch)."""
    torch.manual_seed(0)
    net = create_model(model_name, num_classes=K)
    model = ADASegModel(net, MultiLevelContrastiveLoss(K, net.feature_channels, MCUConfig()))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    data = _batch(batch, size)
    tasks = {"ce": ADASegTask(K, use_mcu=False), "mcu": ADASegTask(K, use_mcu=True)}

    def step(task: ADASegTask) -> None:
        opt.zero_grad(set_to_none=True)
        loss, _ = task.training_loss(model, data, torch.device("cpu"), torch.Generator().manual_seed(0))
        loss.backward()
        opt.step()

    for _ in range(3):
        for t in tasks.values():
            step(t)
    times: dict[str, list[float]] = {k: [] for k in tasks}
    order = list(tasks)
    for r in range(repeats):
        for name in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            step(tasks[name])
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    pair = [m / c for m, c in zip(times["mcu"], times["ce"])]
    quart = statistics.quantiles(pair, n=4) if len(pair) > 1 else [pair[0]] * 3
    return {
        "ce_s": med["ce"],
        "mcu_s": med["mcu"],
        "ratio": med["mcu"] / med["ce"],
        "pair_ratio_median": statistics.median(pair),
        "pair_ratio_quartiles": [quart[0], quart[2]],
        "ce_range": [min(times["ce"]), max(times["ce"])],
        "mcu_range": [min(times["mcu"]), max(times["mcu"])],
    }


@torch.no_grad()
def bench_selection(pool: int, size: int, budget_per_image: int, repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds per image to score and select over a pool of ``pool`` images, per strategy."""
    torch.manual_seed(0)
    net = create_model("deeplabv3plus_tiny", num_classes=K).eval()
    images = torch.randn(pool, 3, size, size)
    out: dict[str, dict[str, float]] = {}
    for name in ("random", "entropy", "margin", "mcu", "ripu_pixel", "ripu_region"):
        strat = get_strategy(name)
        runs = []
        for _ in range(repeats):
            labelled = torch.zeros(pool, size, size, dtype=torch.bool)
            per_image = split_budget(budget_per_image * pool, torch.full((pool,), size * size))
            t0 = time.perf_counter()
            for i in range(0, pool, 50):
                logits = net(images[i : i + 50])["logits"]
                strat(logits, labelled[i : i + 50], per_image[i : i + 50], generator=torch.Generator())
            runs.append((time.perf_counter() - t0) / pool)
        out[name] = {"seconds_per_image": statistics.median(runs), "range": [min(runs), max(runs)]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4, help="source images per step (as many target)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--pool", type=int, default=200)
    p.add_argument("--budget-per-image", type=int, default=45, help="pixels per image and round (2.2%% of 64x64 / 2)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--model", default="deeplabv3plus_tiny", help="segmentation model of the step benchmark")
    p.add_argument("--skip-selection", action="store_true", help="only the training-step benchmark")
    p.add_argument("--out", default="adaseg", help="file stem under benchmarks/results/")
    p.add_argument("--no-numba", action="store_true", help="torch ops only (no numba kernels)")
    args = p.parse_args()
    if args.no_numba:
        from pickwise.tasks.adaseg import fast_labels, unit_plan

        unit_plan._TRIED, unit_plan._KERNEL = True, None
        fast_labels._TRIED, fast_labels._KERNELS = True, None
    if args.threads:
        torch.set_num_threads(args.threads)
    step = bench_step(args.batch, args.size, args.repeats, args.model)
    sel = (
        {}
        if args.skip_selection
        else bench_selection(args.pool, args.size, args.budget_per_image, max(3, args.repeats // 5))
    )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    from pickwise.tasks.adaseg.unit_plan import numba_planner_available

    unit_plan_numba = numba_planner_available()
    result = {
        "settings": vars(args),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg": load,
        "unit_planner": "numba" if unit_plan_numba else "torch",
        "step": step,
        "selection": sel,
    }
    RESULTS.mkdir(exist_ok=True)
    atomic_write_json(RESULTS / f"{args.out}.json", result)
    lines = [
        "# adaseg benchmark",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs, load average {load}, "
        f"unit planner: {'numba' if unit_plan_numba else 'torch'}.",
        "",
        f"## Training step ({args.model}, {args.batch}+{args.batch} images of {args.size}x{args.size}, "
        f"median of {args.repeats} interleaved)",
        "",
        "| objective | median s/step | range |",
        "|---|---|---|",
        f"| source CE + active CE | {step['ce_s']:.4f} | {step['ce_range'][0]:.4f}-{step['ce_range'][1]:.4f} |",
        f"| + multi-level contrastive units | {step['mcu_s']:.4f} | "
        f"{step['mcu_range'][0]:.4f}-{step['mcu_range'][1]:.4f} |",
        "",
        f"MCU / CE = **{step['ratio']:.2f}x** (ratio of the medians; target <= 1.5x: "
        f"{'met' if step['ratio'] <= 1.5 else 'NOT met'}). Median of the per-repeat ratios "
        f"{step['pair_ratio_median']:.2f}x (quartiles {step['pair_ratio_quartiles'][0]:.2f}-"
        f"{step['pair_ratio_quartiles'][1]:.2f}).",
        "",
        f"## Selection over a pool of {args.pool} images ({args.budget_per_image} px per image, forward included)",
        "",
        "| strategy | median ms / image | range |",
        "|---|---|---|",
    ]
    for name, r in sel.items():
        lines.append(
            f"| {name} | {1000 * r['seconds_per_image']:.2f} | {1000 * r['range'][0]:.2f}-{1000 * r['range'][1]:.2f} |"
        )
    if not sel:
        lines = lines[:-5]  # no selection section
    atomic_write_text(RESULTS / f"{args.out}.md", "\n".join(lines) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
