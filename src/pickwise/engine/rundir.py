"""Run folders: one run per folder, an identity for every run, and an OS-level lock against concurrent writers.

A run folder ``<output_dir>/<name>/`` belongs to exactly one run. The run is identified by a random **run id**
(``uuid4().hex``) chosen when it starts and recorded in ``run.json``, as a comment at the top of ``config.yaml`` and in
every checkpoint's ``state.json``. Resuming loads only checkpoints carrying the folder's run id, and pruning deletes
only this run's checkpoints, so files left by another run can never be mistaken for this run's.

While a process trains into a folder it holds an exclusive ``fcntl.flock`` on ``<run>/.lock`` (the file holds the
holder's pid for the error message). The kernel releases the lock when the process exits, however it exits
(including SIGKILL), so a crashed run never leaves the folder locked. Locks are re-entrant within one process
(``run_classification`` takes it before writing ``config.yaml``, the trainer again in ``fit``). Under ``torchrun``
only rank 0 locks: the ranks of one job share the folder by design and only rank 0 writes.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, RunLock(d):
    ...     pass
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..exceptions import RunFolderError, RunLockedError
from ..utils.io import atomic_write_json

try:  # POSIX; on other platforms the lock degrades to a no-op with the same API
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "RUN_ARTIFACTS",
    "RUN_INFO_FILE",
    "RunLock",
    "clear_run_dir",
    "existing_run_artifacts",
    "new_run_id",
    "read_run_id",
    "write_run_info",
]

LOCK_FILE = ".lock"
RUN_INFO_FILE = "run.json"
#: Files and folders whose presence makes a folder "an existing run".
RUN_ARTIFACTS = (
    RUN_INFO_FILE,
    "config.yaml",
    "checkpoints",
    "train_log.csv",
    "eval_log.csv",
    "model.safetensors",
    "results.json",
    "tensorboard",
)

_held: dict[str, list[Any]] = {}  # resolved lock path -> [file object, depth]
_held_guard = threading.Lock()


def new_run_id() -> str:
    """A fresh random run id (32 hex digits)."""
    return uuid.uuid4().hex


def read_run_id(run_dir: str | os.PathLike[str]) -> str | None:
    """The run id recorded in ``<run_dir>/run.json``, or None if the folder has none (new or pre-run-id folder).

    Raises:
        RunFolderError: If ``run.json`` exists but is not a JSON object with a string ``run_id``.
    """
    path = Path(run_dir) / RUN_INFO_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFolderError(
            f"run folder: {path} is unreadable ({err}); fix or delete it, or use --overwrite"
        ) from None
    run_id = data.get("run_id") if isinstance(data, dict) else None
    if not isinstance(run_id, str) or not run_id:
        raise RunFolderError(f"run folder: {path} has no run_id string; fix or delete it, or use --overwrite")
    return run_id


def write_run_info(run_dir: str | os.PathLike[str], run_id: str, **extra: Any) -> None:
    """Atomically write ``<run_dir>/run.json`` with the run id, the writer's pid and the start time."""
    payload = {"run_id": run_id, "pid": os.getpid(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    atomic_write_json(Path(run_dir) / RUN_INFO_FILE, payload)


def existing_run_artifacts(run_dir: str | os.PathLike[str]) -> list[str]:
    """Names of run outputs already present in ``run_dir`` (empty for a missing or empty folder)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return [name for name in RUN_ARTIFACTS if (run_dir / name).exists()]


def clear_run_dir(run_dir: str | os.PathLike[str]) -> None:
    """Delete a previous run's outputs (``RUN_ARTIFACTS`` and temporary files) from ``run_dir``.

    The lock file and anything that is not a pickwise output are kept.
    """
    run_dir = Path(run_dir)
    for name in RUN_ARTIFACTS:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    for path in run_dir.glob(".*.tmp"):
        path.unlink(missing_ok=True)


class RunLock:
    """Exclusive, re-entrant (per process), crash-safe lock on a run folder.

    Args:
        run_dir: The run folder (created if missing).
        enabled: False makes the lock a no-op (non-zero ranks under torchrun).

    Raises:
        RunLockedError: On ``acquire`` when another process holds the lock; the message names its pid.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled and fcntl is not None
        self._key: str | None = None

    def acquire(self) -> RunLock:
        """Take the lock (no waiting)."""
        if not self.enabled or self._key is not None:
            return self
        path = self.run_dir / LOCK_FILE
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            key = str(path.resolve())
        except OSError as err:
            raise RunFolderError(f"run folder {self.run_dir} cannot be created ({err.strerror or err})") from None
        with _held_guard:
            if key in _held:
                _held[key][1] += 1
                self._key = key
                return self
            try:
                f = open(path, "a+")  # noqa: SIM115 - kept open while the lock is held
            except OSError as err:
                raise RunFolderError(f"run folder {self.run_dir}: cannot open {path} ({err.strerror or err})") from None
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                f.close()
                raise RunLockedError(
                    f"run folder {self.run_dir} is in use by another pickwise process (pid {holder}); wait for it to "
                    "finish, or choose another --name"
                ) from None
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            _held[key] = [f, 1]
            self._key = key
        return self

    def release(self) -> None:
        """Release one level of the lock; the file lock goes when the outermost holder releases."""
        if self._key is None:
            return
        with _held_guard:
            entry = _held.get(self._key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] == 0:
                    f = entry[0]
                    try:
                        f.seek(0)
                        f.truncate()
                        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
                    finally:
                        f.close()
                        del _held[self._key]
        self._key = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
