import io
import json
import re
import shutil
from dataclasses import replace

import pytest
import torch

from pickwise.exceptions import DataNotFoundError, WeightsIntegrityError
from pickwise.zoo import DEFAULT_ZOO, QUICK_ZOO, ZooEntry, build_zoo, list_zoo, load_zoo_model
from pickwise.zoo import build as zoo_build
from pickwise.zoo.spec import FLOOR_MARGIN, accuracy_floor, entry_settings

ENTRIES = (
    ZooEntry("tiny-digits", "resnet8", "gn", "digits", {"width": 4}, epochs=2, batch_size=32),
    ZooEntry("tiny-untrained", "resnet8", "bn", None, {"width": 4}, untrained=True),
)


@pytest.fixture(scope="module")
def zoo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    build_zoo(root, ENTRIES)
    return root


def test_build_stores_records_and_weights(zoo_root):
    records = {r["name"]: r for r in list_zoo(zoo_root)}
    assert set(records) == {"tiny-digits", "tiny-untrained"}
    trained = records["tiny-digits"]
    assert trained["source_data"] == "digits" and trained["num_features"] == 16
    assert 0.0 <= trained["source_test_acc"] <= 1.0
    assert len(trained["sha256"]) == 64


def test_load_round_trip_and_features(zoo_root):
    model, meta = load_zoo_model(zoo_root, "tiny-digits")
    assert not model.training
    features = model.forward_head(model.forward_features(torch.randn(3, 1, 8, 8)), pre_logits=True)
    assert features.shape == (3, meta["num_features"])


def test_second_build_reuses_entries(zoo_root):
    before = (zoo_root / "tiny-digits" / "entry.json").stat().st_mtime_ns
    records = build_zoo(zoo_root, ENTRIES)
    assert [r["name"] for r in records] == ["tiny-digits", "tiny-untrained"]
    assert (zoo_root / "tiny-digits" / "entry.json").stat().st_mtime_ns == before


def test_tampered_weights_and_missing_entry(zoo_root, tmp_path):
    import shutil

    copy = tmp_path / "zoo"
    shutil.copytree(zoo_root, copy)
    weights = copy / "tiny-untrained" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="sha256"):
        load_zoo_model(copy, "tiny-untrained")
    with pytest.raises(DataNotFoundError, match="pickwise zoo build"):
        load_zoo_model(copy, "nope")


def test_default_zoo_is_diverse():
    names = [e.name for e in DEFAULT_ZOO]
    assert len(set(names)) == len(names) >= 12
    assert len({e.data for e in DEFAULT_ZOO if e.data}) >= 4
    assert len({e.norm for e in DEFAULT_ZOO}) >= 4
    assert sum(e.untrained for e in DEFAULT_ZOO) >= 2
    pretrained = {e.model for e in DEFAULT_ZOO if e.pretrained}
    assert pretrained == {"mobilenet_v2", "craft_vgg16_bn"}
    blocks = sorted(e.kwargs["features_only_block"] for e in DEFAULT_ZOO if "features_only_block" in e.kwargs)
    assert len(blocks) >= 3
    mnist = [e for e in DEFAULT_ZOO if e.data == "mnist-5k" and e.model == "resnet20" and e.norm == "bn"]
    assert len({(e.epochs, e.train_subset) for e in mnist}) >= 2  # several training lengths
    quick = [e.name for e in QUICK_ZOO]
    assert set(quick) <= set(names) and "craft_vgg16_bn-text" not in quick  # too slow for the demo
    assert all(e.epochs == 1 and e.train_subset <= 1200 for e in QUICK_ZOO if e.data)
    json.dumps([e.__dict__ for e in DEFAULT_ZOO])


def test_trained_entries_reach_the_floor(zoo_root):
    record = {r["name"]: r for r in list_zoo(zoo_root)}["tiny-digits"]
    assert record["accuracy_floor"] == pytest.approx(0.1 + FLOOR_MARGIN)
    assert record["source_test_acc"] >= record["accuracy_floor"]
    assert record["settings"] == entry_settings(ENTRIES[0])


def test_accuracy_floor():
    assert accuracy_floor(10) == pytest.approx(0.3)
    assert accuracy_floor(3) == pytest.approx(1 / 3 + 0.2)


