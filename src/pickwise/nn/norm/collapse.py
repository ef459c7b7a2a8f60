"""Deploy a learned-normalizer model: replace each mixture by the single normalizer it picks, then fold BN into convs.

SN/SSN/EN layers cost more at inference than BN, and BN can disappear entirely into the preceding convolution. The
authors' own precedent is the MegaFace "SyncSN + ARGMAX" model: replace the soft weights by their argmax (optionally
fine-tune briefly) and deploy standard layers.

For each learned layer, the argmax of the mean weights and of the variance weights are taken:

- both pick BN → ``nn.BatchNorm2d`` with the layer's running statistics (foldable);
- both pick IN → :class:`~pickwise.nn.norm.InstanceNorm2d`; both pick LN → :class:`~pickwise.nn.norm.LayerNorm2d`;
- the picks differ (e.g. mean from BN, variance from LN) → no standard layer computes that; the layer is kept with
  one-hot (hard) logits and reported as ``mixed``.

EN layers pick per sample; they are collapsed with the ratios they report from ``ratios()`` (average over the last
batches they saw), so run a few calibration batches through the model first.
"""

from __future__ import annotations

import warnings
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ...exceptions import InvalidParameterError
from .registry import is_batch_norm
from .report import norm_ratio_report
from .variants import InstanceNorm2d, LayerNorm2d

__all__ = ["collapse_norm_layers", "fold_batch_norms"]

_HARD_GAP = 60.0  # exp(-60) is below float32 resolution: a hard one-hot through softmax


def _standard_layer(pick: str, module: Any) -> nn.Module | None:
    """The standard layer for a collapsed SN/SSN/EN ``module`` (duck-typed, hence ``Any``), or ``None``."""
    channels, eps = module.num_features, module.eps
    ref = module.weight if getattr(module, "weight", None) is not None else module.running_mean
    device, dtype = ref.device, ref.dtype
    affine = getattr(module, "affine", True)
    new: nn.BatchNorm2d | InstanceNorm2d | LayerNorm2d
    if pick == "bn":
        new = nn.BatchNorm2d(channels, eps=eps, momentum=module.momentum, affine=affine, device=device, dtype=dtype)
        with torch.no_grad():
            for name in ("running_mean", "running_var"):
                buffer = getattr(new, name)
                buffer.copy_(getattr(module, name))
    elif pick == "in":
        new = InstanceNorm2d(channels, eps=eps, affine=affine, device=device, dtype=dtype)
    elif pick == "ln":
        new = LayerNorm2d(channels, eps=eps, affine=affine, device=device, dtype=dtype)
    else:
        return None
    if affine:
        with torch.no_grad():
            for name in ("weight", "bias"):
                getattr(new, name).copy_(getattr(module, name))
    new.train(module.training)
    return new


def _harden(module: Any, mean_pick: str, var_pick: str) -> None:
    if hasattr(module, "harden"):  # layers with their own selection machinery
        module.harden(mean_pick, var_pick)
        return
    with torch.no_grad():
        for name, pick in (("mean_weight", mean_pick), ("var_weight", var_pick)):
            logits = getattr(module, name, None)
            if isinstance(logits, torch.Tensor):
                logits.fill_(-_HARD_GAP)
                logits[module.normalizers.index(pick)] = 0.0


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def fold_batch_norms(model: nn.Module) -> list[tuple[str, str]]:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` (whose output feeds only it).

    The graph is found with ``torch.fx`` tracing; the conv gets the folded weight and bias and the BN becomes
    ``nn.Identity``. The model must be in eval mode. Returns the ``(conv, bn)`` name pairs folded; a model that
    cannot be traced is left unchanged with a warning.
    """
    if model.training:
        raise InvalidParameterError(
            "fold_batch_norms: model must be in eval mode (folding uses the running statistics); "
            "call model.eval() first"
        )
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as err:
        warnings.warn(
            f"fold_batch_norms: model is not traceable ({type(err).__name__}); nothing folded",
            UserWarning,
            stacklevel=2,
        )
        return []
    modules = dict(model.named_modules())
    folded = []
    for node in graph.nodes:
        bn_name = str(node.target)
        if node.op != "call_module" or not is_batch_norm(modules.get(bn_name, nn.Identity())):
            continue
        source = node.args[0] if node.args else None
        if not isinstance(source, torch.fx.Node) or source.op != "call_module" or len(source.users) != 1:
            continue
        conv_name = str(source.target)
        conv, bn = modules[conv_name], modules[bn_name]
        if not isinstance(conv, nn.Conv2d) or not bn.track_running_stats or getattr(bn, "running_mean", None) is None:
            continue
        _set_submodule(model, conv_name, fuse_conv_bn_eval(conv, cast(Any, bn)))  # a BatchNorm (is_batch_norm)
        _set_submodule(model, bn_name, nn.Identity())
        folded.append((conv_name, bn_name))
    return folded


def collapse_norm_layers(model: nn.Module, *, fold: bool = True) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Replace each learned mixture by the normalizer its weights pick, and fold BN picks into the preceding conv.

    Args:
        model: A model with SN/SSN/EN layers; modified in place and put in eval mode when ``fold`` is True.
        fold: Fold the resulting BatchNorms (and any pre-existing ones) into preceding convolutions.

    Returns:
        ``(model, report)``: the report is :func:`~pickwise.nn.norm.norm_ratio_report`'s rows (taken before
        collapsing) with ``replaced_by`` (``"BatchNorm2d"``, ``"InstanceNorm2d"``, ``"LayerNorm2d"`` or
        ``"hard-mixed"``), ``dropped_weight`` (mixture mass removed by the argmax, max of mean/var) and ``folded_into``.
    """
    report = norm_ratio_report(model)
    for row in report:
        module = model.get_submodule(row["layer"])
        mean_pick, var_pick = row["mean_pick"], row["var_pick"]
        row["dropped_weight"] = max(1.0 - row["mean"][mean_pick], 1.0 - row["var"][var_pick])
        new = _standard_layer(mean_pick, module) if not row["mixed"] else None
        if new is None:
            _harden(module, mean_pick, var_pick)
            row["replaced_by"] = "hard-mixed" if row["mixed"] else f"hard-{mean_pick}"
        else:
            _set_submodule(model, row["layer"], new)
            row["replaced_by"] = type(new).__name__
        row["folded_into"] = None
    if fold:
        model.eval()
        pairs = fold_batch_norms(model)
        by_bn = {bn: conv for conv, bn in pairs}
        for row in report:
            row["folded_into"] = by_bn.get(row["layer"])
    return model, report
