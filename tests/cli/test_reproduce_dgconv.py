"""``pickwise reproduce dgconv``: a tiny end-to-end run on the bundled digits data, and the MAC counter."""

from __future__ import annotations

import json
import math

import torch
from torch import nn

from conftest import run_cli
from pickwise.nn.conv import DGConv2d
from pickwise.reproduce.dgconv import count_macs


def test_reproduce_dgconv_smoke(tmp_path):
    proc = run_cli(
        "reproduce",
        "dgconv",
        "--data",
        "digits",
        "--train-subset",
        "96",
        "--test-subset",
        "48",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--output-dir",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert "groups per layer" in proc.stdout and "budget" in proc.stdout
    summary = json.loads((tmp_path / "dgconv_results.json").read_text())
    assert [r["arm"] for r in summary["runs"]] == ["fixed", "learned", "budget"]
    for row in summary["runs"]:
        assert math.isfinite(row["acc"]) and 0.0 <= row["acc"] <= 1.0
        assert len(row["groups"]) == 9
        assert row["params_exported"] > 0 and row["macs_exported"] > 0
    for row in summary["runs"][1:]:
        assert row["export_max_abs_diff"] < 1e-4
        assert row["macs_exported"] <= row["macs_trained"]
    assert summary["runs"][2]["budget"] == summary["runs"][2]["zeta_fixed"]
    png = (tmp_path / "dgconv_groups.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp"))


def test_count_macs():
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1, groups=2), DGConv2d(8, 8, 1), nn.Flatten(), nn.Linear(8 * 25, 3)
    )
    assert count_macs(model, (4, 5, 5)) == 25 * 8 * 2 * 9 + 25 * 8 * 8 + 3 * 200
    assert model.training  # mode restored
    model.eval()
    count_macs(model, (4, 5, 5))
    assert not model.training
    assert torch.is_grad_enabled()
