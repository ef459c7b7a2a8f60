"""ReIDTask with a stand-in model of the re-ID output contract; the config; run_reid's data checks and centre group."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from pickwise.engine import TrainConfig, TrainerConfig, build_optimizer
from pickwise.exceptions import ConfigError, DataFormatError, ShapeError
from pickwise.tasks.reid import (
    QueryGalleryDataset,
    ReIDLossConfig,
    ReIDNet,
    ReIDTask,
    resolve_reid_config,
)
from pickwise.tasks.reid.losses import CenterLoss, reid_loss
from pickwise.tasks.reid.run import check_reid_dataset, frame_policy_record, metrics_table


class TinyReID(nn.Module):
    """Two 'stages' over mean-pooled clips, with the training dict / eval embedding contract."""

    def __init__(self, num_classes: int = 3, dim: int = 4) -> None:
        super().__init__()
        self.proj = nn.ModuleList([nn.Linear(3, dim), nn.Linear(3, dim)])
        self.heads = nn.ModuleList([nn.Linear(dim, num_classes), nn.Linear(dim, num_classes)])
        self.embed_dim = 2 * dim

    def forward(self, x, camids=None):
        pooled = x.mean(dim=(1, 3, 4))
        feats = [p(pooled) for p in self.proj]
        if self.training:
            return {"logits": [h(f) for h, f in zip(self.heads, feats)], "features": feats}
        return torch.cat(feats, 1)


def _batch(b=6, t=2):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, t, 3, 4, 2, generator=g), torch.tensor([0, 0, 1, 1, 2, 2]), torch.zeros(b, dtype=torch.long)


def test_training_loss_equals_reid_loss_and_log_row():
    torch.manual_seed(0)
    model = TinyReID().train()
    cfg = ReIDLossConfig(margin=None, label_smoothing=0.2)
    task = ReIDTask(cfg)
    clips, pids, cams = _batch()
    loss, stats = task.training_loss(model, (clips, pids, cams), torch.device("cpu"), torch.Generator())
    ref = reid_loss(model(clips), pids, margin=None, label_smoothing=0.2)
    assert torch.allclose(loss, ref["loss"])
    assert float(stats["count"]) == 6 and float(stats["loss"]) == pytest.approx(
        6 * float(ref["loss"].detach()), rel=1e-6
    )
    row = task.log_row({k: float(v) for k, v in stats.items()})
    assert row["loss"] == pytest.approx(float(ref["loss"].detach()), rel=1e-6) and 0 <= row["acc"] <= 1
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ShapeError, match="training-mode output"):
        task.training_loss(model.eval(), (clips, pids, cams), torch.device("cpu"), torch.Generator())


def test_centres_live_in_the_model_with_their_own_group():
    torch.manual_seed(0)
    net = ReIDNet(TinyReID(), [CenterLoss(3, 4), CenterLoss(3, 4)])
    task = ReIDTask(ReIDLossConfig(center_weight=0.5, center_lr_mult=10.0))
    cfg = TrainerConfig(batch_size=6, train=TrainConfig(device="cpu"))
    opt = build_optimizer(net, cfg, task.param_groups(net))
    group = [g for g in opt.param_groups if g["lr_mult"] == 10.0]
    assert len(group) == 1 and group[0]["weight_decay"] == 0.0 and len(group[0]["params"]) == 2
    loss, stats = task.training_loss(net.train(), _batch(), torch.device("cpu"), torch.Generator())
    loss.backward()
    assert net.centers[0].centers.grad is not None and float(stats["center"]) > 0
    assert task.param_groups(TinyReID()) == []


def test_evaluation_through_accumulator_matches_evaluate_rank():
    from pickwise.metrics import evaluate_rank

    torch.manual_seed(1)
    model = TinyReID().eval()
    g = torch.Generator().manual_seed(2)
    clips = torch.randn(10, 2, 3, 4, 2, generator=g)
    pids = torch.tensor([1, 2, 3, 1, 2, 3, 1, 2, 3, 4])
    cams = torch.tensor([0, 0, 0, 1, 1, 1, 2, 0, 1, 1])
    is_q = torch.tensor([True] * 3 + [False] * 7)
    task = ReIDTask()  # cosine distance by default
    accs = task.make_accumulators()
    for lo, hi in ((0, 4), (4, 10)):  # two batches
        batch = (clips[lo:hi], pids[lo:hi], cams[lo:hi], is_q[lo:hi], torch.arange(lo, hi))
        task.evaluation_step(model, batch, torch.device("cpu"), accs)
    got = task.compute(accs)
    with torch.no_grad():
        f = torch.nn.functional.normalize(model(clips).double(), dim=1)
    dist = 1 - f[:3] @ f[3:].t()
    ref = evaluate_rank(dist.numpy(), pids[:3], pids[3:], cams[:3], cams[3:], max_rank=7)
    assert got["rank1"] == pytest.approx(ref.rank(1)) and got["mAP"] == pytest.approx(ref.mAP, rel=1e-5)
    assert task.last_accumulator is accs["retrieval"]
    with pytest.raises(ShapeError):
        task.evaluation_step(model, batch[:3], torch.device("cpu"), accs)


def test_query_gallery_dataset_order():
    q = [(torch.zeros(1), 1, 0)] * 2
    g = [(torch.ones(1), 2, 1)] * 3
    ds = QueryGalleryDataset(q, g)
    assert len(ds) == 5
    assert [ds[i][3] for i in range(5)] == [True, True, False, False, False]
    assert [ds[i][4] for i in range(5)] == list(range(5)) and ds[3][1] == 2


def test_config_overrides_and_errors(tmp_path):
    cfg = resolve_reid_config(overrides=["sampler.num_identities=4", "sampler.num_instances=2", "loss.margin=null"])
    assert cfg.trainer_config().batch_size == 8 and cfg.loss.margin is None
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: vit_frame_avg_tiny\n  kwargs: {depth: 2}\ndata:\n  seq_len: 6\n")
    cfg = resolve_reid_config([path], ["model.kwargs.num_heads=2"])
    assert cfg.model.kwargs == {"depth": 2, "num_heads": 2} and cfg.data.seq_len == 6
    for bad, match in (
        ("loss.margn=1", "did you mean 'loss.margin'"),
        ("data.test_frames=all", "different lengths"),
        ("sampler.num_instances=1", "num_instances"),
        ("data.seq_len=0", "seq_len"),
        ("loss.label_smoothing=1.0", "label_smoothing"),
        ("model.kwargs.num_classes=3", "set from the data"),
        ("eval.metric=l1", "eval.metric"),
    ):
        with pytest.raises(ConfigError, match=match):
            resolve_reid_config(overrides=[bad])


def test_dataset_checks_and_frame_record():
    from pickwise.tasks.reid.datasets import Tracklet, VideoReIDDataset

    def t(pid, cam, n=3):
        return Tracklet(tuple(f"{pid}_{cam}_{i}.jpg" for i in range(n)), pid, cam)

    ds = VideoReIDDataset("toy", ".", [t(0, 0), t(0, 1, 2), t(1, 0)], [t(5, 0)], [t(5, 1, 1), t(6, 0)], 2, 2)
    cfg = resolve_reid_config(overrides=["sampler.num_identities=2", "data.seq_len=3"])
    check_reid_dataset(ds, cfg)
    rec = frame_policy_record(ds, cfg)
    assert rec["short_tracklets_padded"] == {"train": 1, "query": 0, "gallery": 1} and rec["seq_len"] == 3
    with pytest.raises(DataFormatError, match="fewer than P"):
        check_reid_dataset(ds, dataclasses.replace(cfg, sampler=dataclasses.replace(cfg.sampler, num_identities=3)))
    same_cam = dataclasses.replace(ds, gallery=[t(5, 0), t(6, 1)])
    with pytest.raises(DataFormatError, match="none of the 1 queries"):
        check_reid_dataset(same_cam, cfg)
    with pytest.raises(DataFormatError, match="no frames"):
        check_reid_dataset(dataclasses.replace(ds, train=[*ds.train, Tracklet((), 1, 1)]), cfg)
    table = metrics_table({"a": dict.fromkeys(("rank1", "rank5", "rank10", "rank20", "mAP", "mINP"), 0.5)})
    assert "| a | 50.0 | 50.0 |" in table


def test_build_model_freezes_prefixes_and_checks_them():
    from pickwise.tasks.reid.run import build_reid_model

    tiny = "model.kwargs={embed_dim: 16, depth: 3, num_heads: 2, patch_size: 8, stride: 8}"
    sizes = ["data.height=16", "data.width=8", "data.seq_len=2"]
    plain = build_reid_model(resolve_reid_config(overrides=[tiny, *sizes]), num_classes=4, num_cameras=2)
    fixed = {n for n, p in plain.backbone.named_parameters() if not p.requires_grad}  # e.g. BNNeck biases
    cfg = resolve_reid_config(overrides=[tiny, *sizes, "model.freeze=[blocks.0., patch_embed]"])
    net = build_reid_model(cfg, num_classes=4, num_cameras=2)
    frozen = {n for n, p in net.backbone.named_parameters() if not p.requires_grad} - fixed
    assert frozen and all(n.startswith(("blocks.0.", "patch_embed")) for n in frozen)
    assert any(n.startswith("blocks.1.") for n, p in net.backbone.named_parameters() if p.requires_grad)
    with pytest.raises(ConfigError, match="matches no parameter"):
        build_reid_model(resolve_reid_config(overrides=[tiny, *sizes, "model.freeze=[nothing.]"]), 4, 2)
    with pytest.raises(ConfigError, match="cannot be built"):
        build_reid_model(resolve_reid_config(overrides=["model.kwargs.not_an_option=1", *sizes]), 4, 2)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _ClipSet(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.clips = torch.randn(n, 2, 3, 4, 2, generator=g)
        self.pids = (torch.arange(n) % 5).tolist()
        self.cams = (torch.arange(n) // 5 % 2).tolist()

    def __len__(self) -> int:
        return len(self.pids)

    def __getitem__(self, i: int):
        return self.clips[i], self.pids[i], self.cams[i]


def _dist_eval_worker(rank: int, world: int, port: int, folder: str, out: dict) -> None:
    import gc
    import os

    import torch.distributed as dist

    from pickwise.engine import Trainer
    from pickwise.tasks.reid.samplers import pk_sampler_factory

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    trainer = None
    try:
        torch.manual_seed(0)
        train, evaluation = _ClipSet(20, 1), QueryGalleryDataset(_ClipSet(7, 2), _ClipSet(23, 3))
        cfg = TrainerConfig(batch_size=8, eval_batch_size=6, train=TrainConfig(device="cpu", progress=False))
        factory = pk_sampler_factory(train.pids, 4, 2)
        trainer = Trainer(cfg, TinyReID(5), train, evaluation, ReIDTask(), folder, torch.device("cpu"),
                          sampler_factory=factory)  # fmt: skip
        metrics = trainer.evaluate()
        if rank == 0:
            out["metrics"] = metrics
        if world > 1:
            dist.barrier()
    finally:
        del trainer
        gc.collect()
        if world > 1:
            dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_evaluate_like_one(tmp_path):
    import torch.multiprocessing as mp

    single: dict = {}
    _dist_eval_worker(0, 1, _free_port(), str(tmp_path / "one"), single)
    manager = mp.Manager()
    shared = manager.dict()
    mp.spawn(_dist_eval_worker, args=(2, _free_port(), str(tmp_path / "two"), shared), nprocs=2)
    assert dict(shared)["metrics"] == pytest.approx(single["metrics"], abs=1e-6)
    assert single["metrics"]["num_valid_queries"] > 0


def test_multi_clip_evaluation_averages_the_clip_embeddings():
    from pickwise.tasks.reid import ReIDEvalConfig

    torch.manual_seed(3)
    model = TinyReID().eval()
    g = torch.Generator().manual_seed(4)
    clips = torch.randn(6, 4, 3, 4, 2, generator=g)  # k = 2 clips of T = 2 frames per tracklet
    pids, cams = torch.tensor([1, 2, 1, 2, 3, 3]), torch.tensor([0, 0, 1, 1, 1, 0])
    is_q = torch.tensor([True, True, False, False, False, False])
    seen = {}

    class Keep:
        def update(self, feats, pids, camids, is_query, index=None):
            seen["feats"] = feats

    task = ReIDTask(evaluation=ReIDEvalConfig(test_clips=2))
    task.evaluation_step(model, (clips, pids, cams, is_q, torch.arange(6)), torch.device("cpu"), {"retrieval": Keep()})
    with torch.no_grad():
        expected = (model(clips[:, :2]) + model(clips[:, 2:])) / 2
    assert torch.allclose(seen["feats"], expected, atol=1e-6)
    with pytest.raises(ShapeError, match="test_clips"):
        ReIDTask(evaluation=ReIDEvalConfig(test_clips=3)).evaluation_step(
            model, (clips, pids, cams, is_q, torch.arange(6)), torch.device("cpu"), {"retrieval": Keep()}
        )
