"""Learned smartphone ISP networks (AIM 2020 / Zurich RAW-to-RGB): packed RAW ``[B, 4, h, w]`` → RGB ``[B, 3, 2h, 2w]``.

Registered (CPU size / paper size): ``isp_unet_tiny`` / ``isp_unet`` (U-Net baseline), ``pynet_tiny`` / ``pynet``
(PyNET, level-wise outputs), ``mwisp_tiny`` / ``mwisp`` (MW-ISPNet-style wavelet RCAN), ``awnet_tiny`` / ``awnet``
(AWNet-style attentive wavelet network), and ``isp_classical``: the non-learned classical pipeline
(:class:`pickwise.tasks.isp.classical.ClassicalISP`) behind the same interface, so every table has a baseline row.

:func:`isp_model_stats` counts parameters and multiply-adds (a forward-hook counter over convolutions and linear
layers) at a given packed input size.

Example:
    >>> import torch, pickwise.models.isp
    >>> from pickwise.models import create_model
    >>> net = create_model("isp_unet_tiny")
    >>> net(torch.rand(1, 4, 16, 16)).shape
    torch.Size([1, 3, 32, 32])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._registry import register_model
from .isp_awnet import AWNet, awnet, awnet_tiny, pseudo_demosaic
from .isp_mwisp import HaarDWT, HaarIWT, MWISPNet, haar_dwt, haar_iwt, mwisp, mwisp_tiny
from .isp_pynet import PyNET, pynet, pynet_tiny
from .isp_unet import ISPModel, ISPUNet, isp_unet, isp_unet_tiny

MODEL_TASK = "isp"  # what the registry lists these models under (``list_models(task=...)``)

__all__ = [
    "ISP_MODELS",
    "AWNet",
    "HaarDWT",
    "HaarIWT",
    "ISPModel",
    "ISPUNet",
    "MWISPNet",
    "PyNET",
    "awnet",
    "awnet_tiny",
    "haar_dwt",
    "haar_iwt",
    "isp_classical",
    "isp_model_stats",
    "isp_unet",
    "isp_unet_tiny",
    "mwisp",
    "mwisp_tiny",
    "pseudo_demosaic",
    "pynet",
    "pynet_tiny",
]

#: (CPU size, paper size) registered names per architecture.
ISP_MODELS: dict[str, tuple[str, str]] = {
    "unet": ("isp_unet_tiny", "isp_unet"),
    "pynet": ("pynet_tiny", "pynet"),
    "mwisp": ("mwisp_tiny", "mwisp"),
    "awnet": ("awnet_tiny", "awnet"),
}


@register_model
def isp_classical(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """The classical (non-learned) ISP of :mod:`pickwise.tasks.isp.classical`, same interface as the learned nets.

    ``norm_layer`` is accepted only as None/"none" (the pipeline has no layers to normalize).
    """
    from ..exceptions import InvalidParameterError

    norm = kwargs.pop("norm_layer", None)
    if norm is not None and not (isinstance(norm, str) and norm.strip().lower() in ("", "none")):
        raise InvalidParameterError(f"isp_classical: the classical pipeline has no norm layers; got {norm!r}")
    if pretrained:
        raise InvalidParameterError("isp_classical: the classical pipeline has no weights (pretrained must be False)")
    try:
        from ..tasks.isp.classical import ClassicalISP
    except ModuleNotFoundError as err:  # pragma: no cover - until the classical pipeline ships
        raise InvalidParameterError(f"isp_classical: the classical ISP module is not available ({err})") from None
    return ClassicalISP(**kwargs)


@torch.no_grad()
def isp_model_stats(model: nn.Module, packed_size: tuple[int, int] = (128, 128)) -> dict[str, int]:
    """Parameters and multiply-adds of one forward pass at a packed input of ``packed_size`` = ``(h, w)``.

    MACs are counted by forward hooks: a convolution adds ``out.numel() * in_channels / groups * kh * kw``
    (transposed convolutions ``in.numel() * out_channels / groups * kh * kw``), a linear layer
    ``out.numel() * in_features``. Element-wise operations, norms, pooling and interpolation are not counted
    (the usual convention of FLOP counters). The model runs in eval mode on its own device.

    Returns:
        ``{"params": ..., "macs": ...}`` (the trainable parameter count and MACs per image).
    """
    total = 0

    def hook(m: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.ConvTranspose2d):
            total += inputs[0].numel() * (m.out_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        params = list(model.parameters())
        device = params[0].device if params else torch.device("cpu")
        model(torch.zeros(1, 4, *packed_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {"params": sum(p.numel() for p in model.parameters() if p.requires_grad), "macs": int(total)}
