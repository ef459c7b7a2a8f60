"""CIFAR-style ResNets (ResNet-8/20/32/56) with swappable normalization.

Paper ``he2016deep``: K. He, X. Zhang, S. Ren and J. Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016, https://arxiv.org/abs/1512.03385 (Section 4.2, the CIFAR-10 networks)

The network is ``6n + 2`` layers deep: a 3x3 stem with 16 channels (no max-pool), three stages of ``n`` basic blocks
with 16, 32 and 64 channels (the second and third start with stride 2), global average pooling and a linear
classifier. Shortcuts are the paper's **option A**: identity, and where the shape changes a parameter-free
shortcut that subsamples with stride 2 and zero-pads the new channels. So the only norm layers are the blocks'
``bn1``/``bn2`` and the stem's ``bn1``, and ResNet-20 has 0.27 M parameters as in the paper. Inputs of any size
work (32x32 CIFAR, 28x28 MNIST-like, 8x8 digits).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import InvalidParameterError
from ..nn.norm import NormLayerType
from ._base import FcHeadModel, check_int, init_weights, make_linear, resolve_norm_layer
from ._builder import build_model_with_cfg
from ._registry import PretrainedCfg, register_model
from .resnet import BasicBlock, conv3x3

__all__ = ["CifarResNet", "PadShortcut", "resnet8", "resnet20", "resnet32", "resnet56"]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class PadShortcut(nn.Module):
    """Option-A shortcut of He et al. (2016): subsample by ``stride`` and zero-pad extra channels (no parameters).

    Args:
        in_planes: Input channels.
        planes: Output channels (``>= in_planes``); the new channels are split between front and back.
        stride: Spatial subsampling factor.
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.in_planes = in_planes
        self.planes = planes
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Subsample and pad channels."""
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.planes - self.in_planes
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))

    def extra_repr(self) -> str:
        """Constructor arguments."""
        return f"{self.in_planes}, {self.planes}, stride={self.stride}"


class CifarResNet(FcHeadModel):
    """ResNet for small images (He et al., CVPR 2016, Sec. 4.2): ``depth = 6n + 2``, stages of 16/32/64 channels.

    Paper: K. He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, https://arxiv.org/abs/1512.03385

    Module names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1``-``layer3``, ``fc``).

    Args:
        depth: Number of weighted layers, ``6n + 2`` (8, 20, 32, 44, 56, 110, ...). Default: ``20``.
        num_classes: Classifier outputs; ``0`` removes the classifier. Default: ``10``.
        in_chans: Input channels. Default: ``3``.
        norm_layer: Normalization: a name (``"bn"``, ``"gn"``, ``"ln"``, ``"in"``, ...), a class or a partial.
            Default: ``"bn"``.
        zero_init_last: Zero the scale of each block's last norm (Goyal et al. 2017, arXiv:1706.02677).
            Default: ``False``.
        drop_rate: Dropout probability before the classifier. Default: ``0.0``.
        width: Channels of the first stage; the stages have ``width``, ``2 * width`` and ``4 * width`` channels
            (the paper's 16/32/64 at the default). Default: ``16``.

    Shape:
        - Input: ``(N, in_chans, H, W)``; the feature map is ``H/4 x W/4`` (rounded up), e.g. 8x8 for CIFAR.
        - Output: ``(N, num_classes)``
    """

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_chans: int = 3,
        norm_layer: Any = "bn",
        zero_init_last: bool = False,
        drop_rate: float = 0.0,
        width: int = 16,
    ) -> None:
        super().__init__()
        depth = check_int("CifarResNet", "depth", depth, 8)
        width = check_int("CifarResNet", "width", width, 1)
        if (depth - 2) % 6 != 0:
            raise InvalidParameterError(f"CifarResNet: depth must be 6n + 2 (8, 20, 32, 44, 56, ...); got {depth}")
        self.depth = depth
        self.in_chans = check_int("CifarResNet", "in_chans", in_chans, 1)
        self.num_classes = check_int("CifarResNet", "num_classes", num_classes, 0)
        self.drop_rate = float(drop_rate)
        norm = resolve_norm_layer("CifarResNet", norm_layer)
        n = (depth - 2) // 6
        self.width = width
        self.conv1 = conv3x3(in_chans, width)
        self.bn1 = norm(width)
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = width
        self.layer1 = self._make_layer(width, n, 1, norm)
        self.layer2 = self._make_layer(2 * width, n, 2, norm)
        self.layer3 = self._make_layer(4 * width, n, 2, norm)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = 4 * width
        self.fc = make_linear("CifarResNet", self.num_features, num_classes)
        init_weights(self)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    m.zero_init_last()

    def _make_layer(self, planes: int, blocks: int, stride: int, norm: NormLayerType) -> nn.Sequential:
        shortcut = None
        if stride != 1 or self.inplanes != planes:
            shortcut = PadShortcut(self.inplanes, planes, stride)
        layers: list[nn.Module] = [BasicBlock(self.inplanes, planes, stride, shortcut, norm)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes, norm_layer=norm) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``layer3`` feature map, shape ``(N, 4 * width, H/4, W/4)``."""
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))


def _cfg(**kwargs: Any) -> PretrainedCfg:
    return PretrainedCfg(
        paper="He et al., Deep Residual Learning for Image Recognition, CVPR 2016, arXiv:1512.03385 (Sec. 4.2)",
        source="architecture only; no weights shipped",
        num_classes=10,
        input_size=(3, 32, 32),
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        crop_pct=1.0,
        **kwargs,
    )


default_cfgs: dict[str, PretrainedCfg] = {
    name: _cfg(architecture=name) for name in ("resnet8", "resnet20", "resnet32", "resnet56")
}


def _create(variant: str, depth: int, pretrained: bool, **kwargs: Any) -> CifarResNet:
    return build_model_with_cfg(CifarResNet, variant, pretrained, depth=depth, **kwargs)


@register_model
def resnet8(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-8 (n = 1, 75 k parameters): a tiny network for tests and demos."""
    return _create("resnet8", 8, pretrained, **kwargs)


@register_model
def resnet20(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-20 (n = 3, 0.27 M parameters) from He et al., CVPR 2016."""
    return _create("resnet20", 20, pretrained, **kwargs)


@register_model
def resnet32(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-32 (n = 5, 0.46 M parameters) from He et al., CVPR 2016."""
    return _create("resnet32", 32, pretrained, **kwargs)


@register_model
def resnet56(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-56 (n = 9, 0.85 M parameters) from He et al., CVPR 2016."""
    return _create("resnet56", 56, pretrained, **kwargs)
