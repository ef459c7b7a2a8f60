"""ISP config, task (loss, D4 augmentation, streamed metrics) and run_isp (phases, resume, refusal, overwrite)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pickwise.models.isp  # noqa: F401  (registers the ISP models)
from _helpers.asserts import assert_close as _assert_close
from pickwise.exceptions import ConfigError, RunFolderError
from pickwise.tasks.isp.config import ISPRunConfig, resolve_config, resolve_isp_config
from pickwise.tasks.isp.losses import ISPLoss
from pickwise.tasks.isp.task import ISPTask, _d4, random_cell_crop


def make_fake_zrr(root: Path, n_train: int = 4, n_test: int = 2, size: int = 32, seed: int = 0) -> Path:
    """A tiny ZRR-layout folder: smooth random RGB targets and their RGGB mosaics (10-bit, in 16-bit PNGs)."""
    from PIL import Image

    from pickwise.tasks.isp.raw import write_raw_png

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        (root / split / "huawei_raw").mkdir(parents=True, exist_ok=True)
        (root / split / "canon").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            low = rng.random((size // 8, size // 8, 3))
            rgb = np.kron(low, np.ones((8, 8, 1)))
            mosaic = np.zeros((size, size))
            mosaic[0::2, 0::2] = rgb[0::2, 0::2, 0]
            mosaic[0::2, 1::2] = rgb[0::2, 1::2, 1]
            mosaic[1::2, 0::2] = rgb[1::2, 0::2, 1]
            mosaic[1::2, 1::2] = rgb[1::2, 1::2, 2]
            write_raw_png(root / split / "huawei_raw" / f"{i}.png", np.round(mosaic * 1020).astype(np.uint16))
            Image.fromarray((rgb * 255).round().astype(np.uint8)).save(root / split / "canon" / f"{i}.png")
    return root


def _cfg(tmp_path: Path, data: Path, **over: str) -> ISPRunConfig:
    items = {
        "data.name": str(data),
        "data.crop": "8",
        "data.batch_size": "2",
        "data.eval_batch_size": "2",
        "train.epochs": "1",
        "train.progress": "false",
        "train.tensorboard": "false",
        "train.device": "cpu",
        "output_dir": str(tmp_path / "runs"),
        "name": "r",
        "model.name": "isp_unet_tiny",
    }
    items.update(over)
    return resolve_config(overrides=[f"{k}={v}" for k, v in items.items()])


def test_config_overrides_and_errors(tmp_path: Path) -> None:
    cfg = resolve_config(overrides=["model.name=pynet_tiny", "levels.levels=[5,3,0]", "levels.epochs=[1]"])
    assert cfg.levels.phase_epochs(4) == [1, 1, 1]
    assert resolve_isp_config(cfg).levels.levels == [5, 3, 0]
    for bad in (
        ["levels.levels=[0,5]"],
        ["data.augment=flips"],
        ["loss.l1=0"],
        ["loss.perceptual=1"],
        ["data.crop=7"],
        ["eval.ensemble=x8"],
        ["nope.key=1"],
    ):
        with pytest.raises(ConfigError):
            resolve_config(overrides=bad)
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("model:\n  name: mwisp_tiny\nloss:\n  ssim: 0.2\n")
    cfg = resolve_config([yaml_file], ["loss.l1=0.5"])
    assert (cfg.model.name, cfg.loss.weights()) == ("mwisp_tiny", {"l1": 0.5, "ssim": 0.2})


def test_d4_augmentation_is_consistent_for_raw_and_rgb() -> None:
    # a per-cell model commutes with cell-level D4 moves, so loss(aug(raw), aug(rgb)) == loss(raw, rgb)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 12, 1), nn.PixelShuffle(2))
    raw = torch.rand(2, 4, 6, 6)
    rgb = net(raw).detach()
    for k in range(8):
        r = _d4(raw, k)
        t = F.pixel_shuffle(_d4(F.pixel_unshuffle(rgb, 2), k), 2)
        _assert_close(net(r), t)
    task = ISPTask(ISPLoss({"l1": 1.0}), crop=4, augment="d4")
    loss, stats = task.training_loss(net, (raw, rgb, ["a", "b"]), torch.device("cpu"), torch.Generator().manual_seed(3))
    assert float(loss.detach()) < 1e-6
    assert float(stats["count"]) == 2
    cr, ct = random_cell_crop(raw, rgb, 4, torch.Generator().manual_seed(1))
    assert cr.shape[-2:] == (4, 4)
    assert ct.shape[-2:] == (8, 8)
    _assert_close(net(cr), ct)


def test_streamed_metrics_equal_direct_metrics() -> None:
    from pickwise.metrics.image import MS_SSIM_WEIGHTS, color_invariant_psnr, ms_ssim, psnr, ssim

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 12, 3, padding=1), nn.PixelShuffle(2), nn.Sigmoid())
    raw, rgb = torch.rand(5, 4, 12, 12), torch.rand(5, 3, 24, 24)
    task = ISPTask()
    accs = task.make_accumulators()
    for i in range(0, 5, 2):  # uneven batches
        task.evaluation_step(net, (raw[i : i + 2], rgb[i : i + 2], ["x"]), torch.device("cpu"), accs)
    out = task.compute(accs)
    with torch.no_grad():
        pred = net(raw).clamp(0, 1)
    assert out["psnr"] == pytest.approx(float(psnr(pred, rgb)), abs=1e-9)
    assert out["ssim"] == pytest.approx(float(ssim(pred, rgb)), abs=1e-6)
    assert out["psnr_color_invariant"] == pytest.approx(float(color_invariant_psnr(pred, rgb)), abs=1e-6)
    # 24 px: two scales fit (the second needs > 20 px), with the first two standard exponents renormalized
    assert out["ms_ssim_scales"] == 2.0
    w0, w1 = MS_SSIM_WEIGHTS[:2]
    assert out["ms_ssim"] == pytest.approx(
        float(ms_ssim(pred, rgb, weights=(w0 / (w0 + w1), w1 / (w0 + w1)))), abs=1e-6
    )
    assert out["loss"] == pytest.approx(float((pred - rgb).abs().mean()), abs=1e-6)


def test_pynet_level_targets_are_box_filtered() -> None:
    from pickwise.models import create_model

    torch.manual_seed(0)
    net = create_model("pynet_tiny")
    task = ISPTask(ISPLoss({"mse": 1.0}), level=3)
    raw, rgb = torch.rand(1, 4, 32, 32), torch.rand(1, 3, 64, 64)
    loss, _ = task.training_loss(net, (raw, rgb, ["a"]), torch.device("cpu"), torch.Generator())
    with torch.no_grad():
        ref = F.mse_loss(net(raw, level=3), F.avg_pool2d(rgb, 8))
    assert float(loss.detach()) == pytest.approx(float(ref), rel=1e-5)


def test_run_isp_trains_resumes_refuses_and_overwrites(tmp_path: Path) -> None:
    from pickwise.tasks.isp.run import run_isp

    data = make_fake_zrr(tmp_path / "zrr")
    cfg = _cfg(tmp_path, data)
    out = run_isp(cfg)
    run_dir = tmp_path / "runs" / "r"
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["metrics"]["psnr"] == pytest.approx(out["metrics"]["psnr"])
    assert saved["trained"] and saved["params"] > 0 and saved["phases"][0]["steps"] == 2
    assert (run_dir / "phase-full" / "results.json").is_file()
    with pytest.raises(RunFolderError):
        run_isp(cfg)
    again = run_isp(cfg, resume=True)  # finished phase: skipped, same weights, same metrics
    assert again["metrics"]["psnr"] == pytest.approx(out["metrics"]["psnr"], abs=1e-9)
    fresh = run_isp(cfg, overwrite=True)  # same seed: identical retraining
    assert fresh["metrics"]["psnr"] == pytest.approx(out["metrics"]["psnr"], abs=1e-4)


def test_run_isp_pynet_phases_and_classical(tmp_path: Path) -> None:
    from pickwise.tasks.isp.run import run_isp

    data = make_fake_zrr(tmp_path / "zrr", n_train=2, n_test=1)
    cfg = _cfg(tmp_path, data, **{"model.name": "pynet_tiny", "levels.levels": "[5,0]", "name": "p"})
    out = run_isp(cfg)
    assert [p["level"] for p in out["phases"]] == [5, 0]
    assert (tmp_path / "runs" / "p" / "phase-level5" / "model.safetensors").is_file()
    cls = run_isp(_cfg(tmp_path, data, **{"model.name": "isp_classical", "name": "c"}))
    assert not cls["trained"] and cls["phases"] == [] and np.isfinite(cls["metrics"]["psnr"])
    with pytest.raises(ConfigError):
        run_isp(_cfg(tmp_path, data, **{"levels.levels": "[1,0]", "name": "u"}))
