"""`pickwise analyze norms` and `pickwise reproduce norms` end to end on tiny settings."""

import json

from conftest import run_cli


def test_reproduce_norms_tiny_then_analyze(tmp_path):
    out = tmp_path / "repro"
    proc = run_cli(
        "reproduce",
        "norms",
        "--data",
        "digits",
        "--model",
        "resnet8",
        "--train-subset",
        "96",
        "--test-subset",
        "60",
        "--batch-sizes",
        "4,16",
        "--norms",
        "bn,gn,sn,en",
        "--epochs",
        "1",
        "--output-dir",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "reproduce_norms.json").read_text())
    assert {(r["norm"], r["batch_size"]) for r in summary["runs"]} == {
        (n, b) for n in ("bn", "gn", "sn", "en") for b in (4, 16)
    }
    claims = {c["claim"]: c for c in summary["claims"]}
    assert "SN >= BN at batch 4" in claims and "SN >= GN at batch 16" in claims
    assert "EN >= SN (mean over batch sizes)" in claims
    assert any("BN weight falls" in c for c in claims)
    for figure in summary["figures"]:
        assert (tmp_path / figure).is_file() or __import__("pathlib").Path(figure).is_file(), figure
    assert (out / "ratios_vs_batch_size.png").is_file()
    assert "does not hold" in proc.stdout or "holds" in proc.stdout

    # a second call reuses the finished runs
    again = run_cli(
        "reproduce",
        "norms",
        "--data",
        "digits",
        "--model",
        "resnet8",
        "--train-subset",
        "96",
        "--test-subset",
        "60",
        "--batch-sizes",
        "4,16",
        "--norms",
        "bn,gn,sn,en",
        "--epochs",
        "1",
        "--output-dir",
        str(out),
    )
    assert again.returncode == 0 and again.stderr.count("reusing") == 8

    proc = run_cli(
        "analyze",
        "norms",
        str(out / "runs" / "sn-bs4"),
        str(out / "runs" / "en-bs16"),
        "--output-dir",
        str(tmp_path / "analysis"),
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "analysis" / "norm_ratios.json").read_text())
    assert [r["norm"] for r in report["runs"]] == ["sn", "en"]
    for run in report["runs"]:
        assert len(run["layers"]) == 7
        for layer in run["layers"]:
            assert abs(sum(layer["mean"].values()) - 1) < 1e-5
    assert (tmp_path / "analysis" / "ratios_vs_depth_sn-bs4.png").is_file()


def test_analyze_errors(tmp_path):
    proc = run_cli("analyze", "norms", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = run_cli("analyze", "norms", str(tmp_path))
    assert proc.returncode == 2 and "no finished runs" in proc.stderr
