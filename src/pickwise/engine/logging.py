"""Metric logging to CSV files and (optionally) TensorBoard, safe to resume."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

__all__ = ["MetricLogger"]


class MetricLogger:
    """Append metric rows to ``<run>/<split>_log.csv`` and TensorBoard event files under ``<run>/tensorboard``.

    On resume at step ``s``, rows logged after ``s`` by the interrupted run are dropped first, so the CSV matches an
    uninterrupted run.

    Args:
        run_dir: The run folder.
        enabled: False on non-zero ranks (nothing is written).
        tensorboard: Also write TensorBoard events when the ``tensorboard`` package is available.
        resume_step: Step the run resumes from (None for a fresh run, which truncates existing logs).
    """

    def __init__(
        self, run_dir: Path, *, enabled: bool = True, tensorboard: bool = True, resume_step: int | None = None
    ) -> None:
        self.run_dir, self.enabled = Path(run_dir), enabled
        self._writer = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for path in self.run_dir.glob("*_log.csv"):
            self._truncate(path, resume_step)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn(
                    "tensorboard is not installed; logging to CSV only (pip install tensorboard)",
                    UserWarning,
                    stacklevel=2,
                )
            else:
                self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=resume_step)

    @staticmethod
    def _truncate(path: Path, resume_step: int | None) -> None:
        if resume_step is None:
            path.unlink()
            return
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
            fields = list(rows[0].keys()) if rows else None
        if fields is None:
            return
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(r for r in rows if int(r["step"]) <= resume_step)

    def log(self, split: str, step: int, metrics: dict[str, Any]) -> None:
        """Write one row of ``metrics`` (numbers) for ``split`` at ``step``."""
        if not self.enabled:
            return
        row = {"step": step, **metrics}
        path = self.run_dir / f"{split}_log.csv"
        new = not path.exists()
        if not new:
            with open(path, newline="") as f:
                fields = next(csv.reader(f), list(row))
        else:
            fields = list(row)
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self._writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and key not in ("epoch",):
                    self._writer.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        """Flush and close TensorBoard files."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
