"""Progress of the long steps of model selection (feature extraction, bootstrap, fine-tuning).

On a terminal a tqdm bar is drawn on stderr; when stderr is not a terminal (a log file, CI, a pipe) a one-line
status is printed at most every ``interval`` seconds instead, so long jobs are never silent and logs stay short::

    fine-tuning 3/9 zoo:resnet20-bn-mnist: epoch 1/2 step 40/125

Steps that end before the first interval print nothing in the non-terminal mode.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress"]

#: Seconds between two status lines when stderr is not a terminal.
DEFAULT_INTERVAL = 10.0


class Progress:
    """A progress reporter: a tqdm bar on a terminal, a periodic status line otherwise.

    Args:
        desc: What is running, e.g. ``"features zoo:resnet20-bn-mnist"``.
        total: Number of units (``None``: unknown).
        enabled: ``False`` silences it completely.
        unit: Unit name shown after the counts (``"batch"``, ``"step"``, ``"resample"``).
        interval: Seconds between status lines in the non-terminal mode (default :data:`DEFAULT_INTERVAL`).
        stream: Output stream (default: ``sys.stderr``).
        bar: Force the bar (``True``) or the status lines (``False``); ``None``: a bar when ``stream`` is a tty.

    Example:
        >>> with Progress("bootstrap", total=3, enabled=False) as p:
        ...     for _ in range(3):
        ...         p.update()
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        *,
        enabled: bool = True,
        unit: str = "it",
        interval: float | None = None,
        stream: TextIO | None = None,
        bar: bool | None = None,
    ) -> None:
        self.desc = desc
        self.total = total
        self.enabled = bool(enabled)
        self.unit = unit
        self.interval = float(DEFAULT_INTERVAL if interval is None else interval)
        self.stream = stream if stream is not None else sys.stderr
        self.n = 0
        self.status = ""
        self.lines = 0
        self._start = time.monotonic()
        self._last = self._start
        self._bar: Any = None
        if self.enabled:
            isatty = getattr(self.stream, "isatty", None)
            use_bar = bar if bar is not None else bool(isatty and isatty())
            if use_bar:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True, leave=False)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1, *, status: str | None = None) -> None:
        """Advance by ``n`` units; ``status`` replaces the default ``"i/total unit"`` text."""
        self.n += n
        self.set(self.n, status=status)

    def set(self, n: int, *, status: str | None = None) -> None:
        """Set the position to ``n`` units (and the status text)."""
        if not self.enabled:
            return
        self.n = n
        if status is not None:
            self.status = status
        if self._bar is not None:
            self._bar.n = n
            if status is not None:
                self._bar.set_postfix_str(status, refresh=False)
            self._bar.refresh()
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._emit(now)

    def _emit(self, now: float) -> None:
        text = self.status or (f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}")
        print(f"{self.desc}: {text} ({now - self._start:.0f} s)", file=self.stream, flush=True)
        self.lines += 1

    def close(self) -> None:
        """Close the bar (status-line mode: nothing more is printed)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
