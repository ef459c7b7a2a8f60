"""Re-estimate the population statistics of every BN-bearing layer from data (SN's batch average / PreciseBN).

SN's authors recompute BN statistics after each epoch from 200 training batches instead of trusting the moving average
(``sn_helper`` in the 2018 official trainer); fvcore's PreciseBN does the same for BN. Two estimators exist:

- ``"pooled"``: the variance of all samples seen, by the law of total variance,
  ``var = mean_b(var_b) + mean_b(mu_b^2) - mean_b(mu_b)^2`` (what ``sn_helper`` computes);
- ``"mean_of_var"``: the average of the per-batch (unbiased) variances (fvcore's original estimator).

The running mean is the average of batch means in both cases. Stored variances follow PyTorch's convention
(unbiased).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ...exceptions import InvalidParameterError
from .._validation import one_of, positive_int
from .registry import is_batch_norm

__all__ = ["recalibrate_norm_stats"]


def _has_population_stats(module: nn.Module) -> bool:
    return isinstance(getattr(module, "running_mean", None), torch.Tensor) and isinstance(
        getattr(module, "running_var", None), torch.Tensor
    )


def _first_tensor(batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, dict):
        for value in batch.values():
            if isinstance(value, torch.Tensor):
                return value
    raise InvalidParameterError(
        "recalibrate_norm_stats: loader batches must be tensors, (inputs, ...) tuples or dicts; "
        f"got {type(batch).__name__}"
    )


@torch.no_grad()
def recalibrate_norm_stats(
    model: nn.Module, loader: Iterable[Any], num_batches: int = 200, estimator: str = "pooled"
) -> int:
    """Recompute ``running_mean`` / ``running_var`` of every layer that has them from ``num_batches`` batches.

    Layers that hold population statistics (BatchNorm, SN/SSN/EN, PN) are run in training mode (so each batch is
    normalized with its own statistics, as during training); every other module stays in eval mode (no dropout).
    Modes are restored afterwards.

    Args:
        model: The model (its parameters are not changed).
        loader: Iterable of batches; the first tensor of each batch is fed to ``model``.
        num_batches: Number of batches to use (fewer if the loader is shorter).
        estimator: ``"pooled"`` or ``"mean_of_var"`` (see the module docstring).

    Returns:
        The number of batches used.

    Raises:
        InvalidParameterError: Bad estimator/num_batches, an empty loader, or a model without such layers.
    """
    one_of("recalibrate_norm_stats", "estimator", estimator, ("pooled", "mean_of_var"))
    num_batches = positive_int("recalibrate_norm_stats", "num_batches", num_batches)
    layers = [m for m in model.modules() if _has_population_stats(m)]
    if not layers:
        raise InvalidParameterError("recalibrate_norm_stats: the model has no layer with running statistics")
    stats: dict[Any, dict[str, Any]] = {m: {"mean": 0, "sq_mean": 0, "var": 0, "count": 0} for m in layers}

    def capture(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach().float()
        channel_dim = 1 if x.ndim > 1 else 0
        if getattr(module, "channel_last", False):
            channel_dim = x.ndim - 1
        dims = [d for d in range(x.ndim) if d != channel_dim]
        n = x.numel() // x.shape[channel_dim]
        mean = x.mean(dims)
        var = x.var(dims, unbiased=False)
        entry = stats[module]
        entry["mean"] = entry["mean"] + mean
        entry["sq_mean"] = entry["sq_mean"] + mean * mean
        entry["var"] = entry["var"] + (var * n / max(n - 1, 1) if estimator == "mean_of_var" else var)
        entry["count"] += 1
        entry["n"] = n

    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_pre_hook(capture) for m in layers]
    try:
        model.eval()
        for layer in layers:
            layer.train()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        used = 0
        for batch in loader:
            if used >= num_batches:
                break
            model(_first_tensor(batch).to(device))
            used += 1
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
    if used == 0:
        raise InvalidParameterError("recalibrate_norm_stats: the loader yielded no batches")
    for layer, entry in stats.items():
        k = entry["count"]
        mean = entry["mean"] / k
        if estimator == "pooled":
            total = entry["n"] * k
            var = (entry["var"] / k + entry["sq_mean"] / k - mean * mean).clamp_min(0) * total / max(total - 1, 1)
        else:
            var = entry["var"] / k
        layer.running_mean.copy_(mean.to(layer.running_mean))
        layer.running_var.copy_(var.to(layer.running_var))
        if is_batch_norm(layer) and layer.num_batches_tracked is not None:
            layer.num_batches_tracked.fill_(k)
    return used
