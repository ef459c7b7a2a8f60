"""``pickwise reproduce reid --quick``: a tiny run of two arms over two seeds, skipped on rerun; bad arms refused."""

from __future__ import annotations

import json
import math

import pytest

import pickwise.tasks as tasks_pkg
from pickwise.cli.main import main
from pickwise.reproduce.reid import summarize
from pickwise.tasks.reid import CLI_COMMANDS


@pytest.fixture(autouse=True)
def _only_reid(monkeypatch):  # the other task packages' commands are not needed here
    monkeypatch.setattr(tasks_pkg, "cli_commands", lambda: dict(CLI_COMMANDS))


def test_quick_reproduction_writes_table_figure_and_skips_finished_runs(tmp_path, capsys):
    args = ["reproduce", "reid", "--quick", "--arms", "vit_avg,mnv2_imagenet", "--seeds", "0,1"]
    assert main([*args, "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ViT frame average" in out and "MobileNetV2 ImageNet, untrained" in out
    payload = json.loads((tmp_path / "reid_results.json").read_text())
    assert [(r["arm"], r["seed"]) for r in payload["runs"]] == [
        ("vit_avg", 0), ("mnv2_imagenet", 0), ("vit_avg", 1), ("mnv2_imagenet", 1)
    ]  # fmt: skip
    for row in payload["runs"]:
        assert 0.0 <= row["metrics"]["mAP"] <= 1.0 and len(row["cmc"]) > 0
        assert (row["steps"] == 3) == row["trained"]
    entry = payload["summary"]["vit_avg"]
    maps = [r["metrics"]["mAP"] for r in payload["runs"] if r["arm"] == "vit_avg"]
    assert entry["mAP"] == pytest.approx(sum(maps) / 2)
    assert entry["mAP_se"] == pytest.approx(abs(maps[0] - maps[1]) / 2)  # s.e. of two values = |a - b| / 2
    assert (tmp_path / "reid_reproduction.png").read_bytes()[:4] == b"\x89PNG"
    assert "± " in (tmp_path / "reid_table.md").read_text()
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [
        "mnv2_imagenet-s0.json", "mnv2_imagenet-s1.json", "vit_avg-s0.json", "vit_avg-s1.json"
    ]  # fmt: skip

    assert main([*args, "--output-dir", str(tmp_path)]) == 0  # every run is done: all skipped
    err = capsys.readouterr().err
    assert err.count("skipped") == 4
    again = json.loads((tmp_path / "reid_results.json").read_text())
    assert again["summary"] == payload["summary"]


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["reproduce", "reid", "--quick", "--arms", "mstat,nope", "--output-dir", str(tmp_path)]) == 2
    assert "unknown arm" in capsys.readouterr().err
    assert main(["reproduce", "reid", "--steps", "0", "--output-dir", str(tmp_path)]) == 2
    assert main(["reproduce", "reid", "--seeds", "a", "--output-dir", str(tmp_path)]) == 2
    assert not (tmp_path / "reid_results.json").exists()


def test_summarize_single_seed_has_no_standard_error():
    rows = [{"arm": "a", "label": "A", "seed": 0, "train_seconds": 1.0, "cmc": [0.5, 1.0],
             "metrics": dict.fromkeys(("rank1", "rank5", "rank10", "rank20", "mAP", "mINP"), 0.5)}]  # fmt: skip
    s = summarize(rows)["a"]
    assert s["rank1"] == 0.5 and math.isnan(s["rank1_se"]) and s["cmc"] == [0.5, 1.0]
