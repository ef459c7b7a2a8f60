"""Plain-text tables for terminal output and the reproductions' reports (no dependencies)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_cell", "format_table"]


def format_cell(value: Any) -> str:
    """Floats with 4 decimals (1 above 100), everything else ``str``."""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Text columns with a rule under the header: the first column left-aligned, the others right-aligned.

    Example:
        >>> print(format_table(["model", "acc"], [["resnet20", 0.91234], ["vgg", 1.0]]))
        model        acc
        --------  ------
        resnet20  0.9123
        vgg       1.0000
    """
    cells = [[format_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    return "\n".join(out)
