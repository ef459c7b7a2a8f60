"""Full-resolution ISP inference: overlapping tiles with linear blending, x8 self-ensemble, latency and memory.

**Tiling.** :func:`tiled_forward` cuts the packed RAW into ``tile x tile`` windows that overlap by ``overlap`` packed
pixels, runs the model on each, and blends the outputs. Along an interior tile edge the outer ``overlap // 4`` pixels
of each window get weight 0 (they only provide context) and the next ``overlap - 2 * (overlap // 4)`` pixels ramp
linearly, so the weights of neighbouring tiles sum to one. Hence the tiled output equals the untiled one (up to float
rounding) whenever the model's receptive-field radius, in packed pixels, is at most ``overlap // 4`` and the model
treats an image border the same in a tile and in the full image (zero/reflection padding at the image border only;
models with global statistics — instance norm, global pooling, attention — are only approximated).

**Self-ensemble.** :func:`self_ensemble` averages the model over the eight flips/rotations of the packed grid (the
dihedral group D4), mapping each output back with the exact inverse. Three conventions (``mode``):

- ``"packed"`` (default): the transform moves whole 2x2 Bayer cells (each of the four planes keeps its colour, so the
  CFA pattern is unchanged), and the inverse moves whole 2x2 cells of the RGB output (pixel-unshuffle, inverse,
  pixel-shuffle). The pair is exact: a model that commutes with cell moves (e.g. any per-cell map followed by
  PixelShuffle) gives exactly its plain output.
- ``"rgb"``: the same input transforms, inverted on the RGB *pixel* grid (MW-ISPNet's ``forward_x8``); this mirrors
  the inside of each output cell too, which is not the inverse of the input move at sub-cell scale.
- ``"bayer"``: only the transforms that are exact symmetries of the RGGB mosaic itself: identity and the transpose
  (the pixel transpose of the mosaic equals the transpose of the packed planes with Gb and Gr swapped); flips and
  rotations by 90/180 degrees change the CFA phase and are left out. Two members, inverted on the RGB pixel grid.

**Measurement.** :func:`measure_inference` reports the median latency and the peak memory: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the peak increase of the resident set (sampled) or, exactly, the tensors
the call allocates (a dispatch mode; its first use costs seconds of imports).
"""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...exceptions import InvalidParameterError, ShapeError

__all__ = [
    "ENSEMBLE_MODES",
    "measure_inference",
    "peak_rss_increase",
    "peak_tensor_memory",
    "self_ensemble",
    "tile_weights",
    "tiled_forward",
]

ENSEMBLE_MODES = ("packed", "rgb", "bayer")

# packed channel order (B, Gb, R, Gr): the transpose of the mosaic swaps Gb and Gr
_TRANSPOSE_PERM = (0, 3, 2, 1)


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return sorted(set(starts))


def tile_weights(size: int, start: int, length: int, total: int, overlap: int, scale: int) -> torch.Tensor:
    """1-D blending weights (output resolution) of the tile ``[start, start + length)`` of an axis of ``total``.

    Zero over the first ``overlap // 4`` packed pixels next to an interior edge, then a linear ramp to one over the
    next ``overlap - 2 * (overlap // 4)``; one next to the image border.
    """
    del size
    margin = overlap // 4
    ramp = max(1, overlap - 2 * margin)
    pos = torch.arange(length * scale, dtype=torch.float64) / scale  # packed coordinate of each output pixel
    w = torch.ones(length * scale, dtype=torch.float64)
    if start > 0:  # interior left/top edge
        d = pos  # distance (packed pixels) from the edge
        w = torch.minimum(w, ((d - margin + 0.5 / scale) / ramp).clamp(0.0, 1.0))
    if start + length < total:  # interior right/bottom edge
        d = length - 1.0 / scale - pos
        w = torch.minimum(w, ((d - margin + 0.5 / scale) / ramp).clamp(0.0, 1.0))
    return w


