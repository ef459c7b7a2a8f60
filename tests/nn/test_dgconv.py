"""DGConv2d: Kronecker mask structure, groups, STE gradients, gradcheck, complexity, constraint, errors, compile."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pickwise.exceptions import CheckpointError, InvalidParameterError, ShapeError
from pickwise.nn.conv import DGConv2d, ResourceConstraint, complexity, dense_complexity, group_budget, learned_groups
from pickwise.nn.functional.dgconv import (
    dgconv2d,
    dgconv_complexity,
    dgconv_mask,
    factorize_channels,
    group_permutation,
    prime_factors,
    ste_gates,
)


def _set_gates(m: DGConv2d, pattern) -> None:
    with torch.no_grad():
        m.gate.copy_(torch.tensor([1.0 if g else -1.0 for g in pattern]))


def _kron_reference(pattern, factors, r_in=1, r_out=1) -> torch.Tensor:
    """U from torch.kron of explicit I / 1 factors (the paper's definition)."""
    u = torch.ones(1, 1, dtype=torch.float64)
    for g, c in zip(pattern, factors):
        u = torch.kron(u, torch.ones(c, c, dtype=torch.float64) if g else torch.eye(c, dtype=torch.float64))
    return torch.kron(u, torch.ones(r_out, r_in, dtype=torch.float64))


def _digit_reference(pattern, c: int) -> torch.Tensor:
    """U[i, j] = prod over identity factors k of [bit_k(i) == bit_k(j)] (normalization.md §6.2), K bits, MSB first."""
    k = len(pattern)
    u = torch.zeros(c, c, dtype=torch.float64)
    for i in range(c):
        for j in range(c):
            u[i, j] = all(((i >> (k - 1 - b)) & 1) == ((j >> (k - 1 - b)) & 1) for b in range(k) if not pattern[b])
    return u


class TestMaskStructure:
    @pytest.mark.parametrize("pattern", list(itertools.product([0, 1], repeat=3)))
    def test_every_k3_pattern(self, pattern):
        m = DGConv2d(8, 8, 3)
        _set_gates(m, pattern)
        u = m.mask().detach().double()
        torch.testing.assert_close(u, _kron_reference(pattern, (2, 2, 2)), rtol=0, atol=0)
        torch.testing.assert_close(u, _digit_reference(pattern, 8), rtol=0, atol=0)
        g = 2 ** (3 - sum(pattern))
        assert m.groups == g
        assert int(u.count_nonzero()) == 64 // g == 2 ** (3 + sum(pattern))
        assert float(m.complexity().detach()) == 64 / g

    @pytest.mark.parametrize(("k", "trials"), [(5, 6), (6, 6)])
    def test_random_patterns(self, k, trials):
        gen = torch.Generator().manual_seed(k)
        c = 2**k
        m = DGConv2d(c, c, 1)
        assert m.factors == (2,) * k
        for _ in range(trials):
            pattern = torch.randint(0, 2, (k,), generator=gen).tolist()
            _set_gates(m, pattern)
            u = m.mask().detach().double()
            torch.testing.assert_close(u, _kron_reference(pattern, (2,) * k), rtol=0, atol=0)
            g = 2 ** (k - sum(pattern))
            assert m.groups == g
            assert int(u.count_nonzero()) == c * c // g

    @pytest.mark.parametrize(
        ("cin", "cout", "factors", "expected"),
        [
            (12, 12, None, ((2, 2, 3), 1, 1)),
            (16, 32, None, ((2, 2, 2, 2), 1, 2)),
            (24, 12, None, ((2, 2, 3), 2, 1)),
            (8, 8, (4, 2), ((4, 2), 1, 1)),
            (96, 96, None, ((2, 2, 2, 2, 2, 3), 1, 1)),
            (7, 14, None, ((7,), 1, 2)),
        ],
    )
    def test_general_factorization(self, cin, cout, factors, expected):
        m = DGConv2d(cin, cout, 3, factors=factors)
        assert (m.factors, m.r_in, m.r_out) == expected
        fs, r_in, r_out = expected
        for pattern in itertools.product([0, 1], repeat=len(fs)):
            _set_gates(m, pattern)
            u = m.mask().detach().double()
            torch.testing.assert_close(u, _kron_reference(pattern, fs, r_in, r_out), rtol=0, atol=0)
            g = math.prod(c for c, p in zip(fs, pattern) if not p)
            assert m.groups == g
            assert int(u.count_nonzero()) == cin * cout // g
            assert float(m.complexity().detach()) == cin * cout / g

    @pytest.mark.parametrize("pattern", list(itertools.product([0, 1], repeat=3)))
    def test_permutation_makes_block_diagonal(self, pattern):
        u = dgconv_mask(torch.tensor(pattern, dtype=torch.float64), (2, 3, 2))
        perm = group_permutation(pattern, (2, 3, 2))
        g = math.prod(c for c, p in zip((2, 3, 2), pattern) if not p)
        block = torch.ones(12 // g, 12 // g, dtype=torch.float64)
        torch.testing.assert_close(u[perm][:, perm], torch.block_diag(*[block] * g), rtol=0, atol=0)

    def test_prime_factors(self):
        assert prime_factors(1) == []
        assert prime_factors(256) == [2] * 8
        assert prime_factors(90) == [2, 3, 3, 5]

    def test_forward_equals_masked_conv(self):
        m = DGConv2d(8, 16, 3, stride=2, padding=2, dilation=2, bias=True)
        x = torch.randn(2, 8, 9, 9)
        ref = F.conv2d(x, m.weight * m.mask()[:, :, None, None], m.bias, 2, 2, 2)
        torch.testing.assert_close(m(x), ref)

    @pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
    def test_padding_modes_match_conv2d(self, mode):
        m = DGConv2d(4, 4, 3, padding=1, padding_mode=mode)
        ref = nn.Conv2d(4, 4, 3, padding=1, padding_mode=mode, bias=False)
        with torch.no_grad():
            ref.weight.copy_(m.weight * m.mask()[:, :, None, None])
        x = torch.randn(1, 4, 6, 6)
        torch.testing.assert_close(m(x), ref(x))

    def test_padding_same(self):
        m = DGConv2d(4, 4, 3, padding="same", dilation=2)
        assert m(torch.randn(1, 4, 7, 7)).shape == (1, 4, 7, 7)


class TestGates:
    def test_init_never_zero(self):
        torch.manual_seed(1)
        gates = torch.cat([DGConv2d(64, 64, 1).gate.detach() for _ in range(20)])
        assert (gates != 0).all()
        assert torch.allclose(gates.abs(), torch.full_like(gates, 1e-8))
        assert (gates > 0).any() and (gates < 0).any()  # random signs (reference commit bfb0146)

    def test_sign_convention(self):
        m = DGConv2d(4, 4, 1)
        _set_gates(m, (0, 0))
        assert m.groups == 4  # negative logits: identity factors
        torch.testing.assert_close(m.mask(), torch.eye(4))
        _set_gates(m, (1, 1))
        assert m.groups == 1
        with torch.no_grad():
            m.gate.zero_()
        assert m.groups == 4  # exactly 0 is the identity (binary, not the reference's 0.5)

    def test_groups_read_only(self):
        m = DGConv2d(8, 8, 3)
        with pytest.raises(AttributeError):
            m.groups = 2

    def test_ste_forward_is_binary(self):
        logits = torch.tensor([-0.3, 2.0, 1e-8], requires_grad=True)
        g = ste_gates(logits)
        assert g.tolist() == [0.0, 1.0, 1.0]
        g.sum().backward()
        assert logits.grad.tolist() == [1.0, 1.0, 1.0]

    def test_clipped_ste(self):
        logits = torch.tensor([-3.0, 0.5, 2.0], requires_grad=True)
        ste_gates(logits, "clipped").sum().backward()
        assert logits.grad.tolist() == [0.0, 1.0, 0.0]


class TestGradients:
    def test_gradcheck_relaxed(self):
        # the STE's surrogate: the same function with real-valued gates (U is multilinear in them)
        x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
        w = torch.randn(8, 4, 3, 3, dtype=torch.float64, requires_grad=True)
        g = torch.rand(2, dtype=torch.float64, requires_grad=True)
        b = torch.randn(8, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda x, w, g, b: dgconv2d(x, w, g, (2, 2), b, 1, 1, r_in=1, r_out=2), (x, w, g, b), fast_mode=True
        )
        assert torch.autograd.gradcheck(
            lambda g: dgconv_complexity(g, (2, 3), 2, 1), (torch.rand(2, dtype=torch.float64, requires_grad=True),)
        )

    @pytest.mark.parametrize("ste", ["identity", "clipped"])
    def test_ste_gradient_equals_surrogate(self, ste):
        m = DGConv2d(8, 8, 3, padding=1, bias=True, ste=ste, dtype=torch.float64)
        with torch.no_grad():
            m.gate.copy_(torch.tensor([-0.5, 0.7, 3.0], dtype=torch.float64))
        x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
        target = torch.randn(2, 8, 5, 5, dtype=torch.float64)
        ((m(x) - target) ** 2).sum().backward()
        # surrogate: the relaxed function evaluated at the hard gates, differentiated w.r.t. the gate values
        hard = (m.gate.detach() > 0).double().requires_grad_(True)
        w = m.weight.detach().clone().requires_grad_(True)
        ((dgconv2d(x, w, hard, m.factors, m.bias.detach(), 1, 1) - target) ** 2).sum().backward()
        slope = torch.ones(3, dtype=torch.float64) if ste == "identity" else (m.gate.detach().abs() <= 1).double()
        torch.testing.assert_close(m.gate.grad, hard.grad * slope)
        torch.testing.assert_close(m.weight.grad, w.grad)
        assert m.gate.grad.abs().sum() > 0

    def test_gradients_reach_gates_and_weights(self):
        m = DGConv2d(16, 16, 3, padding=1)
        m(torch.randn(2, 16, 4, 4)).square().mean().backward()
        assert m.gate.grad is not None and torch.isfinite(m.gate.grad).all() and m.gate.grad.abs().sum() > 0
        assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0


class TestComplexity:
    def test_model_complexity_and_budget(self):
        model = nn.Sequential(DGConv2d(8, 8, 3), nn.ReLU(), DGConv2d(8, 16, 1))
        _set_gates(model[0], (0, 1, 1))  # G = 2
        _set_gates(model[2], (0, 0, 0))  # G = 8
        zeta = complexity(model)
        assert float(zeta.detach()) == 64 / 2 + 128 / 8
        assert dense_complexity(model) == 64 + 128
        assert group_budget(model, 4) == 48
        assert learned_groups(model) == {"0": 2, "2": 8}
        zeta.backward()
        # d zeta / d g_k for a 2-factor: C * prod_{j != k} (1 + g_j)
        torch.testing.assert_close(model[0].gate.grad, torch.tensor([8.0 * 2 * 2, 8.0 * 1 * 2, 8.0 * 1 * 2]))

    def test_resource_constraint(self):
        rc = ResourceConstraint(100.0, exponent=-0.5)
        loss = torch.tensor(2.0)
        assert float(rc(loss, torch.tensor(50.0))) == 2.0  # inside the budget: a = 0
        torch.testing.assert_close(rc(loss, torch.tensor(400.0)), torch.tensor(2.0 * (100 / 400) ** -0.5))
        zeta = torch.tensor(400.0, requires_grad=True)
        rc(loss, zeta).backward()
        assert zeta.grad > 0  # above the budget the penalty pushes the complexity down
        assert repr(rc) == "ResourceConstraint(target=100, exponent=-0.5)"

    def test_resource_constraint_with_model(self):
        model = nn.Sequential(DGConv2d(8, 8, 1))
        _set_gates(model[0], (1, 1, 1))
        out = ResourceConstraint(16.0)(torch.tensor(1.0), model)
        torch.testing.assert_close(out, torch.tensor((16 / 64) ** -0.02))

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"target": 0}, "target must be a positive"),
            ({"target": 10, "exponent": 0.1}, "exponent must be a number <= 0"),
        ],
    )
    def test_constraint_errors(self, kwargs, match):
        with pytest.raises(InvalidParameterError, match=match):
            ResourceConstraint(**kwargs)

    def test_no_dgconv(self):
        with pytest.raises(InvalidParameterError, match="has no DGConv2d layers"):
            complexity(nn.Conv2d(2, 2, 1))
        with pytest.raises(InvalidParameterError, match="groups must be a positive int"):
            group_budget(nn.Sequential(DGConv2d(4, 4, 1)), 0)


