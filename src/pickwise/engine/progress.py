"""Progress reporting: a tqdm bar on a terminal, a periodic one-line report anywhere else (logs, CI, ``nohup``).

tqdm with ``disable=None`` is silent when stderr is not a terminal, so a long job started with ``nohup`` or under a
scheduler used to print nothing until it finished. :class:`PeriodicProgress` prints one line to stderr at most every
``interval`` seconds (10 by default) and a last one when the run ends::

    resnet20-bn-digits-s0: step 120/600 (20.0%), 11.8 steps/s, eta 0:00:41, loss=0.532 acc=0.810
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["NullProgress", "PeriodicProgress", "make_progress"]


class NullProgress:
    """A progress reporter that reports nothing (``train.progress=false``, non-zero ranks)."""

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps."""

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        """Set the values shown after the counts."""

    def close(self) -> None:
        """Finish."""


class PeriodicProgress(NullProgress):
    """One line every ``interval`` seconds on a non-interactive stream.

    Args:
        total: Steps of the whole run.
        initial: Steps already done (resumed runs).
        desc: Prefix of every line (the run name).
        interval: Minimum seconds between two lines.
        stream: Where to write (default: ``sys.stderr`` at call time).
        clock: Monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        total: int,
        initial: int = 0,
        desc: str = "train",
        *,
        interval: float = 10.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.n, self.desc, self.interval = total, initial, desc, interval
        self._stream, self._clock = stream, clock
        self._start = self._last = clock()
        self._start_n = initial
        self._postfix: dict[str, Any] = {}
        self._printed_n: int | None = None
        self._closed = False

    def _line(self) -> str:
        elapsed = self._clock() - self._start
        done = self.n - self._start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.n / self.total if self.total else 100.0
        parts = [f"{self.desc}: step {self.n}/{self.total} ({pct:.1f}%)"]
        if rate > 0:
            parts.append(f"{rate:.3g} steps/s")
            eta = max(0.0, (self.total - self.n) / rate)
            parts.append(f"eta {datetime.timedelta(seconds=round(eta))}")
        line = ", ".join(parts)
        if self._postfix:
            line += ", " + " ".join(f"{k}={v}" for k, v in self._postfix.items())
        return line

    def _emit(self) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        print(self._line(), file=stream, flush=True)
        self._printed_n = self.n
        self._last = self._clock()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps; print a line if ``interval`` seconds passed since the last one."""
        self.n += n
        if self._clock() - self._last >= self.interval:
            self._emit()

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        """Set the ``key=value`` pairs shown at the end of each line."""
        self._postfix = dict(values)

    def close(self) -> None:
        """Print the final position once (unless the last line already showed it)."""
        if self._closed:
            return
        self._closed = True
        if self._printed_n != self.n:
            self._emit()


def make_progress(
    total: int, initial: int = 0, *, enabled: bool = True, desc: str = "train", interval: float = 10.0
) -> Any:
    """A tqdm bar when stderr is a terminal, a :class:`PeriodicProgress` when it is not, nothing when disabled."""
    if not enabled:
        return NullProgress()
    isatty = getattr(sys.stderr, "isatty", None)
    if callable(isatty) and isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)
    return PeriodicProgress(total, initial, desc, interval=interval)