@torch.no_grad()
def tiled_forward(
    model: Callable[[torch.Tensor], torch.Tensor],
    raw: torch.Tensor,
    tile: int = 256,
    overlap: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Run ``model`` over overlapping tiles of packed RAW ``[B, 4, h, w]`` and blend (see the module docstring).

    Args:
        model: Packed RAW ``[B, 4, t, t]`` → RGB ``[B, 3, s t, s t]`` for an integer scale ``s`` (2 for ISP nets).
        raw: Packed RAW ``[B, 4, h, w]``.
        tile: Tile side in packed pixels.
        overlap: Overlap of neighbouring tiles in packed pixels (``< tile``); tiling is exact for receptive-field
            radii up to ``overlap // 4``.
        progress: Called as ``progress(done, total)`` after every tile.

    Returns:
        RGB ``[B, 3, s h, s w]`` on ``raw``'s device (float32).

    Raises:
        ShapeError: ``raw`` is not ``[B, C, h, w]``, or the model's output is not an integer multiple of the tile.
        InvalidParameterError: ``tile < 1`` or ``overlap`` outside ``[0, tile)``.
    """
    if not isinstance(raw, torch.Tensor) or raw.ndim != 4:
        raise ShapeError(f"tiled_forward: expected packed RAW [B, 4, h, w]; got {getattr(raw, 'shape', raw)!r}")
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise InvalidParameterError(f"tiled_forward: tile must be an int >= 1; got {tile!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < tile:
        raise InvalidParameterError(f"tiled_forward: overlap must be an int in [0, tile={tile}); got {overlap!r}")
    b, _, h, w = raw.shape
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    out: torch.Tensor | None = None
    norm: torch.Tensor | None = None
    scale = 0
    done, total = 0, len(ys) * len(xs)
    for y in ys:
        th = min(tile, h - y)
        for x in xs:
            tw = min(tile, w - x)
            pred = model(raw[:, :, y : y + th, x : x + tw]).float()
            if out is None:
                if pred.shape[-2] % th or pred.shape[-1] % tw or pred.shape[-2] // th != pred.shape[-1] // tw:
                    raise ShapeError(
                        f"tiled_forward: a {th}x{tw} tile gave an output of {tuple(pred.shape[-2:])}, not an integer "
                        "multiple of the tile"
                    )
                scale = pred.shape[-2] // th
                out = raw.new_zeros(b, pred.shape[1], h * scale, w * scale, dtype=torch.float32)
                norm = raw.new_zeros(1, 1, h * scale, w * scale, dtype=torch.float32)
            assert norm is not None
            wy = tile_weights(h, y, th, h, overlap, scale)
            wx = tile_weights(w, x, tw, w, overlap, scale)
            weight = (wy[:, None] * wx[None, :]).to(device=out.device, dtype=torch.float32)
            sl = (slice(None), slice(None), slice(y * scale, (y + th) * scale), slice(x * scale, (x + tw) * scale))
            out[sl] += pred * weight
            norm[sl] += weight
            done += 1
            if progress is not None:
                progress(done, total)
    assert out is not None
    assert norm is not None
    return out / norm.clamp_min(1e-12)


# ---------------------------------------------------------------------- self-ensemble
def _grid(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th element of D4 on the last two axes: ``k & 4`` transposes, then ``k & 1`` flips W, ``k & 2`` flips H."""
    if k & 4:
        x = x.transpose(-2, -1)
    dims = [d for d, bit in ((-1, 1), (-2, 2)) if k & bit]
    return x.flip(dims) if dims else x


def _grid_inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    dims = [d for d, bit in ((-1, 1), (-2, 2)) if k & bit]
    if dims:
        x = x.flip(dims)
    return x.transpose(-2, -1) if k & 4 else x


def _cell_inverse(y: torch.Tensor, k: int, scale: int) -> torch.Tensor:
    return F.pixel_shuffle(_grid_inverse(F.pixel_unshuffle(y, scale), k), scale)


@torch.no_grad()
def self_ensemble(
    model: Callable[[torch.Tensor], torch.Tensor], raw: torch.Tensor, mode: str = "packed", scale: int = 2
) -> torch.Tensor:
    """Average of ``model`` over geometric transforms of the packed RAW, each output mapped back exactly.

    Args:
        model: Packed RAW ``[B, 4, h, w]`` → RGB ``[B, 3, scale h, scale w]`` (e.g. a tiled runner).
        raw: Packed RAW ``[B, 4, h, w]`` (channels B, Gb, R, Gr).
        mode: ``"packed"`` (8 cell-level transforms), ``"rgb"`` (8, MW-ISPNet's pixel-level inverse) or ``"bayer"``
            (identity and the CFA-exact transpose); see the module docstring.
        scale: Output/input size ratio (2 for the ISP nets).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(4, 12, 1), torch.nn.PixelShuffle(2))  # per-cell map
        >>> x = torch.rand(1, 4, 5, 7)
        >>> torch.allclose(self_ensemble(net, x), net(x), atol=1e-6)
        True
    """
    if mode not in ENSEMBLE_MODES:
        raise InvalidParameterError(f"self_ensemble: mode must be one of {', '.join(ENSEMBLE_MODES)}; got {mode!r}")
    if not isinstance(raw, torch.Tensor) or raw.ndim != 4 or raw.shape[1] != 4:
        raise ShapeError(f"self_ensemble: expected packed RAW [B, 4, h, w]; got {getattr(raw, 'shape', raw)!r}")
    if mode == "bayer":
        plain = model(raw).float()
        swapped = raw[:, list(_TRANSPOSE_PERM)].transpose(-2, -1)
        return 0.5 * (plain + model(swapped).float().transpose(-2, -1))
    acc: torch.Tensor | None = None
    for k in range(8):
        y = model(_grid(raw, k)).float()
        y = _cell_inverse(y, k, scale) if mode == "packed" else _grid_inverse(y, k)
        acc = y if acc is None else acc + y
    assert acc is not None
    return acc / 8.0


# ---------------------------------------------------------------------- measurement
class _LiveTensorTracker:
    """Tracks the bytes of storages created by torch ops while active, and their peak (a dispatch mode)."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self._refs: dict[int, int] = {}
        self._bytes: dict[int, int] = {}

    def _release(self, key: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            self.live -= self._bytes.pop(key)
            del self._refs[key]

    def add(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key == 0:
            return
        if key not in self._refs:
            self._refs[key] = 0
            self._bytes[key] = storage.nbytes()
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        self._refs[key] += 1
        weakref.finalize(t, self._release, key)


def peak_tensor_memory(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn()`` and return ``(result, peak bytes of the tensors it allocated that were alive at once)``.

    Inputs and weights that exist before the call are not counted. On CPU the count comes from a
    ``TorchDispatchMode`` that records every storage an operator returns and releases it when its last tensor is
    freed; it is exact for eager execution of PyTorch operators.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    tracker = _LiveTensorTracker()

    class _Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    tracker.add(t)
            return out

    with _Mode():
        result = fn()
    return result, tracker.peak


def peak_rss_increase(fn: Callable[[], Any], interval: float = 0.001) -> tuple[Any, int | None]:
    """Run ``fn()`` and return ``(result, peak increase of the process's resident memory in bytes)``.

    A background thread samples ``/proc/self/statm`` every ``interval`` seconds (Linux; None elsewhere). It sees
    what the process really holds (allocator caches included) but is a lower bound of the tensors' peak when the
    allocator reuses memory freed before the call. Cheap, unlike :func:`peak_tensor_memory`, whose first use loads
    PyTorch's dispatch-mode machinery (seconds).
    """
    import os
    import threading

    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def rss() -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            return None

    base = rss()
    if base is None:
        return fn(), None
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            value = rss()
            if value is not None and value > peak[0]:
                peak[0] = value
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = fn()
    finally:
        stop.set()
        thread.join()
    end = rss()
    if end is not None:
        peak[0] = max(peak[0], end)
    return result, peak[0] - base


def measure_inference(
    model: nn.Module,
    packed_size: tuple[int, int],
    *,
    tile: int | None = None,
    overlap: int = 32,
    repeats: int = 5,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    memory: str = "rss",
) -> dict[str, Any]:
    """Median latency (ms) and peak tensor memory (bytes) of one forward pass at a packed input size.

    Args:
        model: An ISP network.
        packed_size: ``(h, w)`` of the packed RAW (the RGB output is ``2h x 2w``).
        tile: Tile side for :func:`tiled_forward` (None: one untiled pass).
        overlap: Tile overlap.
        repeats: Timed runs (the median is reported, with min and max).
        warmup: Untimed runs first.
        device: Where to run.
        memory: On CPU, ``"rss"`` (:func:`peak_rss_increase`, cheap) or ``"tensors"`` (:func:`peak_tensor_memory`,
            exact for the tensors the call allocates).

    Returns:
        ``{"latency_ms", "latency_min_ms", "latency_max_ms", "peak_memory_bytes", "memory", "repeats"}``
        (``memory`` names what was measured: ``cuda_allocated``, ``rss_increase`` or ``tensors``).
    """
    if memory not in ("rss", "tensors"):
        raise InvalidParameterError(f"measure_inference: memory must be 'rss' or 'tensors'; got {memory!r}")
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.rand(1, 4, *packed_size, device=device)

    def call() -> torch.Tensor:
        with torch.no_grad():
            return model(x) if tile is None else tiled_forward(model, x, tile=tile, overlap=overlap)

    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    peak: int | None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        call()
        peak, what = torch.cuda.max_memory_allocated(device) - base, "cuda_allocated"
    elif memory == "tensors":
        _, peak = peak_tensor_memory(call)
        what = "tensors"
    else:
        _, peak = peak_rss_increase(call)
        what = "rss_increase"
    return {
        "latency_ms": statistics.median(times),
        "latency_min_ms": min(times),
        "latency_max_ms": max(times),
        "peak_memory_bytes": float("nan") if peak is None else int(peak),
        "memory": what,
        "repeats": repeats,
    }
