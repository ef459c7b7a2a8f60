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

The ``Sync*`` classes are ordinary subclasses with the local layer's constructor signature plus keyword
``process_group``; which local class maps to which Sync class is registered metadata
(:func:`~pickwise.nn.norm.registry.sync_class`), read by :func:`convert_sync_norm`.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ...utils.distributed import is_dist_avail_and_initialized
from ..functional._stats import BatchStatsFn
from .exemplar import ExemplarNorm2d
from .population import PopulationNorm2d
from .registry import is_batch_norm, register_norm_layer, sync_class_map
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


class SyncSwitchNorm1d(_SyncMixin, SwitchNorm1d):
    r"""Synchronized :class:`~pickwise.nn.SwitchNorm1d`: the ``"bn"`` statistics are reduced over ``process_group``.

    In training, under an initialized ``torch.distributed`` with more than one process in the group, the batch
    branch uses the count-weighted mean and biased variance of the *global* batch (two differentiable
    all-reduces, :func:`sync_batch_stats`); instance/layer/group statistics stay per sample. In eval, or when not
    distributed, it is exactly :class:`~pickwise.nn.SwitchNorm1d`.

    Args:
        num_features: Number of channels ``C``.
        eps: Added to the mixed variance. Default: ``1e-5``.
        momentum: Running-average factor (PyTorch convention), ``None`` for a cumulative average. Default: ``0.1``.
        affine: Learn ``weight`` and ``bias`` of shape ``(C,)``. Default: ``True``.
        track_running_stats: Keep ``running_mean``/``running_var`` for the batch branch. Default: ``True``.
        normalizers: Names of the mixed normalizers (``"in"``, ``"ln"``, ``"bn"``, ``"gn:G"``). Default:
            ``("in", "ln", "bn")``.
        using_bn: ``False`` drops ``"bn"`` from ``normalizers`` (then nothing is synchronized). Default: ``True``.
        channel_last: Take 3-D inputs as tokens ``(N, L, C)``. Default: ``False``.
        process_group: Process group to reduce over; ``None`` is the whole world. Default: ``None``.
        device: Factory keyword.
        dtype: Factory keyword.

    Shape:
        - Input: ``(N, C)``, ``(N, C, L)``, or ``(N, L, C)`` with ``channel_last=True``; ``N`` may differ per process
          (also 0).
        - Output: same shape as the input.

    Example:
        >>> m = SyncSwitchNorm1d(8)  # not distributed here: the local path runs
        >>> m(torch.randn(4, 8, 5)).shape
        torch.Size([4, 8, 5])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        normalizers: Sequence[str] = ("in", "ln", "bn"),
        using_bn: bool = True,
        channel_last: bool = False,
        process_group: Any = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            normalizers=normalizers,
            using_bn=using_bn,
            channel_last=channel_last,
            device=device,
            dtype=dtype,
        )
        self.process_group = process_group


class SyncSwitchNorm2d(_SyncMixin, SwitchNorm2d):
    r"""Synchronized :class:`~pickwise.nn.SwitchNorm2d`: the ``"bn"`` statistics are reduced over ``process_group``.

    In training, under an initialized ``torch.distributed`` with more than one process in the group, the batch
    branch uses the count-weighted mean and biased variance of the *global* batch (two differentiable
    all-reduces, :func:`sync_batch_stats`; gradients flow back through them to every process); instance and layer
    statistics stay per sample and parameter gradients are left to DDP. In eval, or when not distributed, it is
    exactly :class:`~pickwise.nn.SwitchNorm2d`. ``SwitchNorm2d(C, normalizers=("bn",))`` converted to this class is
    a synchronized BatchNorm that also runs on gloo (CPU).

    Args:
        num_features: Number of channels ``C``.
        eps: Added to the mixed variance. Default: ``1e-5``.
        momentum: Running-average factor (PyTorch convention), ``None`` for a cumulative average. Default: ``0.1``.
        affine: Learn ``weight`` and ``bias`` of shape ``(C,)``. Default: ``True``.
        track_running_stats: Keep ``running_mean``/``running_var`` for the batch branch. Default: ``True``.
        normalizers: Names of the mixed normalizers (``"in"``, ``"ln"``, ``"bn"``, ``"gn:G"``). Default:
            ``("in", "ln", "bn")``.
        using_bn: ``False`` drops ``"bn"`` from ``normalizers`` (then nothing is synchronized). Default: ``True``.
        process_group: Process group to reduce over; ``None`` is the whole world. Default: ``None``.
        device: Factory keyword.
        dtype: Factory keyword.

    Shape:
        - Input: ``(N, C, H, W)``; ``N`` may differ per process (also 0).
        - Output: same shape, dtype and memory format.

    Example:
        >>> m = SyncSwitchNorm2d(8)  # not distributed here: the local path runs
        >>> m(torch.randn(2, 8, 4, 4)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        normalizers: Sequence[str] = ("in", "ln", "bn"),
        using_bn: bool = True,
        process_group: Any = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            normalizers=normalizers,
            using_bn=using_bn,
            device=device,
            dtype=dtype,
        )
        self.process_group = process_group


