"""Compiling pickwise's optional numba kernels (SSIM, the ADA-MCU unit planner and label bookkeeping) in one way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def compile_kernel(fn: Callable, **options: Any) -> Callable:
    """``numba.njit(fn, **options)``, cached on disk; compiled once per process where no cache location is writable.

    numba raises when ``cache=True`` finds no writable cache folder (a read-only install without
    ``NUMBA_CACHE_DIR`` or a writable home); the kernel then still works, it is only compiled again in each process.
    Call only with numba installed.
    """
    import numba

    try:
        return numba.njit(fn, cache=True, **options)
    except Exception:  # no writable cache location: compile per process instead
        return numba.njit(fn, cache=False, **options)