class TestModule:
    def test_repr(self):
        assert repr(DGConv2d(8, 8, 3, padding=1)) == (
            "DGConv2d(8, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False, factors=(2, 2, 2))"
        )
        assert repr(DGConv2d(12, 24, 1, bias=True, ste="clipped")) == (
            "DGConv2d(12, 24, kernel_size=(1, 1), stride=(1, 1), factors=(2, 2, 3), ste='clipped')"
        )

    def test_state_dict_round_trip(self):
        a, b = DGConv2d(8, 8, 3, bias=True), DGConv2d(8, 8, 3, bias=True)
        b.load_state_dict(a.state_dict())
        x = torch.randn(1, 8, 5, 5)
        torch.testing.assert_close(a(x), b(x))
        assert set(a.state_dict()) == {"weight", "bias", "gate"}

    def test_meta_and_dtype(self):
        m = DGConv2d(8, 8, 3, device="meta")
        assert m.weight.is_meta
        assert (
            DGConv2d(8, 8, 3, dtype=torch.float64)(torch.randn(1, 8, 4, 4, dtype=torch.float64)).dtype == torch.float64
        )

    def test_factorize_function(self):
        assert factorize_channels(64, 64) == ((2,) * 6, 1, 1)
        with pytest.raises(ValueError, match="share no factor"):
            factorize_channels(3, 5)

    def test_compile_fullgraph(self):
        m = DGConv2d(8, 8, 3, padding=1)
        compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
        x = torch.randn(2, 8, 5, 5)
        out = compiled(x)
        torch.testing.assert_close(out, m(x))
        out.sum().backward()
        assert m.gate.grad is not None


