"""Regression tests of pickwise issues 8 §2 and 9: converted layers that learn, bounded SSN gradients, official SSN
checkpoints, and overflow-safe EN.

- ``convert_norm_layers(init="bn")`` used a logit gap of 30: the mixture logits got gradients ~1e-14 and never moved,
  and every SSN layer started one-hot and froze on its first training step.
- ``sparsestmax`` at uniform logits divided by a 1e-12 guard: logit gradients of 1e17-1e19.
- Official SSN2d state dicts (no ``mean_frozen``/``var_frozen``) failed strict loading, and non-strict loading gave
  frozen layers the ratios [0, 0, 0].
- ExemplarNorm2d returned NaN for float32 inputs of magnitude >= 1e19, where torch's norms return finite values.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pickwise.nn import (
    ExemplarNorm2d,
    PopulationNorm2d,
    SparseSwitchNorm2d,
    SwitchNorm2d,
    ssn_param_groups,
    switch_parameters,
)
from pickwise.nn.functional import sparsemax, sparsestmax
from pickwise.nn.norm.convert import DEFAULT_BN_LOGIT_GAP, convert_norm_layers

OLD_GAP = 30.0


def _pretrained_like(seed: int = 0) -> nn.Module:
    """Conv-BN-ReLU x2 + head whose BN running statistics come from data (as in a pretrained network)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    for bn in (net[1], net[4]):
        bn.momentum = None  # cumulative average: exact population statistics
    net.train()
    with torch.no_grad():
        for _ in range(20):
            net(torch.randn(16, 3, 8, 8) * 2 + 0.5)
    return net.eval()


def _logit_grads(model: nn.Module) -> list[float]:
    out = []
    for m in model.modules():
        for name in ("mean_weight", "var_weight", "ratio_weight"):
            p = getattr(m, name, None)
            if isinstance(p, nn.Parameter) and p.grad is not None:
                out.append(float(p.grad.abs().max()))
    return out


def _bn_weights(model: nn.Module) -> list[float]:
    return [
        float(m.ratios()["mean"][m.normalizers.index("bn")])
        for m in model.modules()
        if hasattr(m, "normalizers") and hasattr(m, "ratios") and "bn" in getattr(m, "normalizers", ())
    ]


