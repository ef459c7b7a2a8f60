"""``pickwise demo``: the transfer main job (on a tiny zoo) and the norms job, end to end through the CLI."""

import json

import pytest
import torch

from pickwise.cli.main import main
from pickwise.zoo import ZooEntry

TINY_ZOO = (
    ZooEntry("tiny-digits", "resnet8", "bn", "digits", {"width": 4}, train_subset=256, batch_size=32),
    ZooEntry("tiny-untrained", "resnet8", "bn", None, {"width": 4}, untrained=True),
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_demo_transfer_builds_zoo_ranks_and_finetunes(tmp_path, monkeypatch, capsys):
    import pickwise.zoo

    monkeypatch.setattr(pickwise.zoo, "QUICK_ZOO", TINY_ZOO)
    args = ["demo", "--data", "digits", "--zoo-root", str(tmp_path / "zoo"), "--output-dir", str(tmp_path / "out")]
    assert main(args) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "out" / "transfer" / "transfer.json").read_text())
    assert set(data["ranking"]) == {"zoo:tiny-digits", "zoo:tiny-untrained"}
    assert data["metrics"] == ["emms", "logme", "knn_accuracy"]
    assert set(data["finetune"]) == set(data["ranking"])  # the pick and the runner-up are both fine-tuned
    assert data["pick_verdict"] in ("right", "wrong")
    assert 0.0 <= data["accuracy"] <= 1.0
    assert f"picked {data['picked']} by emms" in out and "zoo" in out and "total" in out
    # the zoo is kept: a second build finds every entry
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir() if not p.name.startswith("_")) == [
        "tiny-digits",
        "tiny-untrained",
    ]


def test_demo_norms_trains_one_model_per_norm(tmp_path, capsys):
    args = ["demo", "norms", "--norms", "bn,gn", "--model", "resnet8", "--train-subset", "64"]
    args += ["--test-subset", "32", "--batch-size", "16", "--output-dir", str(tmp_path)]
    assert main(args) == 0
    rows = json.loads((tmp_path / "demo_results.json").read_text())["runs"]
    assert [r["norm"] for r in rows] == ["bn", "gn"]
    assert all(0.0 <= r["acc"] <= 1.0 for r in rows)
    assert "test acc" in capsys.readouterr().out


def test_demo_unknown_job_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as err:
        main(["demo", "segmentation"])
    assert err.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_demo_bad_target_fails_before_building_the_zoo(tmp_path, capsys):
    assert main(["demo", "--data", "digitz", "--zoo-root", str(tmp_path / "zoo")]) == 2
    assert "unknown dataset 'digitz'; did you mean 'digits'" in capsys.readouterr().err
    assert not (tmp_path / "zoo").exists()
