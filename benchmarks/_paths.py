"""Put ``tests/`` on ``sys.path`` so that the benchmarks import the shared reference ports from ``tests/_helpers``.

Benchmarks run as scripts from the repository root (``python benchmarks/bench_norms.py``), where only
``benchmarks/`` is on the path; ``import _paths`` first, then ``from _helpers.<module> import ...``.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
