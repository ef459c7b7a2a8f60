"""``pickwise demo``: the transfer main job (on a tiny zoo) and the norms job, end to end through the CLI."""

import json

import pytest
import torch

from pickwise.cli.main import main
from pickwise.zoo import ZooEntry

TINY_ZOO = (
    ZooEntry("tiny-digits", "resnet8", "bn", "digits", {"width": 8}, epochs=2, train_subset=512, batch_size=32),
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
    monkeypatch.chdir(tmp_path)  # nothing may land in ./runs
    args = ["demo", "--data", "digits", "--output-dir", str(tmp_path / "out"), "--extra-models", "resnet8:random"]
    args += ["--image-size", "8", "--encoder", "hashing:32", "--stability-resamples", "5", "--no-progress"]
    args += ["--score-subset", "300", "--finetune-subset", "256", "--finetune-test-subset", "100"]
    assert main(args) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "out" / "transfer" / "transfer.json").read_text())
    assert set(data["ranking"]) == {"zoo:tiny-digits", "zoo:tiny-untrained", "resnet8:random"}
    assert data["metrics"] == ["emms", "logme", "knn_accuracy"]
    assert set(data["finetune"]) == set(data["ranking"][:2])  # the pick and the runner-up are both fine-tuned
    assert data["pick_verdict"] in ("right", "wrong")
    assert 0.0 <= data["accuracy"] <= 1.0
    assert f"picked {data['picked']} by emms" in out and "zoo" in out and "total" in out
    assert "resamples of the scored images" in out and data["recommendation"]["stability_resamples"] == 5
    # everything stays under --output-dir, the zoo included, and the zoo is kept between runs
    assert sorted(p.name for p in (tmp_path / "out" / "zoo").iterdir() if not p.name.startswith("_")) == [
        "tiny-digits",
        "tiny-untrained",
    ]
    assert not (tmp_path / "runs").exists()


def test_demo_default_candidates_are_real_pretrained_networks():
    from pickwise.cli.demo import DEMO_EXTRA_MODELS, DEMO_TARGETS
    from pickwise.selection.features import parse_candidate_spec

    specs = [parse_candidate_spec(s) for s in DEMO_EXTRA_MODELS.split(",")]
    assert specs == [("mobilenet_v2", True), ("craft_vgg16_bn", True)]
    assert DEMO_TARGETS[0] == "photo-patches"


def _fashion_mnist_missing() -> bool:
    from pickwise.data import get_dataset_info
    from pickwise.exceptions import DataNotFoundError

    try:
        get_dataset_info("fashion-mnist")
    except DataNotFoundError:
        return True
    return False


@pytest.mark.skipif(_fashion_mnist_missing(), reason="the Fashion-MNIST files are not installed")
def test_demo_norms_trains_one_model_per_norm(tmp_path, capsys):
    args = ["demo", "norms", "--norms", "bn,gn", "--model", "resnet8", "--train-subset", "64"]
    args += ["--test-subset", "32", "--batch-size", "16", "--output-dir", str(tmp_path)]
    assert main(args) == 0
    rows = json.loads((tmp_path / "demo_results.json").read_text())["runs"]
    assert [r["norm"] for r in rows] == ["bn", "gn"]
    assert all(0.0 <= r["acc"] <= 1.0 for r in rows)
    assert "test acc" in capsys.readouterr().out


def test_demo_unknown_job_is_a_usage_error(capsys):
    try:
        code = main(["demo", "segmentation"])
    except SystemExit as err:  # argparse's own exit, when main does not catch usage errors
        code = err.code
    assert code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_demo_bad_target_fails_before_building_the_zoo(tmp_path, capsys):
    assert main(["demo", "--data", "digitz", "--output-dir", str(tmp_path)]) == 2
    assert "unknown dataset 'digitz'; did you mean 'digits'" in capsys.readouterr().err
    assert not (tmp_path / "zoo").exists()
