"""``pickwise reproduce isp --quick``: every arm runs, results are written atomically and finished runs are skipped."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pickwise.reproduce.isp import _mean_se, summarize


def _fake_zrr(root: Path, n: int = 2, size: int = 32) -> Path:
    from PIL import Image

    from pickwise.tasks.isp.raw import write_raw_png

    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        (root / split / "huawei_raw").mkdir(parents=True)
        (root / split / "canon").mkdir(parents=True)
        for i in range(n):
            rgb = np.kron(rng.random((size // 8, size // 8, 3)), np.ones((8, 8, 1)))
            write_raw_png(root / split / "huawei_raw" / f"{i}.png", np.round(rgb[..., 0] * 1020).astype(np.uint16))
            Image.fromarray((rgb * 255).round().astype(np.uint8)).save(root / split / "canon" / f"{i}.png")
    return root


def test_mean_and_standard_error() -> None:
    m, se = _mean_se([1.0, 2.0, 4.0])
    assert m == pytest.approx(7 / 3)
    assert se == pytest.approx(math.sqrt(sum((v - 7 / 3) ** 2 for v in (1, 2, 4)) / 2 / 3))
    assert math.isnan(_mean_se([5.0])[1])
    rows = [
        {"model": "a", "seed": s, "params": 1, "macs_per_image": 2, "seconds": 1.0, "metrics": {"psnr": p}}
        for s, p in ((0, 10.0), (1, 12.0))
    ]
    (entry,) = summarize(rows)
    assert entry["psnr"] == 11.0
    assert entry["psnr_se"] == pytest.approx(1.0)
    assert math.isnan(entry["ssim"])


def test_quick_reproduction_runs_and_skips_finished_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pickwise.cli.main import main

    data = _fake_zrr(tmp_path / "zrr")
    out = tmp_path / "rep"
    models = "isp_classical,isp_unet_tiny"  # PyNET's phases are covered in test_isp_task.py
    args = ["reproduce", "isp", "--quick", "--data", str(data), "--output-dir", str(out), "--models", models]
    assert main([*args, "--seeds", "0,1", "--no-figure"]) == 0
    summary = json.loads((out / "isp_results.json").read_text())
    assert [r["model"] for r in summary["table"]] == models.split(",")
    unet = summary["table"][1]
    assert unet["seeds"] == [0, 1] and math.isfinite(unet["psnr"]) and math.isfinite(unet["psnr_se"])
    assert "| isp_classical |" in (out / "isp_results.md").read_text()
    stamp = (out / "runs" / "isp_unet_tiny-s0" / "results.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main([*args, "--seeds", "0,1"]) == 0  # rerun: finished runs are loaded, the figure is drawn
    assert (out / "runs" / "isp_unet_tiny-s0" / "results.json").stat().st_mtime_ns == stamp
    assert 1000 < (out / "isp_examples.png").stat().st_size < 300_000
    assert main([*args, "--seeds", "0,x"]) == 2
