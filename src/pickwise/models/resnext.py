"""ResNeXt and G-ResNeXt (learned channel groups via DGConv), ImageNet and CIFAR sizes, with swappable normalization.

Papers:
    - ``xie2017aggregated``: S. Xie, R. Girshick, P. Dollár, Z. Tu and K. He, "Aggregated Residual Transformations
      for Deep Neural Networks", CVPR 2017, https://arxiv.org/abs/1611.05431
    - ``zhang2019differentiable``: Z. Zhang et al., "Differentiable Learning-to-Group Channels via Groupable
      Convolutional Neural Networks", ICCV 2019, https://arxiv.org/abs/1908.05867

A ResNeXt bottleneck is 1x1 reduce → 3x3 grouped (``cardinality`` groups) → 1x1 expand, each followed by a norm.
The G- variants put a :class:`~pickwise.nn.conv.DGConv2d` in place of the grouped 3x3 and learn the group count of
every block; :func:`~pickwise.nn.conv.export_grouped_convs` turns a trained G-ResNeXt into a plain ResNeXt-like
network with per-block group counts (the permutations fold into ``conv1``/``bn1`` and ``bn2``/``conv3``).

ImageNet models reuse :class:`~pickwise.models.resnet.ResNet` (torchvision module names, so torchvision's
``resnext50_32x4d`` state dict loads into ``resnext50_32x4d``). The CIFAR ResNeXt-29 follows Xie et al. Sec. 5.3:
a 3x3 stem, three stages of three bottlenecks (stride 1, 2, 2; 9 x 3 + 2 = 29 layers), the group width doubling at
each stage, projection shortcuts. The registered CIFAR widths are small so the models train on a CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..exceptions import InvalidParameterError
from ..nn.conv.dgconv import DGConv2d
from ..nn.norm import NormLayerType
from ._base import (
    ClassifierModel,
    FcHeadModel,
    check_int,
    init_weights,
    make_linear,
    resolve_norm_layer,
)
from ._builder import build_model_with_cfg
from ._registry import PretrainedCfg, register_model
from .resnet import BottleneckResidual, ResNet, conv1x1, conv3x3

__all__ = [
    "CifarResNeXt",
    "ResNeXt",
    "ResNeXtBottleneck",
    "g_resnext29_4x4d",
    "g_resnext29_8x4d",
    "g_resnext50",
    "resnext29_4x4d",
    "resnext29_8x4d",
    "resnext50_32x4d",
]

_PAPER = "Xie et al., Aggregated Residual Transformations for Deep Neural Networks, CVPR 2017, arXiv:1611.05431"
_G_PAPER = (
    "Zhang et al., Differentiable Learning-to-Group Channels via Groupable Convolutional Neural Networks, ICCV 2019, "
    "arXiv:1908.05867"
)


class ResNeXtBottleneck(BottleneckResidual):
    """1x1 reduce to ``width``, 3x3 grouped or learned-group conv (strided), 1x1 expand to ``out_planes``, residual.

    Args:
        inplanes: Input channels.
        width: Channels of the 3x3 convolution.
        out_planes: Output channels.
        stride: Stride of the 3x3 convolution.
        downsample: Module applied to the shortcut when shapes change (``None``: identity).
        norm_layer: Normalization layer class or callable, called as ``norm_layer(channels)``.
        cardinality: Groups of the fixed 3x3 convolution (ignored when ``learn_groups``).
        learn_groups: Use :class:`~pickwise.nn.conv.DGConv2d` (learned groups) for the 3x3 convolution.
    """

    #: Output channels per ``planes`` in the ImageNet layout (``out_planes = 4 * planes``), as torchvision.
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        width: int,
        out_planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: NormLayerType = nn.BatchNorm2d,
        *,
        cardinality: int = 32,
        learn_groups: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2: nn.Module
        if learn_groups:
            self.conv2 = DGConv2d(width, width, 3, stride=stride, padding=1)
        else:
            if width % cardinality:
                raise InvalidParameterError(
                    f"ResNeXtBottleneck: width {width} must be divisible by cardinality {cardinality}"
                )
            self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, out_planes)
        self.bn3 = norm_layer(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride


@torch.no_grad()
def _init_dgconv(model: nn.Module) -> None:
    # same initialization as the dense convs of init_weights (the mask keeps a subset of the weights)
    for m in model.modules():
        if isinstance(m, DGConv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class _ResNeXtLayerMixin:
    """Shared ``_make_layer``: ResNeXt blocks with projection shortcuts (conv1x1 + norm)."""

    inplanes: int
    _cardinality: int
    _learn_groups: bool

    def _blocks(self, width: int, out_planes: int, blocks: int, stride: int, norm: NormLayerType) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, out_planes, stride), norm(out_planes))
        kw: dict[str, Any] = {"cardinality": self._cardinality, "learn_groups": self._learn_groups}
        layers: list[nn.Module] = [ResNeXtBottleneck(self.inplanes, width, out_planes, stride, downsample, norm, **kw)]
        self.inplanes = out_planes
        layers += [ResNeXtBottleneck(out_planes, width, out_planes, 1, None, norm, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


class ResNeXt(_ResNeXtLayerMixin, ResNet):
    """ImageNet ResNeXt (Xie et al., CVPR 2017) on the torchvision ResNet skeleton; optionally learned groups.

    Paper: S. Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", CVPR 2017,
    https://arxiv.org/abs/1611.05431; G-ResNeXt: Z. Zhang et al., ICCV 2019, https://arxiv.org/abs/1908.05867

    Stage ``i`` (``planes = 64 * 2^i``) uses 3x3 width ``planes * base_width / 64 * cardinality`` and outputs
    ``4 * planes`` channels, exactly torchvision's ``resnext50_32x4d``.

    Args:
        layers: Blocks per stage, e.g. ``(3, 4, 6, 3)``.
        cardinality: Groups of the 3x3 convolutions (with ``learn_groups``, only sets the widths). Default: ``32``.
        base_width: Channels per group at ``planes = 64``. Default: ``4``.
        learn_groups: Replace the grouped 3x3 convolutions by DGConv2d (G-ResNeXt). Default: ``False``.
        num_classes: Classifier outputs; ``0`` removes the classifier. Default: ``1000``.
        in_chans: Input channels. Default: ``3``.
        norm_layer: Normalization name, class or partial. Default: ``"bn"``.
        zero_init_last: Zero the scale of each block's last norm. Default: ``False``.
        drop_rate: Dropout probability before the classifier. Default: ``0.0``.

    Shape:
        - Input: ``(N, in_chans, H, W)`` with ``H, W >= 32``
        - Output: ``(N, num_classes)``
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int] | list[int] = (3, 4, 6, 3),
        cardinality: int = 32,
        base_width: int = 4,
        learn_groups: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        norm_layer: Any = "bn",
        zero_init_last: bool = False,
        drop_rate: float = 0.0,
    ) -> None:
        self._cardinality = check_int("ResNeXt", "cardinality", cardinality, 1)
        self._base_width = check_int("ResNeXt", "base_width", base_width, 1)
        self._learn_groups = bool(learn_groups)
        super().__init__(ResNeXtBottleneck, layers, num_classes, in_chans, norm_layer, False, drop_rate)  # type: ignore[arg-type]
        self.cardinality, self.base_width, self.learn_groups = cardinality, base_width, self._learn_groups
        _init_dgconv(self)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, ResNeXtBottleneck):
                    m.zero_init_last()

    def _make_layer(self, block: Any, planes: int, blocks: int, stride: int, norm: NormLayerType) -> nn.Sequential:
        width = int(planes * (self._base_width / 64.0)) * self._cardinality
        return self._blocks(width, planes * 4, blocks, stride, norm)