class SyncSwitchNorm3d(_SyncMixin, SwitchNorm3d):
    r"""Synchronized :class:`~pickwise.nn.SwitchNorm3d`: the ``"bn"`` statistics are reduced over ``process_group``.

    Same synchronization as :class:`SyncSwitchNorm2d`, for 5-D inputs.

    Args:
        num_features: Number of channels ``C``.
        eps: Added to the mixed variance. Default: ``1e-5``.
        momentum: Running-average factor (PyTorch convention), ``None`` for a cumulative average. Default: ``0.1``.
        affine: Learn ``weight`` and ``bias`` of shape ``(C,)``. Default: ``True``.
        track_running_stats: Keep ``running_mean``/``running_var`` for the batch branch. Default: ``True``.
        normalizers: Names of the mixed normalizers (``"in"``, ``"ln"``, ``"bn"``, ``"gn:G"``). Default:
            ``("in", "ln", "bn")``.
        using_bn: ``False`` drops ``"bn"`` from ``normalizers`` (then nothing is synchronized). Default: ``True``.
        process_group: Process group to reduce over; ``None`` is the whole world. Default: ``None``.
        device: Factory keyword.
        dtype: Factory keyword.

    Shape:
        - Input: ``(N, C, D, H, W)``; ``N`` may differ per process (also 0).
        - Output: same shape, dtype and memory format.

    Example:
        >>> m = SyncSwitchNorm3d(8)
        >>> m(torch.randn(2, 8, 2, 4, 4)).shape
        torch.Size([2, 8, 2, 4, 4])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        normalizers: Sequence[str] = ("in", "ln", "bn"),
        using_bn: bool = True,
        process_group: Any = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            normalizers=normalizers,
            using_bn=using_bn,
            device=device,
            dtype=dtype,
        )
        self.process_group = process_group


class SyncSparseSwitchNorm2d(_SyncMixin, SparseSwitchNorm2d):
    r"""Synchronized :class:`~pickwise.nn.SparseSwitchNorm2d`: ``"bn"`` statistics reduced over ``process_group``.

    Same synchronization as :class:`SyncSwitchNorm2d`. The sparsestmax ratios, the radius and the frozen
    selections are computed from the (replicated) logits, so they stay identical on every process.

    Args:
        num_features: Number of channels ``C``.
        eps: Added to the mixed variance. Default: ``1e-5``.
        momentum: PyTorch convention; the official SSN 0.997 is ``momentum=0.003``. Default: ``0.1``.
        affine: Learn ``weight``/``bias``. Default: ``True``.
        track_running_stats: Keep running statistics for the batch branch. Default: ``True``.
        normalizers: Names of the mixed normalizers. Default: ``("in", "ln", "bn")``.
        using_bn: ``False`` drops ``"bn"`` (then nothing is synchronized). Default: ``True``.
        radius: Initial sparsestmax radius ``r >= 0``. Default: ``0.0``.
        process_group: Process group to reduce over; ``None`` is the whole world. Default: ``None``.
        device: Factory keyword.
        dtype: Factory keyword.

    Shape:
        - Input: ``(N, C, H, W)``; ``N`` may differ per process (also 0).
        - Output: same shape, dtype and memory format.

    Example:
        >>> m = SyncSparseSwitchNorm2d(8, radius=0.5)
        >>> m(torch.randn(2, 8, 4, 4)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        normalizers: Sequence[str] = ("in", "ln", "bn"),
        using_bn: bool = True,
        radius: float = 0.0,
        process_group: Any = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            normalizers=normalizers,
            using_bn=using_bn,
            radius=radius,
            device=device,
            dtype=dtype,
        )
        self.process_group = process_group


