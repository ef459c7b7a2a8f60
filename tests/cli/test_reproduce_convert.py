"""``pickwise reproduce convert``: trade-off measurement on a toy network, the summary statistics, a tiny resumable
end-to-end run, and the CLI error path."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch
from torch import nn

from conftest import run_cli
from pickwise.reproduce.convert import measure_tradeoff, summarize_runs


def _toy_pretrained() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    net.train()
    with torch.no_grad():
        for _ in range(5):
            net(torch.randn(8, 3, 8, 8))
    return net.eval()


def test_measure_tradeoff_shows_gap_effects():
    images = torch.randn(6, 3, 8, 8)
    rows = measure_tradeoff(_toy_pretrained(), images, ("sn", "ssn"), (4.0, 30.0), grad_batch=4)
    by = {(r["target"], r["gap"]): r for r in rows}
    assert set(by) == {("sn", 4.0), ("sn", 30.0), ("ssn", 4.0), ("ssn", 30.0)}
    # gap 30: output unchanged, softmax logit gradients ~e^-30, SSN one-hot at a sparsemax vertex (zero gradient)
    assert by["sn", 30.0]["rel_logit_change_max"] < 1e-5
    assert by["sn", 30.0]["logit_grad_max"] < 1e-9
    assert by["ssn", 30.0]["one_hot_at_init"] is True and by["ssn", 30.0]["logit_grad_max"] == 0.0
    # gap 4: outputs move, gradients do not vanish; SSN starts at SN's ratios, inside the simplex
    assert by["sn", 4.0]["rel_logit_change_median"] > 1e-4
    assert by["sn", 4.0]["logit_grad_max"] > 1e6 * by["sn", 30.0]["logit_grad_max"]
    assert by["ssn", 4.0]["one_hot_at_init"] is False and by["ssn", 4.0]["logit_grad_max"] > 1e-6
    assert by["ssn", 4.0]["bn_weight"] == pytest.approx(by["sn", 4.0]["bn_weight"], abs=1e-6)
    assert by["sn", 4.0]["bn_weight"] == pytest.approx(1 / (1 + 2 * math.exp(-4.0)), abs=1e-6)


def test_summarize_runs_mean_and_standard_error():
    runs = [
        {"norm": "bn", "batch_size": 2, "seed": s, "acc": a, "ratios": {"layers": []}}
        for s, a in enumerate((0.5, 0.6, 0.7))
    ] + [
        {
            "norm": "sn",
            "batch_size": 2,
            "seed": 0,
            "acc": 0.4,
            "ratios": {"bn_weight_mean": 0.9, "bn_weight_var": 0.8, "bn_weight_min": 0.5, "layers_moved": 2},
        }
    ]
    rows = {(r["norm"], r["batch_size"]): r for r in summarize_runs(runs)}
    bn = rows["bn", 2]
    assert bn["acc_mean"] == pytest.approx(0.6)
    # SE = sample std / sqrt(n) = 0.1 / sqrt(3)
    assert bn["acc_se"] == pytest.approx(statistics.stdev([0.5, 0.6, 0.7]) / math.sqrt(3))
    assert bn["acc_se"] == pytest.approx(0.1 / math.sqrt(3))
    sn = rows["sn", 2]
    assert sn["acc_se"] is None and sn["acc_se_note"]
    assert sn["bn_weight_mean"] == 0.9 and sn["layers_moved"] == 2


@pytest.mark.slow
def test_reproduce_convert_tiny_end_to_end_and_resume(tmp_path):
    args = [
        "reproduce",
        "convert",
        "--quick",
        "--skip-tradeoff",
        "--norms",
        "bn,ssn",
        "--batch-sizes",
        "4",
        "--data",
        "digits",
        "--output-dir",
        str(tmp_path),
    ]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "reproduce_convert.json").read_text())
    assert [(r["norm"], r["batch_size"]) for r in result["runs"]] == [("bn", 4), ("ssn", 4)]
    for r in result["runs"]:
        assert 0.0 <= r["acc"] <= 1.0 and r["steps"] == 10
    ssn = next(r for r in result["runs"] if r["norm"] == "ssn")
    assert ssn["ssn_freeze"]["selections"] == 2 * 52
    assert (tmp_path / "convert_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second call reuses the finished runs
    first = (tmp_path / "runs" / "ssn-bs4-s0" / "result.json").read_text()
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "runs" / "ssn-bs4-s0" / "result.json").read_text() == first


def test_reproduce_convert_bad_norm_is_one_line_exit_2(tmp_path):
    proc = run_cli("reproduce", "convert", "--norms", "bn,gn", "--output-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "--norms takes bn, sn, ssn, en (optionally sn:uniform etc., ssn:free); got gn" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