class TestConversionLearns:
    @pytest.mark.parametrize("target", ["sn", "ssn", "en"])
    def test_default_gap_logit_gradients_do_not_vanish(self, target):
        torch.manual_seed(1)
        x, y = torch.randn(4, 3, 8, 8) * 2 + 0.5, torch.randint(0, 4, (4,))
        sizes = {}
        for gap in (OLD_GAP, DEFAULT_BN_LOGIT_GAP):
            model = convert_norm_layers(_pretrained_like(), target, init="bn", bn_logit_gap=gap).train()
            nn.functional.cross_entropy(model(x), y).backward()
            sizes[gap] = max(_logit_grads(model))
        # old default: damped by exp(-30) ~ 1e-13 (softmax) or exactly 0 (SSN one-hot at a sparsemax vertex)
        assert sizes[OLD_GAP] < 1e-9
        # softmax: d L / d logit = w * (g - <w, g>), so the gradients scale with w_other ~ e^-gap: e^22 ~ 4e9 larger
        assert sizes[DEFAULT_BN_LOGIT_GAP] > 1e8 * max(sizes[OLD_GAP], 1e-15)
        assert sizes[DEFAULT_BN_LOGIT_GAP] > 1e-7

    @pytest.mark.parametrize("target", ["sn", "ssn", "en"])
    def test_default_gap_eval_output_close_to_bn(self, target):
        base = _pretrained_like()
        x = torch.randn(8, 3, 8, 8) * 2 + 0.5
        with torch.no_grad():
            z0 = base(x)
            z = convert_norm_layers(_pretrained_like(), target, init="bn")(x)
        # the BN ratio is 1 - (K-1) e^-gap / (1 + (K-1) e^-gap); outputs move by about that much (here <1 %)
        w_other = math.exp(-DEFAULT_BN_LOGIT_GAP)
        assert float((z - z0).norm() / z0.norm()) < 20 * 2 * w_other + 1e-5

    @pytest.mark.parametrize("target", ["sn", "ssn", "en"])
    def test_logits_move_during_fine_tuning(self, target):
        torch.manual_seed(2)
        data = [(torch.randn(2, 3, 8, 8) * 2 + 0.5, torch.randint(0, 4, (2,))) for _ in range(10)]
        moved = {}
        for gap in (OLD_GAP, DEFAULT_BN_LOGIT_GAP):
            model = convert_norm_layers(_pretrained_like(), target, init="bn", bn_logit_gap=gap).train()
            before = [p.detach().clone() for p in switch_parameters(model)]
            opt = torch.optim.SGD(ssn_param_groups(model, lr=0.1, switch_lr_mult=10.0), lr=0.1, momentum=0.9)
            for x, y in data:
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            moved[gap] = max(
                float((p.detach() - b).abs().max()) for p, b in zip(switch_parameters(model), before, strict=True)
            )
        # gap 30: the logits are frozen in practice (SSN: exactly; softmax: ~1e-13 per step)
        assert moved[OLD_GAP] < 1e-9
        assert moved[DEFAULT_BN_LOGIT_GAP] > 1e-6
        assert moved[DEFAULT_BN_LOGIT_GAP] > 1e4 * moved[OLD_GAP]

    def test_ssn_bn_init_is_not_one_hot_and_does_not_freeze(self):
        model = convert_norm_layers(_pretrained_like(), "ssn", init="bn").train()
        layers = [m for m in model.modules() if isinstance(m, SparseSwitchNorm2d)]
        w = layers[0].ratios()["mean"]
        expected_other = math.exp(-DEFAULT_BN_LOGIT_GAP) / (1 + 2 * math.exp(-DEFAULT_BN_LOGIT_GAP))
        torch.testing.assert_close(w, torch.tensor([expected_other, expected_other, 1 - 2 * expected_other]))
        # same starting ratios as SN at the same gap
        sn = convert_norm_layers(_pretrained_like(), "sn", init="bn")
        torch.testing.assert_close(w, sn[1].ratios()["mean"])
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(5):
            opt.zero_grad()
            nn.functional.cross_entropy(model(torch.randn(2, 3, 8, 8)), torch.randint(0, 4, (2,))).backward()
            opt.step()
        assert not any(bool(m.mean_fixed) or bool(m.var_fixed) for m in layers)
        # the old gap started every layer one-hot: frozen after one step
        old = convert_norm_layers(_pretrained_like(), "ssn", init="bn", bn_logit_gap=OLD_GAP).train()
        old(torch.randn(2, 3, 8, 8))
        assert all(bool(m.mean_fixed) for m in old.modules() if isinstance(m, SparseSwitchNorm2d))

    def test_ssn_freezes_under_the_radius_ramp(self):
        model = convert_norm_layers(_pretrained_like(), "ssn", init="bn").train()
        layers = [m for m in model.modules() if isinstance(m, SparseSwitchNorm2d)]
        for m in layers:
            m.set_radius(1.0)
        model(torch.randn(2, 3, 8, 8))
        for m in layers:
            assert bool(m.mean_fixed) and bool(m.var_fixed)
            torch.testing.assert_close(m.ratios()["mean"], torch.tensor([0.0, 0.0, 1.0]))

    def test_uniform_init_still_available(self):
        model = convert_norm_layers(_pretrained_like(), "ssn", init="uniform")
        torch.testing.assert_close(model[1].ratios()["mean"], torch.full((3,), 1 / 3))


