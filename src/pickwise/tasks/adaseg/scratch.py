"""Reusable scratch tensors for the MCU loss's large per-step temporaries (CPU speed, no effect on results).

The pixel-to-pixel InfoNCE builds three ``[units, anchors, keys]`` float tensors per training step (about 2 MB each
for the embedded benchmark). A fresh allocation of that size comes from a new ``mmap`` (glibc returns large blocks
to the system), so the first write of every 4 KB page faults into the kernel. Inside a real training step, where the
network's activations churn the allocator, the two bmms and the product that fill those tensors took 1.0-1.5 ms each
instead of 0.1-0.5 ms, about a third of the MCU overhead. Writing into buffers kept from the previous step avoids it.

A buffer is only handed out when nothing can still read it: temporaries are given back at the end of the call that
took them, and a buffer saved for backward stays taken while its autograd node still holds its saved tensors (until
backward frees them, or the graph is dropped). So two forward passes before one backward, or ``retain_graph``, get
separate buffers, never a shared one. Copies (``copy.deepcopy``, pickling) start empty; taking is thread-safe.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import torch

__all__ = ["ScratchBuffers"]

_TEMP = "temp"


def _busy(owner: Any) -> bool:
    if owner is None:
        return False
    if owner == _TEMP:
        return True
    ctx = owner()  # a weak reference to an autograd node
    if ctx is None:
        return False
    try:
        ctx.saved_tensors  # noqa: B018 - raises once backward has freed them
    except RuntimeError:
        return False
    return True


class ScratchBuffers:
    """A small pool of reusable tensors (see the module docstring for when a buffer is free)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: list[list[Any]] = []  # [tensor, owner]: None free, "temp", or a weakref to an autograd node

    def take(self, shape: tuple[int, ...], like: torch.Tensor, owner: Any = None) -> torch.Tensor:
        """An uninitialised contiguous tensor of ``shape`` with ``like``'s dtype and device.

        Args:
            shape: Wanted shape.
            like: Dtype and device to match.
            owner: An autograd ``ctx`` that saves the tensor for backward (free again once its saved tensors are
                freed); None for a temporary, given back with :meth:`give_back`.
        """
        numel = 1
        for s in shape:
            numel *= int(s)
        with self._lock:
            slot = None
            for cand in self._slots:
                if cand[0].dtype == like.dtype and cand[0].device == like.device and not _busy(cand[1]):
                    slot = cand
                    break
            if slot is None:
                slot = [like.new_empty(0), None]
                self._slots.append(slot)
            if slot[0].numel() < numel:  # grow with headroom: the unit tables change size a little every step
                slot[0] = like.new_empty(numel + numel // 4)
            slot[1] = _TEMP if owner is None else weakref.ref(owner)
            return slot[0][:numel].view(shape)

    def give_back(self, tensor: torch.Tensor) -> None:
        """Return a temporary from :meth:`take` to the pool."""
        with self._lock:
            for slot in self._slots:
                if slot[0].data_ptr() == tensor.data_ptr() and slot[1] == _TEMP:
                    slot[1] = None
                    return

    def __deepcopy__(self, memo: dict) -> ScratchBuffers:
        return ScratchBuffers()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()  # type: ignore[misc]
