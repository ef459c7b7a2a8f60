"""Tests for ExemplarNorm2d and the functional exemplar_norm."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from pickwise.exceptions import InvalidParameterError
from pickwise.nn import ExemplarNorm2d


def _en(c=4, **kw):
    torch.manual_seed(0)
    m = ExemplarNorm2d(c, **kw)
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
        m.relation_fc2.weight.normal_(0, 0.5)  # make the ratios genuinely sample-dependent
        m.relation_fc2.bias.normal_(0, 0.5)
        m.ratio_weight.copy_(torch.randn(len(m.normalizers)))
    return m


def naive_en(x, ratios, gamma, beta, eps, running=None):
    """EN from its definition: K materialized normalized maps mixed per sample (float64)."""
    x = x.double()
    maps = []
    mu_in = x.mean((2, 3), keepdim=True)
    var_in = x.var((2, 3), keepdim=True, correction=0)
    maps.append((x - mu_in) / torch.sqrt(var_in + eps))
    mu_ln = x.mean((1, 2, 3), keepdim=True)
    var_ln = x.var((1, 2, 3), keepdim=True, correction=0)
    maps.append((x - mu_ln) / torch.sqrt(var_ln + eps))
    if running is None:
        mu_bn = x.mean((0, 2, 3), keepdim=True)
        var_bn = x.var((0, 2, 3), keepdim=True, correction=0)
    else:
        mu_bn, var_bn = running[0].double().view(1, -1, 1, 1), running[1].double().view(1, -1, 1, 1)
    maps.append((x - mu_bn) / torch.sqrt(var_bn + eps))
    mixed = sum(ratios[:, k].view(-1, 1, 1, 1) * maps[k] for k in range(3))
    return gamma.view(1, -1, 1, 1) * mixed + beta.view(1, -1, 1, 1)


class TestExemplarNorm2d:
    def test_smoke_repr_and_params(self):
        m = ExemplarNorm2d(8)
        assert repr(m).startswith(
            "ExemplarNorm2d(\n  8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True, "
            "normalizers=('in', 'ln', 'bn'), ratio_hidden=16, kernel_size=3, temperature=1.0\n"
        )
        assert m.normalizers == ("in", "ln", "bn")
        extra = sum(p.numel() for n, p in m.named_parameters() if n not in ("weight", "bias"))
        assert extra == 221  # "merely a few parameters", independent of C
        assert sum(p.numel() for n, p in ExemplarNorm2d(256).named_parameters() if n not in ("weight", "bias")) == 221
        torch.testing.assert_close(m.ratios()["mean"], torch.full((3,), 1 / 3))

    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_equals_naive_materialized_maps(self, mode):
        m = _en().double()
        m(torch.randn(6, 4, 3, 3, dtype=torch.float64) * 2 + 1)
        running = (m.running_mean.clone(), m.running_var.clone()) if mode == "eval" else None
        m.train(mode == "train")
        x = torch.randn(5, 4, 4, 3, dtype=torch.float64) * 3 - 1
        y = m(x)
        ratios = m.last_sample_ratios
        assert ratios.shape == (5, 3)
        torch.testing.assert_close(ratios.sum(1), torch.ones(5, dtype=torch.float64))
        assert (ratios.std(0) > 1e-3).any(), "ratios should differ between samples"
        ref = naive_en(x, ratios, m.weight.detach(), m.bias.detach(), m.eps, running)
        torch.testing.assert_close(y, ref.detach(), atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(m.ratios()["mean"], ratios.mean(0))
        torch.testing.assert_close(m.sample_ratios(x), ratios)

    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_gradcheck_all_parameters(self, mode):
        m = _en(c=3).double()
        m(torch.randn(4, 3, 2, 2, dtype=torch.float64))
        m.train(mode == "train")
        names = [n for n, _ in m.named_parameters()]
        params = tuple(p.detach().clone().requires_grad_() for p in m.parameters())
        buffers = dict(m.named_buffers())
        x = torch.randn(3, 3, 2, 2, dtype=torch.float64, requires_grad=True)

        def fn(x, *ps):
            bufs = {n: b.clone() for n, b in buffers.items()}
            return functional_call(m, {**dict(zip(names, ps)), **bufs}, (x,))

        assert torch.autograd.gradcheck(fn, (x, *params))

    @pytest.mark.parametrize(("which", "idx"), [("in", 0), ("ln", 1), ("bn", 2)])
    def test_one_hot_static_logits(self, which, idx):
        m = ExemplarNorm2d(4)  # fc2 zero-init: ratios = softmax(ratio_weight)
        with torch.no_grad():
            m.ratio_weight.copy_(torch.full((3,), -30.0))
            m.ratio_weight[idx] = 30.0
        x = torch.randn(3, 4, 5, 5) * 2 + 1
        ref = {
            "in": F.instance_norm(x, eps=m.eps),
            "ln": F.group_norm(x, 1, eps=m.eps),
            "bn": F.batch_norm(x, None, None, training=True, eps=m.eps),
        }[which]
        torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)

    def test_options_and_errors(self):
        m = ExemplarNorm2d(4, descriptor="mean", temperature=2.0, kernel_size=5, ratio_hidden=4, using_bn=False)
        assert m.normalizers == ("in", "ln") and m.embed.in_channels == 1
        assert m(torch.randn(2, 4, 3, 3)).shape == (2, 4, 3, 3)
        with pytest.raises(InvalidParameterError, match="kernel_size must be a positive odd int"):
            ExemplarNorm2d(4, kernel_size=2)
        with pytest.raises(InvalidParameterError, match="descriptor must be"):
            ExemplarNorm2d(4, descriptor="max")
        with pytest.raises(InvalidParameterError, match="temperature must be a positive float"):
            ExemplarNorm2d(4, temperature=0)
        with pytest.raises(ValueError, match="input must be 4D"):
            m(torch.randn(2, 4, 3))

    def test_ratios_before_forward_follow_static_logits(self):
        m = ExemplarNorm2d(4)
        with torch.no_grad():
            m.ratio_weight.copy_(torch.tensor([-6.0, -6.0, 6.0]))
        torch.testing.assert_close(m.ratios()["var"], torch.softmax(m.ratio_weight.detach(), 0))
        m(torch.randn(3, 4, 2, 2))
        torch.testing.assert_close(m.ratios()["mean"], m.last_sample_ratios.mean(0))
        m.reset_parameters()
        torch.testing.assert_close(m.ratios()["mean"], torch.full((3,), 1 / 3))

    def test_meta_device(self):
        m = ExemplarNorm2d(4, device="meta")
        assert m.embed.weight.is_meta
        m = m.to_empty(device="cpu")
        m.reset_parameters()
        assert torch.isfinite(m(torch.randn(2, 4, 3, 3))).all()

    def test_compile_fullgraph(self):
        m = _en()
        compiled = torch.compile(m, fullgraph=True, backend="eager")
        x = torch.randn(3, 4, 3, 3)
        ref = _en()
        torch.testing.assert_close(compiled(x), ref(x))
        torch.testing.assert_close(m.last_ratios, ref.last_ratios)
