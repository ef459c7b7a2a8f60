"""Classical ISP: torch Malvar/bilinear demosaicing equal colour_demosaicing; the module's interface and stages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pickwise.exceptions import InvalidParameterError, ShapeError
from pickwise.tasks.isp.classical import (
    ClassicalISP,
    demosaic,
    demosaic_bilinear,
    demosaic_malvar,
    grey_world_gains,
    linear_to_srgb,
    srgb_to_linear,
)
from pickwise.tasks.isp.raw import CFA_PATTERNS, RawLevels, normalize_raw, pack_bayer


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_malvar_and_bilinear_equal_colour_demosaicing(pattern):
    cd = pytest.importorskip("colour_demosaicing")
    cfa = np.random.default_rng(0).random((12, 18))
    ref = cd.demosaicing_CFA_Bayer_Malvar2004(cfa, pattern)
    got = demosaic_malvar(torch.from_numpy(cfa), pattern).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    ref_b = cd.demosaicing_CFA_Bayer_bilinear(cfa, pattern)
    np.testing.assert_allclose(demosaic_bilinear(torch.from_numpy(cfa), pattern).permute(1, 2, 0).numpy(), ref_b, 1e-5)
    # float32 and batched
    batch = torch.from_numpy(np.stack([cfa, cfa[::-1].copy()])).float()
    out = demosaic_malvar(batch, pattern)
    assert out.shape == (2, 3, 12, 18) and out.dtype == torch.float32
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy(), ref, atol=1e-5)


def test_menon_option_and_errors():
    cd = pytest.importorskip("colour_demosaicing")
    cfa = np.random.default_rng(1).random((16, 16))
    got = demosaic(torch.from_numpy(cfa), "RGGB", "menon").permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, cd.demosaicing_CFA_Bayer_Menon2007(cfa, "RGGB"), atol=1e-6)
    with pytest.raises(InvalidParameterError, match="unknown demosaicing method"):
        demosaic(torch.zeros(4, 4), "RGGB", "ahd")
    with pytest.raises(ShapeError, match="even"):
        demosaic_malvar(torch.zeros(5, 4))


def test_srgb_transfer_round_trip():
    x = torch.linspace(0, 1, 101, dtype=torch.float64)
    torch.testing.assert_close(linear_to_srgb(srgb_to_linear(x)), x)
    assert srgb_to_linear(torch.tensor(0.5)).item() == pytest.approx(0.214041, abs=1e-6)


def test_classical_isp_interface_and_exact_pipeline():
    torch.manual_seed(0)
    # a smooth linear scene -> packed raw with black 63 / white 1020 in the "pynet" convention
    lin = torch.rand(2, 3, 4, 4).repeat_interleave(4, -1).repeat_interleave(4, -2) * 0.8
    lin = torch.nn.functional.avg_pool2d(lin, 3, 1, 1)
    h, w = lin.shape[-2:]
    from pickwise.tasks.isp.unprocess import mosaic

    dn = mosaic(lin, "RGGB") * (1020 - 63) + 63
    packed = normalize_raw(pack_bayer(dn, "RGGB"), "pynet")
    isp = ClassicalISP(white_balance=None, gamma=1.0)
    out = isp(packed)
    assert out.shape == (2, 3, h, w) and out.min() >= 0 and out.max() <= 1
    ref = demosaic_malvar(mosaic(lin, "RGGB"), "RGGB").clamp(0, 1)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    # other input convention, same sensor: same output
    packed_mw = normalize_raw(pack_bayer(dn, "RGGB"), "mwisp")
    torch.testing.assert_close(ClassicalISP(input_convention="mwisp", white_balance=None, gamma=1.0)(packed_mw), out)
    # grey world makes the mean colour grey; the ccm and gamma are applied
    gw = ClassicalISP(gamma=1.0)(packed)
    means = gw.mean(dim=(-2, -1))
    torch.testing.assert_close(means[:, 0], means[:, 1], atol=0.02, rtol=0)
    ccm = [[0, 1, 0], [1, 0, 0], [0, 0, 1]]
    swapped = ClassicalISP(white_balance=None, gamma=1.0, ccm=ccm)(packed)
    torch.testing.assert_close(swapped[:, 0], out[:, 1])
    srgb = ClassicalISP(white_balance=None)(packed)
    torch.testing.assert_close(srgb, linear_to_srgb(out))
    assert ClassicalISP(white_balance=(2.0, 1.0, 1.0), gamma=1.0)(packed)[:, 0].mean() > out[:, 0].mean()
    # differentiable
    p = packed.clone().requires_grad_(True)
    ClassicalISP()(p).sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()


def test_grey_world_gains():
    rgb = torch.stack([torch.full((4, 4), 0.2), torch.full((4, 4), 0.4), torch.full((4, 4), 0.1)])[None]
    torch.testing.assert_close(grey_world_gains(rgb), torch.tensor([[2.0, 1.0, 4.0]]))


def test_classical_errors():
    with pytest.raises(ShapeError, match=r"\[B, 4, h, w\]"):
        ClassicalISP()(torch.rand(1, 3, 8, 8))
    with pytest.raises(InvalidParameterError, match="unknown CFA"):
        ClassicalISP(pattern="RGBW")
    with pytest.raises(InvalidParameterError, match="white_balance"):
        ClassicalISP(white_balance="max_rgb")
    with pytest.raises(ShapeError, match="3x3"):
        ClassicalISP(ccm=[[1, 0], [0, 1]])
    assert ClassicalISP(sensor_levels=RawLevels(0, 1023)).sensor_levels.white == 1023


def test_menon_leaves_numpy_print_options_alone():
    pytest.importorskip("colour_demosaicing")
    import numpy as np

    from pickwise.tasks.isp.classical import demosaic_menon

    before = np.get_printoptions()
    demosaic_menon(torch.rand(1, 1, 8, 8), "RGGB")
    assert np.get_printoptions() == before
