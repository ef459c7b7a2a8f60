"""Benchmark: re-ID retrieval evaluation and k-reciprocal re-ranking against the torchreid ports.

* ``evaluate_rank`` (pickwise, vectorized over query chunks) vs a line-by-line port of torchreid's Python
  ``eval_market1501`` with fast-reid's mINP (``tests/_helpers/torchreid_port.py``) at Q = 2000, G = 10000
  (clustered random distances, 6 cameras): ours one warm-up then the median of 3, the port the median of 2 cold runs;
  max absolute difference of CMC/mAP/mINP;
* ``evaluate_rank`` alone at Q = 10000, G = 100000 on a float32 distance matrix (4 GB, built in chunks): one run,
  its time, the ``tracemalloc`` peak of the call (memory beyond the input) and the process peak RSS
  (``resource.getrusage`` ``ru_maxrss``, input included); the budget is 8 GiB;
* ``re_ranking`` (pickwise, vectorized torch) vs a line-by-line port of torchreid's ``re_ranking`` at Q = 1000,
  G = 5000 (squared-euclidean distances of clustered 64-d features, as torchreid feeds it): ours the median of 3,
  the port one run (about 10 s); max absolute difference of the re-ranked distances.

Threads are pinned (default 1) before numpy/torch are imported. The machine is shared and noisy: compare ratios
measured in the same run. Usage: ``python benchmarks/bench_retrieval.py [--threads T] [--no-large] [--quick]``.
Writes ``benchmarks/results/retrieval.json`` and ``benchmarks/results/retrieval.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import _paths  # noqa: F401  (puts tests/ on sys.path for the shared reference ports)

RESULTS = Path(__file__).resolve().parent / "results"


def _pin_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def _time(fn, repeats: int, warmup: bool) -> tuple[float, list[float], float, object]:
    """Median wall time, all wall times, median process CPU time (the machine is shared: CPU time is what one
    uncontended thread would take), last output."""
    if warmup:
        fn()
    times, cpu, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), times, statistics.median(cpu), out


def _maxrss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _rank_case(np, seed: int, num_q: int, num_g: int, ids: int, cams: int = 6, dtype=None, chunk: int = 1000):
    """Uniform random distances, true matches pulled closer by 0.3 (continuous: tie-free in float64)."""
    rng = np.random.default_rng(seed)
    q_pids, g_pids = rng.integers(0, ids, num_q), rng.integers(0, ids + ids // 5, num_g)
    q_cams, g_cams = rng.integers(0, cams, num_q), rng.integers(0, cams, num_g)
    dtype = dtype or np.float64
    dist = np.empty((num_q, num_g), dtype=dtype)
    for s in range(0, num_q, chunk):
        block = rng.random((min(chunk, num_q - s), num_g), dtype=dtype)
        block -= dtype(0.3) * (q_pids[s : s + chunk, None] == g_pids[None, :])
        dist[s : s + chunk] = block
    return dist, q_pids, g_pids, q_cams, g_cams


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-large", action="store_true", help="skip the Q=10000 x G=100000 run (minutes, 4+ GB)")
    parser.add_argument("--quick", action="store_true", help="smaller shapes (smoke run)")
    args = parser.parse_args()
    _pin_threads(args.threads)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from _helpers.torchreid_port import eval_market1501
    from _helpers.torchreid_port import re_ranking as port_re_ranking
    from pickwise.metrics.retrieval import evaluate_rank, pairwise_distance, re_ranking
    from pickwise.utils.io import atomic_write_json, atomic_write_text

    rows: dict[str, dict] = {}
    scale = 10 if args.quick else 1

    # 1. the large evaluation first, so that the process peak RSS is its own
    if not args.no_large:
        num_q, num_g = 10000 // scale, 100000 // scale
        t0 = time.perf_counter()
        dist, qp, gp, qc, gc = _rank_case(np, 1, num_q, num_g, ids=5000 // scale, dtype=np.float32)
        build_s = time.perf_counter() - t0
        rss_before = _maxrss_gib()
        tracemalloc.start()
        t0, c0 = time.perf_counter(), time.process_time()
        big = evaluate_rank(dist, qp, gp, qc, gc, max_rank=50)
        large_s, large_cpu = time.perf_counter() - t0, time.process_time() - c0
        extra_peak = tracemalloc.get_traced_memory()[1] / 2**30
        tracemalloc.stop()
        rows["evaluate_rank_large"] = {
            "num_q": num_q,
            "num_g": num_g,
            "dtype": "float32",
            "input_gib": dist.nbytes / 2**30,
            "build_s": build_s,
            "time_s": large_s,
            "cpu_s": large_cpu,
            "extra_peak_gib_tracemalloc": extra_peak,
            "process_peak_rss_gib_before": rss_before,
            "process_peak_rss_gib": _maxrss_gib(),
            "budget_gib": 8.0,
            "rank1": big.rank(1),
            "mAP": big.mAP,
            "num_valid_queries": big.num_valid_queries,
        }
        print(rows["evaluate_rank_large"], flush=True)
        del dist

    # 2. evaluate_rank vs the torchreid port
    num_q, num_g = 2000 // scale, 10000 // scale
    case = _rank_case(np, 0, num_q, num_g, ids=750 // scale)
    ours_s, ours_all, ours_cpu, ours = _time(lambda: evaluate_rank(*case, max_rank=50), 3, warmup=True)
    port_s, port_all, port_cpu, port = _time(lambda: eval_market1501(*case, 50), 2, warmup=False)
    cmc, port_map, port_minp, _ = port
    rows["evaluate_rank"] = {
        "num_q": num_q,
        "num_g": num_g,
        "ours_s": ours_s,
        "ours_runs_s": ours_all,
        "ours_cpu_s": ours_cpu,
        "port_s": port_s,
        "port_runs_s": port_all,
        "port_cpu_s": port_cpu,
        "speedup": port_s / ours_s,
        "speedup_cpu": port_cpu / ours_cpu,
        "max_abs_diff": max(
            float(np.abs(ours.cmc - cmc).max()), abs(ours.mAP - float(port_map)), abs(ours.mINP - float(port_minp))
        ),
    }
    print(rows["evaluate_rank"], flush=True)

    # 3. re_ranking vs the torchreid port
    num_q, num_g, dim, ids = 1000 // scale, 5000 // scale, 64, 600 // scale
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(ids, dim))
    q = torch.from_numpy(centres[rng.integers(0, ids, num_q)] + 0.7 * rng.normal(size=(num_q, dim))).float()
    g = torch.from_numpy(centres[rng.integers(0, ids, num_g)] + 0.7 * rng.normal(size=(num_g, dim))).float()
    qg, qq, gg = (pairwise_distance(a, b).numpy() for a, b in ((q, g), (q, q), (g, g)))
    tracemalloc.start()
    ours_s, ours_all, ours_cpu, ours_rr = _time(lambda: re_ranking(qg, qq, gg), 3, warmup=False)
    ours_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    port_s, port_all, port_cpu, port_rr = _time(lambda: port_re_ranking(qg, qq, gg), 1, warmup=False)
    rows["re_ranking"] = {
        "num_q": num_q,
        "num_g": num_g,
        "dim": dim,
        "k1": 20,
        "k2": 6,
        "lambda_value": 0.3,
        "ours_s": ours_s,
        "ours_runs_s": ours_all,
        "ours_cpu_s": ours_cpu,
        "ours_peak_mib_tracemalloc_numpy_only": ours_peak,
        "port_s": port_s,
        "port_cpu_s": port_cpu,
        "speedup": port_s / ours_s,
        "speedup_cpu": port_cpu / ours_cpu,
        "max_abs_diff": float(np.abs(ours_rr - port_rr).max()),
    }
    print(rows["re_ranking"], flush=True)

    meta = {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "load_average_at_end": os.getloadavg(),
        "note": "shared, noisy machine; compare ratios within one run",
    }
    RESULTS.mkdir(exist_ok=True)
    atomic_write_json(RESULTS / "retrieval.json", {"meta": meta, "rows": rows})
    ev, rr = rows["evaluate_rank"], rows["re_ranking"]
    lines = [
        "## Re-ID retrieval: evaluation and re-ranking vs torchreid",
        "",
        f"{meta['platform']}, {args.threads} thread(s), numpy {meta['numpy']}, torch {meta['torch']}; shared machine "
        f"(load average at the end {meta['load_average_at_end'][0]:.1f} on {meta['cpu_count']} cores), timings are "
        "noisy: process CPU time (single thread) is given next to wall time. `port` = line-by-line ports of "
        "torchreid's `eval_market1501` (+ fast-reid mINP) and `re_ranking` (`tests/_helpers/torchreid_port.py`); "
        "speed-up = port / ours (wall, and CPU).",
        "",
        "| step | Q | G | ours wall / CPU (s) | port wall / CPU (s) | speed-up wall / CPU | max abs diff |",
        "|---|---|---|---|---|---|---|",
        f"| evaluate_rank (median of 3 / of 2) | {ev['num_q']} | {ev['num_g']} | {ev['ours_s']:.3f} / "
        f"{ev['ours_cpu_s']:.3f} | {ev['port_s']:.2f} / {ev['port_cpu_s']:.2f} | {ev['speedup']:.1f} / "
        f"{ev['speedup_cpu']:.1f} | {ev['max_abs_diff']:.1e} |",
        f"| re_ranking k1=20 k2=6 λ=0.3 (median of 3 / 1 run) | {rr['num_q']} | {rr['num_g']} | {rr['ours_s']:.2f} / "
        f"{rr['ours_cpu_s']:.2f} | {rr['port_s']:.2f} / {rr['port_cpu_s']:.2f} | {rr['speedup']:.1f} / "
        f"{rr['speedup_cpu']:.1f} | {rr['max_abs_diff']:.1e} |",
    ]
    if "evaluate_rank_large" in rows:
        lg = rows["evaluate_rank_large"]
        lines += [
            "",
            f"Large evaluation, one run: Q = {lg['num_q']}, G = {lg['num_g']}, float32 distances "
            f"({lg['input_gib']:.2f} GiB input): **{lg['time_s']:.0f} s wall, {lg['cpu_s']:.0f} s CPU**, memory "
            "beyond the input "
            f"{lg['extra_peak_gib_tracemalloc']:.2f} GiB (tracemalloc peak), process peak RSS "
            f"{lg['process_peak_rss_gib']:.2f} GiB (budget {lg['budget_gib']:.0f} GiB; input included).",
        ]
    atomic_write_text(RESULTS / "retrieval.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