class CifarResNeXt(_ResNeXtLayerMixin, FcHeadModel):
    """ResNeXt-29 for small images (Xie et al., CVPR 2017, Sec. 5.3), optionally with learned groups (G-ResNeXt).

    Paper: S. Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", CVPR 2017,
    https://arxiv.org/abs/1611.05431

    A 3x3 stem with ``stem_width`` channels, three stages of ``(depth - 2) / 9`` bottlenecks (stride 1, 2, 2); stage
    ``s`` has 3x3 width ``cardinality * base_width * 2^s`` and outputs ``out_ratio`` times that. The paper's
    ResNeXt-29 (8x64d) is ``cardinality=8, base_width=64, stem_width=64, out_ratio=0.5``.

    Args:
        depth: ``9n + 2`` (29 → three blocks per stage). Default: ``29``.
        cardinality: Groups of the 3x3 convolutions (with ``learn_groups``, only sets the widths). Default: ``4``.
        base_width: Channels per group in the first stage. Default: ``4``.
        stem_width: Channels of the stem. Default: ``16``.
        out_ratio: Block output channels as a multiple of the 3x3 width. Default: ``2``.
        learn_groups: Use DGConv2d for the 3x3 convolutions (G-ResNeXt). Default: ``False``.
        num_classes: Classifier outputs; ``0`` removes the classifier. Default: ``10``.
        in_chans: Input channels. Default: ``3``.
        norm_layer: Normalization name, class or partial. Default: ``"bn"``.
        zero_init_last: Zero the scale of each block's last norm. Default: ``False``.
        drop_rate: Dropout probability before the classifier. Default: ``0.0``.

    Shape:
        - Input: ``(N, in_chans, H, W)``; the feature map is ``H/4 x W/4`` (rounded up)
        - Output: ``(N, num_classes)``
    """

    def __init__(
        self,
        depth: int = 29,
        cardinality: int = 4,
        base_width: int = 4,
        stem_width: int = 16,
        out_ratio: float = 2.0,
        learn_groups: bool = False,
        num_classes: int = 10,
        in_chans: int = 3,
        norm_layer: Any = "bn",
        zero_init_last: bool = False,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        depth = check_int("CifarResNeXt", "depth", depth, 11)
        if (depth - 2) % 9 != 0:
            raise InvalidParameterError(f"CifarResNeXt: depth must be 9n + 2 (11, 20, 29, ...); got {depth}")
        self._cardinality = check_int("CifarResNeXt", "cardinality", cardinality, 1)
        base_width = check_int("CifarResNeXt", "base_width", base_width, 1)
        stem_width = check_int("CifarResNeXt", "stem_width", stem_width, 1)
        self._learn_groups = bool(learn_groups)
        self.depth, self.cardinality, self.base_width, self.learn_groups = depth, cardinality, base_width, learn_groups
        self.in_chans = check_int("CifarResNeXt", "in_chans", in_chans, 1)
        self.num_classes = check_int("CifarResNeXt", "num_classes", num_classes, 0)
        self.drop_rate = float(drop_rate)
        norm = resolve_norm_layer("CifarResNeXt", norm_layer)
        n = (depth - 2) // 9
        self.conv1 = conv3x3(in_chans, stem_width)
        self.bn1 = norm(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = stem_width
        widths = [cardinality * base_width * 2**s for s in range(3)]
        outs = [max(1, round(w * out_ratio)) for w in widths]
        self.layer1 = self._blocks(widths[0], outs[0], n, 1, norm)
        self.layer2 = self._blocks(widths[1], outs[1], n, 2, norm)
        self.layer3 = self._blocks(widths[2], outs[2], n, 2, norm)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = outs[2]
        self.fc = make_linear("CifarResNeXt", self.num_features, num_classes)
        init_weights(self)
        _init_dgconv(self)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, ResNeXtBottleneck):
                    m.zero_init_last()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``layer3`` feature map, shape ``(N, num_features, H/4, W/4)``."""
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))


def _cfg(paper: str = _PAPER, cifar: bool = False, **kwargs: Any) -> PretrainedCfg:
    if cifar:
        kwargs.update(
            num_classes=10, input_size=(3, 32, 32), mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)
        )
        kwargs.setdefault("crop_pct", 1.0)
    return PretrainedCfg(paper=paper, source="architecture only; no weights shipped", **kwargs)


default_cfgs: dict[str, PretrainedCfg] = {
    "resnext50_32x4d": _cfg(architecture="resnext50_32x4d"),
    "g_resnext50": _cfg(_G_PAPER, architecture="g_resnext50"),
    "resnext29_4x4d": _cfg(cifar=True, architecture="resnext29_4x4d"),
    "g_resnext29_4x4d": _cfg(_G_PAPER, cifar=True, architecture="g_resnext29_4x4d"),
    "resnext29_8x4d": _cfg(cifar=True, architecture="resnext29_8x4d"),
    "g_resnext29_8x4d": _cfg(_G_PAPER, cifar=True, architecture="g_resnext29_8x4d"),
}


def _create(cls: type[ClassifierModel], variant: str, pretrained: bool, **kwargs: Any) -> Any:
    return build_model_with_cfg(cls, variant, pretrained, **kwargs)


@register_model
def resnext50_32x4d(pretrained: bool = False, **kwargs: Any) -> ResNeXt:
    """ResNeXt-50 (32x4d): 3-4-6-3 bottlenecks, 32 groups of 4 channels in stage 1 (torchvision layout)."""
    return _create(ResNeXt, "resnext50_32x4d", pretrained, layers=(3, 4, 6, 3), cardinality=32, base_width=4, **kwargs)


@register_model
def g_resnext50(pretrained: bool = False, **kwargs: Any) -> ResNeXt:
    """G-ResNeXt-50: ResNeXt-50 (32x4d) widths with DGConv2d (learned groups) in place of the grouped 3x3 convs."""
    kwargs.setdefault("learn_groups", True)
    return _create(ResNeXt, "g_resnext50", pretrained, layers=(3, 4, 6, 3), cardinality=32, base_width=4, **kwargs)


@register_model
def resnext29_4x4d(pretrained: bool = False, **kwargs: Any) -> CifarResNeXt:
    """Small CIFAR ResNeXt-29: 4 groups of 4/8/16 channels (3x3 widths 16/32/64, outputs 32/64/128), CPU-sized."""
    return _create(CifarResNeXt, "resnext29_4x4d", pretrained, cardinality=4, base_width=4, stem_width=16, **kwargs)


@register_model
def g_resnext29_4x4d(pretrained: bool = False, **kwargs: Any) -> CifarResNeXt:
    """G-ResNeXt-29 with the widths of ``resnext29_4x4d`` and DGConv2d 3x3 convolutions (learned groups)."""
    kwargs.setdefault("learn_groups", True)
    return _create(CifarResNeXt, "g_resnext29_4x4d", pretrained, cardinality=4, base_width=4, stem_width=16, **kwargs)


@register_model
def resnext29_8x4d(pretrained: bool = False, **kwargs: Any) -> CifarResNeXt:
    """CIFAR ResNeXt-29: 8 groups of 4/8/16 channels (3x3 widths 32/64/128, outputs 64/128/256)."""
    return _create(CifarResNeXt, "resnext29_8x4d", pretrained, cardinality=8, base_width=4, stem_width=32, **kwargs)


@register_model
def g_resnext29_8x4d(pretrained: bool = False, **kwargs: Any) -> CifarResNeXt:
    """G-ResNeXt-29 with the widths of ``resnext29_8x4d`` and DGConv2d 3x3 convolutions (learned groups)."""
    kwargs.setdefault("learn_groups", True)
    return _create(CifarResNeXt, "g_resnext29_8x4d", pretrained, cardinality=8, base_width=4, stem_width=32, **kwargs)
