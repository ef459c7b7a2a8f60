"""Tests for sparsemax/sparsestmax, SparseSwitchNorm2d, its radius schedule and optimizer helpers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from pickwise.exceptions import InvalidParameterError
from pickwise.nn import (
    SparsestmaxRadiusScheduler,
    SparseSwitchNorm2d,
    SwitchNorm2d,
    clip_switch_grad_norm_,
    create_norm_layer,
    ssn_param_groups,
)
from pickwise.nn.functional import sparsemax, sparsestmax, switch_norm_from_ratios


def naive_sparsemax(v):
    """Projection onto the simplex by brute force over supports (float64)."""
    k = len(v)
    best, best_d = None, math.inf
    for size in range(1, k + 1):
        for supp in itertools.combinations(range(k), size):
            idx = list(supp)
            tau = (v[idx].sum() - 1) / size
            p = torch.zeros_like(v)
            p[idx] = v[idx] - tau
            if (p[idx] >= 0).all():
                d = float(((p - v) ** 2).sum())
                if d < best_d:
                    best, best_d = p, d
    return best


def official_k3(v, rad):
    """The official (commit 04a16f) regulated_sparsemax for K=3, re-typed from its formulas."""
    w = naive_sparsemax(v)
    u = torch.full((3,), 1 / 3, dtype=v.dtype)
    dist = float(((w - u) ** 2).sum().sqrt())
    if dist >= rad:
        return w
    p = rad * (w - u) / (dist + 1e-12) + u
    order = torch.argsort(v, descending=True)
    if p[order[2]] < 0:
        s = math.sqrt(2) * rad * math.sin(math.acos(1 / (math.sqrt(6) * rad)))
        p = torch.zeros(3, dtype=v.dtype)
        p[order[0]] = (1 + s) / 2
        p[order[1]] = (1 - s) / 2
    return p.clamp(0, 1)


class TestSparsemax:
    def test_matches_brute_force_and_is_on_simplex(self):
        g = torch.Generator().manual_seed(0)
        for k in (2, 3, 4, 5):
            for _ in range(20):
                v = torch.randn(k, dtype=torch.float64, generator=g) * 2
                p = sparsemax(v)
                torch.testing.assert_close(p, naive_sparsemax(v))
                assert (p >= 0).all() and abs(float(p.sum()) - 1) < 1e-12

    def test_batched_dim(self):
        v = torch.randn(4, 3, 5, dtype=torch.float64)
        p = sparsemax(v, dim=1)
        for i in range(4):
            for j in range(5):
                torch.testing.assert_close(p[i, :, j], naive_sparsemax(v[i, :, j]))


class TestSparsestmax:
    def test_r0_is_sparsemax(self):
        v = torch.randn(10, 3, dtype=torch.float64)
        torch.testing.assert_close(sparsestmax(v, 0.0), sparsemax(v))

    @pytest.mark.parametrize("k", [2, 3, 4])
    def test_large_radius_is_one_hot_argmax(self, k):
        v = torch.randn(16, k, dtype=torch.float64)
        p = sparsestmax(v, math.sqrt((k - 1) / k) + 1e-6)
        torch.testing.assert_close(p, torch.nn.functional.one_hot(v.argmax(-1), k).double())

    def test_on_simplex_and_outside_sphere(self):
        g = torch.Generator().manual_seed(3)
        for r in (0.1, 0.3, 0.5, 0.7):
            v = torch.randn(50, 3, dtype=torch.float64, generator=g) * 0.3
            p = sparsestmax(v, r)
            assert (p >= 0).all()
            torch.testing.assert_close(p.sum(-1), torch.ones(50, dtype=torch.float64))
            assert ((p - 1 / 3).norm(dim=-1) >= r - 1e-9).all()

    def test_matches_official_k3(self):
        g = torch.Generator().manual_seed(4)
        for r in (0.0, 0.2, 0.45, 0.6, 0.75, 0.9):
            for _ in range(20):
                v = torch.randn(3, dtype=torch.float64, generator=g) * 0.4
                torch.testing.assert_close(sparsestmax(v, r), official_k3(v, r), atol=1e-7, rtol=1e-7)

    def test_gradcheck(self):
        v = torch.tensor([0.3, 0.2, -0.1], dtype=torch.float64, requires_grad=True)
        for r in (0.0, 0.3, 0.6):
            assert torch.autograd.gradcheck(lambda t, r=r: sparsestmax(t, r), (v,))


class TestSparseSwitchNorm2d:
    def test_smoke(self):
        m = SparseSwitchNorm2d(4)
        assert m.normalizers == ("in", "ln", "bn")
        assert isinstance(m, SwitchNorm2d)
        y = m(torch.randn(2, 4, 3, 3))
        assert y.shape == (2, 4, 3, 3)
        assert set(m.ratios()) == {"mean", "var"}
        assert {"radius", "mean_fixed", "var_fixed", "mean_frozen", "var_frozen"} <= set(m.state_dict())
        with pytest.raises(InvalidParameterError, match="radius must be a float >= 0"):
            m.set_radius(-1.0)

    def test_ratios_are_sparsestmax(self):
        m = SparseSwitchNorm2d(4, radius=0.5)
        with torch.no_grad():
            m.mean_weight.copy_(torch.tensor([0.3, 0.2, -0.1]))
        torch.testing.assert_close(m.ratios()["mean"], sparsestmax(m.mean_weight.detach(), 0.5))

    def test_freezes_one_hot_and_stays_frozen(self):
        m = SparseSwitchNorm2d(4)
        opt = torch.optim.SGD(ssn_param_groups(m, lr=1.0), lr=1.0)
        with torch.no_grad():
            m.mean_weight.copy_(torch.tensor([0.9, 0.2, -0.1]))
            m.var_weight.copy_(torch.tensor([0.2, 0.3, 0.25]))
        m.set_radius(1.0)
        m(torch.randn(4, 4, 3, 3))
        assert bool(m.mean_fixed) and bool(m.var_fixed)
        frozen = m.ratios()
        torch.testing.assert_close(frozen["mean"], torch.tensor([1.0, 0.0, 0.0]))
        torch.testing.assert_close(frozen["var"], torch.tensor([0.0, 1.0, 0.0]))
        m.set_radius(0.0)  # would un-sparsify a non-frozen layer
        for _ in range(3):
            opt.zero_grad()
            (m(torch.randn(4, 4, 3, 3)) * torch.randn(4, 4, 3, 3)).sum().backward()
            torch.testing.assert_close(m.mean_weight.grad, torch.zeros(3))
            opt.step()
        torch.testing.assert_close(m.ratios()["mean"], frozen["mean"])
        torch.testing.assert_close(m.ratios()["var"], frozen["var"])
        # one-hot layer equals plain IN for the mean; state survives a round trip
        m2 = SparseSwitchNorm2d(4)
        m2.load_state_dict(m.state_dict())
        torch.testing.assert_close(m2.ratios()["var"], frozen["var"])

    def test_not_frozen_in_eval(self):
        m = SparseSwitchNorm2d(4, radius=1.0)
        with torch.no_grad():
            m.mean_weight.copy_(torch.tensor([0.9, 0.2, -0.1]))
        m.eval()
        m(torch.randn(2, 4, 3, 3))
        assert not bool(m.mean_fixed)

    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_gradcheck_functional(self, mode):
        g = torch.Generator().manual_seed(2)
        x = torch.randn(2, 3, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
        lm = torch.tensor([0.3, 0.2, -0.1], dtype=torch.float64, requires_grad=True)
        lv = torch.tensor([0.1, 0.5, 0.2], dtype=torch.float64, requires_grad=True)
        w = torch.rand(3, dtype=torch.float64, generator=g).add(0.5).requires_grad_()
        b = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)
        rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)

        def fn(x, w, b, lm, lv):
            return switch_norm_from_ratios(
                x, rm.clone(), rv.clone(), w, b, sparsestmax(lm, 0.3), sparsestmax(lv, 0.3), mode == "train", eps=1e-3
            )

        assert torch.autograd.gradcheck(fn, (x, w, b, lm, lv))

    def test_compile_fullgraph_no_host_sync(self):
        m = SparseSwitchNorm2d(4, radius=0.2)
        with torch.no_grad():
            m.mean_weight.copy_(torch.tensor([0.9, 0.2, -0.1]))
        compiled = torch.compile(m, fullgraph=True, backend="eager")
        x = torch.randn(3, 4, 3, 3)
        compiled(x).sum().backward()
        m.set_radius(1.0)  # buffer change: no recompilation needed, freezing happens inside the graph
        compiled(x)
        assert bool(m.mean_fixed)


class TestSchedulerAndGroups:
    def test_scheduler_linear_ramp(self):
        model = nn.Sequential(SparseSwitchNorm2d(2), nn.Sequential(SparseSwitchNorm2d(3)), SwitchNorm2d(2))
        sched = SparsestmaxRadiusScheduler(model, total_steps=4)
        assert float(model[0].radius) == 0.0
        radii = [sched.step() for _ in range(6)]
        assert radii == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
        assert float(model[1][0].radius) == 1.0
        state = sched.state_dict()
        sched2 = SparsestmaxRadiusScheduler(model, total_steps=10)
        sched2.load_state_dict(state)
        assert sched2.radius() == 1.0
        with pytest.raises(InvalidParameterError, match="total_steps must be a positive int"):
            SparsestmaxRadiusScheduler(model, total_steps=0)

    def test_param_groups_and_clip(self):
        model = nn.Sequential(nn.Conv2d(2, 4, 3), SparseSwitchNorm2d(4), create_norm_layer("en", 4))
        groups = ssn_param_groups(model, lr=0.1, weight_decay=1e-4)
        by_name = {g["name"]: g for g in groups}
        assert by_name["switch"]["lr"] == pytest.approx(0.01) and by_name["switch"]["weight_decay"] == 0.0
        switch_ids = {id(p) for p in by_name["switch"]["params"]}
        assert switch_ids == {id(model[1].mean_weight), id(model[1].var_weight), id(model[2].ratio_weight)}
        assert len(by_name["switch"]["params"]) + len(by_name["default"]["params"]) == len(list(model.parameters()))
        torch.optim.SGD(groups, lr=0.1)
        for p in by_name["switch"]["params"]:
            p.grad = torch.full_like(p, 10.0)
        total = clip_switch_grad_norm_(model, 1.0)
        assert float(total) > 1
        norm = torch.cat([p.grad.flatten() for p in by_name["switch"]["params"]]).norm()
        assert float(norm) == pytest.approx(1.0, rel=1e-4)
