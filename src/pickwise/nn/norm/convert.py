"""Replace the BatchNorm layers of any model by learned normalizers (SN, SSN, EN) or population normalization (PN).

Modelled on ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``: the function walks ``named_children()`` recursively,
replaces each matching layer in place (``setattr`` on its parent) and returns the model, or a new object if the root
itself was converted. The new layer gets a *copy* of γ/β and of the running statistics (``running_mean``,
``running_var``, ``num_batches_tracked``), and the source layer's ``eps``, ``momentum``, ``training`` flag, device
and dtype.

With ``init="bn"`` the mixture logits put almost all weight on the BN branch (``bn_logit_gap``, default
:data:`DEFAULT_BN_LOGIT_GAP` = 8: BN weight 0.9993 for K=3), so the converted model's eval output stays close to the
original's (ImageNet MobileNetV2: median logit change 1.4 %) while the mixture logits still get gradients that let
them learn (see :func:`set_mixture_logits` and docs/converter.md for the measured trade-off); ``init="uniform"`` is
the papers' initialisation (equal logits).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence

import torch
from torch import nn

from ...exceptions import InvalidParameterError
from .._validation import nonnegative_float, one_of
from .registry import (
    MIXTURE_LOGIT_NAMES,
    conversion_target,
    is_convertible_norm,
    is_learned_norm,
    list_norm_layers,
)

__all__ = ["DEFAULT_BN_LOGIT_GAP", "convert_norm_layers", "set_mixture_logits"]

#: Default ``bn_logit_gap`` of ``init="bn"``, chosen from the trade-off measured on the ImageNet MobileNetV2
#: (``pickwise reproduce convert``; docs/converter.md): gap 8 moves the eval logits by 1.4 % (median over photos)
#: and gives mixture-logit gradients ~2e-4, where the former default 30 gave 0 % and ~5e-14 (logits frozen).
DEFAULT_BN_LOGIT_GAP = 8.0


def _dims(module: nn.Module) -> int:
    name = type(module).__name__
    for dims in (1, 2, 3):
        if name.endswith(f"{dims}d"):
            return dims
    return 2


def set_mixture_logits(module: nn.Module, init: str, *, bn_logit_gap: float = DEFAULT_BN_LOGIT_GAP) -> None:
    r"""Initialise the mixture logits of a learned normalizer.

    Args:
        module: An SN/SSN/EN layer (has ``normalizers``).
        init: ``"uniform"`` (all logits equal, the papers' init) or ``"bn"`` (BN logit ``bn_logit_gap`` above the rest).
        bn_logit_gap: Logit margin :math:`g` for ``init="bn"``. With softmax (SN, EN) every other branch gets weight
            :math:`w_o = e^{-g} / (1 + (K-1)e^{-g})` and the logit gradients are
            :math:`w \odot (\partial L/\partial w - \langle w, \partial L/\partial w\rangle)`, i.e. damped by the
            same factor :math:`w_o` that bounds the output change: closeness to BN and learnability trade off. On
            the ImageNet MobileNetV2 (12 photos, docs/converter.md) the median relative change of the eval logits /
            median largest logit gradient per layer are: gap 4: 36 % / 9e-3; 6: 8.4 % / 1.4e-3; **8: 1.4 % / 2.0e-4
            (default)**; 10: 0.2 % / 3e-5; 12: 0.03 % / 4e-6; 30: 0 % / 5e-14 (the former default: the logits never
            move, the layers stay BN at about twice BN's cost). SSN layers get the same starting ratios through
            sparsemax (:meth:`~pickwise.nn.SparseSwitchNorm2d.init_mixture`), whose gradients are not damped
            (0.3-0.4 at every gap up to 12); a gap of 1 or more in SSN's own logits would be exactly one-hot and freeze.
    """
    one_of("convert_norm_layers", "init", init, ("bn", "uniform"))
    bn_logit_gap = nonnegative_float("convert_norm_layers", "bn_logit_gap", bn_logit_gap)
    normalizers: tuple[str, ...] = getattr(module, "normalizers", ())
    if init == "bn" and "bn" not in normalizers:
        raise InvalidParameterError(
            f"convert_norm_layers: init='bn' needs a BN branch, but the layer mixes {normalizers}; "
            "use init='uniform' or keep BN (using_bn=True)"
        )
    init_mixture = getattr(module, "init_mixture", None)
    if callable(init_mixture):  # layers that know their own parametrisation (SSN: through sparsemax)
        init_mixture(init, bn_logit_gap=bn_logit_gap)
        return
    with torch.no_grad():
        for name in MIXTURE_LOGIT_NAMES:
            logits = getattr(module, name, None)
            if not isinstance(logits, torch.Tensor):
                continue
            logits.zero_()
            if init == "bn":
                logits[normalizers.index("bn")] = bn_logit_gap


def _build(target: str, source: nn.Module, layer_kwargs: dict) -> nn.Module:
    info = conversion_target(target)
    dims = _dims(source)
    cls = info.variants.get(dims)
    if cls is None:
        raise InvalidParameterError(
            f"convert_norm_layers: no {info.name} layer for {dims}-d inputs (source {type(source).__name__}); "
            f"exclude it with exclude=[...] or convert to one of "
            f"{', '.join(n for n in list_norm_layers(convertible=True) if dims in conversion_target(n).variants)}"
        )
    kwargs = {"eps": source.eps, "affine": source.affine, "track_running_stats": source.track_running_stats}
    if getattr(source, "momentum", None) is not None or info.family != "population":
        kwargs["momentum"] = source.momentum
    kwargs.update(layer_kwargs)
    ref = source.weight if source.weight is not None else source.running_mean
    factory = {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}
    return cls(source.num_features, **kwargs, **factory)


def _copy_state(source: nn.Module, target: nn.Module) -> None:
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            src, dst = getattr(source, name, None), getattr(target, name, None)
            if src is not None and dst is not None and src.shape == dst.shape:
                dst.copy_(src)
    target.train(source.training)


def _matches(name: str, patterns: Sequence[str] | None) -> bool:
    return patterns is not None and any(fnmatch.fnmatch(name, p) for p in patterns)


def convert_norm_layers(
    model: nn.Module,
    norm: str,
    *,
    init: str = "bn",
    bn_logit_gap: float = DEFAULT_BN_LOGIT_GAP,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    layer_kwargs: dict | None = None,
    convert_learned: bool = True,
) -> nn.Module:
    """Replace every BatchNorm (and, with ``convert_learned``, every SN/SSN/EN layer) of ``model``.

    Args:
        model: Any ``nn.Module``; modified in place.
        norm: Target: a registered name with ``convertible=True`` in its metadata (aliases accepted), i.e.
            ``list_norm_layers(convertible=True)``: ``"en"``, ``"pn"``, ``"sn"``, ``"ssn"`` built in. The class
            is chosen by the source layer's dims from the target's registered ``variants`` (``"sn"``: 1-d/2-d/3-d).
        init: ``"bn"`` (start as the original BN; eval output unchanged) or ``"uniform"`` (papers' init).
            For ``pn`` it is ignored (PN with BN's running statistics equals BN in eval).
        bn_logit_gap: See :func:`set_mixture_logits`; a finite float >= 0.
        include: fnmatch patterns of qualified module names to convert (default: all).
        exclude: fnmatch patterns of qualified module names to leave alone (e.g. ``["fc.*"]``).
        layer_kwargs: Extra keyword arguments for the new layers (e.g. ``{"normalizers": ("in", "ln", "bn")}``).
        convert_learned: Also convert existing SN/SSN/EN layers (e.g. SN → SSN keeps γ/β and running statistics).

    Returns:
        ``model`` with its layers replaced, or the new layer if ``model`` itself was a BatchNorm.

    Raises:
        InvalidParameterError: Unknown target, bad ``init``/``bn_logit_gap``, or a layer type with no counterpart
            (use ``exclude``).

    Which modules are replaced is decided in one place, :func:`~pickwise.nn.norm.registry.is_convertible_norm`
    (BatchNorm1d/2d/3d and SyncBatchNorm; with ``convert_learned`` also SN/SSN/EN).

    Example:
        >>> from pickwise.models import create_model
        >>> model = convert_norm_layers(create_model("resnet8"), "sn")
        >>> type(model.bn1).__name__
        'SwitchNorm2d'
    """
    target = conversion_target(norm).name
    one_of("convert_norm_layers", "init", init, ("bn", "uniform"))
    bn_logit_gap = nonnegative_float("convert_norm_layers", "bn_logit_gap", bn_logit_gap)
    kwargs = dict(layer_kwargs or {})

    def convert(module: nn.Module, name: str) -> nn.Module:
        wanted = (include is None or _matches(name, include)) and not _matches(name, exclude)
        if wanted and is_convertible_norm(module, include_learned=convert_learned):
            new = _build(target, module, kwargs)
            _copy_state(module, new)
            if is_learned_norm(new):
                if is_learned_norm(module) and getattr(module, "normalizers", None) == new.normalizers:
                    _copy_logits(module, new, bn_logit_gap)
                else:
                    set_mixture_logits(new, init, bn_logit_gap=bn_logit_gap)
            return new
        for child_name, child in module.named_children():
            new_child = convert(child, f"{name}.{child_name}" if name else child_name)
            if new_child is not child:
                setattr(module, child_name, new_child)
        return module

    return convert(model, "")


def _copy_logits(source: nn.Module, target: nn.Module, bn_logit_gap: float = DEFAULT_BN_LOGIT_GAP) -> None:
    """Carry the mixture over; between softmax (SN) and sparsestmax (SSN) layers, carry the *ratios*, not the logits.

    SN -> SSN: the SSN logits are SN's softmax ratios (sparsemax of a point on the simplex is the point itself; at
    radius 0 the ratios are kept exactly, and inside the simplex the gradients are not damped). Copying SN's logits
    verbatim would make sparsemax one-hot (and freeze the layer) whenever a logit leads by 1 or more. SSN -> SN: logits
    ``log(max(p, w_o))``, with ``w_o`` the other-branch weight of ``bn_logit_gap``, so zero ratios stay finite.
    """
    src_sparse, dst_sparse = hasattr(source, "radius"), hasattr(target, "radius")
    mixing_ratios = getattr(source, "mixing_ratios", None)
    with torch.no_grad():
        if src_sparse != dst_sparse and callable(mixing_ratios):
            mean, var = mixing_ratios()
            if dst_sparse:
                new = {"mean_weight": mean, "var_weight": var}
            else:
                k = len(getattr(target, "normalizers", ()))
                floor = math.exp(-bn_logit_gap) / (1.0 + (k - 1) * math.exp(-bn_logit_gap))
                new = {"mean_weight": mean.clamp_min(floor).log(), "var_weight": var.clamp_min(floor).log()}
            for name, value in new.items():
                dst = getattr(target, name, None)
                if isinstance(dst, torch.Tensor) and dst.shape == value.shape:
                    dst.copy_(value)
            return
        for name in MIXTURE_LOGIT_NAMES:
            src, dst = getattr(source, name, None), getattr(target, name, None)
            if isinstance(src, torch.Tensor) and isinstance(dst, torch.Tensor) and src.shape == dst.shape:
                dst.copy_(src)
