"""``pickwise analyze norms RUN_DIR...``: per-layer normalizer ratios of trained runs, with figures."""

from __future__ import annotations

import argparse
from typing import Any

from ._format import format_table

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    """Register ``analyze``."""
    p = subparsers.add_parser("analyze", help="analyze trained runs", description="Analyze trained runs.")
    topics = p.add_subparsers(dest="topic", metavar="TOPIC")
    norms = topics.add_parser(
        "norms",
        help="which normalizer each SN/SSN/EN layer picks (vs depth and batch size)",
        description="Per-layer mixture weights of learned normalizers, figures vs depth and vs batch size.",
    )
    norms.add_argument("runs", nargs="+", help="run folders (or parents of run folders)")
    norms.add_argument("--output-dir", help="where to write figures and JSON (default: <first run>/analysis)")
    norms.set_defaults(handler=_norms)


def _norms(args: argparse.Namespace) -> int:
    from ..analysis.norms import analyze_norm_runs

    report = analyze_norm_runs(args.runs, args.output_dir)
    if not report["runs"]:
        print("no learned normalization layers (sn, ssn, en) in these runs")
        return 0
    rows = []
    for run in report["runs"]:
        both = run["summary"]["both"]
        mixed = sum(layer["mixed"] for layer in run["layers"])
        rows.append(
            [
                run["run"],
                run["norm"],
                run["batch_size"],
                *(both.get(n, 0.0) for n in ("in", "ln", "bn")),
                f"{mixed}/{len(run['layers'])}",
            ]
        )
    print(format_table(["run", "norm", "batch", "IN", "LN", "BN", "mixed layers"], rows))
    print("figures:\n  " + "\n  ".join(report["figures"]))
    return 0
