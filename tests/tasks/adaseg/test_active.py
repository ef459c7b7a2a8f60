"""The active loop: the oracle is the only path to target labels, exact budgets, atomic state, exact resume."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pickwise.exceptions import CheckpointError, ConfigError, RunFolderError
from pickwise.tasks.adaseg.acquisition import get_strategy, parse_budget
from pickwise.tasks.adaseg.active import ImagesOnly, run_active_learning, select_round
from pickwise.tasks.adaseg.config import resolve_adaseg_config
from pickwise.tasks.adaseg.oracle import (
    SelectionState,
    SimulatedOracle,
    latest_selection,
    load_selection,
    save_selection,
)


class TinyNet(nn.Module):
    """Two 3x3 convolutions with a classifier and a projection head (the deeplab output convention)."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        self.cls, self.proj = nn.Conv2d(6, k, 1), nn.Conv2d(6, 4, 1)

    def forward(self, x):
        f = self.body(x)
        return {"logits": self.cls(f), "features": self.proj(f), "stride": 1}


class Domain(torch.utils.data.Dataset):
    """Blocky random label maps; the image is the one-hot label plus a domain shift and noise."""

    def __init__(self, n: int, shift: float, seed: int, size: int = 12) -> None:
        g = torch.Generator().manual_seed(seed)
        lbl = torch.randint(0, 3, (n, 1, 3, 3), generator=g).float()
        self.lbl = nn.functional.interpolate(lbl, size=(size, size), mode="nearest")[:, 0].long()
        onehot = torch.stack([self.lbl == c for c in range(3)], 1).float()
        self.img = onehot + shift + 0.3 * torch.randn(n, 3, size, size, generator=g)

    def __len__(self):
        return len(self.lbl)

    def __getitem__(self, i):
        return self.img[i], self.lbl[i], i


class Trap:
    """A label that must never be touched: any use raises."""

    def __getattr__(self, name):
        raise AssertionError("training read an unlabelled target label")


class TrapPool(Domain):
    def __getitem__(self, i):
        return self.img[i], Trap(), i


class GuardedStore:
    """Ground truth that records every read; reading a pixel twice or beyond the allowed total raises."""

    def __init__(self, labels: torch.Tensor, limit: int) -> None:
        self.labels, self.limit = labels, limit
        self.read_mask = torch.zeros_like(labels, dtype=torch.bool)

    def read(self, index, mask):
        if (self.read_mask[index] & mask).any() or int(self.read_mask.sum() + mask.sum()) > self.limit:
            raise AssertionError("oracle read outside the selection budget")
        self.read_mask[index] |= mask
        return self.labels[index][mask]


def _cfg(tmp_path, *extra):
    return resolve_adaseg_config(
        overrides=[
            "optim.warmup_steps=6",
            "optim.round_steps=4",
            "optim.checkpoint_every=2",
            "active.rounds=2",
            "active.budget=5%",
            "data.batch_size=2",
            "data.eval_batch_size=8",
            "contrastive.anchors_per_class=8",
            f"output_dir={tmp_path}",
            *extra,
        ]
    )


def _run(cfg, run_dir, store=None, net=TinyNet, log=lambda m: None, **kw):
    src, pool, test = Domain(8, 0.0, 0), TrapPool(6, 0.5, 1), Domain(4, 0.5, 2)
    store = store or GuardedStore(Domain(6, 0.5, 1).lbl, limit=10**9)
    return run_active_learning(
        cfg,
        lambda: net(),
        src,
        pool,
        test,
        SimulatedOracle(store),
        run_dir,
        num_classes=3,
        log=log,
        **kw,
    ), store


