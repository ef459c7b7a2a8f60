"""Tests run on every registered model: forward/backward, the timm-style interface and norm swapping."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import pickwise.models as pm
from pickwise.exceptions import InvalidParameterError, UnknownNameError
from pickwise.models.resnet_cifar import PadShortcut
from pickwise.nn import GroupNorm, InstanceNorm2d, LayerNorm2d

MODELS = pm.list_models(task="classification")  # the classifier contract below
NORMS = {"bn": nn.BatchNorm2d, "gn": GroupNorm, "ln": LayerNorm2d, "in": InstanceNorm2d}


def _is_cifar(name: str) -> bool:
    return pm.get_pretrained_cfg(name).input_size[1] == 32


def _input(name: str, in_chans: int = 3) -> torch.Tensor:
    return torch.randn(1, in_chans, 32, 32) if _is_cifar(name) else torch.randn(2, in_chans, 64, 64)


def _norm_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d))]


@functools.cache
def _bn_reference(name: str) -> tuple[list[str], int]:
    """Parameter names and number of norm layers of the default (BatchNorm) model."""
    model = pm.create_model(name)
    return [n for n, _ in model.named_parameters()], len(_norm_modules(model))


@pytest.mark.parametrize("name", MODELS)
class TestEveryModel:
    def test_forward_backward(self, name):
        model = pm.create_model(name)
        x = _input(name)
        out = model(x)
        assert out.shape == (x.shape[0], model.num_classes or model.num_features)  # 0 classes: pooled features
        assert torch.isfinite(out).all(), "NaN/inf in output"
        out.mean().backward()
        for n, p in model.named_parameters():
            assert p.grad is not None, f"No gradient for {n}"
            assert torch.isfinite(p.grad).all(), f"Non-finite gradient for {n}"

    def test_in_chans_one(self, name):
        model = pm.create_model(name, in_chans=1, num_classes=7)
        x = torch.randn(2, 1, 28, 28) if _is_cifar(name) else torch.randn(2, 1, 64, 64)
        out = model(x)
        assert out.shape == (2, 7)
        assert torch.isfinite(out).all()

    def test_features_then_head_equals_forward(self, name):
        model = pm.create_model(name).eval()
        x = _input(name)
        with torch.no_grad():
            feats = model.forward_features(x)
            assert feats.ndim == 4
            assert feats.shape[1] == model.num_features
            torch.testing.assert_close(model.forward_head(feats), model(x))
            pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (x.shape[0], model.num_features)

    def test_reset_classifier(self, name):
        model = pm.create_model(name)
        x = _input(name)
        model.reset_classifier(5)
        assert model.num_classes == 5
        assert isinstance(model.get_classifier(), nn.Linear)
        assert model(x).shape == (x.shape[0], 5)
        model.reset_classifier(0)
        assert model.num_classes == 0
        assert isinstance(model.get_classifier(), nn.Identity)
        assert model(x).shape == (x.shape[0], model.num_features)
        with pytest.raises(InvalidParameterError, match="num_classes must be an int >= 0"):
            model.reset_classifier(-1)

    def test_num_classes_zero(self, name):
        model = pm.create_model(name, num_classes=0)
        x = _input(name)
        assert model(x).shape == (x.shape[0], model.num_features)
        assert isinstance(model.get_classifier(), nn.Identity)

    @pytest.mark.parametrize("norm", sorted(NORMS))
    def test_norm_swap(self, name, norm):
        model = pm.create_model(name, norm_layer=norm)
        norms = _norm_modules(model)
        ref_param_names, ref_num_norms = _bn_reference(name)
        assert len(norms) == ref_num_norms
        assert all(type(m) is NORMS[norm] for m in norms), {type(m).__name__ for m in norms}
        # same parameter names in the same slots (bn1 stays bn1, features.0.1 stays features.0.1, ...)
        assert [n for n, _ in model.named_parameters()] == ref_param_names
        x = _input(name)
        if norm == "in" and x.shape[0] == 1:
            x = x.repeat(2, 1, 1, 1)
        out = model(x)
        assert out.shape == (x.shape[0], model.num_classes or model.num_features)
        assert torch.isfinite(out).all()

    def test_norm_partial(self, name):
        model = pm.create_model(name, norm_layer=functools.partial(GroupNorm, num_groups=4))
        groups = {m.num_groups for m in _norm_modules(model)}
        assert groups <= {1, 2, 4}
        assert 4 in groups

    def test_bad_norm(self, name):
        with pytest.raises(UnknownNameError, match="gn"):
            pm.create_model(name, norm_layer="gnn")
        with pytest.raises(InvalidParameterError, match="norm_layer must name"):
            pm.create_model(name, norm_layer="")

    @pytest.mark.parametrize(("arg", "value"), [("num_classes", -1), ("in_chans", 0), ("in_chans", 1.5)])
    def test_bad_args(self, name, arg, value):
        with pytest.raises(InvalidParameterError, match=arg):
            pm.create_model(name, **{arg: value})

    def test_init(self, name):
        model = pm.create_model(name)
        for n, m in model.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                assert torch.equal(m.weight, torch.ones_like(m.weight)), n
                assert torch.equal(m.bias, torch.zeros_like(m.bias)), n
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        # no conv biases before norms, except where the architecture has them (VGG): zero-initialized there
        assert all(m.bias is None or not m.bias.any() for m in convs)


@pytest.mark.parametrize("name", [n for n in MODELS if _is_cifar(n)])
@pytest.mark.parametrize("size", [8, 28, 32])
def test_cifar_small_inputs(name, size):
    model = pm.create_model(name, in_chans=1, num_classes=10)
    out = model(torch.randn(2, 1, size, size))
    assert out.shape == (2, 10)
    assert model.forward_features(torch.randn(2, 1, size, size)).shape[-1] == (size + 3) // 4


class TestCifarResNet:
    @pytest.mark.parametrize(("name", "params"), [("resnet20", 269_722), ("resnet32", 464_154), ("resnet56", 853_018)])
    def test_option_a_parameter_count(self, name, params):
        # option-A shortcuts have no parameters: ResNet-20 has 0.27 M parameters as in He et al. (2016), Table 6
        assert sum(p.numel() for p in pm.create_model(name).parameters()) == params

    def test_shortcut(self):
        sc = PadShortcut(16, 32, 2)
        x = torch.randn(2, 16, 7, 7)
        y = sc(x)
        assert y.shape == (2, 32, 4, 4)
        torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])
        assert y[:, :8].abs().sum() == 0
        assert y[:, 24:].abs().sum() == 0

    @pytest.mark.parametrize("depth", [7, 21, 0, "20"])
    def test_bad_depth(self, depth):
        with pytest.raises(InvalidParameterError, match="depth"):
            pm.CifarResNet(depth=depth)

    def test_state_dict_keys(self):
        keys = set(pm.create_model("resnet20").state_dict())
        assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer3.2.bn2.bias", "fc.weight"} <= keys
        assert not any("shortcut" in k or "downsample" in k for k in keys)

    def test_zero_init_last(self):
        model = pm.create_model("resnet20", zero_init_last=True)
        for block in model.modules():
            if isinstance(block, pm.BasicBlock):
                assert block.bn2.weight.abs().sum() == 0
                assert block.bn1.weight.abs().sum() > 0


class TestImageNetResNet:
    def test_resnet18_torchvision_keys(self):
        sd = pm.create_model("resnet18").state_dict()
        for key in [
            "conv1.weight",
            "bn1.weight",
            "bn1.running_var",
            "bn1.num_batches_tracked",
            "layer1.0.conv1.weight",
            "layer1.1.bn2.bias",
            "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.running_mean",
            "layer4.1.conv2.weight",
            "fc.weight",
            "fc.bias",
        ]:
            assert key in sd, key
        assert "layer1.0.downsample.0.weight" not in sd
        assert sd["fc.weight"].shape == (1000, 512)
        assert sd["conv1.weight"].shape == (64, 3, 7, 7)
        assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)

    def test_resnet50_torchvision_keys(self):
        sd = pm.create_model("resnet50").state_dict()
        for key in [
            "layer1.0.conv3.weight",
            "layer1.0.bn3.weight",
            "layer1.0.downsample.0.weight",
            "layer1.0.downsample.1.bias",
            "layer3.5.bn3.running_var",
            "layer4.2.conv3.weight",
            "fc.weight",
        ]:
            assert key in sd, key
        assert sd["fc.weight"].shape == (1000, 2048)
        # ResNet v1.5 (torchvision): the stride sits on the 3x3 convolution
        model = pm.create_model("resnet50")
        assert model.layer2[0].conv2.stride == (2, 2)
        assert model.layer2[0].conv1.stride == (1, 1)

    @pytest.mark.parametrize(
        ("name", "params"), [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032)]
    )
    def test_parameter_count_matches_torchvision(self, name, params):
        assert sum(p.numel() for p in pm.create_model(name).parameters()) == params

    def test_zero_init_last(self):
        model = pm.create_model("resnet50", zero_init_last=True, norm_layer="gn")
        for block in model.modules():
            if isinstance(block, pm.Bottleneck):
                assert block.bn3.weight.abs().sum() == 0
                assert block.bn2.weight.abs().sum() > 0

    def test_bad_layers(self):
        with pytest.raises(InvalidParameterError, match="4 entries"):
            pm.ResNet(pm.BasicBlock, [2, 2, 2])


class TestMobileNetV2:
    def test_torchvision_keys(self):
        sd = pm.create_model("mobilenet_v2").state_dict()
        assert len(sd) == 314
        for key in [
            "features.0.0.weight",
            "features.0.1.running_mean",
            "features.1.conv.0.0.weight",
            "features.1.conv.0.1.weight",
            "features.1.conv.1.weight",
            "features.1.conv.2.bias",
            "features.2.conv.0.0.weight",
            "features.2.conv.1.0.weight",
            "features.2.conv.2.weight",
            "features.2.conv.3.running_var",
            "features.17.conv.3.weight",
            "features.18.0.weight",
            "features.18.1.num_batches_tracked",
            "classifier.1.weight",
        ]:
            assert key in sd, key
        assert sd["classifier.1.weight"].shape == (1000, 1280)
        assert sd["features.18.0.weight"].shape == (1280, 320, 1, 1)

    def test_parameter_count_matches_torchvision(self):
        assert sum(p.numel() for p in pm.create_model("mobilenet_v2").parameters()) == 3_504_872

    @pytest.mark.parametrize(("width_mult", "first", "features"), [(0.5, 16, 1280), (1.0, 32, 1280), (1.4, 48, 1792)])
    def test_width_mult(self, width_mult, first, features):
        model = pm.create_model("mobilenet_v2", width_mult=width_mult, num_classes=3)
        assert model.features[0][0].out_channels == first
        assert model.num_features == features
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)

    @pytest.mark.parametrize("width_mult", [0, -1.0, "1", True])
    def test_bad_width_mult(self, width_mult):
        with pytest.raises(InvalidParameterError, match="width_mult"):
            pm.create_model("mobilenet_v2", width_mult=width_mult)

    def test_dropout_only_in_training(self):
        model = pm.create_model("mobilenet_v2", num_classes=4, drop_rate=0.5)
        assert model.classifier[0].p == 0.5
        model.eval()
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(model(x), model(x))

    def test_residual_blocks(self):
        model = pm.create_model("mobilenet_v2")
        blocks = [m for m in model.features if isinstance(m, pm.InvertedResidual)]
        assert len(blocks) == 17
        assert sum(b.use_res_connect for b in blocks) == 10
