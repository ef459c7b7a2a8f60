"""``pickwise adaseg``: a tiny train/select/evaluate cycle on stand-in domains, and one-line errors (exit 2)."""

from __future__ import annotations

import json

import pytest

from _helpers.adaseg_standins import RandomDomain, TinyNet
from pickwise.cli.main import main


@pytest.fixture
def standins(monkeypatch):
    import pickwise.tasks.adaseg.run as run_mod

    state = {"source_classes": 3}

    def load_domains(cfg):
        return RandomDomain(6, 0, state["source_classes"]), RandomDomain(4, 1), RandomDomain(3, 2), 3

    monkeypatch.setattr(run_mod, "load_domains", load_domains)
    monkeypatch.setattr(run_mod, "net_factory", lambda cfg, k: lambda: TinyNet(k))
    return state


def _train(tmp_path, *extra):
    return main(
        [
            "adaseg",
            "train",
            "--output-dir",
            str(tmp_path),
            "--name",
            "r",
            "--set",
            "optim.warmup_steps=2",
            "--set",
            "optim.round_steps=2",
            "--set",
            "data.batch_size=2",
            "--rounds",
            "2",
            "--no-figures",
            *extra,
        ]
    )


def test_train_select_evaluate_cycle(tmp_path, standins, capsys):
    assert _train(tmp_path, "--budget", "4/img", "--strategy", "mcu") == 0
    out = capsys.readouterr().out
    assert "round_02" in out and "results:" in out
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["stages"][-1]["labelled_pixels"] == 16
    assert main(["adaseg", "evaluate", "--run-dir", str(tmp_path / "r")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["stage"] == "round_02" and 0 <= metrics["mIoU"] <= 1
    assert main(["adaseg", "select", "--run-dir", str(tmp_path / "r")]) == 2  # every round already selected
    assert "already selected" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "150%"], "at most 100%"),
        (["--budget", "1000"], "target pool has only 256"),
        (["--rounds", "0"], "--rounds must be >= 1"),
        (["--strategy", "entropi"], "unknown acquisition strategy"),
        (["--set", "contrastive.tau=0"], "contrastive.tau"),
    ],
)
def test_bad_input_is_one_line(tmp_path, standins, capsys, args, message):
    assert _train(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_resume_with_changed_budget_and_absent_source_class(tmp_path, standins, capsys):
    assert _train(tmp_path, "--budget", "4/img") == 0
    capsys.readouterr()
    assert _train(tmp_path, "--budget", "4/img") == 2  # a run is there: resume or another folder
    assert "--resume" in capsys.readouterr().err
    assert _train(tmp_path, "--budget", "6/img", "--resume") == 2
    assert "other settings" in capsys.readouterr().err
    standins["source_classes"] = 2  # class 2 never occurs in the source
    assert _train(tmp_path / "x", "--budget", "4/img") == 2
    assert "never occur in the source" in capsys.readouterr().err
