"""Tests for PopulationNorm2d, gamma_decay_penalty and gamma_decay_param_groups."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pickwise.exceptions import InvalidParameterError
from pickwise.nn import PopulationNorm2d, gamma_decay_param_groups, gamma_decay_penalty


def _pn(c=4, **kw):
    m = PopulationNorm2d(c, **kw)
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.5, 2)
    return m


class TestPopulationNorm2d:
    def test_smoke_repr(self):
        m = PopulationNorm2d(4, warmup_steps=3)
        assert repr(m) == (
            "PopulationNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True, warmup_steps=3)"
        )
        with pytest.raises(InvalidParameterError, match="track_running_stats must be True"):
            PopulationNorm2d(4, track_running_stats=False)
        with pytest.raises(InvalidParameterError, match="warmup_steps must be an int >= 0"):
            PopulationNorm2d(4, warmup_steps=-1)

    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_equals_bn_eval_with_same_running_stats(self, mode):
        m = _pn()
        rm, rv = m.running_mean.clone(), m.running_var.clone()
        m.train(mode == "train")
        x = torch.randn(3, 4, 5, 5) * 2 + 1
        ref = F.batch_norm(x, rm, rv, m.weight, m.bias, training=False, eps=m.eps)
        torch.testing.assert_close(m(x), ref)
        if mode == "train":  # buffers then move towards the batch, exactly like BN's update
            bn = nn.BatchNorm2d(4)
            bn.load_state_dict(
                {
                    "weight": m.weight,
                    "bias": m.bias,
                    "running_mean": rm,
                    "running_var": rv,
                    "num_batches_tracked": torch.tensor(0),
                }
            )
            bn(x)
            torch.testing.assert_close(m.running_mean, bn.running_mean)
            torch.testing.assert_close(m.running_var, bn.running_var)
        else:
            torch.testing.assert_close(m.running_mean, rm)

    def test_no_gradient_through_statistics(self):
        m = _pn()
        x = torch.randn(3, 4, 5, 5, requires_grad=True)
        g = torch.randn(3, 4, 5, 5)
        (m(x) * g).sum().backward()
        assert not m.running_mean.requires_grad and m.running_mean.grad_fn is None
        # gradient is a plain per-channel scale: no batch-statistics terms
        ratio = x.grad / g
        torch.testing.assert_close(ratio.amax((0, 2, 3)), ratio.amin((0, 2, 3)))

    def test_gradient_is_per_channel_scale(self):
        m = _pn()
        scale = (m.weight / torch.sqrt(m.running_var + m.eps)).detach().clone()
        x = torch.randn(3, 4, 2, 2, requires_grad=True)
        m(x).sum().backward()
        torch.testing.assert_close(x.grad, scale.view(1, 4, 1, 1).expand_as(x))

    def test_warmup_behaves_as_bn_then_switches(self):
        m = _pn(warmup_steps=2)
        bn = nn.BatchNorm2d(4)
        bn.load_state_dict(m.state_dict())
        for step in range(3):
            x = torch.randn(4, 4, 3, 3, requires_grad=True) + step
            rm = m.running_mean.clone()
            rv = m.running_var.clone()
            y = m(x)
            y_bn = bn(x)
            if step < 2:
                torch.testing.assert_close(y, y_bn)
                gx = torch.autograd.grad(y.pow(2).sum() + y[:, 0].sum(), x)[0]
                gx_bn = torch.autograd.grad(y_bn.pow(2).sum() + y_bn[:, 0].sum(), x)[0]
                torch.testing.assert_close(gx, gx_bn, atol=1e-5, rtol=1e-4)
            else:
                torch.testing.assert_close(y, F.batch_norm(x, rm, rv, m.weight, m.bias, False, 0.0, m.eps))
            torch.testing.assert_close(m.running_mean, bn.running_mean)

    def test_gradcheck(self):
        for mode in ("train", "eval"):
            m = _pn(c=3).double()
            m.train(mode == "train")
            x = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
            w = m.weight.detach().clone().requires_grad_()
            b = m.bias.detach().clone().requires_grad_()
            bufs = {n: t.clone() for n, t in m.named_buffers()}

            def fn(x, w, b, bufs=bufs, m=m):
                return torch.func.functional_call(
                    m, {"weight": w, "bias": b, **{n: t.clone() for n, t in bufs.items()}}, (x,)
                )

            assert torch.autograd.gradcheck(fn, (x, w, b))


class TestGammaDecay:
    def test_penalty_value_and_gradient(self):
        model = nn.Sequential(nn.Conv2d(3, 4, 1), _pn(4), nn.ReLU(), _pn(4), nn.BatchNorm2d(4))
        gammas = [model[1].weight, model[3].weight]
        p = gamma_decay_penalty(model, 0.5, batch_size=8)
        expected = 0.5 / 8 * sum((g.detach() ** 2).sum() for g in gammas)
        torch.testing.assert_close(p.detach(), expected)
        p.backward()
        for g in gammas:
            torch.testing.assert_close(g.grad, 2 * 0.5 / 8 * g.detach())
        assert model[4].weight.grad is None
        unscaled = gamma_decay_penalty(model, 0.5, batch_size=8, scale_with_batch=False)
        torch.testing.assert_close(unscaled.detach(), expected * 8)
        both = gamma_decay_penalty(model, 1.0, layer_types=(PopulationNorm2d, nn.BatchNorm2d))
        all_gammas = [*gammas, model[4].weight]
        torch.testing.assert_close(both.detach(), sum((g.detach() ** 2).sum() for g in all_gammas))
        assert float(gamma_decay_penalty(nn.Linear(2, 2), 1.0)) == 0.0
        with pytest.raises(InvalidParameterError, match="coeff must be a float >= 0"):
            gamma_decay_penalty(model, -1.0)

    def test_param_groups_exclude_gammas(self):
        model = nn.Sequential(nn.Conv2d(3, 4, 1), _pn(4))
        groups = gamma_decay_param_groups(model, 1e-4, lr=0.1)
        by_name = {g["name"]: g for g in groups}
        assert [id(p) for p in by_name["gamma_decay"]["params"]] == [id(model[1].weight)]
        assert by_name["gamma_decay"]["weight_decay"] == 0.0 and by_name["default"]["weight_decay"] == 1e-4
        assert by_name["default"]["lr"] == 0.1
        torch.optim.SGD(groups)
