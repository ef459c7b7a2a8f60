"""Image metrics against independent references: naive float64 PSNR, scikit-image SSIM, pytorch_msssim MS-SSIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pickwise.exceptions import InvalidParameterError, ShapeError
from pickwise.metrics.image import color_invariant_psnr, ms_ssim, psnr, quantize_8bit, rgb_to_y, ssim


def _pair(b=2, c=3, h=40, w=48, seed=0, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(b, c, h, w, generator=g)
    # smooth-ish structure so that SSIM is far from 0 and 1
    target = torch.nn.functional.avg_pool2d(target, 3, stride=1, padding=1)
    pred = (target + noise * torch.randn(b, c, h, w, generator=g)).clamp(0, 1)
    return pred, target


@pytest.fixture(params=["torch", "fused"])
def ssim_path(request, monkeypatch):
    """Run a test on the torch path and on the fused numba kernel (skipped where numba is absent)."""
    import pickwise.metrics.image as image

    if request.param == "torch":
        monkeypatch.setattr(image, "fused_ssim_available", lambda pred, target: False)
    else:
        pytest.importorskip("numba")
        assert image.fused_ssim_available(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))
    return request.param


def _naive_psnr(p: np.ndarray, t: np.ndarray, data_range=1.0) -> np.ndarray:
    out = []
    for a, b in zip(p.astype(np.float64), t.astype(np.float64)):
        mse = np.mean((a - b) ** 2)
        out.append(20 * np.log10(data_range / np.sqrt(mse)))
    return np.array(out)


def test_psnr_matches_naive_float64():
    pred, target = _pair()
    got = psnr(pred, target, reduction="none")
    np.testing.assert_allclose(got.numpy(), _naive_psnr(pred.numpy(), target.numpy()), rtol=1e-6)
    assert torch.isclose(psnr(pred, target), got.mean())
    # data_range scales consistently
    np.testing.assert_allclose(psnr(pred * 255, target * 255, data_range=255.0).item(), got.mean().item(), rtol=1e-6)
    # unbatched input
    assert torch.isclose(psnr(pred[0], target[0]), got[0])


def test_psnr_quantize_and_y_channel():
    pred, target = _pair(seed=1)
    pq = np.clip(np.round(pred.double().numpy() * 255), 0, 255) / 255
    tq = np.clip(np.round(target.double().numpy() * 255), 0, 255) / 255
    got = psnr(pred.double(), target.double(), quantize=True, reduction="none").numpy()
    np.testing.assert_allclose(got, _naive_psnr(pq, tq), rtol=1e-9)

    # Y channel: MATLAB rgb2ycbcr on [0, 1] data
    def y(a):
        return (16 + 65.481 * a[:, 0] + 128.553 * a[:, 1] + 24.966 * a[:, 2]) / 255

    p, t = pred.double().numpy(), target.double().numpy()
    got_y = psnr(pred.double(), target.double(), channel="y", reduction="none").numpy()
    np.testing.assert_allclose(got_y, _naive_psnr(y(p), y(t)), rtol=1e-9)
    assert rgb_to_y(torch.ones(1, 3, 2, 2)).allclose(torch.full((1, 1, 2, 2), 235 / 255))
    got_q = quantize_8bit(torch.tensor([0.5 / 255 + 1e-6, 1.2, -0.1], dtype=torch.float64))
    assert got_q.tolist() == pytest.approx([1 / 255, 1.0, 0.0], abs=1e-12)


def test_ssim_matches_skimage(ssim_path):
    metrics = pytest.importorskip("skimage.metrics")
    pred, target = _pair(b=2, h=37, w=52, seed=2)
    got = ssim(pred, target, reduction="none")
    for i in range(2):
        ref = metrics.structural_similarity(
            pred[i].permute(1, 2, 0).numpy().astype(np.float64),
            target[i].permute(1, 2, 0).numpy().astype(np.float64),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1,
            channel_axis=-1,
        )
        assert abs(got[i].item() - ref) < 1e-4
    assert float(ssim(target, target)) == pytest.approx(1.0, abs=1e-6)


def test_ssim_matches_pytorch_msssim_and_ms_ssim(ssim_path):
    pm = pytest.importorskip("pytorch_msssim")
    pred, target = _pair(b=2, h=176, w=180, seed=3)
    ref_ssim = pm.ssim(pred, target, data_range=1, size_average=False)
    torch.testing.assert_close(ssim(pred, target, reduction="none"), ref_ssim, atol=1e-5, rtol=0)
    ref = pm.ms_ssim(pred, target, data_range=1, size_average=False)
    got = ms_ssim(pred, target, reduction="none")
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
    # odd sizes exercise the padded pooling
    pred, target = _pair(b=1, h=171, w=183, seed=4)
    torch.testing.assert_close(
        ms_ssim(pred, target, reduction="none"),
        pm.ms_ssim(pred, target, data_range=1, size_average=False),
        atol=1e-4,
        rtol=0,
    )
    assert ms_ssim(pred, target).item() > ssim(pred, target).item()  # different numbers: never mix them up


def test_ssim_gradcheck():
    g = torch.Generator().manual_seed(5)
    target = torch.rand(1, 2, 13, 12, dtype=torch.float64, generator=g)
    pred = (target + 0.1 * torch.rand(1, 2, 13, 12, dtype=torch.float64, generator=g)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: ssim(p, target, win_size=7), (pred,))


def test_color_invariant_psnr_undoes_affine_colour():
    _, target = _pair(b=2, seed=6, noise=0.0)
    a = torch.tensor([[0.8, 0.1, 0.0], [0.05, 0.7, 0.1], [0.0, 0.1, 0.6]])
    shifted = torch.einsum("ij,bjhw->bihw", a, target) + torch.tensor([0.05, 0.1, 0.0]).view(1, 3, 1, 1)
    assert psnr(shifted, target).item() < 25
    assert color_invariant_psnr(shifted, target).item() > 60
    # with noise it is never below plain PSNR (the identity map is one of the candidates, up to clipping)
    noisy, _ = _pair(b=2, seed=6, noise=0.05)
    assert color_invariant_psnr(noisy, target).item() >= psnr(noisy, target).item() - 1e-6
    # flat prediction: finite, no crash
    assert torch.isfinite(color_invariant_psnr(torch.full_like(target, 0.3), target))


@pytest.mark.parametrize("fn", [psnr, ssim, ms_ssim, color_invariant_psnr])
def test_errors_are_one_line(fn):
    x = torch.rand(1, 3, 200, 200)
    with pytest.raises(ShapeError, match="shapes differ"):
        fn(x, x[..., :199])
    with pytest.raises(InvalidParameterError, match="floating-point"):
        fn((x * 255).to(torch.uint8), (x * 255).to(torch.uint8))
    with pytest.raises(ShapeError):
        fn(x[0, 0], x[0, 0])


def test_too_small_for_window():
    x = torch.rand(1, 3, 10, 30)
    with pytest.raises(ShapeError, match="too small"):
        ssim(x, x)
    with pytest.raises(ShapeError, match="at least 161"):
        ms_ssim(torch.rand(1, 3, 160, 400), torch.rand(1, 3, 160, 400))


def test_cpu_chunking_gives_the_same_values(monkeypatch):
    import pickwise.metrics.image as image

    monkeypatch.setattr(image, "fused_ssim_available", lambda pred, target: False)  # chunking is the torch path's
    pred, target = _pair(b=5, h=170, w=166, seed=7)
    whole_ssim, whole_ms = ssim(pred, target, reduction="none"), ms_ssim(pred, target, reduction="none")
    monkeypatch.setattr(image, "_CPU_CHUNK_ELEMENTS", 2 * 3 * 170 * 166)  # chunks of 2 images (2, 2, 1)
    torch.testing.assert_close(ssim(pred, target, reduction="none"), whole_ssim, rtol=0, atol=1e-6)
    torch.testing.assert_close(ms_ssim(pred, target, reduction="none"), whole_ms, rtol=0, atol=1e-6)


def test_image_quality_accumulator_merges_to_whole():
    from pickwise.metrics.image import ImageQualityMetric

    pred, target = _pair(b=5, h=24, w=24, seed=8)
    a, b, whole = (ImageQualityMetric(("psnr", "ssim", "color_invariant_psnr")) for _ in range(3))
    a.update(pred[:2], target[:2])
    b.update(pred[2:], target[2:])
    whole.update(pred, target)
    merged = a.merge(b).compute()
    assert merged["count"] == 5
    assert merged["psnr"] == pytest.approx(psnr(pred, target).item(), rel=1e-9)
    assert merged["ssim"] == pytest.approx(ssim(pred, target).item(), rel=1e-6)
    assert merged == pytest.approx(whole.compute(), rel=1e-9)
    with pytest.raises(InvalidParameterError, match="unknown metric"):
        ImageQualityMetric(("lpips",))
