import csv

import pytest
import torch
from torch import nn

from pickwise.engine.config import resolve_config
from pickwise.engine.tasks import ClassificationTask
from pickwise.engine.trainer import Trainer


def tiny_net(dropout: float = 0.2) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.GroupNorm(2, 8),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 4),
    )


def make_trainer(blob_data, tmp_path, *overrides, dropout=0.2, augment="none"):
    cfg = resolve_config(
        overrides=[
            "train.epochs=3",
            "data.batch_size=16",
            "optim.lr=0.1",
            "train.progress=false",
            "train.tensorboard=false",
            "train.log_every=2",
            *overrides,
        ]
    )
    train, test = blob_data
    return Trainer(
        cfg, tiny_net(dropout), train, test, ClassificationTask(augment=augment), tmp_path, torch.device("cpu")
    )


def test_learns_and_logs(blob_data, tmp_path):
    trainer = make_trainer(blob_data, tmp_path)
    result = trainer.fit()
    assert result.steps == 3 * 8
    assert result.metrics["acc"] > 0.9
    assert set(result.metrics) == {"loss", "acc", "acc5"}
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(2, 25, 2))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    evals = list(csv.DictReader(open(tmp_path / "eval_log.csv")))
    assert [int(r["epoch"]) for r in evals] == [1, 2, 3]
    assert len(list((tmp_path / "checkpoints").iterdir())) == 3  # keep_last=3, one per epoch


def test_run_twice_is_identical(blob_data, tmp_path):
    a = make_trainer(blob_data, tmp_path / "a", augment="crop_flip")
    a.fit()
    b = make_trainer(blob_data, tmp_path / "b", augment="crop_flip")
    b.fit()
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("stop_at", [7, 8, 13])
def test_resume_in_process_is_bit_exact(blob_data, tmp_path, stop_at):
    """Interrupted at step `stop_at` (mid-epoch or at an epoch boundary), resumed: same weights as uninterrupted."""
    overrides = ("checkpoint.every_steps=3", "data.augment=crop_flip", "schedule.warmup_epochs=0.5")
    full = make_trainer(blob_data, tmp_path / "full", *overrides, augment="crop_flip")
    full.fit()

    broken = make_trainer(blob_data, tmp_path / "run", *overrides, augment="crop_flip")
    original = broken._optimizer_step

    def step_then_maybe_die(batches):
        if broken.global_step == stop_at:
            raise _Interrupt
        return original(batches)

    broken._optimizer_step = step_then_maybe_die
    with pytest.raises(_Interrupt):
        broken.fit()
    torch.manual_seed(1234)  # a different global RNG state must not matter
    resumed = make_trainer(blob_data, tmp_path / "run", *overrides, augment="crop_flip")
    result = resumed.fit(resume=True)
    assert result.steps == full.global_step
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    rows = list(csv.DictReader(open(tmp_path / "run" / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(2, 25, 2))  # no duplicated rows after the resume


def test_gradient_accumulation_matches_large_batch(blob_data, tmp_path):
    big = make_trainer(blob_data, tmp_path / "big", "data.batch_size=16", dropout=0.0)
    big.fit()
    acc = make_trainer(blob_data, tmp_path / "acc", "data.batch_size=8", "train.grad_accum_steps=2", dropout=0.0)
    acc.fit()
    assert acc.global_step == big.global_step
    for key, value in big.model.state_dict().items():
        torch.testing.assert_close(acc.model.state_dict()[key], value, rtol=1e-5, atol=1e-6)


def test_bf16_autocast_on_cpu(blob_data, tmp_path):
    trainer = make_trainer(blob_data, tmp_path, "train.amp=bf16", "train.epochs=1")
    result = trainer.fit()
    assert trainer.amp_dtype == torch.bfloat16
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert 0.0 <= result.metrics["acc"] <= 1.0


def test_batch_larger_than_dataset_is_a_clear_error(blob_data, tmp_path):
    from pickwise.exceptions import ConfigError

    with pytest.raises(ConfigError, match="fewer than one optimizer step"):
        make_trainer(blob_data, tmp_path, "data.batch_size=256")


def test_max_steps_and_final_checkpoint(blob_data, tmp_path):
    trainer = make_trainer(blob_data, tmp_path, "train.max_steps=5")
    result = trainer.fit()
    assert result.steps == 5
    assert (tmp_path / "checkpoints" / "ckpt-00000005").is_dir()


class _Mixture(nn.Module):
    """A stand-in for an SN layer: its logits are named like SN's."""

    def __init__(self) -> None:
        super().__init__()
        self.mean_weight = nn.Parameter(torch.zeros(3))
        self.var_weight = nn.Parameter(torch.zeros(3))
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.scale + self.mean_weight.softmax(0)[0] + self.var_weight.softmax(0)[0]


def test_optimizer_groups_for_mixture_logits():
    from pickwise.engine.trainer import build_optimizer
    from pickwise.tasks.classification import is_norm_logit

    cfg = resolve_config(overrides=["optim.norm_logit_lr_mult=0.1", "optim.weight_decay=0.01"])
    model = nn.Sequential(nn.Conv2d(1, 2, 3), _Mixture())
    groups = build_optimizer(model, cfg).param_groups
    assert [len(g["params"]) for g in groups] == [1, 2, 2]  # conv weight | conv bias + scale | two logits
    assert groups[2]["lr_mult"] == 0.1
    assert groups[2]["weight_decay"] == 0.0 and groups[0]["weight_decay"] == 0.01
    assert is_norm_logit("layer1.0.bn1.mean_weight") and not is_norm_logit("layer1.0.bn1.weight")


def test_hooks_and_regularizer(blob_data, tmp_path):
    seen = []
    cfg = resolve_config(
        overrides=[
            "train.epochs=1",
            "data.batch_size=16",
            "train.progress=false",
            "train.tensorboard=false",
            "train.log_every=4",
            "optim.weight_decay=0",
        ]
    )
    train, test = blob_data

    def run(regularizer, name):
        trainer = Trainer(
            cfg,
            tiny_net(0.0),
            train,
            test,
            ClassificationTask(),
            tmp_path / name,
            torch.device("cpu"),
            hooks=[lambda t: seen.append(t.global_step)],
            regularizer=regularizer,
        )
        trainer.fit()
        return trainer

    plain = run(None, "plain")
    assert seen == list(range(8))
    decayed = run(lambda m: 10.0 * m[-1].weight.pow(2).sum(), "decayed")
    assert decayed.model[-1].weight.norm() < 0.5 * plain.model[-1].weight.norm()
    rows = list(csv.DictReader(open(tmp_path / "decayed" / "train_log.csv")))
    assert "regularizer" in rows[0] and float(rows[0]["regularizer"]) > 0
