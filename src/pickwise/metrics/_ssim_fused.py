"""Fused CPU kernel for SSIM's local statistics (optional, through numba).

The torch path in :mod:`pickwise.metrics.image` filters the five local statistics ``x, y, x^2, y^2, xy`` with two
grouped convolutions and then combines them with about fifteen element-wise operations, each one a pass over
memory; on one CPU core that is about 4x faster than scikit-image. This kernel does the same arithmetic in one pass
per image plane, one output row at a time, so that every intermediate lives in a few rows of cache:

1. vertical pass: the four statistics of the ``k`` input rows under the window, weighted by the 1-D Gaussian, summed
   into four row buffers (``x^2 + y^2`` and ``xy`` are formed on the fly, never stored);
2. horizontal pass over those buffers into four more (the valid region only, no padding);
3. the SSIM and contrast-structure terms of the row, summed in float64.

Planes (image x channel) run in parallel on numba's threads. SSIM needs only ``s_x^2 + s_y^2`` (the denominator of
the contrast-structure term), not the two variances apart, so four filtered statistics suffice instead of the usual
five. The result equals the torch path to float32 rounding (tests) and is deterministic: one thread computes a plane,
always in the same order, whatever the thread count.

numba is an optional dependency (extras ``isp`` and ``fast``). Without it, with autograd, off the CPU, or in a child
forked after the kernel ran (DataLoader workers), the torch path runs; the answers are the same. The kernel runs on
numba's own thread pool (``workqueue``) unless ``NUMBA_THREADING_LAYER`` says otherwise: numba's OpenMP layer would
share torch's libgomp and leave its thread count there.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable

import numpy as np
import torch

from ..utils._numba import compile_kernel

__all__ = ["fused_ssim_available", "fused_ssim_and_cs"]

_KERNEL: Callable | None = None
_TRIED = False
_LOCK = threading.Lock()
"""numba's workqueue threading layer aborts the process on concurrent parallel launches from two Python threads;
calls are serialised."""
_LAUNCH_PID: int | None = None
"""The process that first launched the kernel's threads. numba's OpenMP layer terminates a forked child that launches
a parallel region after its parent did ("fork() called from a process already using GNU OpenMP"), so forked
children (DataLoader workers, fork-based pools) take the torch path."""


def _build() -> Callable | None:
    try:
        import numba
    except ImportError:
        return None
    if numba.config.THREADING_LAYER == "default":  # type: ignore[attr-defined]
        # numba would pick its OpenMP layer, which shares torch's libgomp: a child forked afterwards (DataLoader
        # workers) then hangs or is terminated in its first parallel region. Its own thread pool has no such
        # problem. Only when the user left the choice to numba (NUMBA_THREADING_LAYER is respected).
        numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]

    def ssim_cs_planes(x, y, g, c1, c2, ssim_out, cs_out):  # pragma: no cover - compiled by numba
        n, h, w = x.shape
        k = g.shape[0]
        ho = h - k + 1
        wo = w - k + 1
        for i in numba.prange(n):
            xi = x[i]
            yi = y[i]
            vx = np.empty(w, x.dtype)
            vy = np.empty(w, x.dtype)
            vs = np.empty(w, x.dtype)
            vp = np.empty(w, x.dtype)
            hx = np.empty(wo, x.dtype)
            hy = np.empty(wo, x.dtype)
            hs = np.empty(wo, x.dtype)
            hp = np.empty(wo, x.dtype)
            ssim_sum = 0.0
            cs_sum = 0.0
            g0 = g[0]
            for r in range(ho):
                for c in range(w):
                    a = xi[r, c]
                    b = yi[r, c]
                    vx[c] = g0 * a
                    vy[c] = g0 * b
                    vs[c] = g0 * (a * a + b * b)
                    vp[c] = g0 * (a * b)
                for t in range(1, k):
                    gt = g[t]
                    for c in range(w):
                        a = xi[r + t, c]
                        b = yi[r + t, c]
                        vx[c] += gt * a
                        vy[c] += gt * b
                        vs[c] += gt * (a * a + b * b)
                        vp[c] += gt * (a * b)
                for c in range(wo):
                    hx[c] = g0 * vx[c]
                    hy[c] = g0 * vy[c]
                    hs[c] = g0 * vs[c]
                    hp[c] = g0 * vp[c]
                for t in range(1, k):
                    gt = g[t]
                    for c in range(wo):
                        hx[c] += gt * vx[c + t]
                        hy[c] += gt * vy[c + t]
                        hs[c] += gt * vs[c + t]
                        hp[c] += gt * vp[c + t]
                row_ssim = 0.0
                row_cs = 0.0
                for c in range(wo):
                    mx = hx[c]
                    my = hy[c]
                    mxy = mx * my
                    msq = mx * mx + my * my
                    cov = hp[c] - mxy
                    cs = (cov + cov + c2) / (hs[c] - msq + c2)
                    row_cs += cs
                    row_ssim += (mxy + mxy + c1) / (msq + c1) * cs
                ssim_sum += row_ssim
                cs_sum += row_cs
            ssim_out[i] = ssim_sum / (ho * wo)
            cs_out[i] = cs_sum / (ho * wo)

    # reassoc lets LLVM vectorise the two row sums (their order is still fixed by the compiled code, so results are
    # reproducible); the filter loops are plain multiply-adds and vectorise without it.
    fastmath = {"reassoc", "contract"}
    return compile_kernel(ssim_cs_planes, parallel=True, fastmath=fastmath, nogil=True)


def _kernel() -> Callable | None:
    global _KERNEL, _TRIED
    if not _TRIED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _KERNEL = _build()
        _TRIED = True
    return _KERNEL


def fused_ssim_available(pred: torch.Tensor, target: torch.Tensor) -> bool:
    """Whether :func:`fused_ssim_and_cs` applies.

    It does with numba installed, on CPU float32/float64 tensors, without autograd, and not in a child forked after
    this process launched the kernel.
    """
    if pred.device.type != "cpu" or pred.dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_grad_enabled() and (pred.requires_grad or target.requires_grad):
        return False
    if _LAUNCH_PID is not None and os.getpid() != _LAUNCH_PID:
        return False
    return _kernel() is not None


def fused_ssim_and_cs(
    pred: torch.Tensor, target: torch.Tensor, win: torch.Tensor, c1: float, c2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image-and-channel mean SSIM and contrast-structure term of ``[B, C, H, W]`` images, both ``[B, C]``.

    ``win`` is the normalized 1-D window; ``c1 = (k1 L)^2`` and ``c2 = (k2 L)^2``. Call only where
    :func:`fused_ssim_available` is true.
    """
    kernel = _kernel()
    if kernel is None:
        raise RuntimeError("fused_ssim_and_cs: numba is not installed (pip install 'pickwise[fast]')")
    b, c, h, w = pred.shape
    np_dtype = np.float32 if pred.dtype == torch.float32 else np.float64
    x = pred.detach().reshape(b * c, h, w).contiguous().numpy()
    y = target.detach().reshape(b * c, h, w).contiguous().numpy()
    g = win.detach().cpu().numpy().astype(np_dtype)
    ssim_out = np.empty(b * c, np.float64)
    cs_out = np.empty(b * c, np.float64)
    import numba

    torch_threads = torch.get_num_threads()
    available = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    threads = max(1, min(torch_threads, available))
    global _LAUNCH_PID
    with _LOCK:
        if _LAUNCH_PID is None:
            _LAUNCH_PID = os.getpid()
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            kernel(x, y, g, np_dtype(c1), np_dtype(c2), ssim_out, cs_out)
        finally:
            numba.set_num_threads(previous)
            # numba's OpenMP layer shares torch's libgomp and leaves its own thread count there: put torch's back
            torch.set_num_threads(torch_threads)
    return torch.from_numpy(ssim_out).to(pred.dtype).view(b, c), torch.from_numpy(cs_out).to(pred.dtype).view(b, c)
