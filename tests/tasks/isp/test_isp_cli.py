"""``pickwise isp train | evaluate | infer | make-data``: outputs, and user errors as one line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pickwise.cli.main import main


def _fake_zrr(root: Path, n: int = 2, size: int = 32) -> Path:
    from PIL import Image

    from pickwise.tasks.isp.raw import write_raw_png

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (root / split / "huawei_raw").mkdir(parents=True)
        (root / split / "canon").mkdir(parents=True)
        for i in range(n):
            rgb = np.kron(rng.random((size // 8, size // 8, 3)), np.ones((8, 8, 1)))
            mosaic = np.round(rgb[..., 1] * 1020).astype(np.uint16)
            write_raw_png(root / split / "huawei_raw" / f"{i}.png", mosaic)
            Image.fromarray((rgb * 255).round().astype(np.uint8)).save(root / split / "canon" / f"{i}.png")
    return root


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error line"
    assert err[-1].startswith("pickwise: error:")
    return err[-1]


def test_train_evaluate_infer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _fake_zrr(tmp_path / "zrr")
    args = [
        "isp", "train", "--data", str(data), "--model", "isp_unet_tiny", "--epochs", "1", "--crop", "8",
        "--batch-size", "2", "--name", "r", "--output-dir", str(tmp_path / "runs"), "--device", "cpu",
        "--set", "train.progress=false", "--set", "train.tensorboard=false",
    ]  # fmt: skip
    assert main(args) == 0
    run = tmp_path / "runs" / "r"
    assert "psnr" in capsys.readouterr().out
    assert main(args) == 2  # the folder holds a run
    assert "--resume" in _one_line_error(capsys)
    assert main([*args, "--resume"]) == 0
    capsys.readouterr()
    out_json, fig = tmp_path / "m.json", tmp_path / "fig.png"
    assert main(["isp", "evaluate", "--run", str(run), "--json", str(out_json), "--figure", str(fig)]) == 0
    metrics = json.loads(out_json.read_text())["metrics"]
    saved = json.loads((run / "results.json").read_text())["metrics"]
    assert metrics["psnr"] == pytest.approx(saved["psnr"], abs=1e-6)
    assert 1000 < fig.stat().st_size < 300_000
    png = tmp_path / "out.png"
    raw = data / "test" / "huawei_raw" / "0.png"
    assert main(["isp", "infer", str(raw), str(png), "--run", str(run), "--tile", "8", "--overlap", "4"]) == 0
    from PIL import Image

    assert Image.open(png).size == (32, 32)
    assert main(["isp", "infer", str(raw), str(png), "--model", "isp_classical", "--ensemble", "packed"]) == 0


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _fake_zrr(tmp_path / "zrr", n=1)
    base = ["isp", "train", "--data", str(data), "--output-dir", str(tmp_path / "runs")]
    assert main([*base, "--set", "loss.l1=0"]) == 2
    assert "loss" in _one_line_error(capsys)
    assert main([*base, "--model", "pynet_tinyy"]) == 2
    assert "pynet_tiny" in _one_line_error(capsys)  # close match suggested
    assert main([*base, "--levels", "5,x"]) == 2
    _one_line_error(capsys)
    assert main(["isp", "train", "--data", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "r2")]) == 2
    _one_line_error(capsys)
    assert main(["isp", "evaluate", "--run", str(tmp_path), "--model", "isp_classical"]) == 2
    _one_line_error(capsys)
    assert main(["isp", "evaluate", "--run", str(tmp_path / "nothing")]) == 2
    _one_line_error(capsys)
    bad = tmp_path / "x.txt"
    bad.write_text("x")
    assert main(["isp", "infer", str(bad), str(tmp_path / "o.png"), "--model", "isp_classical"]) == 2
    assert ".dng" in _one_line_error(capsys)
    assert (
        main(["isp", "infer", str(tmp_path / "missing.dng"), str(tmp_path / "o.png"), "--model", "isp_unet_tiny"]) == 2
    )
    _one_line_error(capsys)


def test_make_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import pickwise.tasks.isp.synth as synth

    calls = []
    monkeypatch.setattr(synth, "make_isp_synth", lambda root, seed=0: calls.append((root, seed)) or Path(root))
    assert main(["isp", "make-data", "--root", str(tmp_path / "s"), "--seed", "3"]) == 0
    assert calls == [(str(tmp_path / "s"), 3)]
    assert str(tmp_path / "s") in capsys.readouterr().out
