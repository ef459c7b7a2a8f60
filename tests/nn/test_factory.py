"""Tests for the norm-layer factory and the channels-first norm variants."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pickwise.exceptions import InvalidParameterError, UnknownNameError
from pickwise.nn import (
    GroupNorm,
    InstanceNorm2d,
    LayerNorm2d,
    create_norm_layer,
    effective_num_groups,
    get_norm_layer,
    list_norm_layers,
    register_norm_layer,
)
from pickwise.nn.norm import factory


@pytest.fixture
def clean_registry(monkeypatch):
    """Let a test register norm layers without leaking them into other tests."""
    reg = factory._NORM_LAYERS
    monkeypatch.setattr(reg, "_items", dict(reg._items))
    monkeypatch.setattr(reg, "_aliases", dict(reg._aliases))
    return reg


def _naive_layer_norm_2d(x, weight, bias, eps):
    """LN of Switchable Normalization: one mean/biased variance per sample over (C, H, W), per-channel affine."""
    out = torch.empty_like(x)
    for n in range(x.shape[0]):
        mu = x[n].sum() / x[n].numel()
        var = ((x[n] - mu) ** 2).sum() / x[n].numel()
        for c in range(x.shape[1]):
            out[n, c] = (x[n, c] - mu) / torch.sqrt(var + eps) * weight[c] + bias[c]
    return out


class TestGetNormLayer:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("bn", nn.BatchNorm2d),
            ("BN", nn.BatchNorm2d),
            ("batchnorm", nn.BatchNorm2d),
            ("BatchNorm2d", nn.BatchNorm2d),
            ("batch_norm_2d", nn.BatchNorm2d),
            ("batch-norm", nn.BatchNorm2d),
            ("gn", GroupNorm),
            ("group_norm", GroupNorm),
            ("ln", LayerNorm2d),
            ("LayerNorm2d", LayerNorm2d),
            ("layer_norm", LayerNorm2d),
            ("in", InstanceNorm2d),
            ("instance_norm2d", InstanceNorm2d),
            (" GN ", GroupNorm),
        ],
    )
    def test_names_and_aliases(self, name, expected):
        assert get_norm_layer(name) is expected

    @pytest.mark.parametrize("value", [None, "", "  "])
    def test_none_means_no_norm(self, value):
        assert get_norm_layer(value) is None

    def test_class_passthrough(self):
        assert get_norm_layer(nn.BatchNorm2d) is nn.BatchNorm2d
        assert get_norm_layer(GroupNorm) is GroupNorm

    def test_partial_passthrough(self):
        p = functools.partial(GroupNorm, num_groups=4)
        assert get_norm_layer(p) is p
        layer = create_norm_layer(p, 16)
        assert isinstance(layer, GroupNorm)
        assert layer.num_groups == 4

    def test_function_passthrough(self):
        def make(num_features, **kw):
            return nn.BatchNorm2d(num_features, **kw)

        assert get_norm_layer(make) is make
        assert isinstance(create_norm_layer(make, 8, eps=1e-3), nn.BatchNorm2d)

    def test_unknown_name_lists_close_matches(self):
        with pytest.raises(UnknownNameError, match="groupnorm") as info:
            get_norm_layer("grupnorm")
        assert "unknown norm layer 'grupnorm'" in str(info.value)
        assert isinstance(info.value, ValueError)

    @pytest.mark.parametrize("bad", [3, nn.BatchNorm2d(4), int])
    def test_bad_type(self, bad):
        with pytest.raises(InvalidParameterError, match="get_norm_layer"):
            get_norm_layer(bad)

    def test_bad_type_is_type_error(self):
        with pytest.raises(TypeError):
            get_norm_layer(nn.BatchNorm2d(4))


class TestCreateNormLayer:
    @pytest.mark.parametrize("name", ["bn", "gn", "ln", "in"])
    def test_swappable_with_bn(self, name):
        layer = create_norm_layer(name, 16)
        assert layer.weight.shape == (16,)
        assert layer.bias.shape == (16,)
        x = torch.randn(2, 16, 4, 4)
        assert layer(x).shape == x.shape

    def test_kwargs(self):
        layer = create_norm_layer("bn", 8, eps=1e-3, momentum=0.05)
        assert layer.eps == 1e-3
        assert layer.momentum == 0.05

    @pytest.mark.parametrize("value", [None, ""])
    def test_none_raises(self, value):
        with pytest.raises(InvalidParameterError, match="must name a layer"):
            create_norm_layer(value, 8)

    def test_list(self):
        names = list_norm_layers()
        assert {"bn", "gn", "ln", "in"} <= set(names)
        assert names == sorted(names)
        assert list_norm_layers("?n") == [n for n in names if len(n) == 2 and n.endswith("n")]


class TestRegisterNormLayer:
    def test_decorator(self, clean_registry):
        @register_norm_layer("my_norm", aliases=("mine",))
        class MyNorm(nn.BatchNorm2d):
            pass

        assert get_norm_layer("MyNorm") is MyNorm
        assert get_norm_layer("mine") is MyNorm
        assert "mynorm" in list_norm_layers()
        assert isinstance(create_norm_layer("my-norm", 4), MyNorm)

    def test_direct_call(self, clean_registry):
        p = functools.partial(GroupNorm, num_groups=2)
        assert register_norm_layer("gn2", p) is p
        assert create_norm_layer("gn2", 8).num_groups == 2

    def test_twice_warns(self, clean_registry):
        with pytest.warns(UserWarning, match="registered twice"):
            register_norm_layer("bn", nn.BatchNorm2d)

    def test_not_leaked(self):
        assert "mynorm" not in list_norm_layers()

    @pytest.mark.parametrize("name", ["", "_-", 3])
    def test_bad_name(self, name, clean_registry):
        with pytest.raises(InvalidParameterError, match="name must be a non-empty string"):
            register_norm_layer(name, nn.BatchNorm2d)

    def test_bad_layer(self, clean_registry):
        with pytest.raises(InvalidParameterError, match="must be a class or callable"):
            register_norm_layer("bad", 3)


class TestGroupNorm:
    @pytest.mark.parametrize(
        ("channels", "groups", "expected"),
        [
            (64, 32, 32),
            (16, 32, 8),
            (144, 32, 24),
            (96, 32, 32),
            (24, 32, 12),
            (3, 32, 1),
            (1, 32, 1),
            (2, 32, 1),
            (12, 5, 4),
            (7, 32, 1),
            (6, 1, 1),
        ],
    )
    def test_group_rule(self, channels, groups, expected):
        assert effective_num_groups(channels, groups) == expected
        assert GroupNorm(channels, num_groups=groups).num_groups == expected

    def test_group_rule_exhaustive(self):
        for c in range(1, 257):
            for g in (1, 2, 3, 4, 8, 16, 32, 64):
                got = effective_num_groups(c, g)
                cap = max(1, min(g, c // 2))
                assert c % got == 0
                assert got <= cap
                assert all(c % k for k in range(got + 1, cap + 1)), (c, g, got)
                if c >= 2:
                    assert got < c, "must never become instance norm"

    def test_state_dict_is_plain(self):
        m = GroupNorm(12, num_groups=4)
        sd = m.state_dict()
        assert set(sd) == {"weight", "bias"}
        assert sd["weight"].shape == (12,)
        assert isinstance(m, nn.GroupNorm)

    def test_matches_functional(self):
        m = GroupNorm(12, num_groups=4)
        with torch.no_grad():
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-1, 1)
        x = torch.randn(3, 12, 5, 5)
        torch.testing.assert_close(m(x), F.group_norm(x, 4, m.weight, m.bias, m.eps))

    def test_repr(self):
        assert repr(GroupNorm(144)) == "GroupNorm(144, num_groups=24, eps=1e-05, affine=True)"

    def test_not_affine(self):
        m = GroupNorm(8, affine=False)
        assert m.weight is None
        assert m(torch.randn(2, 8, 3, 3)).shape == (2, 8, 3, 3)

    @pytest.mark.parametrize(("c", "g"), [(0, 32), (8, 0), (8.0, 2), (True, 2), (8, 2.5)])
    def test_exception(self, c, g):
        with pytest.raises(InvalidParameterError, match="must be a positive int"):
            GroupNorm(c, num_groups=g)

    def test_device_dtype(self):
        m = GroupNorm(8, device="meta", dtype=torch.float64)
        assert m.weight.device.type == "meta"
        assert m.weight.dtype == torch.float64


class TestLayerNorm2d:
    def test_reference_float64(self):
        torch.manual_seed(0)
        m = LayerNorm2d(6, eps=1e-5, dtype=torch.float64)
        with torch.no_grad():
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-1, 1)
        x = torch.randn(2, 6, 3, 5, dtype=torch.float64) * 3 + 1
        expected = _naive_layer_norm_2d(x, m.weight.detach(), m.bias.detach(), 1e-5)
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)

    def test_equals_layer_norm_over_chw(self):
        m = LayerNorm2d(6)
        with torch.no_grad():
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-1, 1)
        x = torch.randn(2, 6, 4, 4)
        ln = F.layer_norm(x, x.shape[1:], eps=m.eps)
        torch.testing.assert_close(m(x), ln * m.weight[:, None, None] + m.bias[:, None, None])

    def test_params_per_channel(self):
        m = LayerNorm2d(6)
        assert m.weight.shape == (6,)
        assert m.num_groups == 1
        assert set(m.state_dict()) == {"weight", "bias"}

    def test_repr(self):
        assert repr(LayerNorm2d(6)) == "LayerNorm2d(6, eps=1e-05, affine=True)"

    def test_exception(self):
        with pytest.raises(InvalidParameterError, match="LayerNorm2d: num_features"):
            LayerNorm2d(0)


class TestInstanceNorm2d:
    def test_defaults(self):
        m = InstanceNorm2d(5)
        assert m.affine
        assert not m.track_running_stats
        assert m.weight.shape == (5,)
        assert isinstance(m, nn.InstanceNorm2d)

    def test_reference(self):
        m = InstanceNorm2d(5, dtype=torch.float64)
        with torch.no_grad():
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-1, 1)
        x = torch.randn(2, 5, 4, 3, dtype=torch.float64)
        mu = x.mean(dim=(2, 3), keepdim=True)
        var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
        expected = (x - mu) / torch.sqrt(var + m.eps) * m.weight[:, None, None] + m.bias[:, None, None]
        torch.testing.assert_close(m(x), expected)

    def test_exception(self):
        with pytest.raises(InvalidParameterError, match="InstanceNorm2d: num_features"):
            InstanceNorm2d(-1)