class SyncExemplarNorm2d(_SyncMixin, ExemplarNorm2d):
    r"""Synchronized :class:`~pickwise.nn.ExemplarNorm2d`: the ``"bn"`` statistics are reduced over ``process_group``.

    Only the batch branch is synchronized; the ratio network runs per sample on each process (its descriptors use
    the global BN statistics, so a sample gets the same ratios as in a single-process run over the global batch).
    ``last_ratios`` stays the mean over the *local* batch.

    Args:
        num_features: Number of channels ``C``.
        eps: Added to every variance. Default: ``1e-5``.
        momentum: Running-average factor (PyTorch convention). Default: ``0.1``.
        affine: Learn ``weight``/``bias``. Default: ``True``.
        track_running_stats: Running statistics for the BN branch. Default: ``True``.
        normalizers: Names of the mixed normalizers. Default: ``("in", "ln", "bn")``.
        using_bn: ``False`` drops ``"bn"`` (then nothing is synchronized). Default: ``True``.
        ratio_hidden: Hidden width of the relation MLP. Default: ``16``.
        kernel_size: Kernel of the shared channel convolution (odd). Default: ``3``.
        temperature: Softmax temperature ``T``. Default: ``1.0``.
        descriptor: ``"mean_std"`` or ``"mean"``. Default: ``"mean_std"``.
        process_group: Process group to reduce over; ``None`` is the whole world. Default: ``None``.
        device: Factory keyword.
        dtype: Factory keyword.

    Shape:
        - Input: ``(N, C, H, W)``; ``N`` may differ per process (also 0).
        - Output: same shape, dtype and memory format.

    Example:
        >>> m = SyncExemplarNorm2d(8)
        >>> m(torch.randn(2, 8, 4, 4)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        normalizers: Sequence[str] = ("in", "ln", "bn"),
        using_bn: bool = True,
        ratio_hidden: int = 16,
        kernel_size: int = 3,
        temperature: float = 1.0,
        descriptor: str = "mean_std",
        process_group: Any = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            normalizers=normalizers,
            using_bn=using_bn,
            ratio_hidden=ratio_hidden,
            kernel_size=kernel_size,
            temperature=temperature,
            descriptor=descriptor,
            device=device,
            dtype=dtype,
        )
        self.process_group = process_group


class SyncPopulationNorm2d(_SyncMixin, PopulationNorm2d):
    r"""Synchronized :class:`~pickwise.nn.PopulationNorm2d`: BN warm-up and running statistics over ``process_group``.

    PN normalizes with population statistics, so synchronizing matters only for the BN warm-up
    (``warmup_steps``) and for keeping the running statistics identical on every process (count-weighted over the
    global batch); after the warm-up it costs two small all-reduces per layer and step.

    Args:
        num_features: Number of channels ``C``.
        eps: Added to the variance. Default: ``1e-5``.
        momentum: Running-average factor (PyTorch convention); ``None`` = cumulative average. Default: ``0.1``.
        affine: Learn ``weight``/``bias``. Default: ``True``.
        track_running_stats: Must be ``True``. Default: ``True``.
        warmup_steps: Training steps normalized with (global) batch statistics. Default: ``0``.
        process_group: Process group to reduce over; ``None`` is the whole world. Default: ``None``.
        device: Factory keyword.
        dtype: Factory keyword.

    Shape:
        - Input: ``(N, C, H, W)``; ``N`` may differ per process (also 0).
        - Output: same shape, dtype and memory format.

    Example:
        >>> m = SyncPopulationNorm2d(8, warmup_steps=10)
        >>> m(torch.randn(2, 8, 4, 4)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        warmup_steps: int = 0,
        process_group: Any = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            warmup_steps=warmup_steps,
            device=device,
            dtype=dtype,
        )
        self.process_group = process_group


