"""Benchmarks: DGConv2d training-step overhead vs a dense conv, and exported grouped conv vs a directly built one.

1. Training step (forward + backward, weight and input gradients) of ``DGConv2d(C, C, 3)`` against
   ``nn.Conv2d(C, C, 3)`` of the same shape at ``C = 256``: DGConv trains as a dense conv plus the mask ``U``, so the
   overhead of building ``U`` and ``W * U`` should stay within 10 %.
2. Inference (no grad) of the conv returned by ``dgconv_to_conv`` against ``nn.Conv2d(C, C, 3, groups=G)`` built
   directly (same weights): the ratio should be 1.0, since it is the same module type.

Timings are medians of ``--repeats`` (3x for the cheap inference case) interleaved measurements (A B, B A, ...)
after warm-up, so slow drifts of a
shared machine hit both sides. Results: ``benchmarks/results/dgconv.json`` and ``dgconv.md``.

Usage: ``python benchmarks/bench_dgconv.py [--channels 256] [--batch 8,32] [--size 14] [--repeats 15] [--threads N]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from pickwise.nn.conv import DGConv2d, dgconv_to_conv

RESULTS = Path(__file__).resolve().parent / "results"


def _interleaved(fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 3) -> dict[str, list[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:  # alternate the order: A B, B A, ...
            fn = fns[name]
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def bench_training(channels: int, batch: int, size: int, repeats: int) -> dict:
    torch.manual_seed(0)
    dg = DGConv2d(channels, channels, 3, padding=1)
    dense = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    x = torch.randn(batch, channels, size, size, requires_grad=True)
    grad = torch.randn(batch, channels, size, size)

    def step(m: nn.Module) -> Callable[[], None]:
        def run() -> None:
            m.zero_grad(set_to_none=True)
            x.grad = None
            m(x).backward(grad)

        return run

    def mask_only() -> None:
        with torch.no_grad():
            _ = dg.weight * dg.mask()[:, :, None, None]

    times = _interleaved({"dgconv": step(dg), "dense": step(dense), "mask": mask_only}, repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "shape": [batch, channels, size, size],
        "dgconv_ms": 1e3 * med["dgconv"],
        "dense_ms": 1e3 * med["dense"],
        "mask_build_ms": 1e3 * med["mask"],
        "ratio": med["dgconv"] / med["dense"],
        "dgconv_ms_all": [1e3 * t for t in times["dgconv"]],
        "dense_ms_all": [1e3 * t for t in times["dense"]],
    }


@torch.no_grad()
def bench_export(channels: int, batch: int, size: int, repeats: int, groups_log2: int) -> dict:
    torch.manual_seed(0)
    k = channels.bit_length() - 1
    dg = DGConv2d(channels, channels, 3, padding=1).eval()
    # identity gates on interleaved bits: a non-trivial permutation, G = 2 ** groups_log2
    pattern = [1.0] * k
    for i in ([*range(0, k, 2), *range(1, k, 2)])[:groups_log2]:
        pattern[i] = -1.0
    dg.gate.copy_(torch.tensor(pattern))
    exported, perm_in, perm_out = dgconv_to_conv(dg)
    direct = nn.Conv2d(channels, channels, 3, padding=1, groups=dg.groups, bias=False).eval()
    direct.weight.copy_(exported.weight)
    x = torch.randn(batch, channels, size, size)
    err = (exported(x[:, perm_in]) - dg(x)[:, perm_out]).abs().max().item()
    times = _interleaved({"exported": lambda: exported(x), "direct": lambda: direct(x)}, 3 * repeats)
    med = {key: statistics.median(v) for key, v in times.items()}
    return {
        "groups": dg.groups,
        "shape": [batch, channels, size, size],
        "exported_ms": 1e3 * med["exported"],
        "direct_ms": 1e3 * med["direct"],
        "ratio": med["exported"] / med["direct"],
        "export_max_abs_diff": err,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--batch", default="8,32", help="comma-separated batch sizes for the training step")
    parser.add_argument("--size", type=int, default=14)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--groups-log2", type=int, default=5, help="exported conv has 2**N groups (5: ResNeXt's 32)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in str(args.batch).split(",") if b.strip()]
    trains = [bench_training(args.channels, b, args.size, args.repeats) for b in batches]
    export = bench_export(args.channels, batches[0], args.size, args.repeats, args.groups_log2)
    env = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "device": "cpu",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "repeats": args.repeats,
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dgconv.json").write_text(
        json.dumps({"env": env, "training": trains, "export": export}, indent=2) + "\n"
    )
    rows = [
        "| measurement (3x3, stride 1, padding 1) | DGConv / exported | dense / direct | ratio |",
        "|---|---|---|---|",
        *(
            f"| training step (fwd + bwd), DGConv2d vs nn.Conv2d, input {'x'.join(map(str, t['shape']))} "
            f"| {t['dgconv_ms']:.1f} ms | {t['dense_ms']:.1f} ms | {t['ratio']:.3f} |"
            for t in trains
        ),
        f"| building W * U alone (no grad), C = {args.channels} | {trains[0]['mask_build_ms']:.2f} ms | | |",
        f"| inference, exported conv vs nn.Conv2d(groups={export['groups']}) built directly, input "
        f"{'x'.join(map(str, export['shape']))} "
        f"| {export['exported_ms']:.2f} ms | {export['direct_ms']:.2f} ms | {export['ratio']:.3f} |",
    ]
    md = (
        "## DGConv2d (learned groups): training overhead and exported inference\n\n"
        f"CPU, torch {env['torch']}, {env['threads']} thread(s), {env['cpu_count']} logical cores, "
        f"{env['platform']}, {env['date']}; median of {args.repeats} interleaved repeats after warm-up. The machine "
        f"is shared with other jobs (1-min load average {env['load_average_1m']:.1f} at the end), so single numbers "
        "are noisy; ratios of interleaved runs are the meaningful part.\n\n" + "\n".join(rows) + "\n\n"
        f"Export exactness on this input: max |conv(x[:, perm_in]) - dgconv(x)[:, perm_out]| = "
        f"{export['export_max_abs_diff']:.1e}. Targets: training overhead <= 10 % at C = 256 (ratio <= 1.10); "
        "exported/direct about 1.0 (the exported module *is* an `nn.Conv2d(groups=G)`, so any deviation is noise).\n"
    )
    (RESULTS / "dgconv.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
