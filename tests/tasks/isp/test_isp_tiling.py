"""Tiled inference (exact for a known receptive field), x8 self-ensemble (exact inverses), memory tracking."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _helpers.asserts import assert_close as _assert_close
from pickwise.exceptions import InvalidParameterError, ShapeError
from pickwise.tasks.isp.tiling import (
    measure_inference,
    peak_rss_increase,
    peak_tensor_memory,
    self_ensemble,
    tiled_forward,
)


def _rf_net(seed: int = 0) -> nn.Module:
    """Three 3x3 convs on the packed grid (receptive-field radius 3 packed pixels), then a per-cell head."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(8, 12, 3, padding=1),
        nn.PixelShuffle(2),
    ).double()


def test_tiling_equals_untiled_when_receptive_field_fits() -> None:
    net = _rf_net()
    x = torch.rand(2, 4, 29, 31, dtype=torch.float64)
    with torch.no_grad():
        ref = net(x)
    calls = []
    out = tiled_forward(net, x, tile=20, overlap=12, progress=lambda d, t: calls.append((d, t)))  # margin 3 = radius
    _assert_close(out.double(), ref, rtol=0, atol=1e-5)
    assert calls[-1][0] == calls[-1][1] == 9
    # overlap too small for the receptive field: the tile borders show
    bad = tiled_forward(net, x, tile=20, overlap=4)
    assert float((bad.double() - ref).abs().max()) > 1e-4
    # one tile covering everything is the plain forward
    _assert_close(tiled_forward(net, x, tile=64, overlap=8).double(), ref, rtol=0, atol=1e-6)


def test_tiling_errors() -> None:
    net = _rf_net()
    with pytest.raises(InvalidParameterError):
        tiled_forward(net, torch.rand(1, 4, 8, 8, dtype=torch.float64), tile=8, overlap=8)
    with pytest.raises(ShapeError):
        tiled_forward(net, torch.rand(4, 8, 8))
    with pytest.raises(ShapeError):
        tiled_forward(lambda t: t[..., :3, :5], torch.rand(1, 4, 8, 8), tile=4, overlap=0)


def _symmetric_kernel_net() -> nn.Module:
    """Depthwise 3x3 convs with D4-symmetric kernels on the packed grid, then a per-cell head: commutes with D4."""
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=True)
    with torch.no_grad():
        a, b, c = torch.rand(3, 4, 1, 1)
        k = torch.stack([b, a, b, a, c, a, b, a, b], -1).reshape(4, 1, 3, 3)
        conv.weight.copy_(k)
    return nn.Sequential(conv, nn.Tanh(), nn.Conv2d(4, 12, 1), nn.PixelShuffle(2)).double()


def test_packed_ensemble_is_exact_for_an_equivariant_model() -> None:
    net = _symmetric_kernel_net()
    x = torch.rand(2, 4, 7, 9, dtype=torch.float64)
    with torch.no_grad():
        plain = net(x)
    _assert_close(self_ensemble(net, x, mode="packed").double(), plain, rtol=0, atol=1e-6)
    # the RGB-pixel convention (MW-ISPNet's forward_x8) is not the inverse of a cell move for this model
    assert float((self_ensemble(net, x, mode="rgb").double() - plain).abs().max()) > 1e-3
    # ... but it is for a model whose output cells are constant (nearest up-sampling)
    near = nn.Sequential(nn.Conv2d(4, 3, 1), nn.Upsample(scale_factor=2, mode="nearest")).double()
    with torch.no_grad():
        _assert_close(self_ensemble(near, x, mode="rgb").double(), near(x), rtol=0, atol=1e-6)


def _unpack_rggb(packed: torch.Tensor) -> torch.Tensor:
    """Naive inverse of ZRR's packing (B, Gb, R, Gr) for RGGB: B at (1,1), Gb at (0,1), R at (0,0), Gr at (1,0)."""
    b, _, h, w = packed.shape
    m = torch.zeros(b, 1, 2 * h, 2 * w, dtype=packed.dtype)
    m[:, 0, 1::2, 1::2] = packed[:, 0]
    m[:, 0, 0::2, 1::2] = packed[:, 1]
    m[:, 0, 0::2, 0::2] = packed[:, 2]
    m[:, 0, 1::2, 0::2] = packed[:, 3]
    return m


def test_bayer_ensemble_transpose_is_the_mosaic_transpose() -> None:
    x = torch.rand(1, 4, 5, 6, dtype=torch.float64)
    swapped = x[:, [0, 3, 2, 1]].transpose(-2, -1)
    _assert_close(_unpack_rggb(swapped), _unpack_rggb(x).transpose(-2, -1))
    from pickwise.tasks.isp.raw import pack_bayer, unpack_bayer

    mosaic = unpack_bayer(x[0], "RGGB")
    _assert_close(mosaic, _unpack_rggb(x)[0, 0])
    _assert_close(pack_bayer(mosaic.T.contiguous(), "RGGB"), swapped[0])
    # a model acting on the mosaic with a transpose-symmetric kernel commutes with the mosaic transpose
    k = torch.rand(3, 3, dtype=torch.float64)
    k = (k + k.T)[None, None].repeat(3, 1, 1, 1)

    def net(p: torch.Tensor) -> torch.Tensor:
        return F.conv2d(_unpack_rggb(p).repeat(1, 3, 1, 1), k, padding=1, groups=3)

    _assert_close(self_ensemble(net, x, mode="bayer").double(), net(x), rtol=0, atol=1e-6)
    with pytest.raises(InvalidParameterError):
        self_ensemble(net, x, mode="x8")


_RSS_SCRIPT = """
import torch
from pickwise.tasks.isp.tiling import peak_rss_increase
def fn():
    big = torch.ones(8_000_000)  # 32 MB, touched
    return float(big.sum())
value, peak = peak_rss_increase(fn)
print(value, peak)
"""


def test_rss_peak_and_latency() -> None:
    import subprocess
    import sys

    # a fresh process: in a long one (the test suite) the allocator may serve the 32 MB from memory it already holds,
    # and a resident-memory sampler rightly sees no increase (the documented lower-bound behaviour)
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT], capture_output=True, text=True, check=True).stdout
    value, peak = out.split()
    assert float(value) == 8_000_000
    if peak != "None":  # Linux
        assert int(peak) > 20_000_000
    assert peak_rss_increase(lambda: 3)[0] == 3
    stats = measure_inference(_rf_net().float(), (16, 16), repeats=1, warmup=0, tile=12, overlap=4)
    assert stats["latency_ms"] > 0
    assert stats["memory"] == "rss_increase"


@pytest.mark.slow  # the first TorchDispatchMode use imports for seconds (20 s on a loaded 2-core machine)
def test_peak_memory_tracks_live_tensors() -> None:
    def fn() -> torch.Tensor:
        a = torch.ones(1000, dtype=torch.float64)  # 8000 bytes
        b = torch.ones(2000, dtype=torch.float64)  # 16000 bytes, alive together with a
        del a
        c = torch.ones(500, dtype=torch.float64)  # 4000 bytes after a is freed
        return b.sum() + c.sum()

    _, peak = peak_tensor_memory(fn)
    assert 24000 <= peak <= 24000 + 64  # the two big tensors (plus, at most, the scalar results)
    stats = measure_inference(_rf_net().float(), (16, 16), repeats=1, warmup=0, memory="tensors")
    assert stats["peak_memory_bytes"] > 3 * 32 * 32 * 4  # at least the output
