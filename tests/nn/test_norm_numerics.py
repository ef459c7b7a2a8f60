"""Cross-layer checks for SN/SSN/EN/PN: factory names, gradcheck of every parameter, precision, layouts."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call

from pickwise.exceptions import UnknownNameError
from pickwise.nn import (
    ExemplarNorm2d,
    PopulationNorm2d,
    SparseSwitchNorm2d,
    SwitchNorm2d,
    SyncExemplarNorm2d,
    SyncSwitchNorm2d,
    create_norm_layer,
    get_norm_layer,
    list_norm_layers,
)

LAYERS = {
    "sn": lambda c: SwitchNorm2d(c),
    "sn_gn": lambda c: SwitchNorm2d(c, normalizers=("in", "ln", "bn", "gn:2")),
    "ssn": lambda c: SparseSwitchNorm2d(c, radius=0.25),
    "en": lambda c: ExemplarNorm2d(c),
    "pn": lambda c: PopulationNorm2d(c, warmup_steps=0),
    "pn_warm": lambda c: PopulationNorm2d(c, warmup_steps=100),
}


def _build(kind: str, c: int = 4, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    m = LAYERS[kind](c).to(dtype)
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
        for name in ("mean_weight", "var_weight", "ratio_weight"):
            if hasattr(m, name):
                getattr(m, name).copy_(torch.randn(getattr(m, name).shape) * 0.3)
        if hasattr(m, "relation_fc2"):
            m.relation_fc2.weight.normal_(0, 0.5)
        if m.running_var is not None:
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return m


class TestFactory:
    @pytest.mark.parametrize(
        ("name", "cls"),
        [
            ("sn", SwitchNorm2d),
            ("switchnorm", SwitchNorm2d),
            ("SwitchNorm2d", SwitchNorm2d),
            ("switch_norm", SwitchNorm2d),
            ("ssn", SparseSwitchNorm2d),
            ("sparse_switch_norm", SparseSwitchNorm2d),
            ("en", ExemplarNorm2d),
            ("exemplar_norm", ExemplarNorm2d),
            ("pn", PopulationNorm2d),
            ("population_norm", PopulationNorm2d),
            ("syncsn", SyncSwitchNorm2d),
            ("syncen", SyncExemplarNorm2d),
        ],
    )
    def test_names_create_right_class(self, name, cls):
        assert get_norm_layer(name) is cls
        layer = create_norm_layer(name, 8)
        assert type(layer) is cls and layer.num_features == 8

    def test_listed_and_unknown_name(self):
        assert {"sn", "ssn", "en", "pn", "syncsn", "syncen"} <= set(list_norm_layers())
        with pytest.raises(UnknownNameError, match="switchnorm"):
            get_norm_layer("switchnrom")

    def test_kwargs_pass_through(self):
        m = create_norm_layer("sn", 8, using_bn=False, momentum=0.003)
        assert m.normalizers == ("in", "ln") and m.momentum == 0.003


class TestGradcheckAllLayers:
    @pytest.mark.parametrize("mode", ["train", "eval"])
    @pytest.mark.parametrize("kind", sorted(LAYERS))
    def test_gradcheck(self, kind, mode):
        m = _build(kind, c=4, dtype=torch.float64)
        m.train(mode == "train")
        names = [n for n, _ in m.named_parameters()]
        params = tuple(p.detach().clone().requires_grad_() for p in m.parameters())
        buffers = {n: b.clone() for n, b in m.named_buffers()}
        x = torch.randn(3, 4, 2, 2, dtype=torch.float64, requires_grad=True)

        def fn(x, *ps):
            return functional_call(m, {**dict(zip(names, ps)), **{n: b.clone() for n, b in buffers.items()}}, (x,))

        assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-5)


class TestNumerics:
    @pytest.mark.parametrize("kind", sorted(LAYERS))
    @pytest.mark.parametrize("shape", [(1, 4, 3, 3), (3, 4, 1, 1), (1, 4, 1, 1)])
    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_degenerate_shapes_finite(self, kind, shape, mode):
        m = _build(kind)
        m.train(mode == "train")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            y = m(torch.randn(*shape))
        assert torch.isfinite(y).all()
        if m.running_var is not None:
            assert torch.isfinite(m.running_var).all()

    @pytest.mark.parametrize("kind", sorted(LAYERS))
    def test_channels_last_in_channels_last_out(self, kind):
        x = torch.randn(3, 4, 5, 5)
        a, b = _build(kind), _build(kind)
        y = a(x.to(memory_format=torch.channels_last))
        assert y.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(y, b(x))

    @pytest.mark.parametrize("kind", sorted(LAYERS))
    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_low_precision_large_mean_close_to_fp32(self, kind, dtype, mode):
        g = torch.Generator().manual_seed(0)
        x = (torch.randn(4, 4, 6, 6, generator=g) * 1.0 + 1e3).to(dtype)
        a, b = _build(kind), _build(kind)
        for m in (a, b):
            if m.running_mean is not None:
                with torch.no_grad():
                    m.running_mean.fill_(1e3)
            m.train(mode == "train")
        y = a(x)
        ref = b(x.float())
        assert y.dtype == dtype and torch.isfinite(y).all()
        tol = 2e-2 if dtype == torch.float16 else 6e-2
        torch.testing.assert_close(y.float(), ref, atol=tol, rtol=tol)

    @pytest.mark.parametrize("kind", sorted(LAYERS))
    def test_deterministic_and_repr_roundtrip(self, kind):
        x = torch.randn(2, 4, 3, 3)
        assert torch.equal(_build(kind)(x), _build(kind)(x))
        assert type(_build(kind)).__name__ in repr(_build(kind))
