"""The ``bn`` default is decided once (``pickwise.nn.norm.DEFAULT_NORM``); configs that avoid importing torch repeat
the literal, and this keeps them in line."""

from __future__ import annotations

from pickwise.nn.norm import DEFAULT_NORM, list_norm_layers
from pickwise.tasks.classification.config import ModelConfig
from pickwise.zoo.spec import ZooEntry


def test_config_defaults_follow_the_norm_registry():
    assert DEFAULT_NORM in list_norm_layers()
    assert ModelConfig().norm == DEFAULT_NORM
    assert ZooEntry("x", "resnet20").norm == DEFAULT_NORM
