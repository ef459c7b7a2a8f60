"""Shared base of the learning-to-normalize layers: constructor checks, buffers, momentum, state-dict migration.

Subclasses (:class:`~pickwise.nn.norm.switchable.SwitchNorm2d`, :class:`~pickwise.nn.norm.exemplar.ExemplarNorm2d`,
:class:`~pickwise.nn.norm.population.PopulationNorm2d`, ...) add their own parameters and a ``forward`` that calls a
pure function from :mod:`pickwise.nn.functional`. The Sync variants override only :meth:`_batch_stats_fn`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ...exceptions import InvalidParameterError, ShapeError
from .._validation import positive_float, positive_int, probability
from ..functional._stats import BatchStatsFn, parse_normalizers

__all__ = ["LearnedNormBase"]


class LearnedNormBase(nn.Module):
    """Base class: ``weight``/``bias`` ``(C,)``, ``running_mean``/``running_var``/``num_batches_tracked`` buffers.

    Args:
        num_features: Number of channels ``C``.
        eps: Added to variances. Default: ``1e-5``.
        momentum: Running-average factor in PyTorch's convention, ``running = (1 - momentum) * running + momentum *
            batch``; ``None`` means a cumulative average. Default: ``0.1``.
        affine: Learn ``weight`` and ``bias``. Default: ``True``.
        track_running_stats: Keep running statistics for the batch branch (used in eval). Default: ``True``.
        normalizers: Canonical normalizer names, or ``None`` for a layer that is not a mixture (PN).
        channel_last: Channel dimension is the last one. Default: ``False``.
        device: Factory keyword.
        dtype: Factory keyword.
    """

    _version = 2
    #: Accepted input ranks.
    _input_ranks: tuple[int, ...] = (4,)
    _shape_hint = "(N, C, H, W)"

    normalizers: tuple[str, ...]
    weight: Tensor | None
    bias: Tensor | None
    running_mean: Tensor | None
    running_var: Tensor | None
    num_batches_tracked: Tensor | None

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        normalizers: Sequence[str] | None = ("in", "ln", "bn"),
        using_bn: bool = True,
        channel_last: bool = False,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        where = type(self).__name__
        num_features = positive_int(where, "num_features", num_features)
        eps = positive_float(where, "eps", eps)
        momentum = probability(
            where,
            "momentum",
            momentum,
            allow_none=True,
            hint="momentum follows the PyTorch convention: the official SN value 0.9 (0.997) corresponds to "
            "momentum=0.1 (0.003) here.",
        )
        factory_kwargs = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.channel_last = bool(channel_last)
        if normalizers is not None:
            names = parse_normalizers(normalizers, num_features, where)
            if not using_bn:
                names = tuple(n for n in names if n != "bn")
                if not names:
                    raise InvalidParameterError(f"{where}: using_bn=False leaves no normalizer in {normalizers!r}")
            self.normalizers = names
        else:
            self.normalizers = ()
        if self.affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory_kwargs))
            self.bias = nn.Parameter(torch.empty(num_features, **factory_kwargs))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats and self._needs_running_stats():
            self.register_buffer("running_mean", torch.zeros(num_features, **factory_kwargs))
            self.register_buffer("running_var", torch.ones(num_features, **factory_kwargs))
            self.register_buffer(
                "num_batches_tracked",
                torch.tensor(0, dtype=torch.long, **{k: v for k, v in factory_kwargs.items() if k != "dtype"}),
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self._warned_batch_one = False

    # ------------------------------------------------------------------ configuration helpers
    def _needs_running_stats(self) -> bool:
        return "bn" in self.normalizers

    @property
    def using_bn(self) -> bool:
        """Whether the batch-norm branch ``"bn"`` is in the mix."""
        return "bn" in self.normalizers

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, ``num_batches_tracked`` 0 (as :class:`torch.nn.BatchNorm2d`)."""
        for buffer, value in ((self.running_mean, 0), (self.running_var, 1), (self.num_batches_tracked, 0)):
            if buffer is not None:
                buffer.fill_(value)

    def reset_parameters(self) -> None:
        """Reset running statistics, ``weight`` to 1 and ``bias`` to 0 (subclasses extend this)."""
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    # ------------------------------------------------------------------ forward helpers
    def _check_input(self, x: Tensor) -> None:
        where = type(self).__name__
        if x.dim() not in self._input_ranks:
            ranks = " or ".join(f"{r}D" for r in self._input_ranks)
            raise ShapeError(
                f"{where}: input must be {ranks} {self._shape_hint}; got {x.dim()}D input of shape {tuple(x.shape)}"
            )
        channels = x.shape[-1] if (self.channel_last and x.dim() > 2) else x.shape[1]
        if channels != self.num_features:
            dim = "last" if (self.channel_last and x.dim() > 2) else "1"
            raise ShapeError(
                f"{where}: input must have num_features={self.num_features} channels in dim {dim}; "
                f"got {channels} (input shape {tuple(x.shape)})"
            )
        if (
            self.training
            and "bn" in self.normalizers
            and x.shape[0] == 1
            and not self._warned_batch_one
            and self._batch_stats_fn() is None  # synchronized layers see the global batch
        ):
            self._warned_batch_one = True
            warnings.warn(
                f"{where}: training with batch size 1 while 'bn' is in the mix: batch statistics then equal the "
                "instance statistics, so the BN branch learns nothing useful and its running statistics are noisy. "
                "Use using_bn=False (the official recipe for one sample per device) or a larger batch.",
                UserWarning,
                stacklevel=3,
            )

    def _update_factor(self) -> float | Tensor:
        """Advance ``num_batches_tracked`` in training and return the running-average factor."""
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                return 1.0 / self.num_batches_tracked.to(torch.float32)
        return 0.0 if self.momentum is None else self.momentum

    def _batch_stats_fn(self) -> BatchStatsFn | None:
        """Batch-moment reduction; ``None`` = this process only. Sync variants override this."""
        return None

    def _running(self) -> tuple[Tensor | None, Tensor | None]:
        """Running buffers to use: ``None`` when they are absent or not tracked."""
        if self.running_mean is None or not self.track_running_stats:
            return None, None
        return self.running_mean, self.running_var

    # ------------------------------------------------------------------ state dict
    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # Official SwitchNorm/SSN checkpoints store (1, C, 1, 1) / (1, C, 1) tensors: reshape them to (C,).
        for name in ("weight", "bias", "running_mean", "running_var"):
            key = prefix + name
            value = state_dict.get(key)
            if isinstance(value, Tensor) and value.dim() > 1 and value.numel() == self.num_features:
                state_dict[key] = value.reshape(self.num_features)
        version = local_metadata.get("version")
        nbt_key = prefix + "num_batches_tracked"
        if (version is None or version < 2) and self.num_batches_tracked is not None and nbt_key not in state_dict:
            state_dict[nbt_key] = torch.tensor(0, dtype=torch.long)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        s = (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )
        if self.normalizers:
            s += f", normalizers={self.normalizers!r}"
        if self.channel_last:
            s += ", channel_last=True"
        return s
