"""Model zoo: a timm-style registry and small CNN backbones with swappable normalization.

``create_model(name, pretrained=False, num_classes=None, in_chans=None, norm_layer=None, **kwargs)`` builds a
registered model; ``list_models("resnet*")`` lists names. Every model exposes ``num_features``,
``forward_features``, ``forward_head(x, pre_logits=False)``, ``reset_classifier`` and ``pretrained_cfg``.

Registered: CIFAR ResNets ``resnet8``/``resnet20``/``resnet32``/``resnet56`` (He et al., CVPR 2016), ImageNet
ResNets ``resnet18``/``resnet34``/``resnet50`` (torchvision naming), ResNeXt ``resnext50_32x4d``/``resnext29_*``
(Xie et al., CVPR 2017) with their learned-group G-ResNeXt twins ``g_resnext50``/``g_resnext29_*`` (Zhang et al.,
ICCV 2019), ``mobilenet_v2`` (Sandler et al., CVPR 2018; ImageNet weights via ``pretrained=True``) and
``craft_vgg16_bn`` (the VGG16-BN backbone of the CRAFT text detector, Baek et al., CVPR 2019; real weights via
``pretrained=True``).

Task models (``list_models(task=...)`` / :func:`get_model_task` tell them apart): video re-ID ``mstat_tiny`` /
``mstat_small`` / ``mstat_base`` and the baselines ``vit_frame_avg_tiny``, ``reid_mobilenet_v2`` (:mod:`.mstat`,
MSTAT, IEEE TMM 2023); segmentation ``deeplabv2_*`` / ``deeplabv3plus_*`` (:mod:`.deeplab`, for ADA-MCU);
learned ISPs ``isp_unet*``, ``pynet*``, ``mwisp*``, ``awnet*`` and the non-learned ``isp_classical``
(:mod:`.isp`, AIM 2020).
"""

from . import deeplab, isp, mstat
from ._base import ClassifierModel
from ._builder import build_model_with_cfg, load_pretrained, resolve_weights_path, verify_sha256
from ._registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PretrainedCfg,
    create_model,
    get_model_task,
    get_pretrained_cfg,
    is_model,
    list_models,
    model_entrypoint,
    register_model,
)
from .imagenet_classes import IMAGENET_CLASSES
from .mobilenetv2 import InvertedResidual, MobileNetV2, mobilenet_v2
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50
from .resnet_cifar import CifarResNet, resnet8, resnet20, resnet32, resnet56
from .resnext import (
    CifarResNeXt,
    ResNeXt,
    ResNeXtBottleneck,
    g_resnext29_4x4d,
    g_resnext29_8x4d,
    g_resnext50,
    resnext29_4x4d,
    resnext29_8x4d,
    resnext50_32x4d,
)
from .vgg import CraftVGG16BN, craft_vgg16_bn

__all__ = [
    "IMAGENET_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BasicBlock",
    "Bottleneck",
    "CraftVGG16BN",
    "CifarResNeXt",
    "CifarResNet",
    "ClassifierModel",
    "InvertedResidual",
    "MobileNetV2",
    "PretrainedCfg",
    "ResNeXt",
    "ResNeXtBottleneck",
    "ResNet",
    "build_model_with_cfg",
    "craft_vgg16_bn",
    "create_model",
    "g_resnext29_4x4d",
    "g_resnext29_8x4d",
    "g_resnext50",
    "deeplab",
    "get_model_task",
    "get_pretrained_cfg",
    "isp",
    "mstat",
    "is_model",
    "list_models",
    "load_pretrained",
    "mobilenet_v2",
    "model_entrypoint",
    "register_model",
    "resnet8",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet50",
    "resnet56",
    "resnext29_4x4d",
    "resnext29_8x4d",
    "resnext50_32x4d",
    "resolve_weights_path",
    "verify_sha256",
]
