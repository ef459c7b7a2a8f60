"""Thin helpers over ``torch.distributed`` for ``torchrun`` launches (gloo on CPU, nccl on CUDA).

pickwise never launches processes itself: start several with ``torchrun --nproc_per_node=N -m pickwise ...``;
the environment variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...) are read here.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = [
    "all_reduce_sum",
    "barrier",
    "cleanup_distributed",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_dist_avail_and_initialized",
    "is_main_process",
]


def is_dist_avail_and_initialized() -> bool:
    """True when a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank (0 when not distributed)."""
    return dist.get_rank() if is_dist_avail_and_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_dist_avail_and_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0."""
    return get_rank() == 0


def init_distributed(device: torch.device) -> bool:
    """Initialise the default process group if launched by torchrun with ``WORLD_SIZE > 1``.

    Args:
        device: The device this process trains on; CUDA selects nccl (and binds ``LOCAL_RANK``), anything else gloo.

    Returns:
        True if a process group is (now) initialised.
    """
    if is_dist_avail_and_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def cleanup_distributed() -> None:
    """Destroy the default process group if one exists."""
    if is_dist_avail_and_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Synchronise all processes (no-op when not distributed)."""
    if is_dist_avail_and_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all processes in place and return it (identity when not distributed)."""
    if is_dist_avail_and_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
