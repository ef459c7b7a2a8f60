"""What the engine trains: the :class:`Task` protocol between a model, a batch and the loop.

The engine owns the loop (devices, precision, accumulation, distribution, checkpoints, logging); a task owns the
meaning of a batch: its loss, the columns of the training log and the evaluation, through metric accumulators
(:mod:`pickwise.metrics`). The engine creates the accumulators with ``make_accumulators()``, feeds every evaluation
batch of this process's shard to ``evaluation_step``, calls ``sync()`` on every accumulator (a sum over processes, so
confusion matrices and gathered embeddings work under torchrun) and returns ``compute(accumulators)``.

Tasks written against the first protocol (``evaluation_sums`` / ``finalize``, no ``log_row``) keep working: the engine
sums their statistics over processes as before (see :func:`legacy_log_row`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

if TYPE_CHECKING:
    from ..metrics import Accumulator
    from .params import ParamGroup

__all__ = ["AccumulatorTask", "LegacyTask", "Task", "legacy_log_row", "task_log_row", "uses_accumulators"]


@runtime_checkable
class Task(Protocol):
    """The part every task has: a training loss with additive statistics.

    ``training_loss`` returns the mean loss of the (micro-)batch and per-batch *sums* to log; the sums must include
    ``count`` (the number of samples, used for the throughput column). The engine sums them over micro-batches, log
    windows and processes, then asks the task for the log columns (``log_row``).
    """

    def training_loss(
        self, model: nn.Module, batch: Any, device: torch.device, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean loss of ``batch`` and its additive statistics (``count`` included)."""
        ...


@runtime_checkable
class AccumulatorTask(Task, Protocol):
    """A task that names its log columns and evaluates through metric accumulators (the current protocol).

    Optional extra: ``param_groups(model) -> Sequence[ParamGroup]`` for optimizer groups of its own.
    """

    def log_row(self, totals: Mapping[str, float]) -> dict[str, float]:
        """Columns of a training-log row from the statistics summed over the window and the processes."""
        ...

    def make_accumulators(self) -> dict[str, Accumulator]:
        """Fresh, empty accumulators for one evaluation."""
        ...

    def evaluation_step(
        self, model: nn.Module, batch: Any, device: torch.device, accumulators: dict[str, Accumulator]
    ) -> None:
        """Update ``accumulators`` with one evaluation batch (never reduce across processes here)."""
        ...

    def compute(self, accumulators: dict[str, Accumulator]) -> dict[str, float]:
        """Final metrics from the synced accumulators (scalars only: they go to the CSV log and results)."""
        ...


class LegacyTask(Task, Protocol):
    """The first task protocol: evaluation statistics as scalar sums, turned into metrics by ``finalize``."""

    def evaluation_sums(self, model: nn.Module, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
        """Additive scalar statistics of the batch (summed over processes by the engine)."""
        ...

    def finalize(self, sums: dict[str, float]) -> dict[str, float]:
        """Turn summed statistics into metrics."""
        ...


def uses_accumulators(task: object) -> bool:
    """True if ``task`` evaluates through accumulators (``make_accumulators`` / ``evaluation_step`` / ``compute``)."""
    return all(callable(getattr(task, name, None)) for name in ("make_accumulators", "evaluation_step", "compute"))


def legacy_log_row(totals: Mapping[str, float]) -> dict[str, float]:
    """The log columns of a task without ``log_row`` (the first protocol): ``loss`` and ``acc`` from ``correct``.

    Kept so tasks written before ``log_row`` existed log the same columns as before; new tasks name their own.
    """
    n = max(totals.get("count", 0.0), 1.0)
    return {"loss": totals.get("loss", 0.0) / n, "acc": totals.get("correct", 0.0) / n}


def task_log_row(task: object, totals: Mapping[str, float]) -> dict[str, float]:
    """The task's log columns (``log_row``), or :func:`legacy_log_row` for tasks of the first protocol."""
    log_row = getattr(task, "log_row", None)
    return dict(log_row(totals)) if callable(log_row) else legacy_log_row(totals)


def task_param_groups(task: object, model: nn.Module) -> Sequence[ParamGroup]:
    """The task's own optimizer groups (``param_groups(model)``), or none."""
    fn = getattr(task, "param_groups", None)
    return list(fn(model)) if callable(fn) else []
