"""Losses of the AIM 2020 learned-ISP entries, as functions and one weighted combination (:class:`ISPLoss`).

- pixel losses: :func:`l1_loss`, :func:`charbonnier_loss` (``mean sqrt((x - y)^2 + eps^2)``, AWNet), MSE (PyNET);
- structural: :func:`ssim_loss` = ``1 - SSIM`` (AWNet: 0.05 x), :func:`ms_ssim_loss` = ``1 - MS-SSIM`` (PyNET level
  0: 0.4 x, MW-ISPNet: 0.15 x), from :mod:`pickwise.metrics.image` (kept apart: they are different numbers);
- colour: :func:`color_loss` = ``1 - mean cos(angle between the RGB vectors of pred and target)`` per pixel;
- perceptual: :class:`VGG19Features` with a feature MSE (PyNET: VGG-19 ``relu5_4``; MW-ISPNet: L1 of VGG-19
  features). VGG-19 weights are not shipped and cannot be downloaded offline: the user gives a local file holding
  torchvision's ``vgg19`` state dict (``features.<i>.weight`` / ``.bias``; safetensors or a weights-only
  ``torch.load`` file).

:class:`ISPLoss` sums ``weight * term`` over the nonzero weights and also returns every term (for the log).

Example:
    >>> import torch
    >>> loss = ISPLoss({"l1": 1.0, "color": 0.5})
    >>> x = torch.full((1, 3, 8, 8), 0.5)
    >>> total, parts = loss(x, x)
    >>> round(float(total), 6), sorted(parts)
    (0.0, ['color', 'l1'])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...exceptions import CheckpointError, ConfigError, DataNotFoundError, ShapeError

__all__ = [
    "LOSS_TERMS",
    "VGG19_LAYERS",
    "ISPLoss",
    "VGG19Features",
    "charbonnier_loss",
    "color_loss",
    "l1_loss",
    "load_vgg19_features",
    "ms_ssim_loss",
    "mse_loss",
    "ssim_loss",
]

LOSS_TERMS = ("l1", "charbonnier", "mse", "ssim", "ms_ssim", "color", "perceptual")

# torchvision's VGG-19 ``features``: conv output channels, "M" = 2x2 max-pool
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def _vgg19_layer_names() -> dict[str, int]:
    """``{"relu1_1": index of that ReLU in features, ...}``."""
    names: dict[str, int] = {}
    block, conv, index = 1, 0, 0
    for v in _VGG19_CFG:
        if v == "M":
            names[f"pool{block}"] = index
            block, conv, index = block + 1, 0, index + 1
        else:
            conv += 1
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            index += 2
    return names


#: Layer name → index in torchvision's ``vgg19().features`` (``relu5_4`` = 35).
VGG19_LAYERS: dict[str, int] = _vgg19_layer_names()


def _check(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if pred.shape != target.shape:
        raise ShapeError(f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    _check(pred, target, "l1_loss")
    return (pred - target).abs().mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    _check(pred, target, "mse_loss")
    return (pred - target).pow(2).mean()


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier (smooth L1) loss ``mean sqrt((pred - target)^2 + eps^2)`` (AWNet's pixel loss; eps 1e-3).

    Example:
        >>> round(float(charbonnier_loss(torch.zeros(4), torch.full((4,), 3.0 / 4.0), eps=1.0)), 6)
        1.25
    """
    _check(pred, target, "charbonnier_loss")
    return torch.sqrt((pred - target).pow(2) + eps * eps).mean()


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """``1 - SSIM`` (Gaussian 11 / 1.5, valid region) from :func:`pickwise.metrics.image.ssim`."""
    from ...metrics.image import ssim

    return 1.0 - ssim(pred, target, **kwargs)


