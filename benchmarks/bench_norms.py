"""Forward+backward time of SN/SSN/EN/PN vs BatchNorm2d, GroupNorm(32) and an official-style SN port (fp32, CPU).

Writes ``results/norms.json`` and ``results/norms.md``. Usage::

    python benchmarks/bench_norms.py [--threads 1] [--repeats 21] [--quick]

Each measurement is one ``y = layer(x); y.backward(g)`` in training mode (plus a forward-only pass under
``torch.no_grad``); layers are timed round-robin so that machine noise hits all of them alike. One *session* takes the
median of ``--repeats`` runs; ``--sessions`` independent sessions (``--pause`` seconds apart, so that they see
different load on a shared machine) are run, and the report gives the median over sessions and the range
[min, max] of the per-session medians and of the ratios to BatchNorm2d - not the best session.
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

import _paths  # noqa: F401  (puts tests/ on sys.path for the shared reference ports)
import torch
from torch import nn

from _helpers.official_sn import OfficialStyleSwitchNorm2d
from pickwise.nn import ExemplarNorm2d, PopulationNorm2d, SparseSwitchNorm2d, SwitchNorm2d

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHAPES = [(8, 64, 56, 56), (32, 256, 14, 14), (2, 64, 112, 112)]


LAYERS: dict[str, Callable[[int], nn.Module]] = {
    "BatchNorm2d": lambda c: nn.BatchNorm2d(c),
    "GroupNorm(32)": lambda c: nn.GroupNorm(32, c),
    "SN (official-style port)": lambda c: OfficialStyleSwitchNorm2d(c),
    "SwitchNorm2d": lambda c: SwitchNorm2d(c),
    "SparseSwitchNorm2d": lambda c: SparseSwitchNorm2d(c, radius=0.3),
    "ExemplarNorm2d": lambda c: ExemplarNorm2d(c),
    "PopulationNorm2d": lambda c: PopulationNorm2d(c),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_all(
    shape: tuple[int, ...], repeats: int, warmup: int, device: torch.device, dtype: torch.dtype
) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    x = torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)
    g = torch.randn(*shape, device=device, dtype=dtype)
    # parameters stay fp32 (autocast-style mixed precision); inputs/outputs in ``dtype``
    layers = {name: make(shape[1]).to(device).train() for name, make in LAYERS.items()}
    fb: dict[str, list[float]] = {n: [] for n in layers}
    fw: dict[str, list[float]] = {n: [] for n in layers}
    for i in range(warmup + repeats):
        for name, layer in layers.items():
            x.grad = None
            _sync(device)
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                layer(x).backward(g)
            _sync(device)
            t1 = time.perf_counter()
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                layer(x)
            _sync(device)
            t2 = time.perf_counter()
            if i >= warmup:
                fb[name].append((t1 - t0) * 1e3)
                fw[name].append((t2 - t1) * 1e3)
    return {n: {"fwd_bwd_ms": statistics.median(fb[n]), "fwd_ms": statistics.median(fw[n])} for n in layers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=5, help="independent sessions (ranges are over these)")
    parser.add_argument("--pause", type=float, default=10.0, help="seconds between sessions")
    parser.add_argument("--quick", action="store_true", help="first shape only, 5 repeats, 2 sessions")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--tag", default="", help="suffix of the output files (e.g. _cuda_bf16)")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.set_num_threads(args.threads)
    shapes = SHAPES[:1] if args.quick else SHAPES
    repeats = 5 if args.quick else args.repeats
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": args.threads,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": args.dtype,
        "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    sessions = 2 if args.quick else args.sessions
    per_session: list[dict[tuple[int, ...], dict[str, dict[str, float]]]] = []
    loads = []
    for k in range(sessions):
        if k:
            time.sleep(args.pause)
        loads.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
        per_session.append({shape: _time_all(shape, repeats, args.warmup, device, dtype) for shape in shapes})
        for shape, times in per_session[-1].items():
            print(
                f"session {k + 1}/{sessions} {shape}: "
                + ", ".join(f"{n}={t['fwd_bwd_ms']:.2f}ms" for n, t in times.items()),
                flush=True,
            )
    machine["load_average_per_session"] = loads
    results = []
    for shape in shapes:
        for name in LAYERS:
            fb = [s[shape][name]["fwd_bwd_ms"] for s in per_session]
            fw = [s[shape][name]["fwd_ms"] for s in per_session]
            x_bn = [s[shape][name]["fwd_bwd_ms"] / s[shape]["BatchNorm2d"]["fwd_bwd_ms"] for s in per_session]
            x_sn = [s[shape][name]["fwd_bwd_ms"] / s[shape]["SwitchNorm2d"]["fwd_bwd_ms"] for s in per_session]
            results.append(
                {
                    "shape": list(shape),
                    "layer": name,
                    "fwd_bwd_ms": round(statistics.median(fb), 3),
                    "fwd_bwd_ms_range": [round(min(fb), 3), round(max(fb), 3)],
                    "fwd_ms": round(statistics.median(fw), 3),
                    "fwd_ms_range": [round(min(fw), 3), round(max(fw), 3)],
                    "x_bn": round(statistics.median(x_bn), 3),
                    "x_bn_range": [round(min(x_bn), 3), round(max(x_bn), 3)],
                    "x_sn": round(statistics.median(x_sn), 3),
                    "x_sn_range": [round(min(x_sn), 3), round(max(x_sn), 3)],
                    "per_session_fwd_bwd_ms": [round(v, 3) for v in fb],
                }
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "norms",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine,
        "repeats": repeats,
        "sessions": sessions,
        "results": results,
    }
    (RESULTS / f"norms{args.tag}.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        f"## Normalization layers: forward+backward time ({args.dtype}, {machine['device']})",
        "",
        f"`python benchmarks/bench_norms.py` on {machine['platform']} ({machine['cpu_count']} cores, "
        f"{args.threads} torch thread(s), torch {torch.__version__}), {time.strftime('%Y-%m-%d')}. {sessions} "
        f"sessions, each the median of {repeats} round-robin runs of `y = layer(x); y.backward(g)` in training mode "
        "(*fwd*: a forward under `no_grad`). Columns give the median over sessions and, in brackets, the range "
        f"[min, max] over sessions. Load average at the start of each session: {loads}. The machine is shared "
        "with other jobs: absolute times are noisy, quote the ratio ranges.",
        "",
        "| shape | layer | fwd+bwd (ms) | fwd (ms) | × BatchNorm2d | × SwitchNorm2d |",
        "|---|---|---:|---:|---:|---:|",
    ]

    def rng(r: dict, key: str, fmt: str = ".2f") -> str:
        lo, hi = r[f"{key}_range"]
        return f"{r[key]:{fmt}} [{lo:{fmt}}–{hi:{fmt}}]"

    for r in results:
        lines.append(
            f"| {tuple(r['shape'])} | {r['layer']} | {rng(r, 'fwd_bwd_ms')} | {rng(r, 'fwd_ms')} | "
            f"{rng(r, 'x_bn')} | {rng(r, 'x_sn')} |"
        )
    lines += [
        "",
        "Targets (issue 3): SwitchNorm2d ≤ 2× BatchNorm2d; official-style port ≥ 2× SwitchNorm2d; "
        "ExemplarNorm2d ≤ 1.5× SwitchNorm2d.",
    ]
    (RESULTS / f"norms{args.tag}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / f'norms{args.tag}.json'} and {RESULTS / f'norms{args.tag}.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
