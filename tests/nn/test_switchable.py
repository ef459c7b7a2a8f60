"""Tests for SwitchNorm1d/2d/3d and the functional switch_norm."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pickwise.exceptions import InvalidParameterError, ShapeError
from pickwise.nn import SwitchNorm1d, SwitchNorm2d, SwitchNorm3d
from pickwise.nn.functional import switch_norm

ONE_HOT = {"in": [10.0, -10.0, -10.0], "ln": [-10.0, 10.0, -10.0], "bn": [-10.0, -10.0, 10.0]}


def naive_switch_norm(x, w_mean, w_var, gamma, beta, eps, running=None):
    """SN straight from the paper, float64, explicit means over explicit index sets (biased variances)."""
    x = x.double()
    n_, c_ = x.shape[:2]
    flat = x.reshape(n_, c_, -1)
    mu_in = torch.empty(n_, c_, dtype=torch.float64)
    var_in = torch.empty(n_, c_, dtype=torch.float64)
    mu_ln = torch.empty(n_, dtype=torch.float64)
    var_ln = torch.empty(n_, dtype=torch.float64)
    mu_bn = torch.empty(c_, dtype=torch.float64)
    var_bn = torch.empty(c_, dtype=torch.float64)
    for n in range(n_):
        for c in range(c_):
            mu_in[n, c] = flat[n, c].mean()
            var_in[n, c] = ((flat[n, c] - mu_in[n, c]) ** 2).mean()
        mu_ln[n] = flat[n].mean()
        var_ln[n] = ((flat[n] - mu_ln[n]) ** 2).mean()
    for c in range(c_):
        mu_bn[c] = flat[:, c].mean()
        var_bn[c] = ((flat[:, c] - mu_bn[c]) ** 2).mean()
    if running is not None:
        mu_bn, var_bn = running[0].double(), running[1].double()
    out = torch.empty_like(flat)
    for n in range(n_):
        for c in range(c_):
            mu = w_mean[0] * mu_in[n, c] + w_mean[1] * mu_ln[n] + w_mean[2] * mu_bn[c]
            var = w_var[0] * var_in[n, c] + w_var[1] * var_ln[n] + w_var[2] * var_bn[c]
            out[n, c] = gamma[c] * (flat[n, c] - mu) / torch.sqrt(var + eps) + beta[c]
    return out.reshape(x.shape)


def _layer(c=6, which=None, **kw):
    m = SwitchNorm2d(c, **kw)
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
        if which is not None:
            m.mean_weight.copy_(torch.tensor(ONE_HOT[which]))
            m.var_weight.copy_(torch.tensor(ONE_HOT[which]))
    return m


def _trained(m, c=6):
    """Run two training steps on other data so the running statistics are non-trivial."""
    m.train()
    for _ in range(2):
        m(torch.randn(5, c, 4, 3) * 2 + 1)
    return m


class TestSwitchNorm2d:
    def test_smoke_and_repr(self):
        m = SwitchNorm2d(8)
        assert repr(m) == (
            "SwitchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True, "
            "normalizers=('in', 'ln', 'bn'))"
        )
        assert m.normalizers == ("in", "ln", "bn")
        assert m.weight.shape == m.bias.shape == m.running_mean.shape == m.running_var.shape == (8,)
        assert m.mean_weight.shape == m.var_weight.shape == (3,)
        r = m.ratios()
        assert set(r) == {"mean", "var"}
        torch.testing.assert_close(r["mean"], torch.full((3,), 1 / 3))
        assert not r["mean"].requires_grad
        y = m(torch.randn(2, 8, 3, 3))
        assert y.shape == (2, 8, 3, 3)
        m2 = SwitchNorm2d(4, using_bn=False, momentum=None, affine=False)
        assert repr(m2) == (
            "SwitchNorm2d(4, eps=1e-05, momentum=None, affine=False, track_running_stats=True, "
            "normalizers=('in', 'ln'))"
        )
        assert m2.running_mean is None and m2.mean_weight.shape == (2,)

    @pytest.mark.parametrize("mode", ["train", "eval"])
    @pytest.mark.parametrize("which", ["in", "ln", "bn"])
    def test_one_hot_equals_torch(self, which, mode):
        x = torch.randn(4, 6, 5, 3) * 3 + 2
        m = _trained(_layer(which=which))
        rm, rv = m.running_mean.clone(), m.running_var.clone()
        m.train(mode == "train")
        y = m(x)
        if which == "bn":
            ref = F.batch_norm(x, rm.clone(), rv.clone(), m.weight, m.bias, training=mode == "train", eps=m.eps)
        elif which == "in":
            ref = F.instance_norm(x, weight=m.weight, bias=m.bias, eps=m.eps)
        else:
            ref = F.group_norm(x, 1, m.weight, m.bias, eps=m.eps)
        torch.testing.assert_close(y, ref, atol=2e-4, rtol=1e-4)

    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_uniform_equals_naive_float64(self, mode):
        x = torch.randn(3, 4, 5, 2, dtype=torch.float64) * 2 - 1
        m = _trained(_layer(c=4).double(), c=4)
        running = (m.running_mean.clone(), m.running_var.clone()) if mode == "eval" else None
        m.train(mode == "train")
        y = m(x)
        w = torch.full((3,), 1 / 3, dtype=torch.float64)
        ref = naive_switch_norm(x, w, w, m.weight.detach(), m.bias.detach(), m.eps, running)
        torch.testing.assert_close(y, ref, atol=1e-10, rtol=1e-10)

    def test_non_uniform_separate_mean_var_weights(self):
        x = torch.randn(3, 4, 3, 3, dtype=torch.float64)
        m = _layer(c=4).double()
        with torch.no_grad():
            m.mean_weight.copy_(torch.tensor([0.3, -1.0, 2.0]))
            m.var_weight.copy_(torch.tensor([1.5, 0.2, -0.7]))
        y = m(x)
        ref = naive_switch_norm(
            x,
            torch.softmax(m.mean_weight, 0),
            torch.softmax(m.var_weight, 0),
            m.weight.detach(),
            m.bias.detach(),
            m.eps,
        )
        torch.testing.assert_close(y, ref.detach(), atol=1e-10, rtol=1e-10)

    def test_running_stats_update_by_hand(self):
        x = torch.randn(4, 3, 5, 5) * 2 + 3
        m = SwitchNorm2d(3, momentum=0.2)
        m(x)
        n = 4 * 25
        mean = x.double().mean((0, 2, 3))
        var_unbiased = x.double().var((0, 2, 3), correction=0) * n / (n - 1)
        torch.testing.assert_close(m.running_mean, (0.8 * 0 + 0.2 * mean).float(), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(m.running_var, (0.8 * 1 + 0.2 * var_unbiased).float(), atol=1e-6, rtol=1e-6)
        assert int(m.num_batches_tracked) == 1
        bn = nn.BatchNorm2d(3, momentum=0.2)
        bn(x)
        m(x)
        bn(x)
        torch.testing.assert_close(m.running_mean, bn.running_mean)
        torch.testing.assert_close(m.running_var, bn.running_var)

    def test_cumulative_average_momentum_none(self):
        m = SwitchNorm2d(3, momentum=None)
        bn = nn.BatchNorm2d(3, momentum=None)
        for _ in range(3):
            x = torch.randn(4, 3, 2, 2) + torch.randn(1)
            m(x)
            bn(x)
        torch.testing.assert_close(m.running_mean, bn.running_mean)
        torch.testing.assert_close(m.running_var, bn.running_var)

    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_gradcheck_functional(self, mode):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(2, 3, 3, 2, dtype=torch.float64, generator=g, requires_grad=True)
        w = (torch.rand(3, dtype=torch.float64, generator=g) + 0.5).requires_grad_()
        b = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)
        lm = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)
        lv = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)
        rm = torch.randn(3, dtype=torch.float64, generator=g)
        rv = torch.rand(3, dtype=torch.float64, generator=g) + 0.5

        def fn(x, w, b, lm, lv):
            return switch_norm(x, rm.clone(), rv.clone(), w, b, lm, lv, training=mode == "train", eps=1e-3)

        assert torch.autograd.gradcheck(fn, (x, w, b, lm, lv))

    def test_batch_one_warns_once_and_is_finite(self):
        m = SwitchNorm2d(4)
        x = torch.randn(1, 4, 3, 3)
        with pytest.warns(UserWarning, match="using_bn=False"):
            y = m(x)
        assert torch.isfinite(y).all()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            m(x)
            SwitchNorm2d(4, using_bn=False)(x)
            m.eval()
            m(x)

    @pytest.mark.parametrize("shape", [(1, 4, 1, 1), (3, 4, 1, 1), (1, 4, 3, 3)])
    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_degenerate_shapes_no_nan(self, shape, mode):
        m = SwitchNorm2d(4)
        m.train(mode == "train")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = m(torch.randn(*shape))
        assert torch.isfinite(y).all()
        assert torch.isfinite(m.running_var).all() and torch.isfinite(m.running_mean).all()

    def test_channels_last_preserved(self):
        x = torch.randn(3, 5, 4, 4).to(memory_format=torch.channels_last)
        m = _layer(c=5)
        y = m(x)
        assert y.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(y, _layer(c=5).load_state_dict(m.state_dict()) and m(x.contiguous()))

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_low_precision_large_mean(self, dtype, mode):
        x32 = torch.randn(4, 6, 8, 8) + 1e3
        x = x32.to(dtype)
        m = _trained(_layer(), c=6)
        with torch.no_grad():
            m.running_mean.fill_(1e3)
        m.train(mode == "train")
        state = {k: v.clone() for k, v in m.state_dict().items()}
        y = m(x)
        m.load_state_dict(state)
        ref = m(x.float())  # same quantized input, fp32 everywhere
        assert y.dtype == dtype and torch.isfinite(y).all()
        tol = 2e-2 if dtype == torch.float16 else 6e-2
        torch.testing.assert_close(y.float(), ref, atol=tol, rtol=tol)

    def test_autocast_cpu_bf16(self):
        m = _layer()
        x = (torch.randn(2, 6, 4, 4) + 100).to(torch.bfloat16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
        assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()

    def test_errors(self):
        m = SwitchNorm2d(4)
        with pytest.raises(ShapeError, match=r"input must be 4D \(N, C, H, W\); got 3D"):
            m(torch.randn(2, 4, 3))
        with pytest.raises(ValueError, match="num_features=4 channels in dim 1; got 5"):
            m(torch.randn(2, 5, 3, 3))
        with pytest.raises(InvalidParameterError, match="unknown normalizer 'bm'"):
            SwitchNorm2d(4, normalizers=("in", "bm"))
        with pytest.raises(InvalidParameterError, match="listed twice"):
            SwitchNorm2d(4, normalizers=("in", "in"))
        with pytest.raises(InvalidParameterError, match="G dividing num_features=4"):
            SwitchNorm2d(4, normalizers=("in", "gn:3"))
        with pytest.raises(InvalidParameterError, match=r"momentum=0.1 \(0.003\)"):
            SwitchNorm2d(4, momentum=0.9 + 1)
        with pytest.raises(InvalidParameterError, match="num_features must be a positive int"):
            SwitchNorm2d(0)
        with pytest.raises(InvalidParameterError, match="leaves no normalizer"):
            SwitchNorm2d(4, normalizers=("bn",), using_bn=False)

    def test_nan_input_propagates_but_running_stats_survive(self):
        m = SwitchNorm2d(3)
        x = torch.randn(4, 3, 2, 2)
        x[0, 0, 0, 0] = float("nan")
        y = m(x)
        assert torch.isnan(y[:, 0]).all()  # BN branch of channel 0 is NaN for every sample
        assert torch.isnan(y[0]).all()  # LN branch of sample 0
        assert torch.isfinite(y[1:, 1:]).all()
        assert torch.isfinite(m.running_mean).all() and torch.isfinite(m.running_var).all()
        assert m.running_mean[0] == 0 and m.running_var[0] == 1  # skipped channel
        assert m.running_mean[1] != 0

    def test_load_official_checkpoint(self):
        c = 5
        official = {
            "weight": torch.rand(1, c, 1, 1),
            "bias": torch.rand(1, c, 1, 1),
            "mean_weight": torch.tensor([-0.51, 0.32, 0.19]),
            "var_weight": torch.tensor([-0.18, -1.71, 1.90]),
            "running_mean": torch.rand(1, c, 1),
            "running_var": torch.rand(1, c, 1),
        }
        m = SwitchNorm2d(c)
        m.load_state_dict(official)
        torch.testing.assert_close(m.weight.detach(), official["weight"].reshape(c))
        torch.testing.assert_close(m.running_var, official["running_var"].reshape(c))
        assert int(m.num_batches_tracked) == 0
        torch.testing.assert_close(m.ratios()["var"], torch.softmax(official["var_weight"], 0))
        with pytest.raises(RuntimeError, match="size mismatch"):
            m.load_state_dict({**official, "weight": torch.rand(1, c + 1, 1, 1)})

    def test_state_dict_round_trip_and_bn_checkpoint(self):
        m = _trained(_layer())
        m2 = SwitchNorm2d(6)
        m2.load_state_dict(m.state_dict())
        m.eval()
        m2.eval()
        x = torch.randn(2, 6, 3, 3)
        torch.testing.assert_close(m(x), m2(x))
        bn = nn.BatchNorm2d(6)
        missing = m2.load_state_dict(bn.state_dict(), strict=False)
        assert set(missing.missing_keys) == {"mean_weight", "var_weight"}

    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_no_affine_no_running_stats_uses_batch_stats(self, mode):
        m = SwitchNorm2d(4, affine=False, track_running_stats=False).double()
        assert m.weight is None and m.running_mean is None and m.num_batches_tracked is None
        m.train(mode == "train")
        x = torch.randn(3, 4, 3, 2, dtype=torch.float64)
        w = torch.full((3,), 1 / 3, dtype=torch.float64)
        ref = naive_switch_norm(x, w, w, torch.ones(4), torch.zeros(4), m.eps)
        torch.testing.assert_close(m(x), ref)

    def test_pickle_and_deepcopy(self, tmp_path):
        import copy

        from pickwise.nn import SyncSwitchNorm2d

        for m in (_trained(_layer()), SyncSwitchNorm2d(6)):
            m2 = copy.deepcopy(m)
            torch.save(m, tmp_path / "m.pt")
            m3 = torch.load(tmp_path / "m.pt", weights_only=False)
            x = torch.randn(2, 6, 3, 3)
            m.eval(), m2.eval(), m3.eval()
            torch.testing.assert_close(m2(x), m(x))
            torch.testing.assert_close(m3(x), m(x))
            assert type(m3) is type(m)

    def test_meta_device_and_reset(self):
        m = SwitchNorm2d(4, device="meta")
        assert m.weight.is_meta and m.running_var.is_meta
        m = m.to_empty(device="cpu")
        m.reset_parameters()
        torch.testing.assert_close(m.running_var, torch.ones(4))
        torch.testing.assert_close(m.mean_weight.detach(), torch.ones(3))
        m(torch.randn(2, 4, 2, 2))
        m.reset_running_stats()
        assert int(m.num_batches_tracked) == 0 and m.running_mean.abs().sum() == 0

    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_gn_option_one_hot(self, mode):
        m = SwitchNorm2d(8, normalizers=("in", "gn:4", "bn"))
        with torch.no_grad():
            m.mean_weight.copy_(torch.tensor([-20.0, 20.0, -20.0]))
            m.var_weight.copy_(torch.tensor([-20.0, 20.0, -20.0]))
        m.train(mode == "train")
        x = torch.randn(3, 8, 4, 4) * 2 + 1
        torch.testing.assert_close(m(x), F.group_norm(x, 4, m.weight, m.bias), atol=1e-5, rtol=1e-5)


class TestSwitchNorm1dAnd3d:
    def test_1d_inputs_and_tokens(self):
        m = SwitchNorm1d(6)
        x = torch.randn(4, 6, 7)
        tok = SwitchNorm1d(6, channel_last=True)
        tok.load_state_dict(m.state_dict())
        y = m(x)
        torch.testing.assert_close(tok(x.transpose(1, 2)), y.transpose(1, 2))
        torch.testing.assert_close(tok.running_mean, m.running_mean)
        assert m(torch.randn(4, 6)).shape == (4, 6)
        with pytest.raises(ShapeError, match="input must be 2D or 3D"):
            m(torch.randn(2, 6, 3, 3))
        with pytest.raises(ShapeError, match="channels in dim last; got 7"):
            tok(torch.randn(2, 6, 7))

    def test_1d_ln_bn_on_features_matches_naive(self):
        m = SwitchNorm1d(5, normalizers=("ln", "bn")).double()
        x = torch.randn(6, 5, dtype=torch.float64)
        y = m(x)
        mu_ln, var_ln = x.mean(1, keepdim=True), x.var(1, keepdim=True, correction=0)
        mu_bn, var_bn = x.mean(0), x.var(0, correction=0)
        ref = (x - 0.5 * mu_ln - 0.5 * mu_bn) / torch.sqrt(0.5 * var_ln + 0.5 * var_bn + m.eps)
        torch.testing.assert_close(y, ref.detach())

    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_3d_uniform_equals_naive(self, mode):
        m = SwitchNorm3d(3).double()
        _x0 = torch.randn(4, 3, 2, 3, 2, dtype=torch.float64)
        m(_x0)
        running = (m.running_mean.clone(), m.running_var.clone()) if mode == "eval" else None
        m.train(mode == "train")
        x = torch.randn(2, 3, 2, 2, 3, dtype=torch.float64)
        w = torch.full((3,), 1 / 3, dtype=torch.float64)
        ref = naive_switch_norm(x, w, w, torch.ones(3), torch.zeros(3), m.eps, running)
        torch.testing.assert_close(m(x), ref)
        with pytest.raises(ShapeError, match="input must be 5D"):
            m(torch.randn(2, 3, 4, 4))


class TestCompile:
    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_compile_fullgraph(self, mode):
        """No graph breaks (fullgraph) and AOT autograd tracing of forward, backward and buffer updates."""
        m = _layer(c=4)
        ref = _layer(c=4)
        ref.load_state_dict(m.state_dict())
        m.train(mode == "train")
        ref.train(mode == "train")
        compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
        x = torch.randn(3, 4, 5, 5, requires_grad=True)
        y = compiled(x)
        (gx,) = torch.autograd.grad(y.square().sum(), x)
        y_ref = ref(x)
        (gx_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
        torch.testing.assert_close(y, y_ref)
        torch.testing.assert_close(gx, gx_ref)
        torch.testing.assert_close(m.running_mean, ref.running_mean)
        torch.testing.assert_close(m.num_batches_tracked, ref.num_batches_tracked)

    @pytest.mark.slow
    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_compile_inductor(self, mode):
        m = _layer(c=4)
        ref = _layer(c=4)
        ref.load_state_dict(m.state_dict())
        m.train(mode == "train")
        ref.train(mode == "train")
        x = torch.randn(3, 4, 5, 5, requires_grad=True)
        y = torch.compile(m, fullgraph=True)(x)
        torch.testing.assert_close(y, ref(x))
        torch.testing.assert_close(m.running_var, ref.running_var)


class TestFusedPath:
    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_fused_equals_plain(self, mode):
        g = torch.Generator().manual_seed(5)
        args = [torch.randn(4, 3, 5, 4, generator=g, requires_grad=True)]
        w = torch.rand(3, generator=g).add(0.5).requires_grad_()
        b = torch.randn(3, generator=g, requires_grad=True)
        lm = torch.randn(3, generator=g, requires_grad=True)
        lv = torch.randn(3, generator=g, requires_grad=True)
        gy = torch.randn(4, 3, 5, 4, generator=g)
        outs = []
        for fused in (True, False):
            rm, rv = torch.zeros(3), torch.ones(3)
            y = switch_norm(args[0], rm, rv, w, b, lm, lv, training=mode == "train", fused=fused)
            grads = torch.autograd.grad((y * gy).sum(), (args[0], w, b, lm, lv))
            outs.append((y, grads, rm, rv))
        torch.testing.assert_close(outs[0][0], outs[1][0])
        for a, c in zip(outs[0][1], outs[1][1]):
            torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(outs[0][2], outs[1][2])
        torch.testing.assert_close(outs[0][3], outs[1][3])

    def test_plain_path_gradcheck_and_gradgradcheck(self):
        g = torch.Generator().manual_seed(6)
        x = torch.randn(2, 3, 2, 2, dtype=torch.float64, generator=g, requires_grad=True)
        lm = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)
        w = torch.rand(3, dtype=torch.float64, generator=g).add(0.5).requires_grad_()

        def fn(x, w, lm):
            return switch_norm(x, None, None, w, None, lm, lm * 0.5, training=True, eps=1e-3, fused=False)

        assert torch.autograd.gradcheck(fn, (x, w, lm))
        assert torch.autograd.gradgradcheck(fn, (x, w, lm))

    def test_fused_memory_format_and_no_grad(self):
        m = _layer(c=5)
        x = torch.randn(2, 5, 3, 3).to(memory_format=torch.channels_last)
        with torch.no_grad():
            y = m(x)
        assert y.is_contiguous(memory_format=torch.channels_last) and y.grad_fn is None
