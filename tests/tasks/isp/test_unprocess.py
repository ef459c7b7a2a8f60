"""Unprocessing (Brooks et al. 2019): inverse steps, round trip with the forward pipeline, noise and quantisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pickwise.exceptions import InvalidParameterError, ShapeError
from pickwise.metrics.image import psnr
from pickwise.tasks.isp.raw import pack_bayer
from pickwise.tasks.isp.unprocess import (
    CameraParams,
    add_noise,
    inverse_smoothstep,
    mosaic,
    noise_from_iso,
    process,
    process_rgb,
    quantize_raw,
    safe_invert_gains,
    sample_camera_params,
    smoothstep,
    unprocess,
    unprocess_rgb,
)


def _photo():
    data = pytest.importorskip("skimage.data")
    img = torch.from_numpy(data.astronaut()[::2, ::2].copy()).permute(2, 0, 1).double() / 255
    return img


def test_smoothstep_inverse():
    y = torch.linspace(0, 1, 201, dtype=torch.float64)
    torch.testing.assert_close(smoothstep(inverse_smoothstep(y)), y)


@pytest.mark.parametrize("highlight_preserve", [False, True])
def test_noise_free_round_trip_at_least_40db(highlight_preserve):
    img = _photo()
    params = CameraParams(highlight_preserve=highlight_preserve)
    back = process_rgb(unprocess_rgb(img, params), params)
    assert psnr(back, img).item() >= 40.0


def test_unprocess_steps_match_numpy_reference():
    img = _photo()[:, :32, :32]
    p = CameraParams(highlight_preserve=False, red_gain=2.0, blue_gain=1.6, rgb_gain=1.2)
    x = img.numpy()
    lin = (0.5 - np.sin(np.arcsin(1 - 2 * x) / 3)) ** 2.2
    cam = np.einsum("ij,jhw->ihw", np.asarray(p.rgb2cam), lin)
    cam = cam / (np.array([2.0, 1.0, 1.6]) * 1.2)[:, None, None]
    cam = np.clip(cam, 0, 1)
    np.testing.assert_allclose(unprocess_rgb(img, p).numpy(), cam, atol=1e-9)
    # mosaic + quantisation: digital numbers with black level 63
    raw = unprocess(img, p)
    assert raw.shape == (32, 32)
    np.testing.assert_allclose(raw[0::2, 0::2].numpy(), np.round(cam[0][0::2, 0::2] * 957 + 63))
    np.testing.assert_allclose(raw[1::2, 1::2].numpy(), np.round(cam[2][1::2, 1::2] * 957 + 63))
    np.testing.assert_allclose(raw[0::2, 1::2].numpy(), np.round(cam[1][0::2, 1::2] * 957 + 63))
    np.testing.assert_array_equal(pack_bayer(raw, "RGGB")[2].numpy(), raw[0::2, 0::2].numpy())


def test_safe_invert_gains_preserves_highlights():
    p = CameraParams(red_gain=2.0, blue_gain=2.0, rgb_gain=1.0)
    white = torch.ones(3, 2, 2)
    torch.testing.assert_close(safe_invert_gains(white, p), white)  # grey = 1 -> mask 1 -> unchanged
    dark = torch.full((3, 2, 2), 0.2)
    torch.testing.assert_close(safe_invert_gains(dark, p)[0], torch.full((2, 2), 0.1))


def test_process_from_raw_is_close_to_the_photo():
    img = _photo()
    p = CameraParams()
    out = process(unprocess(img, p), p)
    assert out.shape == img.shape
    # half-size astronaut (lots of fine detail): Malvar + 10-bit quantisation loses a few dB, bilinear more
    assert psnr(out, img).item() > 24.0
    assert psnr(out, img).item() > psnr(process(unprocess(img, p), p, "bilinear"), img).item()


def test_noise_statistics_and_iso_model():
    g = torch.Generator().manual_seed(0)
    x = torch.full((200, 200), 0.5, dtype=torch.float64)
    y = add_noise(x, 0.01, 0.0004, g)
    assert abs(y.var().item() - (0.5 * 0.01 + 0.0004)) < 2e-4
    shot, read = noise_from_iso(100)
    assert shot == pytest.approx(1.9e-4) and read == pytest.approx(np.exp(2.18 * np.log(1.9e-4) + 1.2))
    assert noise_from_iso(1600)[0] == pytest.approx(16 * shot)
    ps = sample_camera_params(np.random.default_rng(0))
    assert 1.9 <= ps.red_gain <= 2.4 and 1.5 <= ps.blue_gain <= 1.9 and 100 <= ps.extra["iso"] <= 1600
    assert sample_camera_params(np.random.default_rng(0)) == ps  # deterministic
    q = quantize_raw(torch.tensor([-1.0, 0.0, 0.5, 2.0]), CameraParams())
    assert q.tolist() == [0.0, 63.0, float(round(0.5 * 957 + 63)), 1020.0]


def test_mosaic_and_params_errors():
    with pytest.raises(ShapeError, match="odd side"):
        mosaic(torch.rand(3, 5, 4))
    with pytest.raises(ShapeError, match=r"\[..., 3, H, W\]"):
        unprocess_rgb(torch.rand(4, 4, 4), CameraParams())
    with pytest.raises(InvalidParameterError, match="3x3"):
        CameraParams(rgb2cam=((1, 0), (0, 1)))
    with pytest.raises(InvalidParameterError, match="unknown CFA"):
        CameraParams(pattern="XXXX")
    with pytest.raises(InvalidParameterError):
        noise_from_iso(0)
