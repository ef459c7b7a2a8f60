"""``pickwise reproduce adaseg``: every arm written once and skipped on rerun; the claim check and standard errors."""

from __future__ import annotations

import json
import math

import pytest

import pickwise.reproduce.adaseg as rep
from _helpers.adaseg_standins import RandomDomain, TinyNet


class StandInData:
    def __init__(self, opts):
        self.source, self.pool, self.test, self.num_classes = (
            RandomDomain(6, 0),
            RandomDomain(4, 1),
            RandomDomain(3, 2),
            3,
        )


def test_quick_reproduction_writes_each_arm_once(tmp_path, monkeypatch):
    import pickwise.tasks.adaseg.figures as fig_mod
    import pickwise.tasks.adaseg.run as run_mod

    monkeypatch.setattr(fig_mod, "selection_figure", lambda *a, **k: None)
    monkeypatch.setattr(rep, "_Data", StandInData)
    monkeypatch.setattr(rep, "_figures", lambda summary, out: None)
    monkeypatch.setattr(run_mod, "net_factory", lambda cfg, k: lambda: TinyNet(k))
    opts = rep._options(rep.argparse.Namespace(**{**_defaults(), "quick": True}))
    opts.update(seeds=[0], budgets=["2%", "5%"], data_root=str(tmp_path / "no-benchmark"))
    summary = rep.run_reproduction(opts, tmp_path)
    assert summary["benchmark"] is None  # stand-in data: no generated benchmark to fingerprint
    arms = sorted(p.name for p in (tmp_path / "arms").glob("*.json"))
    assert len(arms) == 2 + 2 * 2 + 1  # per seed: source_only, target_full, 2 strategies x 2 budgets, 1 ablation
    full = [r for r in summary["rows"] if r["arm"] == "target_full"]
    assert all(r["labelled_fraction"] == 1.0 for r in full)
    assert {(c["ada_mcu_budget"], c["baseline_budget"]) for c in summary["claims"]} == {("2%", "5%")}
    stamp = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "arms").glob("*.json")}
    again = rep.run_reproduction(opts, tmp_path)  # rerun: nothing retrained
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "arms").glob("*.json")} == stamp
    assert [t["miou"] for t in again["table"]] == [t["miou"] for t in summary["table"]]
    json.loads((tmp_path / "adaseg_results.json").read_text())


def _defaults():
    import argparse

    parser = argparse.ArgumentParser()
    rep.add_arguments(parser)
    return vars(parser.parse_args([]))


def test_summarize_mean_standard_error_and_claim():
    rows = [
        {"arm": "ada_mcu", "budget": "1%", "seed": s, "mIoU": v, "labelled_fraction": 0.01}
        for s, v in ((0, 0.50), (1, 0.54))
    ] + [
        {"arm": a, "budget": "2.2%", "seed": s, "mIoU": v, "labelled_fraction": 0.022}
        for a, vals in (("random", (0.40, 0.44)), ("entropy", (0.50, 0.52)), ("ripu", (0.45, 0.47)))
        for s, v in zip((0, 1), vals)
    ]
    out = rep.summarize(rows, ["1%", "2.2%"])
    ours = next(t for t in out["table"] if t["arm"] == "ada_mcu")
    assert ours["miou"] == pytest.approx(0.52) and ours["sem"] == pytest.approx(math.sqrt(0.0008 / 2))
    (claim,) = out["claims"]
    assert claim["best_baseline"] == "entropy" and claim["best_baseline_miou"] == pytest.approx(0.51)
    assert claim["holds"] is True
    rows[0]["mIoU"] = 0.40  # ADA-MCU mean 0.47 < 0.51
    assert rep.summarize(rows, ["1%", "2.2%"])["claims"][0]["holds"] is False
