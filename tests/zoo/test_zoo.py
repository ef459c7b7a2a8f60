import json

import pytest
import torch

from pickwise.exceptions import DataNotFoundError, WeightsIntegrityError
from pickwise.zoo import DEFAULT_ZOO, QUICK_ZOO, ZooEntry, build_zoo, list_zoo, load_zoo_model

ENTRIES = (
    ZooEntry("tiny-digits", "resnet8", "gn", "digits", {"width": 4}, train_subset=256, batch_size=32),
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
    assert len(set(names)) == len(names) >= 8
    assert len({e.data for e in DEFAULT_ZOO if e.data}) >= 4
    assert len({e.norm for e in DEFAULT_ZOO}) >= 4
    assert any(e.pretrained for e in DEFAULT_ZOO) and any(e.untrained for e in DEFAULT_ZOO)
    assert [e.name for e in QUICK_ZOO] == [n for n in names if n != "craft_vgg16_bn-text"]  # too slow for quick
    json.dumps([e.__dict__ for e in DEFAULT_ZOO])
