"""Label bookkeeping of an MCU training step on the CPU through numba: class maxima and majority-vote downsampling.

Each training step turns the target softmax into confident pseudo-labels (maximum and arg-max over the classes) and
brings the source and target label maps to the feature stride by majority vote
(:func:`~pickwise.tasks.adaseg.contrastive.downsample_labels`). In torch that is a strided ``max`` with indices
(about 0.3 ms for ``4x11x64x64`` inside a step) and two chains of a dozen small ops each; these kernels do the same
in one pass each, with the same answers: the maximum is the same float, ties go to the first class (``torch.max``'s
rule), and the vote compares integer counts (tests compare both paths). numba is optional (extras ``fast``, ``isp``,
``all``); without it, off the CPU, or for shapes the kernels do not take, callers use their torch code.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ...utils._numba import compile_kernel

__all__ = ["class_max", "vote_counts_available", "vote_downsample"]

_KERNELS: dict[str, Callable] | None = None
_TRIED = False


def _build() -> dict[str, Callable] | None:
    try:
        import numba  # noqa: F401 - the kernels are compiled only where numba imports
    except ImportError:
        return None

    def class_max_kernel(x, values, index):  # pragma: no cover - compiled by numba
        b, k, hw = x.shape
        for i in range(b):
            for p in range(hw):
                best = x[i, 0, p]
                arg = 0
                for c in range(1, k):
                    v = x[i, c, p]
                    if best == best and (v > best or v != v):  # the first NaN wins, as in torch.max
                        best = v
                        arg = c
                values[i, p] = best
                index[i, p] = arg

    def vote_kernel(labels, h, w, k, ignore, min_ratio, sparse, out):  # pragma: no cover - compiled by numba
        b, height, width = labels.shape
        ch = height // h
        cw = width // w
        counts = np.zeros(k + 1, np.int64)
        for i in range(b):
            for r in range(h):
                for c in range(w):
                    counts[:] = 0
                    for y in range(r * ch, (r + 1) * ch):
                        for x in range(c * cw, (c + 1) * cw):
                            lab = labels[i, y, x]
                            counts[lab if 0 <= lab < k else k] += 1
                    top = k if sparse else k + 1  # sparse: the vote is among labelled pixels only
                    arg = 0
                    for cls in range(1, top):
                        if counts[cls] > counts[arg]:
                            arg = cls
                    if sparse:
                        known = ch * cw - counts[k]
                        keep = known > 0 and counts[arg] >= min_ratio * known
                    else:
                        keep = arg != k and counts[arg] >= min_ratio * (ch * cw)
                    out[i, r, c] = arg if keep else ignore

    return {
        "class_max": compile_kernel(class_max_kernel),
        "vote": compile_kernel(vote_kernel),
    }


def _kernels() -> dict[str, Callable] | None:
    global _KERNELS, _TRIED
    if not _TRIED:
        _TRIED = True
        _KERNELS = _build()
    return _KERNELS


def class_max(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x.max(1)`` of ``[B,K,...]`` scores: the maxima and the first arg-max (numba on CPU float tensors)."""
    kernels = _kernels()
    if kernels is None or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.dim() < 2:
        values, index = x.max(1)
        return values, index
    flat = x.detach().contiguous().view(x.shape[0], x.shape[1], -1)
    values = torch.empty((x.shape[0], flat.shape[2]), dtype=x.dtype)
    index = torch.empty((x.shape[0], flat.shape[2]), dtype=torch.long)
    kernels["class_max"](flat.numpy(), values.numpy(), index.numpy())
    rest = tuple(x.shape[2:])
    return values.view(x.shape[0], *rest), index.view(x.shape[0], *rest)


def vote_counts_available(labels: torch.Tensor, size: tuple[int, int]) -> bool:
    """Whether :func:`vote_downsample` takes these labels (numba, CPU, ``long[B,H,W]``, cells that tile the image)."""
    return (
        _kernels() is not None
        and labels.device.type == "cpu"
        and labels.dtype == torch.long
        and labels.dim() == 3
        and labels.shape[1] % int(size[0]) == 0
        and labels.shape[2] % int(size[1]) == 0
    )


def vote_downsample(
    labels: torch.Tensor, size: tuple[int, int], num_classes: int, ignore_index: int, min_ratio: float, sparse: bool
) -> torch.Tensor:
    """Majority vote of ``labels`` in the cells of a ``size`` grid (the rule of ``downsample_labels``), in numba.

    Call only where :func:`vote_counts_available` is true.
    """
    kernels = _kernels()
    assert kernels is not None
    h, w = int(size[0]), int(size[1])
    out = torch.empty((labels.shape[0], h, w), dtype=torch.long)
    kernels["vote"](labels.contiguous().numpy(), h, w, int(num_classes), int(ignore_index), float(min_ratio),
                    bool(sparse), out.numpy())  # fmt: skip
    return out
