"""Scratch buffers of the MCU loss: reused across steps, never shared while a graph can still read them."""

from __future__ import annotations

import copy
import pickle

import torch

from pickwise.tasks.adaseg.contrastive import MCUConfig, MultiLevelContrastiveLoss, _pixel_nce_padded
from pickwise.tasks.adaseg.scratch import ScratchBuffers


def _units(seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    a = torch.nn.functional.normalize(torch.randn(3, 6, 4, generator=g, dtype=torch.float64), dim=2)
    k = torch.nn.functional.normalize(torch.randn(3, 9, 4, generator=g, dtype=torch.float64), dim=2)
    ya, ky = torch.randint(0, 3, (3, 6), generator=g), torch.randint(0, 3, (3, 9), generator=g)
    return a.requires_grad_(requires_grad), ya, k.requires_grad_(requires_grad), ky, torch.full((3, 9), -1)


def _loss(units, scratch, w=None):
    a, ya, k, ky, self_row = units
    return _pixel_nce_padded(a, ya, k, ky, self_row, 0.2, w, scratch=scratch).sum()


def _grads(units, scratch, backward=True):
    loss = _loss(units, scratch)
    return torch.autograd.grad(loss, (units[0], units[2])) if backward else loss


def test_buffers_are_reused_after_backward():
    scratch, units = ScratchBuffers(), _units()
    ref = _grads(units, None)
    for _ in range(3):
        got = _grads(units, scratch)
        for g, r in zip(got, ref):
            torch.testing.assert_close(g, r, rtol=0, atol=0)
    assert len(scratch._slots) == 2  # one temporary slot and one saved slot, reused every step


def test_two_forwards_before_backward_do_not_share_a_buffer():
    scratch = ScratchBuffers()
    u1, u2 = _units(1), _units(2)
    ref1, ref2 = _grads(u1, None), _grads(u2, None)
    l1, l2 = _loss(u1, scratch), _loss(u2, scratch)  # both graphs alive at once
    g2 = torch.autograd.grad(l2, (u2[0], u2[2]))
    g1 = torch.autograd.grad(l1, (u1[0], u1[2]))
    for got, ref in ((g1, ref1), (g2, ref2)):
        for g, r in zip(got, ref):
            torch.testing.assert_close(g, r, rtol=0, atol=0)


def test_retain_graph_keeps_the_saved_buffer():
    scratch, u1, u2 = ScratchBuffers(), _units(3), _units(4)
    l1 = _loss(u1, scratch)
    first = torch.autograd.grad(l1, (u1[0], u1[2]), retain_graph=True)
    _grads(u2, scratch)  # another step in between
    again = torch.autograd.grad(l1, (u1[0], u1[2]))
    for g, r in zip(again, first):
        torch.testing.assert_close(g, r, rtol=0, atol=0)


def test_a_dropped_graph_frees_its_buffer():
    scratch = ScratchBuffers()
    loss = _loss(_units(5), scratch)
    del loss
    _grads(_units(6), scratch)
    assert len(scratch._slots) == 2


def test_module_copies_start_with_empty_scratch():
    mod = MultiLevelContrastiveLoss(3, 4, MCUConfig(anchors_per_class=4, max_keys=5))
    fs, ft = torch.randn(2, 4, 4, 4, requires_grad=True), torch.randn(2, 4, 4, 4, requires_grad=True)
    ls, lt = torch.randint(0, 3, (2, 4, 4)), torch.randint(0, 3, (2, 4, 4))
    mod(fs, ls, ft, lt)[0].backward()
    assert mod._scratch._slots
    for clone in (copy.deepcopy(mod), pickle.loads(pickle.dumps(mod))):
        assert clone._scratch is not mod._scratch and not clone._scratch._slots
        clone(fs, ls, ft, lt)[0].backward()
