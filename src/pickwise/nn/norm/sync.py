"""Synchronized (cross-process) variants of SN, SSN, EN and PN, and :func:`convert_sync_norm`.

Each ``Sync*`` class subclasses its local layer and overrides only the batch-statistics reduction: the per-channel
count, sum and centred sum of squares of the ``"bn"`` branch are all-reduced over ``process_group`` with a
*differentiable* all-reduce (the ``torch.distributed.nn.functional.all_reduce`` pattern), so autograd produces the
backward all-reduce (no hand-written layer backward, none of the official SyncSN defects). IN/LN/GN statistics and
EN's ratio network stay per sample. The reduction is count-weighted (uneven or empty per-rank batches are exact)
and cancellation-free:

1. all-reduce ``[Σ_n L·μ_in[n, c], N·L]`` → global mean ``μ``;
2. all-reduce ``Σ_n L·(σ²_in[n, c] + (μ_in[n, c] − μ)²)`` → global biased variance.

Synchronization happens only when training, ``torch.distributed`` is initialized and the group has more than one
process; otherwise the local path runs. Works on gloo (CPU) and nccl (CUDA).
"""

from __future__ import annotations

import copy
import functools
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ...utils.distributed import is_dist_avail_and_initialized
from ..functional._stats import BatchStatsFn
from .exemplar import ExemplarNorm2d
from .factory import register_norm_layer
from .population import PopulationNorm2d
from .sparse import SparseSwitchNorm2d
from .switchable import SwitchNorm1d, SwitchNorm2d, SwitchNorm3d

__all__ = [
    "SyncExemplarNorm2d",
    "SyncPopulationNorm2d",
    "SyncSparseSwitchNorm2d",
    "SyncSwitchNorm1d",
    "SyncSwitchNorm2d",
    "SyncSwitchNorm3d",
    "convert_sync_norm",
    "sync_batch_stats",
]


class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce (sum): the backward all-reduces the gradient.

    Same semantics as ``torch.distributed.nn.functional.all_reduce`` (deprecated in recent torch releases), without
    its deprecation warning.
    """

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, group: Any) -> Tensor:
        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        out = grad.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=ctx.group)
        return out, None


def sync_batch_stats(
    mu_in: Tensor, var_in: Tensor, positions: int, process_group: Any = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Count-weighted batch moments over all processes of ``process_group`` (differentiable; a ``BatchStatsFn``).

    Args:
        mu_in: ``(N_r, C)`` instance means of this process (``N_r`` may be 0).
        var_in: ``(N_r, C)`` instance biased variances.
        positions: Positions ``L`` per (n, c) on this process.
        process_group: Group to reduce over (default: the world).

    Returns:
        ``(mean (C,), biased variance (C,), total count (0-d))``.
    """
    group = process_group if process_group is not None else dist.group.WORLD
    count = torch.full((1,), float(mu_in.shape[0] * positions), dtype=mu_in.dtype, device=mu_in.device)
    packed = _AllReduceSum.apply(torch.cat([mu_in.sum(0) * positions, count]), group)
    total = packed[-1]
    mean = packed[:-1] / total.clamp_min(1)
    m2 = _AllReduceSum.apply((var_in + (mu_in - mean).square()).sum(0) * positions, group)
    return mean, m2 / total.clamp_min(1), total


class _SyncMixin:
    """Overrides the batch-statistics reduction of a learned-norm layer with :func:`sync_batch_stats`."""

    process_group: Any
    training: bool

    def _batch_stats_fn(self) -> BatchStatsFn | None:
        if self.training and is_dist_avail_and_initialized():
            group = self.process_group if self.process_group is not None else dist.group.WORLD
            if dist.get_world_size(group) > 1:
                return functools.partial(sync_batch_stats, process_group=self.process_group)
        return None

    def extra_repr(self) -> str:
        return super().extra_repr() + (", process_group=..." if self.process_group is not None else "")  # type: ignore[misc]


def _sync_doc(local: type) -> str:
    return (
        f"Synchronized :class:`~pickwise.nn.{local.__name__}`: batch statistics reduced over ``process_group``.\n\n"
        "    Same arguments as the local layer plus keyword ``process_group`` (default: the whole world). Only the\n"
        '    ``"bn"`` statistics are synchronized (count-weighted, differentiable all-reduce); the local path runs in\n'
        "    eval or when not distributed. See :mod:`pickwise.nn.norm.sync`.\n"
    )


def _make_sync(local: type, name: str) -> type:
    def init(self: Any, *args: Any, process_group: Any = None, **kwargs: Any) -> None:
        local.__init__(self, *args, **kwargs)
        self.process_group = process_group

    cls = type(name, (_SyncMixin, local), {"__init__": init, "__doc__": _sync_doc(local), "__module__": __name__})
    return cls


