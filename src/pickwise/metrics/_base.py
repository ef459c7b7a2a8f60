"""The accumulator protocol shared by every metric: ``update`` on batches, ``merge`` partial states, ``compute``.

A metric is split in two, as in torchmetrics: a pure function that maps whole inputs to a value (in the metric's own
module) and an accumulator that keeps a small *additive* state, so that evaluation can stream over batches and
processes. Every state is a dictionary of tensors whose sum over shards is the state of the union:

- ``update(...)`` adds a batch to the state;
- ``merge(other)`` adds another accumulator's state (e.g. one computed by another process or another loader);
- ``sync()`` sums the state over the processes of the default ``torch.distributed`` group (identity otherwise);
- ``compute()`` turns the state into the metric value(s).

The engine calls ``sync()`` once at the end of evaluation; a task never reduces anything itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from ..utils.distributed import all_reduce_sum, is_dist_avail_and_initialized

__all__ = ["Accumulator"]


class Accumulator(ABC):
    """Base class of additive metric accumulators.

    Subclasses declare their state in ``__init__`` through :meth:`add_state` and implement ``update`` and
    ``compute``; ``merge``, ``sync``, ``reset``, ``state_dict`` and ``load_state_dict`` come from here.

    Example:
        >>> import torch
        >>> from pickwise.metrics import TopKAccuracy
        >>> a, b = TopKAccuracy(topk=(1,)), TopKAccuracy(topk=(1,))
        >>> a.update(torch.tensor([[2.0, 1.0], [0.0, 1.0]]), torch.tensor([0, 0]))
        >>> b.update(torch.tensor([[0.0, 3.0]]), torch.tensor([1]))
        >>> a.merge(b).compute()
        {'acc': 0.6666666666666666}
    """

    def __init__(self) -> None:
        self._defaults: dict[str, torch.Tensor] = {}
        self._state: dict[str, torch.Tensor] = {}

    def add_state(self, name: str, default: torch.Tensor) -> None:
        """Declare an additive state tensor (float64 or int64) with its zero value."""
        self._defaults[name] = default.clone()
        self._state[name] = default.clone()

    def __getattr__(self, name: str) -> Any:
        state = self.__dict__.get("_state")
        if state is not None and name in state:
            return state[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def _add(self, name: str, value: torch.Tensor) -> None:
        current = self._state[name]
        if current.shape != value.shape:
            raise ValueError(
                f"{type(self).__name__}: state {name!r} has shape {tuple(current.shape)}, got {tuple(value.shape)}"
            )
        self._state[name] = current + value.detach().to(device=current.device, dtype=current.dtype)

    @abstractmethod
    def update(self, *args: Any, **kwargs: Any) -> None:
        """Add one batch to the state."""

    @abstractmethod
    def compute(self) -> Any:
        """The metric value(s) of everything added so far."""

    def merge(self, other: Accumulator) -> Accumulator:
        """Add ``other``'s state to this one (same class and configuration); returns ``self``."""
        if type(other) is not type(self) or other._state.keys() != self._state.keys():
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        for name, value in other._state.items():
            self._add(name, value)
        return self

    def sync(self) -> Accumulator:
        """Sum the state over all processes of the default process group (no-op when not distributed)."""
        if is_dist_avail_and_initialized():
            for name, value in self._state.items():
                # int64 and float64 both reduce exactly under gloo and nccl
                self._state[name] = all_reduce_sum(value.clone())
        return self

    def reset(self) -> None:
        """Back to the empty state."""
        self._state = {k: v.clone() for k, v in self._defaults.items()}

    def to(self, device: torch.device | str) -> Accumulator:
        """Move the state (e.g. to the device nccl reduces on)."""
        self._state = {k: v.to(device) for k, v in self._state.items()}
        self._defaults = {k: v.to(device) for k, v in self._defaults.items()}
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A copy of the state (for checkpoints)."""
        return {k: v.detach().clone() for k, v in self._state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        if state.keys() != self._state.keys():
            raise KeyError(f"{type(self).__name__}: expected state keys {sorted(self._state)}, got {sorted(state)}")
        self._state = {k: v.detach().clone().to(self._state[k].device, self._state[k].dtype) for k, v in state.items()}
