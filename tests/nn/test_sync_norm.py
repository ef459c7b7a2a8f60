"""Tests for the Sync learned-norm layers and convert_sync_norm (2 gloo processes on CPU)."""

from __future__ import annotations

import os
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from pickwise.nn import (
    ExemplarNorm2d,
    PopulationNorm2d,
    SparseSwitchNorm2d,
    SwitchNorm2d,
    SyncExemplarNorm2d,
    SyncPopulationNorm2d,
    SyncSparseSwitchNorm2d,
    SyncSwitchNorm2d,
    convert_sync_norm,
    create_norm_layer,
)

C = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make(kind: str) -> nn.Module:
    """Deterministic local layer with non-trivial parameters (float64)."""
    torch.manual_seed(123)
    if kind == "sn":
        m = SwitchNorm2d(C)
    elif kind == "ssn":
        m = SparseSwitchNorm2d(C, radius=0.3)
    elif kind == "en":
        m = ExemplarNorm2d(C)
        with torch.no_grad():
            m.relation_fc2.weight.normal_(0, 0.5)
    else:
        m = PopulationNorm2d(C, warmup_steps=1)
    m = m.double()
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
        for name in ("mean_weight", "var_weight", "ratio_weight"):
            if hasattr(m, name):
                getattr(m, name).copy_(torch.randn(getattr(m, name).shape, dtype=torch.float64) * 0.3)
    return m


def _data(sizes: tuple[int, ...]):
    g = torch.Generator().manual_seed(7)
    n = sum(sizes)
    x = torch.randn(n, C, 4, 3, dtype=torch.float64, generator=g) * 2 + 1
    gy = torch.randn(n, C, 4, 3, dtype=torch.float64, generator=g)
    return x, gy


CASES = [("sn", (2, 2)), ("ssn", (2, 2)), ("en", (2, 2)), ("pn", (2, 2)), ("sn", (3, 1)), ("en", (1, 3))]


def _run(model: nn.Module, x: torch.Tensor, gy: torch.Tensor):
    x = x.clone().requires_grad_()
    y = model(x)
    (y * gy).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    # EN's last_ratios is the mean over the *local* batch by design, so it is not compared
    bufs = {n: b.clone() for n, b in model.named_buffers() if b.dtype.is_floating_point and n != "last_ratios"}
    return y.detach(), x.grad, grads, bufs


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results = []
        for kind, sizes in CASES:
            model = convert_sync_norm(_make(kind))
            assert type(model).__name__.startswith("Sync")
            x, gy = _data(sizes)
            start = sum(sizes[:rank])
            sl = slice(start, start + sizes[rank])
            y, gx, grads, bufs = _run(model, x[sl], gy[sl])
            for g in grads.values():
                dist.all_reduce(g)  # what DDP does with parameter gradients (sum here, the loss is a sum)
            results.append({"y": y, "gx": gx, "grads": grads, "bufs": bufs})
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_two_processes_equal_one_process_double_batch(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for i, (kind, sizes) in enumerate(CASES):
        x, gy = _data(sizes)
        y, gx, grads, bufs = _run(_make(kind), x, gy)
        start = 0
        for r in range(2):
            sl = slice(start, start + sizes[r])
            start += sizes[r]
            got = ranks[r][i]
            torch.testing.assert_close(got["y"], y[sl], atol=1e-6, rtol=1e-6, msg=lambda m, k=kind: f"{k} y: {m}")
            torch.testing.assert_close(got["gx"], gx[sl], atol=1e-6, rtol=1e-6, msg=lambda m, k=kind: f"{k} gx: {m}")
            assert set(got["grads"]) == set(grads)
            for name, g in grads.items():
                torch.testing.assert_close(
                    got["grads"][name], g, atol=1e-6, rtol=1e-6, msg=lambda m, n=name: f"{n} {m}"
                )
            for name, b in bufs.items():
                torch.testing.assert_close(got["bufs"][name], b, atol=1e-9, rtol=1e-9)


class TestLocalBehaviour:
    def test_not_distributed_uses_local_path(self):
        x = torch.randn(4, C, 3, 3)
        for local, sync in ((SwitchNorm2d, SyncSwitchNorm2d), (ExemplarNorm2d, SyncExemplarNorm2d)):
            torch.manual_seed(0)
            a = local(C)
            torch.manual_seed(0)
            b = sync(C, process_group=None)
            torch.testing.assert_close(a(x), b(x))
            assert b._batch_stats_fn() is None
        assert "process_group" not in repr(SyncPopulationNorm2d(C))

    def test_convert_shares_parameters_and_handles_bn_on_cpu(self):
        model = nn.Sequential(
            nn.Conv2d(3, 4, 1),
            SwitchNorm2d(4),
            nn.Sequential(SparseSwitchNorm2d(4), ExemplarNorm2d(4), PopulationNorm2d(4)),
            nn.BatchNorm2d(4),
            SyncSwitchNorm2d(4),
        )
        model.eval()
        sn_weight = model[1].weight
        already = model[4]
        with pytest.warns(UserWarning, match="kept 1 BatchNorm layer"):
            out = convert_sync_norm(model)
        assert out is model
        assert type(model[1]) is SyncSwitchNorm2d and model[1].weight is sn_weight
        assert type(model[2][0]) is SyncSparseSwitchNorm2d
        assert type(model[2][1]) is SyncExemplarNorm2d and model[2][1].embed is not None
        assert type(model[2][2]) is SyncPopulationNorm2d
        assert type(model[3]) is nn.BatchNorm2d
        assert model[4] is already
        assert not model[1].training
        x = torch.randn(2, 3, 3, 3)
        model(x)
        root = SwitchNorm2d(4)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            new_root = convert_sync_norm(root, process_group=None)
        assert type(new_root) is SyncSwitchNorm2d and new_root is not root
        assert new_root.running_mean is root.running_mean
        assert set(new_root.state_dict()) == set(root.state_dict())

    def test_factory_names(self):
        assert type(create_norm_layer("syncsn", 4)) is SyncSwitchNorm2d
        assert type(create_norm_layer("syncen", 4)) is SyncExemplarNorm2d