SyncSwitchNorm1d = _make_sync(SwitchNorm1d, "SyncSwitchNorm1d")
SyncSwitchNorm2d = _make_sync(SwitchNorm2d, "SyncSwitchNorm2d")
SyncSwitchNorm3d = _make_sync(SwitchNorm3d, "SyncSwitchNorm3d")
SyncSparseSwitchNorm2d = _make_sync(SparseSwitchNorm2d, "SyncSparseSwitchNorm2d")
SyncExemplarNorm2d = _make_sync(ExemplarNorm2d, "SyncExemplarNorm2d")
#: PN normalizes with population statistics, so syncing matters only for the BN warm-up and for keeping the running
#: statistics identical on every rank (count-weighted over the global batch).
SyncPopulationNorm2d = _make_sync(PopulationNorm2d, "SyncPopulationNorm2d")

_SYNC_OF: dict[type, type] = {
    SwitchNorm1d: SyncSwitchNorm1d,
    SwitchNorm2d: SyncSwitchNorm2d,
    SwitchNorm3d: SyncSwitchNorm3d,
    SparseSwitchNorm2d: SyncSparseSwitchNorm2d,
    ExemplarNorm2d: SyncExemplarNorm2d,
    PopulationNorm2d: SyncPopulationNorm2d,
}


def _to_sync(module: nn.Module, sync_cls: type, process_group: Any) -> nn.Module:
    new = copy.copy(module)  # shares parameters and buffers (like torch's convert_sync_batchnorm)
    new._parameters = dict(module._parameters)
    new._buffers = dict(module._buffers)
    new._modules = dict(module._modules)
    new.__class__ = sync_cls
    new.process_group = process_group
    return new


def _module_on_cuda(module: nn.Module) -> bool:
    tensor = next(iter(module.parameters()), None)
    if tensor is None:
        tensor = next(iter(module.buffers()), None)
    return tensor is not None and tensor.is_cuda


def convert_sync_norm(module: nn.Module, process_group: Any = None) -> nn.Module:
    """Recursively replace SN/SSN/EN/PN layers by their Sync variants and (on CUDA) BatchNorm by SyncBatchNorm.

    Modelled on :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`: each converted layer is a new object that
    *shares* the original's parameters and buffers (``weight``, ``bias``, logits, running statistics, EN's ratio
    network) and keeps its mode; the containers of ``module`` are modified in place. Plain ``_BatchNorm`` layers
    become :class:`torch.nn.SyncBatchNorm` only when they live on CUDA: torch's SyncBatchNorm rejects CPU inputs,
    so on CPU they are kept as they are and one warning says so (use ``SwitchNorm2d(normalizers=("bn",))`` +
    this converter for a CPU/gloo synchronized BN). Layers that are already synchronized are left alone.

    Args:
        module: The model (or a single layer).
        process_group: Group to synchronize over (default: the world).

    Returns:
        ``module`` with converted children, or a new object if ``module`` itself was converted.
    """
    skipped_cpu_bn = [0]
    out = _convert(module, process_group, skipped_cpu_bn)
    if skipped_cpu_bn[0]:
        warnings.warn(
            f"convert_sync_norm: kept {skipped_cpu_bn[0]} BatchNorm layer(s) on CPU unsynchronized "
            "(torch.nn.SyncBatchNorm only runs on CUDA); move the model to CUDA first, or use SN with "
            "normalizers=('bn',) for a synchronized BN on gloo",
            UserWarning,
            stacklevel=2,
        )
    return out


def _convert(module: nn.Module, process_group: Any, skipped: list[int]) -> nn.Module:
    out = module
    sync_cls = _SYNC_OF.get(type(module))
    if sync_cls is not None:
        out = _to_sync(module, sync_cls, process_group)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, nn.SyncBatchNorm):
        if _module_on_cuda(module):
            out = nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
        else:
            skipped[0] += 1
    for name, child in list(out.named_children()):
        new_child = _convert(child, process_group, skipped)
        if new_child is not child:
            out.add_module(name, new_child)
    return out


register_norm_layer("syncsn", SyncSwitchNorm2d, aliases=("syncswitchnorm", "syncswitchnorm2d"))
register_norm_layer("syncssn", SyncSparseSwitchNorm2d, aliases=("syncsparseswitchnorm",))
register_norm_layer("syncen", SyncExemplarNorm2d, aliases=("syncexemplarnorm", "syncexemplarnorm2d"))
register_norm_layer("syncpn", SyncPopulationNorm2d, aliases=("syncpopulationnorm",))
