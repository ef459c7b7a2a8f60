"""Tests for the Sync learned-norm layers and convert_sync_norm (2 gloo processes on CPU)."""

from __future__ import annotations

import copy
import inspect
import io
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
    SwitchNorm1d,
    SwitchNorm2d,
    SwitchNorm3d,
    SyncExemplarNorm2d,
    SyncPopulationNorm2d,
    SyncSparseSwitchNorm2d,
    SyncSwitchNorm1d,
    SyncSwitchNorm2d,
    SyncSwitchNorm3d,
    convert_sync_norm,
    create_norm_layer,
)
from pickwise.nn.norm.registry import sync_class

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


SYNC_PAIRS = [
    (SwitchNorm1d, SyncSwitchNorm1d),
    (SwitchNorm2d, SyncSwitchNorm2d),
    (SwitchNorm3d, SyncSwitchNorm3d),
    (SparseSwitchNorm2d, SyncSparseSwitchNorm2d),
    (ExemplarNorm2d, SyncExemplarNorm2d),
    (PopulationNorm2d, SyncPopulationNorm2d),
]


class TestRealClasses:
    @pytest.mark.parametrize(("local", "sync"), SYNC_PAIRS, ids=lambda c: c.__name__)
    def test_signature_is_the_local_one_plus_process_group(self, local, sync):
        local_params = inspect.signature(local).parameters
        sync_params = dict(inspect.signature(sync).parameters)
        group = sync_params.pop("process_group")
        assert group.kind is inspect.Parameter.KEYWORD_ONLY and group.default is None
        assert list(sync_params) == list(local_params)
        for name, param in local_params.items():
            assert (sync_params[name].kind, sync_params[name].default) == (param.kind, param.default), name
        assert not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in sync_params.values())

    @pytest.mark.parametrize(("local", "sync"), SYNC_PAIRS, ids=lambda c: c.__name__)
    def test_real_subclass_with_google_docstring(self, local, sync):
        assert issubclass(sync, local) and sync.__module__ == "pickwise.nn.norm.sync"
        assert "__init__" in vars(sync)  # its own constructor, not a type()-made wrapper
        doc = inspect.getdoc(sync)
        assert "Args:" in doc and "Shape:" in doc and "Example:" in doc
        for name in inspect.signature(sync).parameters:
            assert f"{name}:" in doc, name

    @pytest.mark.parametrize(("local", "sync"), SYNC_PAIRS, ids=lambda c: c.__name__)
    def test_keywords_reach_the_layer(self, local, sync):
        extra = {
            SyncSwitchNorm1d: {"channel_last": True},
            SyncSparseSwitchNorm2d: {"radius": 0.25},
            SyncExemplarNorm2d: {"ratio_hidden": 5, "kernel_size": 5, "temperature": 2.0, "descriptor": "mean"},
            SyncPopulationNorm2d: {"warmup_steps": 3},
        }.get(sync, {"normalizers": ("in", "bn")})
        m = sync(6, 1e-3, None, process_group=None, dtype=torch.float64, **extra)
        assert (m.num_features, m.eps, m.momentum, m.process_group) == (6, 1e-3, None, None)
        assert m.weight.dtype == torch.float64
        for key, value in extra.items():
            got = getattr(m, key)
            assert (float(got) if isinstance(got, torch.Tensor) else got) == value, key


def _configured_layers() -> list[nn.Module]:
    torch.manual_seed(3)
    layers = [
        SwitchNorm1d(4, channel_last=True),
        SwitchNorm2d(4, normalizers=("in", "gn:2", "bn")),
        SwitchNorm3d(4, momentum=None),
        SparseSwitchNorm2d(4, radius=0.4),
        ExemplarNorm2d(4, ratio_hidden=5, kernel_size=5, temperature=2.0, descriptor="mean"),
        PopulationNorm2d(4, warmup_steps=2, eps=1e-3),
        SwitchNorm2d(4, using_bn=False),
    ]
    for m in layers:
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.3)
            if m.running_mean is not None:
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    return layers


