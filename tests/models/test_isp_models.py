"""ISP networks: shapes, exact Haar DWT/IWT, PyNET levels, AWNet side outputs, norms, MAC counter, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pickwise.models.isp as isp
from _helpers.asserts import assert_close as _assert_close
from pickwise.exceptions import InvalidParameterError, ShapeError, UnknownNameError
from pickwise.models import create_model
from pickwise.models.isp_mwisp import haar_dwt, haar_iwt

TINY = ["isp_unet_tiny", "pynet_tiny", "mwisp_tiny", "awnet_tiny"]


def _naive_haar(x: torch.Tensor) -> torch.Tensor:
    """Float64 loop reference: orthonormal Haar bands per 2x2 cell, band-major channels."""
    b, c, h, w = x.shape
    out = torch.zeros(b, 4 * c, h // 2, w // 2, dtype=torch.float64)
    for i in range(h // 2):
        for j in range(w // 2):
            a, bb = x[:, :, 2 * i, 2 * j].double(), x[:, :, 2 * i, 2 * j + 1].double()
            cc, d = x[:, :, 2 * i + 1, 2 * j].double(), x[:, :, 2 * i + 1, 2 * j + 1].double()
            out[:, 0:c, i, j] = (a + bb + cc + d) / 2
            out[:, c : 2 * c, i, j] = (-a + bb - cc + d) / 2
            out[:, 2 * c : 3 * c, i, j] = (-a - bb + cc + d) / 2
            out[:, 3 * c :, i, j] = (a - bb - cc + d) / 2
    return out


def test_haar_matches_naive_and_inverts_exactly() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    y = haar_dwt(x)
    _assert_close(y, _naive_haar(x), rtol=0, atol=1e-12)
    _assert_close(haar_iwt(y), x, rtol=0, atol=1e-12)
    _assert_close(haar_dwt(haar_iwt(y)), y, rtol=0, atol=1e-12)
    # orthonormal: energy preserved
    _assert_close(y.pow(2).sum(), x.pow(2).sum())
    # the MWCNN/MW-ISPNet conv form (stride-2 conv with the four Haar filters, per band) gives the same bands
    filters = torch.tensor(
        [[[0.5, 0.5], [0.5, 0.5]], [[-0.5, 0.5], [-0.5, 0.5]], [[-0.5, -0.5], [0.5, 0.5]], [[0.5, -0.5], [-0.5, 0.5]]],
        dtype=torch.float64,
    )
    conv = torch.cat([F.conv2d(x[:, i : i + 1], filters[:, None], stride=2) for i in range(3)], 1)  # channel-major
    band_major = conv.reshape(2, 3, 4, 3, 4).transpose(1, 2).reshape(2, 12, 3, 4)
    _assert_close(y, band_major)
    with pytest.raises(ShapeError):
        haar_dwt(torch.zeros(1, 1, 3, 4))
    with pytest.raises(ShapeError):
        haar_iwt(torch.zeros(1, 3, 2, 2))


@pytest.mark.parametrize("name", TINY)
def test_tiny_models_shapes_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    net = create_model(name)
    x = torch.rand(2, 4, 36, 20)  # not a multiple of any size_multiple: padded and cropped inside
    y = net(x)
    assert y.shape == (2, 3, 72, 40)
    y.mean().backward()
    # every parameter on the full-resolution path gets a finite gradient (PyNET's coarse-level heads are off it)
    side_heads = ("l1_out", "l2_out", "l3_out", "l4_out", "l5_out", "side.")
    params = [(n, p) for n, p in net.named_parameters() if not any(s in n for s in side_heads)]
    assert params
    for n, p in params:
        assert p.grad is not None, n
        assert torch.isfinite(p.grad).all(), n


def test_pynet_levels_and_weight_sharing() -> None:
    torch.manual_seed(0)
    net = create_model("pynet_tiny").eval()
    x = torch.rand(1, 4, 32, 48)
    with torch.no_grad():
        outs = net.forward_levels(x, level=0)
        assert sorted(outs) == [0, 1, 2, 3, 4, 5]
        for lv, o in outs.items():
            assert o.shape == (1, 3, 64 // 2**lv, 96 // 2**lv)
            assert float(o.min()) >= 0
            assert float(o.max()) <= 1  # sigmoid heads
        # a level-3 pass computes the same level-3 output as the full pass (coarse levels do not see finer ones)
        _assert_close(net(x, level=3), outs[3])
        net.level = 4
        _assert_close(net(x), outs[4])
    with pytest.raises(InvalidParameterError):
        net(x, level=6)


def test_awnet_side_outputs_and_branches() -> None:
    torch.manual_seed(0)
    for branch in ("raw", "demosaic", "both"):
        net = create_model("awnet_tiny", branch=branch).eval()
        outs = net.forward_outputs(torch.rand(1, 4, 32, 32))
        assert [tuple(o.shape[-2:]) for o in outs] == [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    both = create_model("awnet_tiny", branch="both").eval()
    x = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        raw_out = both.raw(x)[0]
        dem_out = both.demosaic(F.pixel_unshuffle(isp.pseudo_demosaic(x), 2))[0]
        _assert_close(both(x), 0.5 * (raw_out + dem_out))
    with pytest.raises(InvalidParameterError):
        create_model("awnet_tiny", branch="rgb")


def test_norm_layer_selectable() -> None:
    unet = create_model("isp_unet_tiny", norm_layer="gn")
    assert any(isinstance(m, nn.GroupNorm) for m in unet.modules())
    pynet = create_model("pynet_tiny", norm_layer="none")
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in pynet.modules())
    assert any(isinstance(m, nn.InstanceNorm2d) for m in create_model("pynet_tiny").modules())
    aw = create_model("awnet_tiny", norm_layer="gn")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in aw.modules())
    with pytest.raises(UnknownNameError):
        create_model("isp_unet_tiny", norm_layer="bogus")
    with pytest.raises(InvalidParameterError):
        create_model("mwisp_tiny", norm_layer="bn")  # MW-ISPNet has no norm layers
    with pytest.raises(InvalidParameterError):
        create_model("pynet_tiny", pretrained=True)


def test_bad_input_is_one_line_shape_error() -> None:
    net = create_model("isp_unet_tiny")
    with pytest.raises(ShapeError, match=r"\[B, 4, h, w\]"):
        net(torch.rand(1, 3, 16, 16))
    with pytest.raises(ShapeError, match="float"):
        net(torch.zeros(1, 4, 16, 16, dtype=torch.int64))


def test_mac_counter_against_hand_count() -> None:
    net = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.Conv2d(8, 12, 1, groups=4), nn.PixelShuffle(2))
    stats = isp.isp_model_stats(net, (5, 7))
    assert stats["macs"] == 5 * 7 * 8 * 4 * 9 + 5 * 7 * 12 * 2
    assert stats["params"] == (4 * 9 * 8 + 8) + (2 * 12 + 12)


def test_paper_size_pynet_parameter_count() -> None:
    # PyNET's paper reports 47.5 M parameters; build on the meta device (no memory)
    with torch.device("meta"):
        net = create_model("pynet")
    assert 47.0e6 < sum(p.numel() for p in net.parameters()) < 48.0e6
