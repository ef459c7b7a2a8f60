"""Run every ``benchmarks/bench_*.py`` (or those named on the command line) and collect their Markdown sections.

Each benchmark script writes ``results/<topic>.json`` and ``results/<topic>.md``; this runner concatenates all ``.md``
sections into ``results/SUMMARY.md``. Usage: ``python benchmarks/run.py [bench_train ...]``.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def main() -> int:
    wanted = set(sys.argv[1:])
    scripts = sorted(p for p in HERE.glob("bench_*.py") if not wanted or p.stem in wanted)
    failed = []
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        if subprocess.run([sys.executable, str(script)]).returncode != 0:
            failed.append(script.stem)
    sections = [p.read_text().rstrip() for p in sorted(RESULTS.glob("*.md")) if p.name != "SUMMARY.md"]
    header = (
        f"# Benchmark summary\n\nCollected by `make bench` on {time.strftime('%Y-%m-%d')}, "
        f"{platform.platform()}, Python {platform.python_version()}. Each section names its own setup.\n"
    )
    (RESULTS / "SUMMARY.md").write_text(header + "\n" + "\n\n".join(sections) + "\n")
    print(f"summary: {RESULTS / 'SUMMARY.md'}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
