"""Speed of pickwise.metrics.image SSIM / MS-SSIM against scikit-image and pytorch_msssim (same definitions).

Writes ``results/image_metrics.json`` and ``results/image_metrics.md``. Usage::

    python benchmarks/bench_image_metrics.py [--batch 16] [--size 512] [--threads 1 2] [--repeats 5] [--device cpu]

One measurement scores a batch of ``--batch`` RGB ``--size`` x ``--size`` float32 images (scikit-image: a loop over
the batch in float64, the way it is used, with ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``).
The implementations are timed round-robin inside each repeat, so that load on a shared machine hits all of them
alike; the report gives the median and the [min, max] over repeats, and the ratio of medians. Values are checked
to agree (SSIM to 1e-4, MS-SSIM to 1e-4) before timing.
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

import numpy as np
import torch

import pickwise.metrics.image as image
from pickwise.metrics.image import ms_ssim, ssim
from pickwise.utils.io import atomic_write_json, atomic_write_text

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _torch_path(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """Run ``fn`` with the fused numba kernel switched off (the path used on GPUs, with autograd, without numba)."""

    def call() -> torch.Tensor:
        saved = image.fused_ssim_available
        image.fused_ssim_available = lambda pred, target: False
        try:
            return fn()
        finally:
            image.fused_ssim_available = saved

    return call


def _candidates(x: torch.Tensor, y: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    out: dict[str, Callable[[], torch.Tensor]] = {
        "pickwise ssim": lambda: ssim(x, y, reduction="none"),
        "pickwise ms_ssim": lambda: ms_ssim(x, y, reduction="none"),
    }
    if image.fused_ssim_available(x, y):  # also time the torch path, for readers without numba
        out["pickwise ssim, torch path"] = _torch_path(out["pickwise ssim"])
        out["pickwise ms_ssim, torch path"] = _torch_path(out["pickwise ms_ssim"])
    try:
        import pytorch_msssim as pm

        out["pytorch_msssim ssim"] = lambda: pm.ssim(x, y, data_range=1, size_average=False)
        out["pytorch_msssim ms_ssim"] = lambda: pm.ms_ssim(x, y, data_range=1, size_average=False)
    except ImportError:
        pass
    if x.device.type == "cpu":
        try:
            from skimage.metrics import structural_similarity

            xs = [a.permute(1, 2, 0).numpy().astype(np.float64) for a in x]
            ys = [a.permute(1, 2, 0).numpy().astype(np.float64) for a in y]

            def sk() -> torch.Tensor:
                return torch.tensor(
                    [
                        structural_similarity(
                            a,
                            b,
                            gaussian_weights=True,
                            sigma=1.5,
                            use_sample_covariance=False,
                            data_range=1,
                            channel_axis=-1,
                        )
                        for a, b in zip(xs, ys)
                    ]
                )

            out["scikit-image ssim"] = sk
        except ImportError:
            pass
    return out


def run(batch: int, size: int, threads: int, repeats: int, device: torch.device) -> dict:
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 5, 1, 2)
    y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    x, y = x.to(device), y.to(device)
    cands = _candidates(x, y)
    values = {name: fn().double().cpu() for name, fn in cands.items()}  # warm-up + agreement check
    for name, v in values.items():
        ref = values["pickwise ms_ssim" if "ms_ssim" in name else "pickwise ssim"]
        diff = float((v - ref).abs().max())
        if diff > 1e-4:
            raise SystemExit(f"{name} disagrees with pickwise by {diff:.2e}")
    times: dict[str, list[float]] = {name: [] for name in cands}
    cpu_times: dict[str, list[float]] = {name: [] for name in cands}
    for _ in range(repeats):
        for name, fn in cands.items():
            _sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu_start)
    rows = {
        name: {
            "median_s": statistics.median(t),
            "min_s": min(t),
            "max_s": max(t),
            "median_cpu_s": statistics.median(cpu_times[name]),
            "runs": len(t),
        }
        for name, t in times.items()
    }
    return {"threads": threads, "device": str(device), "batch": batch, "size": size, "timings": rows}


def _ratio(rows: dict, slow: str, fast: str) -> float | None:
    if slow in rows and fast in rows:
        return rows[slow]["median_s"] / rows[fast]["median_s"]
    return None


def _markdown(results: list[dict], meta: dict) -> str:
    lines = [
        "# Image metrics: speed of SSIM / MS-SSIM",
        "",
        f"Generated by `benchmarks/bench_image_metrics.py` on {meta['machine']} (torch {meta['torch']}, load average "
        f"at start {meta['load_start']}, at end {meta['load_end']}). A batch of {results[0]['batch']} RGB "
        f"{results[0]['size']}x{results[0]['size']} float32 images; median [min, max] seconds over "
        f"{results[0]['timings']['pickwise ssim']['runs']} round-robin repeats. Values agree to 1e-4. pickwise "
        f"{meta['pickwise_path']}.",
        "",
        "| device | threads | implementation | median s | [min, max] s | median CPU s (all threads) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for name, t in r["timings"].items():
            lines.append(
                f"| {r['device']} | {r['threads']} | {name} | {t['median_s']:.3f} | "
                f"[{t['min_s']:.3f}, {t['max_s']:.3f}] | {t['median_cpu_s']:.3f} |"
            )
    lines += ["", "Speed-up (ratio of medians):", ""]
    for r in results:
        rows = r["timings"]
        parts = []
        for slow, fast in (
            ("scikit-image ssim", "pickwise ssim"),
            ("scikit-image ssim", "pickwise ssim, torch path"),
            ("pytorch_msssim ssim", "pickwise ssim"),
            ("pytorch_msssim ms_ssim", "pickwise ms_ssim"),
        ):
            ratio = _ratio(rows, slow, fast)
            if ratio is not None:
                parts.append(f"{fast} vs {slow}: {ratio:.2f}x")
        lines.append(f"- {r['device']}, {r['threads']} thread(s): " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="image_metrics", help="file stem under benchmarks/results/")
    args = parser.parse_args()
    device = torch.device(args.device)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results = [run(args.batch, args.size, t, args.repeats, device) for t in args.threads]
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    meta = {
        "machine": f"{name}, {os.cpu_count()} logical CPUs",
        "torch": torch.__version__,
        "pickwise_path": (
            "ran the fused numba kernel (CPU, no autograd; the torch path is timed alongside)"
            if device.type == "cpu" and image.fused_ssim_available(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))
            else "ran the torch path (numba absent or not a CPU)"
        ),
        "load_start": None if load_start is None else round(load_start, 2),
        "load_end": None if load_end is None else round(load_end, 2),
    }
    RESULTS.mkdir(exist_ok=True)
    atomic_write_json(RESULTS / f"{args.out}.json", {"meta": meta, "results": results})
    atomic_write_text(RESULTS / f"{args.out}.md", _markdown(results, meta))
    print(_markdown(results, meta))
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