def _fake_training(monkeypatch, accuracies):
    """Replace the training by a stub returning the given accuracies in turn; returns the recipes it saw."""
    seen = []

    def fake(entry, root, **kwargs):
        seen.append(entry)
        model = zoo_build._static_entry(replace(entry, untrained=True))[0]
        acc = accuracies[len(seen) - 1]
        return model, {"source_test_acc": acc, "num_classes": 10, "in_chans": 1, "chance": 0.1}

    monkeypatch.setattr(zoo_build, "_train_entry", fake)
    return seen


def test_below_floor_retries_then_drops(monkeypatch, tmp_path):
    entry = ZooEntry("weak", "resnet8", "bn", "digits", {"width": 4}, epochs=1, lr=0.04)
    seen = _fake_training(monkeypatch, [0.12, 0.15])
    out = io.StringIO()
    records = build_zoo(tmp_path, (entry,), stream=out)
    assert records == [] and list_zoo(tmp_path) == []
    assert [(e.epochs, e.lr) for e in seen] == [(1, 0.04), (2, 0.02)]  # the fixed recipe change
    text = out.getvalue()
    assert "below the floor 0.300" in text and "retrying with twice the epochs at half the learning rate" in text
    assert "zoo: dropping weak: source test accuracy 0.150 stays below the floor 0.300 after a retry" in text


def test_retry_that_passes_is_kept(monkeypatch, tmp_path):
    entry = ZooEntry("late", "resnet8", "bn", "digits", {"width": 4}, epochs=1)
    _fake_training(monkeypatch, [0.2, 0.9])
    (record,) = build_zoo(tmp_path, (entry,), progress=False)
    assert record["source_test_acc"] == 0.9 and record["epochs"] == 2
    assert [a["source_test_acc"] for a in record["attempts"]] == [0.2, 0.9]
    assert record["settings"] == entry_settings(entry)  # requested settings: a rebuild is not triggered again


def test_force_rebuilds_every_entry(zoo_root, tmp_path):
    copy = tmp_path / "zoo"
    shutil.copytree(zoo_root, copy)
    before = {r["name"]: r["build_seconds"] for r in list_zoo(copy)}
    out = io.StringIO()
    records = build_zoo(copy, ENTRIES, force=True, stream=out)
    assert [r["name"] for r in records] == ["tiny-digits", "tiny-untrained"]
    assert "zoo: building 2 of 2 entries" in out.getvalue()
    assert "different settings" not in out.getvalue() and "skipping" not in out.getvalue()
    assert {r["name"]: r["build_seconds"] for r in list_zoo(copy)} != before
    assert records[0]["source_test_acc"] >= records[0]["accuracy_floor"]


def test_other_settings_rebuild_and_progress_lines(zoo_root, tmp_path):
    """A quick-then-full build retrains (no stale resume, no skip), and progress lines name entry, epoch and step."""
    copy = tmp_path / "zoo"
    shutil.copytree(zoo_root, copy)
    longer = replace(ENTRIES[0], epochs=3)
    out = io.StringIO()
    (record,) = build_zoo(copy, (longer,), stream=out, heartbeat_seconds=0.02)
    text = out.getvalue()
    assert "tiny-digits was built with other settings; rebuilding it" in text
    assert "zoo: 1/1 tiny-digits: training resnet8/gn on digits, 3 epoch(s) on 1438 images" in text
    assert re.search(r"zoo: 1/1 tiny-digits: (starting, step 0|epoch [1-3]/3, step \d+)/132", text), text
    assert re.search(r"zoo: 1/1 tiny-digits: done in \d+ s, source test accuracy 0\.\d{3}", text)
    assert record["settings"]["epochs"] == 3 and record["epochs"] == 3


def test_time_estimate_matches_the_help_text():
    from pickwise.cli import zoo as zoo_cli

    claimed = float(re.search(r"about (\d+(?:\.\d+)?) min", zoo_cli.QUICK_TIME_TEXT).group(1)) * 60
    assert 0.5 <= zoo_build.estimate_seconds(QUICK_ZOO) / claimed <= 2.0
    claimed_full = float(re.search(r"about (\d+(?:\.\d+)?) min", zoo_cli.FULL_TIME_TEXT).group(1)) * 60
    assert 0.5 <= zoo_build.estimate_seconds(DEFAULT_ZOO) / claimed_full <= 2.0
    assert len(QUICK_ZOO) == zoo_cli.QUICK_COUNT