# --------------------------------------------------------------------------------------------- convert_sync_norm
#: Instance attributes every nn.Module has (parameters, buffers, children, hooks): rebuilt, not copied, by conversion.
_MODULE_INTERNALS = frozenset(nn.Module().__dict__)
_HOOK_DICTS = tuple(k for k in sorted(_MODULE_INTERNALS) if k.endswith("hooks") or k.endswith("hooks_with_kwargs"))
#: Constructor arguments never read from the source layer.
_NOT_FROM_SOURCE = frozenset({"self", "process_group", "device", "dtype", "using_bn"})


def _constructor_kwargs(module: nn.Module, cls: type) -> dict[str, Any]:
    """Keyword arguments that rebuild ``module``'s configuration in ``cls`` (read from same-named attributes).

    ``using_bn`` is skipped (``normalizers`` already has ``"bn"`` removed when it was ``False``) and so are
    tensor-valued attributes such as SSN's ``radius`` buffer (the tensors themselves are carried over).
    """
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(cls).parameters.items():
        if name in _NOT_FROM_SOURCE or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        value = getattr(module, name, inspect.Parameter.empty)
        if value is inspect.Parameter.empty or isinstance(value, Tensor):
            if param.default is inspect.Parameter.empty:
                raise RuntimeError(
                    f"convert_sync_norm: cannot rebuild {type(module).__name__} as {cls.__name__}: it has no "
                    f"attribute {name!r} for the required constructor argument of the same name"
                )
            continue
        kwargs[name] = value
    return kwargs


def _to_sync(module: nn.Module, sync_cls: type, process_group: Any) -> nn.Module:
    """A new ``sync_cls`` module that shares ``module``'s parameters, buffers and children (no copies).

    As :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`: a new object is built with the same configuration
    (on the ``meta`` device, so nothing is allocated), then gets the source's ``Parameter`` objects (an optimizer
    built before the conversion keeps updating them), the source's buffer tensors, its children (EN's ratio
    network), its ``training`` flag and its other instance attributes (e.g. ``qconfig``, EN's
    ``last_sample_ratios``), in the source's order (so ``parameters()`` and ``state_dict()`` keep their order).
    Hooks registered on the source are not carried (torch does not either); a warning names them.
    """
    floating = [t for t in (*module.parameters(recurse=False), *module.buffers(recurse=False)) if t.is_floating_point()]
    new = sync_cls(
        **_constructor_kwargs(module, sync_cls),
        process_group=process_group,
        device="meta",
        dtype=floating[0].dtype if floating else None,
    )
    built = (set(new._parameters), set(new._buffers), set(new._modules))
    source = (set(module._parameters), set(module._buffers), set(module._modules))
    missing = sorted(set().union(*(b - s for b, s in zip(built, source, strict=True))))
    if missing:
        raise RuntimeError(
            f"convert_sync_norm: {type(module).__name__} lacks {missing}, which {sync_cls.__name__} defines; "
            "was the layer modified after construction?"
        )
    new._parameters = type(module._parameters)(module._parameters)
    new._buffers = type(module._buffers)(module._buffers)
    new._non_persistent_buffers_set = set(module._non_persistent_buffers_set)
    new._modules = type(module._modules)(module._modules)
    for key, value in vars(module).items():
        if key not in _MODULE_INTERNALS:
            new.__dict__[key] = value
    new.process_group = process_group
    new.training = module.training
    hooks = [key for key in _HOOK_DICTS if getattr(module, key, None)]
    if hooks:
        warnings.warn(
            f"convert_sync_norm: the hooks of a {type(module).__name__} ({', '.join(hooks)}) are not carried to the "
            f"new {sync_cls.__name__} (as torch.nn.SyncBatchNorm.convert_sync_batchnorm); register them after "
            "converting",
            UserWarning,
            stacklevel=4,
        )
    return new


def _module_on_cuda(module: nn.Module) -> bool:
    tensor: Tensor | None = next(iter(module.parameters()), None)
    if tensor is None:
        tensor = next(iter(module.buffers()), None)
    return tensor is not None and tensor.is_cuda


