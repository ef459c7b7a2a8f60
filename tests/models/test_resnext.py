"""ResNeXt / G-ResNeXt models: torchvision-compatible layout, learned-group variants, export, compile."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pickwise.models as pm
from pickwise.exceptions import InvalidParameterError
from pickwise.nn.conv import DGConv2d, complexity, export_grouped_convs, group_budget, learned_groups


def _tiny_g(**kwargs) -> pm.CifarResNeXt:
    return pm.CifarResNeXt(depth=11, cardinality=2, base_width=4, stem_width=8, learn_groups=True, **kwargs)


class TestImageNetResNeXt:
    def test_resnext50_matches_torchvision_layout(self):
        model = pm.create_model("resnext50_32x4d")
        # torchvision.models.resnext50_32x4d has 25,028,904 parameters
        assert sum(p.numel() for p in model.parameters()) == 25_028_904
        sd = model.state_dict()
        assert sd["layer1.0.conv2.weight"].shape == (128, 4, 3, 3)
        assert sd["layer4.2.conv3.weight"].shape == (2048, 1024, 1, 1)
        assert sd["layer2.0.downsample.0.weight"].shape == (512, 256, 1, 1)
        assert model.layer3[0].conv2.groups == 32

    def test_g_resnext50_uses_dgconv(self):
        model = pm.create_model("g_resnext50", num_classes=10)
        dg = [(n, m) for n, m in model.named_modules() if isinstance(m, DGConv2d)]
        assert len(dg) == 16
        assert [m.in_channels for _, m in dg] == [128] * 3 + [256] * 4 + [512] * 6 + [1024] * 3
        assert all(n.endswith("conv2") for n, _ in dg)
        ref = {k: v.shape for k, v in pm.create_model("resnext50_32x4d", num_classes=10).state_dict().items()}
        got = {k: v.shape for k, v in model.state_dict().items()}
        assert set(got) - set(ref) == {f"{n}.gate" for n, _ in dg}
        assert group_budget(model, 32) == sum(m.in_channels**2 for _, m in dg) / 32

    @pytest.mark.parametrize(("arg", "value"), [("cardinality", 0), ("base_width", 1.5)])
    def test_bad_args(self, arg, value):
        with pytest.raises(InvalidParameterError, match=f"ResNeXt: {arg} must be an int >= 1"):
            pm.ResNeXt(**{arg: value})

    def test_learn_groups_false_gives_fixed(self):
        model = pm.create_model("g_resnext29_4x4d", learn_groups=False)
        assert not any(isinstance(m, DGConv2d) for m in model.modules())


class TestCifarResNeXt:
    @pytest.mark.parametrize("name", ["resnext29_4x4d", "g_resnext29_4x4d", "resnext29_8x4d", "g_resnext29_8x4d"])
    def test_forward_28x28_gray(self, name):
        model = pm.create_model(name, in_chans=1, num_classes=10)
        out = model(torch.randn(2, 1, 28, 28))
        assert out.shape == (2, 10)
        assert model.num_features == model.layer3[-1].conv3.out_channels
        assert len([m for m in model.modules() if isinstance(m, pm.ResNeXtBottleneck)]) == 9

    def test_widths(self):
        model = pm.create_model("g_resnext29_8x4d")
        assert [m.in_channels for m in model.modules() if isinstance(m, DGConv2d)][::3] == [32, 64, 128]
        fixed = pm.create_model("resnext29_8x4d")
        assert {m.conv2.groups for m in fixed.modules() if isinstance(m, pm.ResNeXtBottleneck)} == {8}

    @pytest.mark.parametrize("norm", ["bn", "gn", "ln", "in", "sn"])
    def test_norm_layer(self, norm):
        try:
            model = pm.create_model("g_resnext29_4x4d", norm_layer=norm, in_chans=1)
        except Exception as err:
            if norm == "sn":
                pytest.skip(f"norm_layer='sn' not available: {err}")
            raise
        assert model(torch.randn(2, 1, 16, 16)).shape == (2, 10)

    def test_export_whole_model_random_gates(self):
        torch.manual_seed(0)
        model = pm.create_model("g_resnext29_4x4d", in_chans=1)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, DGConv2d):
                    m.gate.copy_(torch.randn_like(m.gate))
        model.train()
        with torch.no_grad():
            model(torch.randn(8, 1, 12, 12))
        model.eval()
        exported = export_grouped_convs(model)
        assert not any(isinstance(m, DGConv2d) for m in exported.modules())
        groups = learned_groups(model)
        assert {n: exported.get_submodule(n).groups for n in groups} == groups
        x = torch.randn(4, 1, 12, 12)
        with torch.no_grad():
            torch.testing.assert_close(exported(x), model(x), rtol=1e-5, atol=1e-5)
        assert sum(p.numel() for p in exported.parameters()) < sum(p.numel() for p in model.parameters())

    def test_complexity_of_fixed_equivalent(self):
        model = pm.create_model("g_resnext29_4x4d")
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, DGConv2d):
                    m.gate.copy_(torch.tensor([-1.0, -1.0] + [1.0] * (m.gate.numel() - 2)))  # G = 4
        assert float(complexity(model).detach()) == group_budget(model, 4)

    def test_zero_init_last(self):
        model = pm.create_model("resnext29_4x4d", zero_init_last=True)
        assert all(b.bn3.weight.abs().sum() == 0 for b in model.modules() if isinstance(b, pm.ResNeXtBottleneck))

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"depth": 28}, "depth must be 9n"),
            ({"cardinality": 0}, "cardinality must be an int >= 1"),
            ({"cardinality": 3, "base_width": 1, "out_ratio": 1.0}, None),
        ],
    )
    def test_bad_args(self, kwargs, match):
        if match is None:
            pm.CifarResNeXt(**kwargs)  # 3 groups of width 3: fine
            return
        with pytest.raises(InvalidParameterError, match=match):
            pm.CifarResNeXt(**kwargs)

    def test_width_not_divisible_by_cardinality(self):
        with pytest.raises(InvalidParameterError, match="width 10 must be divisible by cardinality 4"):
            pm.ResNeXtBottleneck(8, 10, 8, cardinality=4)


class TestCompile:
    def test_tiny_g_resnext_fullgraph(self):
        # fullgraph=True fails on any graph break; aot_eager keeps the CPU test fast (inductor: see the slow test)
        model = _tiny_g(num_classes=3, in_chans=1)
        x = torch.randn(2, 1, 8, 8)
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        out = compiled(x)
        torch.testing.assert_close(out, model(x))
        out.sum().backward()
        assert all(m.gate.grad is not None for m in model.modules() if isinstance(m, DGConv2d))

    @pytest.mark.slow
    def test_tiny_g_resnext_inductor(self):
        model = _tiny_g(num_classes=3, in_chans=1)
        x = torch.randn(2, 1, 8, 8)
        out = torch.compile(model, fullgraph=True)(x)
        torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-4)
        out.sum().backward()
        assert all(m.gate.grad is not None for m in model.modules() if isinstance(m, DGConv2d))


def test_gates_excluded_from_weight_decay():
    from pickwise.engine.config import resolve_config
    from pickwise.engine.trainer import build_optimizer

    model = _tiny_g()
    opt = build_optimizer(model, resolve_config(overrides=["optim.weight_decay=0.1"]))
    no_decay = next(g for g in opt.param_groups if g["weight_decay"] == 0.0)["params"]
    assert all(any(p is q for q in no_decay) for m in model.modules() if isinstance(m, DGConv2d) for p in [m.gate])


def test_registered():
    names = pm.list_models("*resnext*")
    assert {"resnext50_32x4d", "g_resnext50", "resnext29_4x4d", "g_resnext29_4x4d"} <= set(names)
    assert isinstance(pm.create_model("g_resnext29_4x4d").layer1[0].conv2, DGConv2d)
    assert isinstance(pm.create_model("resnext29_4x4d").layer1[0].conv2, nn.Conv2d)
