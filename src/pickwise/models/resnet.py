"""ImageNet-style ResNet-18/34/50 with swappable normalization and torchvision module names.

Paper ``he2016deep``: K. He, X. Zhang, S. Ren and J. Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016, https://arxiv.org/abs/1512.03385

Modules are named as in torchvision (``conv1``, ``bn1``, ``layer1`` ... ``layer4``, ``fc``; blocks ``conv1``/``bn1``
... and ``downsample.0``/``downsample.1``), so torchvision ResNet state dicts load unchanged. The bottleneck puts
the stride on its 3x3 convolution ("ResNet v1.5", as torchvision does). Each ``bn*`` slot holds whatever
``norm_layer`` builds, so swapping the norm keeps the parameter names.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..exceptions import InvalidParameterError
from ..nn.norm import NormLayerType
from ._base import (
    FcHeadModel,
    check_int,
    init_weights,
    make_linear,
    resolve_norm_layer,
    zero_init_norm,
)
from ._builder import build_model_with_cfg
from ._registry import PretrainedCfg, register_model

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50"]

_PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016, arXiv:1512.03385"


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34 and the CIFAR ResNets).

    Args:
        inplanes: Input channels.
        planes: Output channels.
        stride: Stride of the first convolution.
        downsample: Module applied to the input of the shortcut when shapes change (``None``: identity).
        norm_layer: Normalization layer class or callable, called as ``norm_layer(channels)``.
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: NormLayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so the block starts as the identity."""
        zero_init_norm(self.bn2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block forward."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class BottleneckResidual(nn.Module):
    """Forward of a 1x1 → 3x3 → 1x1 bottleneck with a residual (shared by ResNet and ResNeXt bottlenecks).

    Subclasses set ``conv1``–``conv3``, ``bn1``–``bn3``, ``relu`` and ``downsample`` (``None``: identity shortcut).
    """

    conv1: nn.Module
    conv2: nn.Module
    conv3: nn.Module
    bn1: nn.Module
    bn2: nn.Module
    bn3: nn.Module
    relu: nn.Module
    downsample: nn.Module | None

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so the block starts as the identity."""
        zero_init_norm(self.bn3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block forward."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class Bottleneck(BottleneckResidual):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a residual connection (ResNet-50 and deeper).

    Args:
        inplanes: Input channels.
        planes: Bottleneck width; the block outputs ``4 * planes`` channels.
        stride: Stride of the 3x3 convolution.
        downsample: Module applied to the input of the shortcut when shapes change (``None``: identity).
        norm_layer: Normalization layer class or callable, called as ``norm_layer(channels)``.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: NormLayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride


class ResNet(FcHeadModel):
    """ImageNet ResNet: 7x7/2 stem, 3x3/2 max-pool, four stages of residual blocks, global pool, linear head.

    Paper: K. He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, https://arxiv.org/abs/1512.03385

    Args:
        block: Residual block class, :class:`BasicBlock` or :class:`Bottleneck`.
        layers: Number of blocks in each of the four stages, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        num_classes: Classifier outputs; ``0`` removes the classifier. Default: ``1000``.
        in_chans: Input channels. Default: ``3``.
        norm_layer: Normalization: a name (``"bn"``, ``"gn"``, ``"ln"``, ``"in"``, ...), a class or a partial.
            Default: ``"bn"``.
        zero_init_last: Zero the scale of each block's last norm (Goyal et al. 2017, arXiv:1706.02677), so residual
            branches start as identities. Default: ``False`` (as torchvision).
        drop_rate: Dropout probability before the classifier. Default: ``0.0``.

    Shape:
        - Input: ``(N, in_chans, H, W)``; the feature map is ``H/32 x W/32`` (rounded up), so use ``H, W >= 32``.
        - Output: ``(N, num_classes)``
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int] | list[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        norm_layer: Any = "bn",
        zero_init_last: bool = False,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise InvalidParameterError(f"ResNet: layers must have 4 entries; got {layers!r}")
        self.in_chans = check_int("ResNet", "in_chans", in_chans, 1)
        self.num_classes = check_int("ResNet", "num_classes", num_classes, 0)
        self.drop_rate = float(drop_rate)
        norm = resolve_norm_layer("ResNet", norm_layer)
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1, norm)
        self.layer2 = self._make_layer(block, 128, layers[1], 2, norm)
        self.layer3 = self._make_layer(block, 256, layers[2], 2, norm)
        self.layer4 = self._make_layer(block, 512, layers[3], 2, norm)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = 512 * block.expansion
        self.fc = make_linear("ResNet", self.num_features, num_classes)
        init_weights(self)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    m.zero_init_last()

    def _make_layer(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        planes: int,
        blocks: int,
        stride: int,
        norm: NormLayerType,
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride), norm(planes * block.expansion)
            )
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample, norm)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, norm_layer=norm) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``layer4`` feature map, shape ``(N, num_features, H/32, W/32)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _cfg(**kwargs: Any) -> PretrainedCfg:
    return PretrainedCfg(paper=_PAPER, source="architecture only; no weights shipped", **kwargs)


default_cfgs: dict[str, PretrainedCfg] = {
    "resnet18": _cfg(architecture="resnet18"),
    "resnet34": _cfg(architecture="resnet34"),
    "resnet50": _cfg(architecture="resnet50"),
}


def _create_resnet(variant: str, pretrained: bool, **kwargs: Any) -> ResNet:
    return build_model_with_cfg(ResNet, variant, pretrained, **kwargs)


@register_model
def resnet18(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-18 (BasicBlock, 2-2-2-2 blocks, 512 features) from He et al., CVPR 2016."""
    return _create_resnet("resnet18", pretrained, block=BasicBlock, layers=(2, 2, 2, 2), **kwargs)


@register_model
def resnet34(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-34 (BasicBlock, 3-4-6-3 blocks, 512 features) from He et al., CVPR 2016."""
    return _create_resnet("resnet34", pretrained, block=BasicBlock, layers=(3, 4, 6, 3), **kwargs)


@register_model
def resnet50(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-50 (Bottleneck, 3-4-6-3 blocks, 2048 features) from He et al., CVPR 2016."""
    return _create_resnet("resnet50", pretrained, block=Bottleneck, layers=(3, 4, 6, 3), **kwargs)