def convert_sync_norm(module: nn.Module, process_group: Any = None) -> nn.Module:
    """Recursively replace SN/SSN/EN/PN layers by their Sync variants and (on CUDA) BatchNorm by SyncBatchNorm.

    Modelled on :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`: each converted layer is a **new module
    object** of the Sync class (built with the same configuration) that holds the original's very ``Parameter``
    objects (``weight``, ``bias``, mixture logits, EN's ratio network), so an optimizer built before the
    conversion still updates the converted model; its buffer tensors (running statistics, SSN's radius and frozen
    selections) are the original's too, and so are its ``training`` flag and other instance attributes. Forward or
    state-dict hooks registered on a converted layer are not carried (as in torch; a warning names them). The
    containers of ``module`` are modified in place; the original layers are left as they were.

    Which class replaces which is registered metadata (:func:`~pickwise.nn.norm.registry.sync_class`); only
    exact local classes convert, and layers that are already synchronized are left alone. Plain BatchNorm layers
    (:func:`~pickwise.nn.norm.registry.is_batch_norm`) become :class:`torch.nn.SyncBatchNorm` only when they live on
    CUDA: torch's SyncBatchNorm rejects CPU inputs, so on CPU they are kept as they are and one warning says so (use
    ``SwitchNorm2d(normalizers=("bn",))`` + this converter for a CPU/gloo synchronized BN).

    Args:
        module: The model (or a single layer).
        process_group: Group to synchronize over (default: the world).

    Returns:
        ``module`` with converted children, or a new object if ``module`` itself was converted.

    Example:
        >>> from pickwise.nn import SwitchNorm2d
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), SwitchNorm2d(8))
        >>> weight = model[1].weight
        >>> model = convert_sync_norm(model)
        >>> type(model[1]).__name__, model[1].weight is weight
        ('SyncSwitchNorm2d', True)
    """
    skipped_cpu_bn = [0]
    out = _convert(module, process_group, sync_class_map(), skipped_cpu_bn)
    if skipped_cpu_bn[0]:
        warnings.warn(
            f"convert_sync_norm: kept {skipped_cpu_bn[0]} BatchNorm layer(s) on CPU unsynchronized "
            "(torch.nn.SyncBatchNorm only runs on CUDA); move the model to CUDA first, or use SN with "
            "normalizers=('bn',) for a synchronized BN on gloo",
            UserWarning,
            stacklevel=2,
        )
    return out


def _convert(module: nn.Module, process_group: Any, sync_of: dict[type, type], skipped: list[int]) -> nn.Module:
    out = module
    sync_cls = sync_of.get(type(module))
    if sync_cls is not None:
        out = _to_sync(module, sync_cls, process_group)
    elif is_batch_norm(module) and not isinstance(module, nn.SyncBatchNorm):
        if _module_on_cuda(module):
            out = nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
        else:
            skipped[0] += 1
    for name, child in list(out.named_children()):
        new_child = _convert(child, process_group, sync_of, skipped)
        if new_child is not child:
            out.add_module(name, new_child)
    return out


_SYNC_DOC = "synchronized {0} (batch statistics all-reduced over a process group; convert_sync_norm)"

register_norm_layer(
    "syncsn",
    SyncSwitchNorm2d,
    aliases=("syncswitchnorm", "syncswitchnorm2d"),
    description=_SYNC_DOC.format("SN"),
    family="mixture",
    batch_dependent=True,
    learned_mixture=True,
    sync_of="sn",
    variants={1: SyncSwitchNorm1d, 3: SyncSwitchNorm3d},
)
register_norm_layer(
    "syncssn",
    SyncSparseSwitchNorm2d,
    aliases=("syncsparseswitchnorm",),
    description=_SYNC_DOC.format("SSN"),
    family="mixture",
    batch_dependent=True,
    learned_mixture=True,
    sync_of="ssn",
)
register_norm_layer(
    "syncen",
    SyncExemplarNorm2d,
    aliases=("syncexemplarnorm", "syncexemplarnorm2d"),
    description=_SYNC_DOC.format("EN"),
    family="mixture",
    batch_dependent=True,
    learned_mixture=True,
    sync_of="en",
)
register_norm_layer(
    "syncpn",
    SyncPopulationNorm2d,
    aliases=("syncpopulationnorm",),
    description=_SYNC_DOC.format("PN"),
    family="population",
    batch_dependent=True,
    sync_of="pn",
)