def _input(m: nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    if isinstance(m, SwitchNorm1d):
        shape: tuple[int, ...] = (3, 5, 4) if m.channel_last else (3, 4, 5)
    elif isinstance(m, SwitchNorm3d):
        shape = (3, 4, 2, 3, 3)
    else:
        shape = (3, 4, 3, 3)
    return torch.randn(shape, generator=g) * 2 + 1


class TestConvertBuildsNewModules:
    @pytest.mark.parametrize("index", range(7))
    @pytest.mark.parametrize("training", [True, False])
    def test_new_object_shares_parameters_and_buffers(self, index, training):
        layer = _configured_layers()[index].train(training)
        layer.tag = "kept"  # a user attribute (torch keeps qconfig the same way)
        params = dict(layer.named_parameters())
        buffers = dict(layer.named_buffers())
        state_keys = list(layer.state_dict())
        x = _input(layer)
        expected = copy.deepcopy(layer)(x)
        new = convert_sync_norm(layer)
        assert new is not layer and type(new) is sync_class(type(layer)) and type(layer) is not type(new)
        assert list(dict(new.named_parameters())) == list(params)  # same order: optimizer state lines up
        assert all(p is params[n] for n, p in new.named_parameters())
        assert all(b is buffers[n] for n, b in new.named_buffers())
        assert list(new.state_dict()) == state_keys
        assert all(not t.is_meta for t in (*new.parameters(), *new.buffers()))
        assert all(new._modules[k] is v for k, v in layer._modules.items())  # EN's ratio network is shared
        assert new.training is training and new.tag == "kept" and new.process_group is None
        for key in ("num_features", "eps", "momentum", "affine", "track_running_stats", "normalizers", "channel_last"):
            assert getattr(new, key) == getattr(layer, key), key
        torch.testing.assert_close(new(x), expected)  # not distributed: the local path, same configuration
        assert repr(new).startswith("Sync")

    def test_optimizer_built_before_conversion_still_trains_the_model(self):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 1), SwitchNorm2d(4), nn.Sequential(ExemplarNorm2d(4)), nn.Flatten())
        reference = copy.deepcopy(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        ref_opt = torch.optim.SGD(reference.parameters(), lr=0.5, momentum=0.9)
        model = convert_sync_norm(model)
        assert type(model[1]) is SyncSwitchNorm2d and type(model[2][0]) is SyncExemplarNorm2d
        g = torch.Generator().manual_seed(1)
        for _ in range(3):
            x = torch.randn(4, 3, 3, 3, generator=g)
            for net, optimizer in ((model, opt), (reference, ref_opt)):
                optimizer.zero_grad()
                net(x).square().mean().backward()
                optimizer.step()
        for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(p, q, msg=lambda m, n=name: f"{n}: {m}")
        before = SwitchNorm2d(4).mean_weight
        assert not torch.equal(model[1].mean_weight, before)  # the logits moved

    def test_hooks_are_not_carried_and_a_warning_says_so(self):
        layer = SwitchNorm2d(4)
        layer.register_forward_hook(lambda *a: None)
        with pytest.warns(UserWarning, match=r"hooks of a SwitchNorm2d \(_forward_hooks\) are not carried"):
            new = convert_sync_norm(nn.Sequential(layer))[0]
        assert not new._forward_hooks

    def test_original_model_is_untouched_when_the_root_converts(self):
        root = ExemplarNorm2d(4)
        children = dict(root._modules)
        new = convert_sync_norm(root)
        assert type(root) is ExemplarNorm2d and dict(root._modules) == children
        assert new.embed is root.embed

    def test_converted_model_pickles_and_deep_copies(self):
        model = convert_sync_norm(nn.Sequential(SparseSwitchNorm2d(4, radius=0.3), PopulationNorm2d(4)))
        buffer = io.BytesIO()
        torch.save(model, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        clone = copy.deepcopy(model)
        for other in (loaded, clone):
            assert [type(m) for m in other] == [SyncSparseSwitchNorm2d, SyncPopulationNorm2d]
            assert float(other[0].radius) == pytest.approx(0.3)
            x = torch.randn(2, 4, 3, 3)
            torch.testing.assert_close(other.eval()(x), model.eval()(x))
