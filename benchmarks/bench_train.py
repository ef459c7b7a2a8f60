"""Benchmarks: training throughput of resnet20 + BatchNorm on Fashion-MNIST, 1 and 2 processes, fp32 and bf16.

Each configuration runs ``pickwise train`` in a fresh subprocess (torchrun for 2 processes) on the same machine, one
after the other. Throughput is the median of the per-window images/s in ``train_log.csv`` after dropping the first
window (warm-up). Results: ``benchmarks/results/train_throughput.json`` and ``train_throughput.md``.

Usage: ``python benchmarks/bench_train.py [--steps N] [--batch-size B]`` (``make bench`` runs every ``bench_*.py``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def _data_name() -> str:
    from pickwise.data import get_dataset_info
    from pickwise.exceptions import DataNotFoundError

    try:
        get_dataset_info("fashion-mnist")
        return "fashion-mnist"
    except DataNotFoundError:
        return "mnist-5k"


def run_config(label: str, nproc: int, threads: int, amp: str, steps: int, batch: int, data: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        args = [
            "train",
            "--model",
            "resnet20",
            "--norm",
            "bn",
            "--data",
            data,
            "--batch-size",
            str(batch),
            "--max-steps",
            str(steps),
            "--epochs",
            "100",
            "--amp",
            amp,
            "--no-progress",
            "--output-dir",
            out,
            "--name",
            "bench",
            "--test-subset",
            "512",
            "--set",
            f"train.log_every={max(1, steps // 10)}",
            "--set",
            "train.tensorboard=false",
        ]
        if nproc == 1:
            cmd = [sys.executable, "-m", "pickwise", *args]
        else:
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={nproc}",
                "-m",
                "pickwise",
                *args,
            ]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{label} failed:\n{proc.stderr[-3000:]}")
        rows = list(csv.DictReader(open(Path(out) / "bench" / "train_log.csv")))
    rates = [float(r["images_per_sec"]) for r in rows[1:]] or [float(rows[0]["images_per_sec"])]
    return {
        "label": label,
        "processes": nproc,
        "threads_per_process": threads,
        "amp": amp,
        "steps": steps,
        "global_batch": batch,
        "median_images_per_sec": statistics.median(rates),
        "min_images_per_sec": min(rates),
        "max_images_per_sec": max(rates),
        "windows": len(rates),
        "wall_seconds": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    data = _data_name()
    cores = os.cpu_count() or 1
    configs = [
        ("1 process, fp32", 1, cores, "none"),
        ("2 processes (gloo), fp32", 2, max(1, cores // 2), "none"),
        ("1 process, bf16 autocast", 1, cores, "bf16"),
    ]
    results = []
    for label, nproc, threads, amp in configs:
        print(f"running: {label} ...", flush=True)
        results.append(run_config(label, nproc, threads, amp, args.steps, args.batch_size, data))
        print(f"  median {results[-1]['median_images_per_sec']:.1f} images/s", flush=True)
    base = results[0]["median_images_per_sec"]
    for r in results:
        r["ratio_vs_1_process_fp32"] = r["median_images_per_sec"] / base
    meta = {
        "benchmark": "train_throughput",
        "model": "resnet20",
        "norm": "bn",
        "data": data,
        "torch": torch.__version__,
        "cpu_count": cores,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_throughput.json").write_text(json.dumps(meta, indent=2) + "\n")
    lines = [
        "## Training throughput (pickwise train)",
        "",
        f"Training throughput, resnet20 + BatchNorm on {data}, global batch "
        f"{args.batch_size}, {args.steps} steps, torch {torch.__version__}, {cores} CPU cores "
        f"({meta['date']}). Median images/s over log windows (first window dropped).",
        "",
        "| configuration | median images/s | min | max | ratio vs 1 process fp32 |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['label']} | {r['median_images_per_sec']:.1f} | {r['min_images_per_sec']:.1f} | "
            f"{r['max_images_per_sec']:.1f} | {r['ratio_vs_1_process_fp32']:.2f} |"
        )
    (RESULTS / "train_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