class TestSparsestmaxGradientBounded:
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    @pytest.mark.parametrize("radius", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
    def test_uniform_logits_gradient_is_sparsemax_gradient(self, dtype, radius):
        upstream = torch.tensor([1.0, -2.0, 0.5], dtype=dtype)
        v = torch.ones(3, dtype=dtype, requires_grad=True)
        p = sparsestmax(v, radius)
        torch.testing.assert_close(p, torch.full((3,), 1 / 3, dtype=dtype))
        (p * upstream).sum().backward()
        # sparsemax Jacobian with full support: I - 11^T / K (independent reference)
        torch.testing.assert_close(v.grad, upstream - upstream.mean())
        assert float(v.grad.abs().max()) <= float(upstream.abs().max()) * 2

    @pytest.mark.parametrize("radius", [0.0, 0.2, 0.5, 0.8])
    def test_layer_at_default_init_has_bounded_logit_gradients(self, radius):
        torch.manual_seed(0)
        m = SparseSwitchNorm2d(6, radius=radius)
        (m(torch.randn(4, 6, 5, 5)) * torch.randn(4, 6, 5, 5)).sum().backward()
        for g in (m.mean_weight.grad, m.var_weight.grad):
            assert torch.isfinite(g).all()
            assert float(g.abs().max()) < 1e3

    def test_gradient_bounded_near_the_centre(self):
        # just outside the guard the push is active; the gradient grows like rho / distance but stays finite
        for offset in (1e-3, 1e-2, 1e-1):
            v = (torch.tensor([1.0, 1.0, 1.0]) + torch.tensor([offset, 0.0, -offset])).requires_grad_()
            (sparsestmax(v, 0.5) * torch.tensor([1.0, -2.0, 0.5])).sum().backward()
            assert torch.isfinite(v.grad).all() and float(v.grad.abs().max()) < 10 / offset

    def test_gradcheck_away_from_singular_set(self):
        g = torch.Generator().manual_seed(5)
        checked = 0
        for r in (0.2, 0.4, 0.6):
            for _ in range(6):
                v = (torch.randn(3, dtype=torch.float64, generator=g) * 0.2).requires_grad_()
                p_sparse = sparsemax(v.detach())
                support = p_sparse > 0
                centre_dist = float((p_sparse - support.double() / support.sum()).norm())
                # stay away from kinks: support changes, the sphere boundary and the face centroid
                p = sparsestmax(v.detach(), r)
                if centre_dist < 1e-3 or abs(centre_dist - r) < 1e-3 or bool(((p > 0) & (p < 1e-4)).any()):
                    continue
                assert torch.autograd.gradcheck(lambda t, r=r: sparsestmax(t, r), (v,))
                checked += 1
        assert checked >= 8


def _official_ssn_state_dict(c: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """State dict in the layout of switchablenorms/Sparse_SwitchNorm ``utils/sparse_switchable_norm.py::SSN2d``.

    Its buffers: ``running_mean``/``running_var`` (1, C, 1), ``mean_fixed``/``var_fixed`` ``LongTensor([0|1])``
    and ``radius`` (1,); parameters ``weight``/``bias`` (1, C, 1, 1) and ``mean_weight``/``var_weight`` (3,). When a
    selection is fixed, ``forward`` sets ``mean_weight.data`` to the one-hot sparsestmax output.
    """
    g = torch.Generator().manual_seed(seed)
    return {
        "weight": torch.rand(1, c, 1, 1, generator=g) + 0.5,
        "bias": torch.randn(1, c, 1, 1, generator=g),
        "mean_weight": torch.tensor([0.0, 0.0, 1.0]),  # fixed: one-hot BN, as the official layer stores it
        "var_weight": torch.tensor([0.3, -0.2, 0.1]),  # not fixed: logits
        "running_mean": torch.randn(1, c, 1, generator=g),
        "running_var": torch.rand(1, c, 1, generator=g) + 0.5,
        "mean_fixed": torch.LongTensor([1]),
        "var_fixed": torch.LongTensor([0]),
        "radius": torch.tensor([0.4]),
    }


class TestOfficialSSNCheckpoint:
    @pytest.mark.parametrize("strict", [True, False])
    def test_loads_frozen_and_free_selections(self, strict):
        c = 5
        sd = _official_ssn_state_dict(c)
        m = SparseSwitchNorm2d(c)
        result = m.load_state_dict(dict(sd), strict=strict)
        assert not result.missing_keys and not result.unexpected_keys
        assert bool(m.mean_fixed) and not bool(m.var_fixed)
        assert float(m.radius) == pytest.approx(0.4)
        r = m.ratios()
        torch.testing.assert_close(r["mean"], torch.tensor([0.0, 0.0, 1.0]))
        torch.testing.assert_close(r["var"], sparsestmax(sd["var_weight"], 0.4))
        torch.testing.assert_close(m.running_mean, sd["running_mean"].reshape(c))
        torch.testing.assert_close(m.weight.detach(), sd["weight"].reshape(c))

    def test_eval_output_matches_official_formula(self):
        c = 5
        sd = _official_ssn_state_dict(c, seed=3)
        m = SparseSwitchNorm2d(c).eval()
        m.load_state_dict(dict(sd))
        x = torch.randn(3, c, 4, 4, dtype=torch.float64)
        # official SSN2d.forward in eval (float64, biased IN variance as pickwise uses; mean: BN running mean)
        xv = x.view(3, c, -1)
        mu_in, var_in = xv.mean(-1, keepdim=True), xv.var(-1, unbiased=False, keepdim=True)
        mu_ln = mu_in.mean(1, keepdim=True)
        var_ln = (var_in + mu_in**2).mean(1, keepdim=True) - mu_ln**2
        rm, rv = sd["running_mean"].double(), sd["running_var"].double()
        wv = sparsestmax(sd["var_weight"].double(), 0.4)
        var = wv[0] * var_in + wv[1] * var_ln + wv[2] * rv
        ref = ((xv - rm) / (var + 1e-5).sqrt()).view_as(x) * sd["weight"].double() + sd["bias"].double()
        torch.testing.assert_close(m.double()(x), ref)

    def test_unfixed_official_layer_keeps_no_frozen_selection(self):
        sd = _official_ssn_state_dict(4)
        sd["mean_fixed"] = torch.LongTensor([0])
        sd["mean_weight"] = torch.tensor([0.2, 0.1, 0.4])
        m = SparseSwitchNorm2d(4)
        m.load_state_dict(sd)
        assert not bool(m.mean_fixed)
        torch.testing.assert_close(m.mean_frozen, torch.zeros(3))
        torch.testing.assert_close(m.ratios()["mean"], sparsestmax(torch.tensor([0.2, 0.1, 0.4]), 0.4))

    def test_own_state_dict_round_trip_unchanged(self):
        m = SparseSwitchNorm2d(4, radius=1.0)
        with torch.no_grad():
            m.mean_weight.copy_(torch.tensor([0.9, 0.2, -0.1]))
        m(torch.randn(2, 4, 3, 3))
        m2 = SparseSwitchNorm2d(4)
        m2.load_state_dict(m.state_dict())
        torch.testing.assert_close(m2.ratios()["mean"], m.ratios()["mean"])
        torch.testing.assert_close(m2.mean_frozen, m.mean_frozen)


def _torch_norms(c: int) -> dict[str, nn.Module]:
    return {
        "BatchNorm2d": nn.BatchNorm2d(c),
        "InstanceNorm2d": nn.InstanceNorm2d(c, affine=True),
        "GroupNorm(1)": nn.GroupNorm(1, c),
    }


class TestExtremeMagnitudes:
    @pytest.mark.parametrize("magnitude", [1e19, 1e30, 1e-30])
    @pytest.mark.parametrize("mode", ["train", "eval"])
    @pytest.mark.parametrize("cls", [SwitchNorm2d, SparseSwitchNorm2d, ExemplarNorm2d, PopulationNorm2d])
    def test_finite_wherever_torch_batch_and_instance_norm_are(self, magnitude, mode, cls):
        torch.manual_seed(0)
        c = 6
        x = torch.randn(4, c, 5, 5) * magnitude
        torch_finite = {}
        for name, ref in _torch_norms(c).items():
            ref.train(mode == "train")
            torch_finite[name] = bool(torch.isfinite(ref(x)).all())
        assert torch_finite["BatchNorm2d"] and torch_finite["InstanceNorm2d"]  # GroupNorm is NaN at 1e30
        layer = cls(c).train(mode == "train")
        y = layer(x)
        assert torch.isfinite(y).all(), f"{cls.__name__} not finite at {magnitude:g} ({mode})"

    @pytest.mark.parametrize("magnitude", [1e19, 1e30])
    def test_exemplar_overflow_matches_torch_zero_output(self, magnitude):
        # variance overflows to inf: torch's BN/IN return beta; EN (training, batch statistics) must too
        x = torch.randn(4, 6, 5, 5) * magnitude
        en = ExemplarNorm2d(6).train()
        with torch.no_grad():
            en.bias.copy_(torch.arange(6.0))
        torch.testing.assert_close(en(x), torch.arange(6.0).view(1, 6, 1, 1).expand_as(x))

    def test_exemplar_nan_input_still_propagates(self):
        x = torch.randn(2, 4, 3, 3)
        x[0, 1, 1, 1] = float("nan")
        y = ExemplarNorm2d(4).train()(x)
        assert torch.isnan(y[0, 1]).any()


class TestLearnedToLearnedConversion:
    def test_sn_to_ssn_keeps_ratios_not_logits(self):
        sn = convert_norm_layers(_pretrained_like(), "sn", init="bn")
        ratios = sn[1].ratios()
        ssn = convert_norm_layers(sn, "ssn")
        layer = ssn[1]
        assert isinstance(layer, SparseSwitchNorm2d)
        # sparsemax of a point on the simplex is the point: the SN mixture is carried over, not made one-hot
        torch.testing.assert_close(layer.ratios()["mean"], ratios["mean"])
        torch.testing.assert_close(layer.ratios()["var"], ratios["var"])
        layer.train()(torch.randn(2, 8, 4, 4))
        assert not bool(layer.mean_fixed)

    def test_ssn_to_sn_keeps_ratios_with_floor(self):
        ssn = convert_norm_layers(_pretrained_like(), "ssn", init="bn")
        with torch.no_grad():
            ssn[1].mean_weight.copy_(torch.tensor([0.5, 0.0, 0.2]))  # sparsemax: [0.65, 0, 0.35]
        expected = ssn[1].ratios()["mean"]
        sn = convert_norm_layers(ssn, "sn")
        got = sn[1].ratios()["mean"]
        assert torch.isfinite(sn[1].mean_weight).all()
        torch.testing.assert_close(got, expected, atol=2e-3, rtol=0)