def ms_ssim_loss(pred: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """``1 - MS-SSIM`` from :func:`pickwise.metrics.image.ms_ssim`.

    On images too small for the five standard scales (short side <= 160) it uses as many scales as fit, with the
    standard exponents renormalized (reconstructed: training crops are often smaller than the metric's minimum).
    """
    from ...metrics.image import MS_SSIM_WEIGHTS, ms_ssim

    weights = kwargs.pop("weights", MS_SSIM_WEIGHTS)
    win = int(kwargs.get("win_size", 11))
    side = min(pred.shape[-2:])
    scales = len(weights)
    while scales > 1 and side <= (win - 1) * 2 ** (scales - 1):
        scales -= 1
    if scales < len(weights):
        if scales == 1:
            return ssim_loss(pred, target, **kwargs)
        total = sum(weights[:scales])
        weights = tuple(w / total for w in weights[:scales])
    return 1.0 - ms_ssim(pred, target, weights=tuple(weights), **kwargs)


def color_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``1 - mean cosine similarity`` of the RGB vectors of each pixel (the angular colour loss).

    Example:
        >>> x = torch.rand(1, 3, 4, 4) + 0.1
        >>> round(float(color_loss(2 * x, x)), 6)  # brightness does not change the colour angle
        0.0
    """
    _check(pred, target, "color_loss")
    return 1.0 - F.cosine_similarity(pred, target, dim=-3, eps=eps).mean()


class VGG19Features(nn.Module):
    """VGG-19 ``features`` up to a named layer (torchvision layout, so torchvision's state dict keys load unchanged).

    Inputs are RGB in ``[0, 1]``; they are normalized with the ImageNet mean/std inside.

    Args:
        layer: Last layer kept, e.g. ``"relu5_4"`` (PyNET's content layer) or ``"relu2_2"``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, layer: str = "relu5_4") -> None:
        super().__init__()
        if layer not in VGG19_LAYERS:
            raise ConfigError(f"VGG19Features: unknown layer {layer!r}; use one of relu1_1 ... relu5_4 or pool1..pool5")
        self.layer = layer
        modules: list[nn.Module] = []
        cin, last = 3, VGG19_LAYERS[layer]
        for v in _VGG19_CFG:
            if len(modules) > last:  # build only what the requested layer needs
                break
            if v == "M":
                modules.append(nn.MaxPool2d(2, 2))
            else:
                modules += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(v)
        self.features = nn.Sequential(*modules[: last + 1])
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features of RGB ``x`` in [0, 1]."""
        return self.features((x - self.mean) / self.std)


def load_vgg19_features(path: str | Path, layer: str = "relu5_4") -> VGG19Features:
    """Build :class:`VGG19Features` and load torchvision-layout VGG-19 weights from a local file.

    Accepts ``features.<i>.weight`` keys (torchvision's ``vgg19().state_dict()``), optionally under a ``module.`` or
    ``vgg.`` prefix, or bare ``<i>.weight`` keys; the classifier is ignored. Safetensors files are read with
    ``safetensors``; anything else with ``torch.load(weights_only=True)``.

    Raises:
        DataNotFoundError: The file does not exist.
        CheckpointError: The file cannot be read or lacks a weight the requested layer needs (one line).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataNotFoundError(
            f"perceptual loss: VGG-19 weights file {path} not found; pickwise ships none and cannot download them "
            "offline: save torchvision's vgg19 state dict to a local file and pass its path (loss.vgg_weights)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any reader failure is a bad file
        raise CheckpointError(f"perceptual loss: cannot read {path} ({type(err).__name__}: {err})") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"perceptual loss: {path} holds a {type(state).__name__}, not a state dict")
    net = VGG19Features(layer)
    wanted = net.features.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for key, ref in wanted.items():  # key like "0.weight"
        for prefix in ("features.", "module.features.", "vgg.features.", ""):
            value = state.get(prefix + key)
            if isinstance(value, torch.Tensor):
                break
        else:
            raise CheckpointError(
                f"perceptual loss: {path} has no 'features.{key}' (expected torchvision's vgg19 state dict)"
            )
        if tuple(value.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"perceptual loss: 'features.{key}' in {path} has shape {tuple(value.shape)}, expected "
                f"{tuple(ref.shape)} (is it VGG-19 without batch norm?)"
            )
        loaded[key] = value.to(ref.dtype)
    net.features.load_state_dict(loaded)
    return net.eval()


class ISPLoss(nn.Module):
    """Weighted sum of the terms in :data:`LOSS_TERMS`.

    Args:
        weights: ``{term: weight}``; terms with weight 0 are skipped.
        charbonnier_eps: ``eps`` of the Charbonnier term.
        vgg_weights: Local VGG-19 weights file, required when ``weights["perceptual"] > 0``.
        vgg_layer: Feature layer of the perceptual term (``relu5_4``, PyNET's).

    Raises:
        ConfigError: Unknown term, negative or non-finite weight, no nonzero weight, or a perceptual weight without
            ``vgg_weights``.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        charbonnier_eps: float = 1e-3,
        vgg_weights: str | Path | None = None,
        vgg_layer: str = "relu5_4",
    ) -> None:
        super().__init__()
        clean: dict[str, float] = {}
        for name, w in weights.items():
            if name not in LOSS_TERMS:
                raise ConfigError(f"loss: unknown term {name!r}; terms are {', '.join(LOSS_TERMS)}")
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
                raise ConfigError(f"loss: the weight of {name} must be a finite number >= 0; got {w!r}")
            if w > 0:
                clean[name] = float(w)
        if not clean:
            raise ConfigError("loss: every weight is 0; set at least one, e.g. loss.l1=1.0")
        self.weights = clean
        self.charbonnier_eps = charbonnier_eps
        self.vgg: VGG19Features | None = None
        if "perceptual" in clean:
            if not vgg_weights:
                raise ConfigError(
                    "loss: loss.perceptual > 0 needs VGG-19 weights (none ship offline); set loss.vgg_weights to a "
                    "local file with torchvision's vgg19 state dict, or set loss.perceptual=0"
                )
            self.vgg = load_vgg19_features(vgg_weights, vgg_layer)

    def term(self, name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """One unweighted term."""
        if name == "l1":
            return l1_loss(pred, target)
        if name == "charbonnier":
            return charbonnier_loss(pred, target, self.charbonnier_eps)
        if name == "mse":
            return mse_loss(pred, target)
        if name in ("ssim", "ms_ssim") and min(pred.shape[-2:]) < 11:
            # the 11x11 window does not fit (e.g. PyNET's coarsest levels): the term is skipped (PyNET uses only
            # MSE there)
            return pred.new_zeros(())
        if name == "ssim":
            return ssim_loss(pred, target)
        if name == "ms_ssim":
            return ms_ssim_loss(pred, target)
        if name == "color":
            return color_loss(pred, target)
        if name == "perceptual":
            assert self.vgg is not None
            self.vgg.to(pred.device)
            return mse_loss(self.vgg(pred), self.vgg(target))
        raise ConfigError(f"loss: unknown term {name!r}")  # pragma: no cover - checked in __init__

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(sum_k w_k term_k, {k: term_k})`` on float32 copies of the inputs."""
        _check(pred, target, "ISPLoss")
        pred, target = pred.float(), target.float()
        parts = {name: self.term(name, pred, target) for name in self.weights}
        total = sum(self.weights[n] * v for n, v in parts.items())
        return torch.as_tensor(total), parts
