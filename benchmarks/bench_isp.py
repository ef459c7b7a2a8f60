"""Benchmarks of the learned-ISP networks: forward latency per model, and tiled vs untiled full-resolution inference.

1. Per model (CPU sizes, and the paper sizes with ``--paper``): parameters, MACs and the median forward latency of one
   packed RAW ``[1, 4, 128, 128]`` → RGB 256x256 on CPU with one thread (eval mode, no grad), after warm-up.
2. For a 1024x1024 RGB output (packed 512x512): untiled vs tiled (256-pixel packed tiles, 32 overlap) latency and
   peak memory (the tensors the call allocates that are alive at once, tracked exactly by
   ``pickwise.tasks.isp.tiling.peak_tensor_memory``), and the largest difference between the two outputs.

Results: ``benchmarks/results/isp.json`` and ``isp.md`` (written atomically). Numbers depend on the machine's load:
the file records the load average before and after.

Usage: ``python benchmarks/bench_isp.py [--repeats 5] [--threads 1] [--paper] [--models a,b]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

import pickwise.models.isp  # noqa: F401  (registers the ISP models)
from pickwise.models import create_model
from pickwise.models.isp import isp_model_stats
from pickwise.tasks.isp.tiling import measure_inference
from pickwise.utils.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
TINY = ("isp_classical", "isp_unet_tiny", "pynet_tiny", "mwisp_tiny", "awnet_tiny")
PAPER = ("isp_unet", "pynet", "mwisp", "awnet")


def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paper", action="store_true", help="also time the paper-size models")
    parser.add_argument("--models", default=None, help="comma-separated models (default: the CPU sizes)")
    parser.add_argument("--full", type=int, default=512, help="packed side of the tiled/untiled comparison")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--output", default=str(RESULTS / "isp"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = tuple(args.models.split(",")) if args.models else TINY + (PAPER if args.paper else ())
    load_before = _load()
    rows = []
    for name in models:
        torch.manual_seed(0)
        net = create_model(name).eval()
        stats = isp_model_stats(net, (128, 128))
        t = measure_inference(net, (128, 128), repeats=args.repeats, warmup=1)
        rows.append({"model": name, **stats, **t})
        print(f"{name}: {t['latency_ms']:.1f} ms (256x256 RGB), {stats['params']:,} params", flush=True)
    tiled = []
    for name in models:
        if name not in TINY:
            continue
        net = create_model(name).eval()
        entry = {"model": name}
        for mode, tile in (("untiled", None), ("tiled", args.tile)):
            t = measure_inference(
                net,
                (args.full, args.full),
                tile=tile,
                overlap=args.overlap,
                repeats=max(1, args.repeats // 2),
                warmup=1,
                memory="tensors",
            )
            entry[f"{mode}_ms"] = t["latency_ms"]
            entry[f"{mode}_peak_bytes"] = t["peak_memory_bytes"]
        with torch.no_grad():
            from pickwise.tasks.isp.tiling import tiled_forward

            x = torch.rand(1, 4, args.full, args.full, generator=torch.Generator().manual_seed(0))
            entry["max_abs_diff_tiled_vs_untiled"] = float(
                (tiled_forward(net, x, args.tile, args.overlap) - net(x)).abs().max()
            )
        tiled.append(entry)
        print(f"{name}: untiled {entry['untiled_ms']:.0f} ms, tiled {entry['tiled_ms']:.0f} ms", flush=True)
    payload = {
        "latency_256": rows,
        "tiled_1024": tiled,
        "tile": args.tile,
        "overlap": args.overlap,
        "threads": args.threads,
        "repeats": args.repeats,
        "load_average_before": load_before,
        "load_average_after": _load(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.with_suffix(".json"), payload)
    lines = [
        f"# ISP benchmark (CPU, {args.threads} thread(s), medians of {args.repeats}; load average before/after "
        f"{load_before} / {payload['load_average_after']})",
        "",
        "| model | params | GMACs (256x256 out) | latency ms (256x256 out) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['model']} | {r['params']:,} | {r['macs'] / 1e9:.2f} | {r['latency_ms']:.1f} |" for r in rows]
    lines += [
        "",
        f"Full resolution {2 * args.full}x{2 * args.full} RGB (packed {args.full}x{args.full}); tiles {args.tile} "
        f"packed px, overlap {args.overlap}; peak = bytes of the tensors the call allocates that are alive at once",
        "",
        "| model | untiled ms | tiled ms | untiled peak MB | tiled peak MB | max abs diff |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {e['model']} | {e['untiled_ms']:.0f} | {e['tiled_ms']:.0f} | {e['untiled_peak_bytes'] / 1e6:.0f} | "
        f"{e['tiled_peak_bytes'] / 1e6:.0f} | {e['max_abs_diff_tiled_vs_untiled']:.2e} |"
        for e in tiled
    ]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
