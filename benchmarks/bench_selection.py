"""Benchmark: time of the selection metrics alone (features and F-label embeddings preloaded).

Compares, on the same synthetic F-labels (C classes, each class embedded by K encoders of width L):

* ``emms_class``: pickwise EMMS from class-level embeddings (never builds N x L x K);
* ``emms_sample``: pickwise EMMS from the per-sample tensor (N, L, K);
* ``logme_vec``: pickwise LogME on the per-sample F-labels (L*K regression columns, vectorized);
* ``logme_released``: a faithful port of thuml/LogME's fixed-point code (one SVD of F^T F, then a Python loop over
  the L*K label columns with at most 11 fixed-point iterations each), shared with the tests
  (``tests/_helpers/logme_port.py``);
* ``floor``: the two matrix products X^T X and X^T Y (per-sample Y) in float64.

Our metrics: one warm-up call (first-touch page faults and LAPACK workspace set-up cost up to several seconds at
the large shapes, which is not the metric's cost), then the median of 3 repeats (1 repeat for D = 2048 or N = 10000).
The released port: median of 2 cold runs at the small shapes, one cold run at the large ones (it takes 15-80 s each;
its cold overhead is a small fraction of that);
``time.perf_counter``; peak memory of one extra call under ``tracemalloc`` (numpy and torch CPU allocations through
numpy buffers are tracked; torch-internal workspaces are not). The machine is shared and noisy: compare ratios
measured in the same run. Threads are pinned (default 1) before numpy/torch are imported.

Usage: ``python benchmarks/bench_selection.py [--quick] [--threads T]``. Writes ``benchmarks/results/selection.json``
and ``benchmarks/results/selection.md``.
"""
# ruff: noqa: B023  (lambdas are called inside the loop)

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import _paths  # noqa: F401  (puts tests/ on sys.path for the shared reference ports)

RESULTS = Path(__file__).resolve().parent / "results"


def _pin_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def _time(fn, repeats: int, warmup: bool) -> tuple[float, list[float]]:
    import statistics

    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _peak_mib(fn) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="only N=2000 (for a smoke run)")
    parser.add_argument("--classes", type=int, default=100)
    args = parser.parse_args()
    _pin_threads(args.threads)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from _helpers.logme_port import released_fixed_point
    from pickwise.selection import emms, logme

    def released_logme(f: np.ndarray, y: np.ndarray) -> float:
        return released_fixed_point(f, y, regression=True)[0]

    width = 384
    rows = []
    shapes = [(n, d) for n in ((2000,) if args.quick else (2000, 10000)) for d in (512, 2048)]
    rng = np.random.default_rng(0)
    for n, d in shapes:
        big = d >= 2048 or n >= 10000  # one repeat, no warm-up (keeps the default run within ~3 min)
        for k in (1, 3):
            y = np.arange(n) % args.classes
            class_emb = rng.normal(size=(args.classes, width, k))
            feats64 = class_emb[:, :, 0][y] @ rng.normal(size=(width, d)) / 20 + rng.normal(size=(n, d))
            per_sample = class_emb[y]  # (N, L, K), built once outside the timings
            flat = per_sample.reshape(n, width * k)
            port_reps = 1 if big else 2
            port_time, _ = _time(lambda: released_logme(feats64, flat), port_reps, warmup=False)
            port_value = released_logme(feats64, flat) if not big else None
            for dtype in ("float32", "float64"):
                feats = feats64.astype(dtype)
                ps = per_sample.astype(dtype)
                reps = 1 if big else 3
                t_class, _ = _time(lambda: emms(feats, class_emb, labels=y), reps, warmup=True)
                t_sample, _ = _time(lambda: emms(feats, ps), reps, warmup=True)
                t_logme, _ = _time(lambda: logme(feats, ps.reshape(n, width * k), regression=True), reps, warmup=True)
                x64 = feats.astype(np.float64)
                y64 = flat.astype(np.float64)
                t_floor, _ = _time(lambda: (x64.T @ x64, x64.T @ y64), reps, warmup=True)
                row = {
                    "n": n,
                    "d": d,
                    "l": width,
                    "k": k,
                    "dtype": dtype,
                    "classes": args.classes,
                    "emms_class_s": t_class,
                    "emms_sample_s": t_sample,
                    "logme_vec_s": t_logme,
                    "logme_released_s": port_time,
                    "floor_s": t_floor,
                    "speedup_emms_class": port_time / t_class,
                    "speedup_emms_sample": port_time / t_sample,
                    "speedup_logme_vec": port_time / t_logme,
                    "repeats": reps,
                }
                if dtype == "float64" or not big:  # peaks of the float32 big rows skipped (time budget)
                    row["peak_mib_emms_class"] = _peak_mib(lambda: emms(feats, class_emb, labels=y))
                    row["peak_mib_emms_sample"] = _peak_mib(lambda: emms(feats, ps))
                    row["peak_mib_logme_vec"] = _peak_mib(
                        lambda: logme(feats, ps.reshape(n, width * k), regression=True)
                    )
                if port_value is not None and dtype == "float64":
                    row["logme_abs_diff_vs_released"] = abs(
                        logme(feats, ps.reshape(n, width * k), regression=True) - port_value
                    )
                rows.append(row)
                print(
                    json.dumps({key: (round(v, 4) if isinstance(v, float) else v) for key, v in row.items()}),
                    flush=True,
                )

    meta = {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "note": "shared, noisy machine; compare ratios within one run",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "selection.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        "## Model selection: metric time (features preloaded)",
        "",
        f"{meta['platform']}, {args.threads} thread(s), numpy {meta['numpy']}, torch {meta['torch']}; shared machine, "
        "timings are noisy (ours: one warm-up, then the median of 3 repeats, 1 for D = 2048 or N = 10000; released "
        "port: cold, 2 runs at D = 512, N = 2000, else 1; peaks for float64 only at the large shapes). L = 384, C = "
        f"{args.classes} classes. `released` = faithful port of thuml/LogME (SVD + Python loop over L*K columns); "
        "speed-ups are released / ours. Floor = X^T X + X^T Y in float64. Peak = tracemalloc peak of one call.",
        "",
        "| N | D | K | dtype | EMMS class (s) | EMMS sample (s) | LogME vec (s) | LogME released (s) | floor (s) "
        "| x EMMS class | x EMMS sample | x LogME vec | peak MiB EMMS class / sample / LogME |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['d']} | {r['k']} | {r['dtype']} | {r['emms_class_s']:.3f} | {r['emms_sample_s']:.3f} "
            f"| {r['logme_vec_s']:.3f} | {r['logme_released_s']:.2f} | {r['floor_s']:.3f} "
            f"| {r['speedup_emms_class']:.1f} | {r['speedup_emms_sample']:.1f} | {r['speedup_logme_vec']:.1f} "
            + (
                f"| {r['peak_mib_emms_class']:.0f} / {r['peak_mib_emms_sample']:.0f} / {r['peak_mib_logme_vec']:.0f} |"
                if "peak_mib_emms_class" in r
                else "| - |"
            )
        )
    (RESULTS / "selection.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