class TestErrors:
    def test_groups_with_learning(self):
        with pytest.raises(InvalidParameterError, match=r"groups=4 cannot be combined with learned grouping"):
            DGConv2d(8, 8, 3, groups=4)

    def test_unfactorizable_channels(self):
        with pytest.raises(InvalidParameterError, match=r"DGConv2d\(3, 5\): in_channels=3 and out_channels=5 share no"):
            DGConv2d(3, 5, 3)

    def test_factors_do_not_divide(self):
        with pytest.raises(InvalidParameterError, match=r"factors \(4, 4\) \(product 16\) must divide both"):
            DGConv2d(8, 24, 3, factors=(4, 4))
        with pytest.raises(InvalidParameterError, match="factors must be a non-empty sequence of ints >= 2"):
            DGConv2d(8, 8, 3, factors=(1, 8))

    def test_layer_name_in_errors(self):
        with pytest.raises(InvalidParameterError, match="DGConv2d 'layer1.0.conv2'"):
            DGConv2d(6, 5, 3, name="layer1.0.conv2")

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"ste": "gumbel"}, "ste must be one of"),
            ({"padding_mode": "mirror"}, "padding_mode must be one of"),
            ({"gate_init": 0.0}, "gate_init must be a positive float"),
            ({"padding": "full"}, "padding must be an int, a pair, 'same' or 'valid'"),
            ({"padding": "same", "stride": 2}, "padding='same' is not supported for strided"),
        ],
    )
    def test_bad_options(self, kwargs, match):
        with pytest.raises(InvalidParameterError, match=match):
            DGConv2d(8, 8, 3, **kwargs)

    @pytest.mark.parametrize(("name", "value"), [("in_channels", 0), ("out_channels", 2.0)])
    def test_bad_channels(self, name, value):
        args = {"in_channels": 8, "out_channels": 8, name: value}
        with pytest.raises(InvalidParameterError, match=f"{name} must be a positive int"):
            DGConv2d(args["in_channels"], args["out_channels"], 3)

    def test_checkpoint_gate_mismatch(self):
        saved = nn.Sequential(nn.Identity(), DGConv2d(8, 8, 3, factors=(4, 2))).state_dict()
        model = nn.Sequential(nn.Identity(), DGConv2d(8, 8, 3))
        with pytest.raises(CheckpointError, match=r"DGConv2d '1'.*'1.gate' has 2 gate\(s\).*this layer has 3"):
            model.load_state_dict(saved)

    def test_bad_input_rank(self):
        with pytest.raises(ShapeError, match=r"input must be 4D \(N, C, H, W\); got 3D input of shape \(8, 4, 4\)"):
            DGConv2d(8, 8, 3)(torch.randn(8, 4, 4))