def test_loop_reads_target_labels_only_through_the_oracle_and_spends_the_budget(tmp_path):
    cfg = _cfg(tmp_path)
    pool_pixels = 6 * 12 * 12
    budget = parse_budget("5%").total_pixels(6, 12, 12)
    results, store = _run(cfg, tmp_path / "run", GuardedStore(Domain(6, 0.5, 1).lbl, limit=budget))
    stages = results["stages"]
    assert [r["stage"] for r in stages] == ["warmup", "round_01", "round_02"]
    assert [r["labelled_pixels"] for r in stages] == [0, budget // 2, budget]
    # every stage trains its configured steps, more than one epoch of the 8 pairs at batch 2 (4 steps)
    import csv

    rows = list(csv.DictReader(open(tmp_path / "run" / "warmup" / "train_log.csv")))
    assert int(rows[-1]["step"]) == 6
    assert stages[-1]["labelled_fraction"] == pytest.approx(budget / pool_pixels)
    final = latest_selection(tmp_path / "run" / "selection")
    assert torch.equal(final.labelled, store.read_mask)  # read exactly the selection, once each
    truth = Domain(6, 0.5, 1).lbl
    assert torch.equal(final.target_labels()[final.labelled], truth[final.labelled])
    assert (final.target_labels()[~final.labelled] == 255).all()
    assert all(r["mIoU"] is not None and len(r["per_class_iou"]) == 3 for r in stages)


def test_resume_between_rounds_is_exact_and_changed_settings_are_refused(tmp_path):
    cfg = _cfg(tmp_path)
    full, _ = _run(cfg, tmp_path / "a")

    class Crash(Exception):
        pass

    def crash(msg):
        if msg.startswith("round_01: mIoU"):
            raise Crash

    with pytest.raises(Crash):
        _run(cfg, tmp_path / "b", log=crash)
    with pytest.raises(RunFolderError):
        _run(cfg, tmp_path / "b")
    resumed, _ = _run(cfg, tmp_path / "b", resume=True)
    assert [r["mIoU"] for r in resumed["stages"]] == [r["mIoU"] for r in full["stages"]]
    assert torch.equal(
        latest_selection(tmp_path / "a" / "selection").labelled, latest_selection(tmp_path / "b" / "selection").labelled
    )
    for change in ("active.budget=4%", "active.strategy=entropy"):
        with pytest.raises(ConfigError, match="other settings"):
            _run(_cfg(tmp_path, change), tmp_path / "b", resume=True)


def test_bad_budgets(tmp_path):
    with pytest.raises(ConfigError, match="target pool has only"):
        _run(_cfg(tmp_path, "active.budget=2000"), tmp_path / "c")
    with pytest.raises(ConfigError, match="only 6 images"):
        _run(_cfg(tmp_path, "active.budget=7img"), tmp_path / "d")


def test_selection_state_roundtrip_and_image_budget(tmp_path):
    pool = Domain(4, 0.0, 3, size=6)
    state = SelectionState.empty(4, 6, 6, {"strategy": "entropy"})
    oracle = SimulatedOracle(GuardedStore(pool.lbl, 10**9))
    state = select_round(
        TinyNet().eval(), ImagesOnly(pool), state, oracle, get_strategy("entropy"), parse_budget("2img"), 1, 2
    )
    assert state.labelled.reshape(4, -1).all(1).sum() == 1 and state.labelled.sum() == 36
    path = save_selection(tmp_path, state)
    back = load_selection(path)
    assert torch.equal(back.labelled, state.labelled) and torch.equal(back.revealed, state.revealed)
    assert back.meta == {"strategy": "entropy"} and back.round == 1
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError):
        load_selection(path)


def test_resume_inside_a_stage_from_the_engine_checkpoint_is_exact(tmp_path):
    cfg = _cfg(tmp_path, "active.rounds=1", "optim.round_steps=6")
    full, _ = _run(cfg, tmp_path / "a")

    class Boom(Exception):
        pass

    class CrashingNet(TinyNet):
        calls = 0

        def forward(self, x):
            if self.training:
                CrashingNet.calls += 1
                if CrashingNet.calls == 6 + 5:  # warm-up steps, then the 5th step of round_01 (checkpoint at 4)
                    raise Boom
            return super().forward(x)

    with pytest.raises(Boom):
        _run(cfg, tmp_path / "b", net=CrashingNet)
    assert (tmp_path / "b" / "round_01" / "checkpoints").is_dir()
    assert not (tmp_path / "b" / "round_01" / "weights.safetensors").exists()
    resumed, _ = _run(cfg, tmp_path / "b", resume=True)
    assert [r["mIoU"] for r in resumed["stages"]] == [r["mIoU"] for r in full["stages"]]
