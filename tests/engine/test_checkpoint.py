import json

import pytest
import torch
from torch import nn

from pickwise.engine.checkpoint import (
    find_checkpoints,
    latest_valid_checkpoint,
    load_checkpoint,
    optimizer_state_from_parts,
    optimizer_state_to_parts,
    save_checkpoint,
)
from pickwise.exceptions import CheckpointError


def _model_and_optimizer():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.randn(8, 4)).sum().backward()
    opt.step()
    return model, opt


def test_roundtrip_restores_everything(tmp_path):
    model, opt = _model_and_optimizer()
    path = save_checkpoint(tmp_path, 7, model.state_dict(), opt.state_dict(), {"epoch": 1, "custom": [1, 2]})
    assert path.name == "ckpt-00000007"
    expected_rng = torch.get_rng_state()
    ckpt = load_checkpoint(path)
    assert ckpt.step == 7
    assert ckpt.state["custom"] == [1, 2]
    for key, value in model.state_dict().items():
        assert torch.equal(ckpt.model_state[key], value)
    _, fresh_opt = _model_and_optimizer()
    fresh_opt.load_state_dict(ckpt.optimizer_state)
    for (_, a), (_, b) in zip(
        sorted(opt.state_dict()["state"].items()), sorted(fresh_opt.state_dict()["state"].items())
    ):
        for key in a:
            assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key]))
    assert torch.equal(ckpt.rng_torch, expected_rng)
    assert not list(tmp_path.glob(".tmp-*"))


def test_optimizer_parts_roundtrip_sgd_momentum():
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = optimizer_state_to_parts(opt.state_dict())
    json.dumps(meta)  # everything non-tensor is JSON-able
    restored = optimizer_state_from_parts(tensors, meta)
    assert torch.equal(restored["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"])


def test_keep_last_prunes_oldest(tmp_path):
    model, opt = _model_and_optimizer()
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model.state_dict(), opt.state_dict(), {}, keep_last=2)
    assert [p.name for p in find_checkpoints(tmp_path)] == ["ckpt-00000004", "ckpt-00000005"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "bad_json"])
def test_corrupt_checkpoint_is_a_clear_error_and_older_one_is_used(tmp_path, damage):
    model, opt = _model_and_optimizer()
    save_checkpoint(tmp_path, 1, model.state_dict(), opt.state_dict(), {"epoch": 0})
    newest = save_checkpoint(tmp_path, 2, model.state_dict(), opt.state_dict(), {"epoch": 1})
    target = newest / "model.safetensors"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-10])
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "delete":
        target.unlink()
    else:
        (newest / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"ckpt-00000002 is (corrupt|incomplete)"):
        load_checkpoint(newest)
    with pytest.warns(RuntimeWarning, match="trying the previous checkpoint"):
        ckpt = latest_valid_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.step == 1


def test_half_written_temporary_folder_is_ignored(tmp_path):
    model, opt = _model_and_optimizer()
    save_checkpoint(tmp_path, 3, model.state_dict(), opt.state_dict(), {})
    (tmp_path / ".tmp-ckpt-00000004-99999").mkdir()
    (tmp_path / ".tmp-ckpt-00000004-99999" / "model.safetensors").write_bytes(b"partial")
    assert [p.name for p in find_checkpoints(tmp_path)] == ["ckpt-00000003"]
    assert latest_valid_checkpoint(tmp_path).step == 3


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    assert latest_valid_checkpoint(tmp_path / "nothing") is None
