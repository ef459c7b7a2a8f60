"""ISP losses against naive float64 formulas, pytorch_msssim, gradcheck, and the VGG-19 state-dict mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from _helpers.asserts import assert_close as _assert_close
from pickwise.exceptions import CheckpointError, ConfigError, DataNotFoundError
from pickwise.tasks.isp.losses import (
    VGG19_LAYERS,
    ISPLoss,
    charbonnier_loss,
    color_loss,
    l1_loss,
    load_vgg19_features,
    ms_ssim_loss,
    mse_loss,
    ssim_loss,
)


def _pair(shape=(2, 3, 24, 20), seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=dtype), torch.rand(shape, generator=g, dtype=dtype)


def test_pixel_losses_match_naive_float64() -> None:
    x, y = _pair()
    xd, yd = x.double(), y.double()
    n = xd.numel()
    assert float(l1_loss(x, y)) == pytest.approx(float(sum(abs(a - b) for a, b in zip(xd.flatten(), yd.flatten())) / n))
    assert float(mse_loss(x, y)) == pytest.approx(float(((xd - yd) ** 2).sum() / n), rel=1e-6)
    eps = 0.05
    ref = sum(((a - b) ** 2 + eps**2) ** 0.5 for a, b in zip(xd.flatten().tolist(), yd.flatten().tolist())) / n
    assert float(charbonnier_loss(x, y, eps)) == pytest.approx(ref, rel=1e-6)


def test_color_loss_naive_and_scale_invariant() -> None:
    x, y = _pair((1, 3, 5, 4))
    xd, yd = x.double(), y.double()
    cos = []
    for i in range(5):
        for j in range(4):
            a, b = xd[0, :, i, j], yd[0, :, i, j]
            cos.append(float(a @ b / (a.norm() * b.norm())))
    assert float(color_loss(x, y)) == pytest.approx(1 - sum(cos) / len(cos), rel=1e-5)
    assert float(color_loss(3 * x, y)) == pytest.approx(float(color_loss(x, y)), abs=1e-6)


def test_gradcheck_custom_losses() -> None:
    x, y = _pair((1, 3, 2, 3), dtype=torch.float64)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: charbonnier_loss(a, y, 1e-2), (x,))
    assert torch.autograd.gradcheck(lambda a: color_loss(a + 0.1, y + 0.1), (x,))


def test_structural_losses_match_pytorch_msssim() -> None:
    pm = pytest.importorskip("pytorch_msssim")
    x, y = _pair((1, 3, 32, 32))
    assert float(ssim_loss(x, y)) == pytest.approx(1 - float(pm.ssim(x, y, data_range=1.0)), abs=1e-5)
    big = _pair((1, 3, 168, 168), seed=1)
    assert float(ms_ssim_loss(*big)) == pytest.approx(1 - float(pm.ms_ssim(*big, data_range=1.0)), abs=1e-5)
    # 48 px: three scales fit; the first three standard exponents renormalized (pytorch_msssim refuses < 161 px,
    # so the reference is the metric itself with explicit weights)
    from pickwise.metrics.image import ms_ssim

    small = _pair((1, 3, 48, 48), seed=2)
    w = (0.0448, 0.2856, 0.3001)
    ref = 1 - float(ms_ssim(*small, weights=tuple(v / sum(w) for v in w)))
    assert float(ms_ssim_loss(*small)) == pytest.approx(ref, abs=1e-6)


def test_isp_loss_weighted_sum_and_errors(tmp_path: Path) -> None:
    x, y = _pair((1, 3, 16, 16))
    loss = ISPLoss({"l1": 2.0, "mse": 0.5, "color": 0.0, "ssim": 0.1})
    total, parts = loss(x, y)
    assert sorted(parts) == ["l1", "mse", "ssim"]
    ref = 2 * l1_loss(x, y) + 0.5 * mse_loss(x, y) + 0.1 * ssim_loss(x, y)
    assert float(total) == pytest.approx(float(ref), rel=1e-6)
    tiny = _pair((1, 3, 4, 4))  # SSIM's window does not fit: term skipped
    assert float(ISPLoss({"l1": 1.0, "ms_ssim": 1.0})(*tiny)[1]["ms_ssim"]) == 0.0
    for bad in ({"l2": 1.0}, {"l1": -1.0}, {"l1": 0.0}, {"l1": float("nan")}, {"perceptual": 1.0}):
        with pytest.raises(ConfigError):
            ISPLoss(bad)
    with pytest.raises(DataNotFoundError):
        ISPLoss({"perceptual": 1.0}, vgg_weights=tmp_path / "missing.pth")


def _random_vgg19_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision's vgg19 state-dict layout (its first two blocks + a classifier entry) with random values.

    The loader only reads the layers up to the requested one, so blocks 3-5 (20 M random numbers) are left out.
    """
    g = torch.Generator().manual_seed(seed)
    cfg = (64, 64, "M", 128, 128, "M")
    state, cin, idx = {}, 3, 0
    for v in cfg:
        if v == "M":
            idx += 1
            continue
        state[f"features.{idx}.weight"] = torch.randn(v, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        state[f"features.{idx}.bias"] = torch.randn(v, generator=g) * 0.01
        cin, idx = v, idx + 2
    state["classifier.0.weight"] = torch.zeros(4, 4)
    return state


def _naive_vgg(x: torch.Tensor, state: dict[str, torch.Tensor], last: int) -> torch.Tensor:
    """Walk torchvision's features indices by hand up to index ``last`` (conv, relu, ..., pool)."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x - mean) / std
    i = 0
    while i <= last:
        if f"features.{i}.weight" in state:
            x = F.conv2d(x, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1)
            if i + 1 <= last:
                x = F.relu(x)
            i += 2
        else:
            x = F.max_pool2d(x, 2)
            i += 1
    return x


def test_vgg19_mapping_on_a_random_state_dict(tmp_path: Path) -> None:
    state = _random_vgg19_state()
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="features.10.weight"):
        load_vgg19_features(path, "relu3_1")  # a layer the file does not hold: one-line error
    net = load_vgg19_features(path, "relu2_2")
    x = torch.rand(1, 3, 16, 16)
    _assert_close(net(x), _naive_vgg(x, state, VGG19_LAYERS["relu2_2"]), rtol=1e-4, atol=1e-5)
    assert VGG19_LAYERS["relu5_4"] == 35  # PyNET's content layer, torchvision indexing
    from safetensors.torch import save_file

    prefixed = {f"module.{k}": v for k, v in state.items()}
    save_file(prefixed, str(tmp_path / "vgg19.safetensors"))
    net2 = load_vgg19_features(tmp_path / "vgg19.safetensors", "relu2_2")
    _assert_close(net2(x), net(x))
    loss = ISPLoss({"perceptual": 1.0}, vgg_weights=path, vgg_layer="relu1_2")
    y = torch.rand(1, 3, 16, 16)
    ref = F.mse_loss(_naive_vgg(x, state, 3), _naive_vgg(y, state, 3))
    assert float(loss(x, y)[0]) == pytest.approx(float(ref), rel=1e-4)
    bad = dict(state)
    bad["features.0.weight"] = torch.zeros(64, 4, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="shape"):
        load_vgg19_features(tmp_path / "bad.pth", "relu2_2")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_vgg19_features(tmp_path / "junk.pth", "relu1_1")
