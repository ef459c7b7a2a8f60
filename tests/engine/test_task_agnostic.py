"""The engine without classification: a regression task, a growing-pool sampler factory, parameter-group hooks,
TrainerConfig validation, and the rule that the engine imports no task and no ``pickwise.nn`` internals."""

from __future__ import annotations

import ast
import csv
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Sampler, TensorDataset

import pickwise.engine as engine
from pickwise.engine import (
    CheckpointConfig,
    OptimizerConfig,
    ParamGroup,
    ScheduleConfig,
    TrainConfig,
    Trainer,
    TrainerConfig,
    build_optimizer,
    resumable_sampler_factory,
    validate_trainer_config,
)
from pickwise.exceptions import ConfigError
from pickwise.metrics import Accumulator

ENGINE = Path(engine.__file__).parent


class SquaredError(Accumulator):
    """Streaming mean squared error (float64 sum of squares and a count)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("sse", torch.zeros((), dtype=torch.float64))
        self.add_state("n", torch.zeros((), dtype=torch.int64))

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self._add("sse", (pred.double() - target.double()).pow(2).sum())
        self._add("n", torch.tensor(target.numel(), dtype=torch.int64))

    def compute(self) -> float:
        return float(self.sse) / int(self.n)


class RegressionTask:
    """y = x @ w: MSE loss, its own log column (``mse``) and its own evaluation accumulator."""

    def training_loss(self, model, batch, device, generator):
        x, y = batch
        loss = (model(x).squeeze(1) - y).pow(2).mean()
        n = torch.tensor(y.numel())
        return loss, {"sse": loss.detach() * n, "count": n}

    def log_row(self, totals):
        return {"mse": totals["sse"] / max(totals["count"], 1.0)}

    def make_accumulators(self):
        return {"mse": SquaredError()}

    def evaluation_step(self, model, batch, device, accumulators):
        x, y = batch
        accumulators["mse"].update(model(x).squeeze(1), y)

    def compute(self, accumulators):
        return {"mse": accumulators["mse"].compute()}


def _regression_data(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return TensorDataset(x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.01 * torch.randn(n, generator=g))


def _cfg(**loop) -> TrainerConfig:
    loop = {"epochs": 4, "device": "cpu", "progress": False, "tensorboard": False, "log_every": 2, **loop}
    return TrainerConfig(
        batch_size=8,
        optim=OptimizerConfig(lr=0.05, weight_decay=0.0),
        schedule=ScheduleConfig(name="constant"),
        train=TrainConfig(**loop),
    )


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def test_regression_task_trains_through_the_same_trainer(tmp_path):
    train, test = _regression_data(), _regression_data(32, seed=1)
    x, y = test.tensors
    with torch.no_grad():
        initial = float((_linear()(x).squeeze(1).double() - y.double()).pow(2).mean())
    trainer = Trainer(_cfg(), _linear(), train, test, RegressionTask(), tmp_path, torch.device("cpu"))
    result = trainer.fit()
    assert set(result.metrics) == {"mse"} and result.steps == 4 * 8
    with torch.no_grad():
        reference = float((trainer.model(x).squeeze(1).double() - y.double()).pow(2).mean())
    assert result.metrics["mse"] == pytest.approx(reference, rel=1e-12)
    assert result.metrics["mse"] < 0.2 * initial
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert list(rows[0]) == ["step", "epoch", "mse", "lr", "images_per_sec"]  # the task names its columns
    assert float(rows[-1]["mse"]) < float(rows[0]["mse"])
    text = (tmp_path / "config.yaml").read_text()  # the TrainerConfig, nothing about models or data
    assert "batch_size: 8" in text and "model:" not in text and "data:" not in text


class GrowingPool:
    """A labelled pool that grows by 8 samples per epoch (an active-learning round per epoch), shuffled per epoch."""

    def __init__(self, start: int = 16, grow: int = 8) -> None:
        self.start, self.grow, self.calls = start, grow, []

    def __call__(self, dataset, *, epoch, num_replicas, rank, seed) -> Sampler[int]:
        self.calls.append(epoch)
        size = min(len(dataset), self.start + self.grow * epoch)
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(size, generator=g).tolist()
        return order[rank::num_replicas]  # a list is a valid sampler (iterable with a length)


def test_growing_pool_sampler_factory(tmp_path):
    seen: list[list[int]] = []

    class Recording(RegressionTask):
        def training_loss(self, model, batch, device, generator):
            seen[-1].extend(batch[0][:, 0].tolist())
            return super().training_loss(model, batch, device, generator)

    pool = GrowingPool()
    train = _regression_data()
    trainer = Trainer(
        _cfg(epochs=3), _linear(), train, None, Recording(), tmp_path, torch.device("cpu"), sampler_factory=pool
    )
    assert [trainer.steps_in_epoch(e) for e in range(3)] == [2, 3, 4] and trainer.total_steps == 9
    hooks_epochs = []
    trainer.hooks.append(lambda t: (hooks_epochs.append(t.epoch), seen.append([]) if t.step_in_epoch == 0 else None))
    result = trainer.fit()
    assert result.steps == 9 and result.epochs == 3
    assert hooks_epochs == [0, 0, 1, 1, 1, 2, 2, 2, 2]
    firsts = train.tensors[0][:, 0].tolist()
    for epoch, values in enumerate(seen):  # every epoch draws exactly its pool, each sample once
        assert sorted(values) == sorted(firsts[: 16 + 8 * epoch])


class _Stop(Exception):
    pass


@pytest.mark.parametrize("factory", [None, "pool"])
def test_resume_mid_epoch_is_bit_exact_with_any_factory(tmp_path, factory):
    def make(folder):
        fac = GrowingPool() if factory else None
        cfg = dataclasses.replace(_cfg(epochs=3), checkpoint=CheckpointConfig(every_steps=1))
        return Trainer(
            cfg, _linear(), _regression_data(), None, RegressionTask(), folder, torch.device("cpu"), sampler_factory=fac
        )

    full = make(tmp_path / "full")
    full.fit()
    broken = make(tmp_path / "run")
    original = broken._optimizer_step

    def die_at_4(batches):
        if broken.global_step == 4:  # mid-epoch for both (pool: epoch 1 has 3 steps; default: 8 per epoch)
            raise _Stop
        return original(batches)

    broken._optimizer_step = die_at_4
    with pytest.raises(_Stop):
        broken.fit()
    resumed = make(tmp_path / "run")
    resumed.fit(resume=True)
    assert resumed.global_step == full.global_step
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_default_factory_is_the_resumable_sampler():
    s = resumable_sampler_factory(list(range(10)), epoch=2, num_replicas=1, rank=0, seed=4)
    assert s.epoch == 2 and len(s) == 10 and sorted(s) == list(range(10))


def test_param_group_hooks_set_lr_decay_and_clip(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    head = ParamGroup(
        "head", lambda name, p: name.startswith("1."), lr_mult=0.5, weight_decay=None, clip_grad_norm=1e-3
    )
    cfg = dataclasses.replace(_cfg(epochs=1), optim=OptimizerConfig(lr=0.05, weight_decay=0.01))
    opt = build_optimizer(model, cfg, [head])
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1, 2]  # weight | bias | head weight + bias
    assert opt.param_groups[2]["lr_mult"] == 0.5 and opt.param_groups[2]["weight_decay"] == 0.01

    class WithGroups(RegressionTask):
        def param_groups(self, m):
            return [dataclasses.replace(head, weight_decay=0.0)]  # no decay: the clip alone bounds the motion

    before = [p.detach().clone() for p in model[1].parameters()]
    trainer = Trainer(cfg, model, _regression_data(), None, WithGroups(), tmp_path, torch.device("cpu"))
    assert trainer.optimizer.param_groups[2]["lr_mult"] == 0.5
    trainer.fit()
    assert trainer.optimizer.param_groups[2]["lr"] == pytest.approx(0.025)
    # SGD momentum 0.9, 8 steps, clipped gradient norm 1e-3: the head moves at most lr * sum(1 + 0.9 + ...) * 1e-3
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(model[1].parameters(), before)]).norm()
    assert 0 < float(moved) <= 0.025 * 1e-3 * sum(sum(0.9**j for j in range(i + 1)) for i in range(8)) * (1 + 1e-5)


def test_trainer_keeps_a_frozen_copy_of_its_config(tmp_path):
    cfg = _cfg(epochs=1)
    trainer = Trainer(cfg, _linear(), _regression_data(), None, RegressionTask(), tmp_path, torch.device("cpu"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        trainer.config.batch_size = 1  # type: ignore[misc]
    cfg.train.epochs = 99  # the sections were copied on construction
    assert trainer.config.train.epochs == 1 and cfg.train.epochs == 99


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"optim": OptimizerConfig(lr=0.0)}, "optim.lr"),
        ({"optim": OptimizerConfig(name="adam")}, "optim.name"),
        ({"optim": OptimizerConfig(momentum=1.0)}, "optim.momentum"),
        ({"schedule": ScheduleConfig(gamma=float("nan"))}, "schedule.gamma"),
        ({"train": TrainConfig(device="gpu")}, "train.device"),
        ({"train": TrainConfig(epochs=0)}, "train.epochs"),
        ({"checkpoint": CheckpointConfig(keep_last=0)}, "checkpoint.keep_last"),
    ],
)
def test_trainer_config_validation(change, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_trainer_config(dataclasses.replace(TrainerConfig(), **change))


def test_trainer_rejects_an_unknown_config_type(tmp_path):
    with pytest.raises(ConfigError, match="TrainerConfig"):
        Trainer({"lr": 0.1}, _linear(), _regression_data(), None, RegressionTask(), tmp_path, torch.device("cpu"))


def _static_imports(path: Path) -> list[str]:
    """Absolute module names of every import statement in ``path`` (relative ones resolved within pickwise)."""
    tree = ast.parse(path.read_text())
    package = ["pickwise", "engine"]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return names


def test_engine_imports_no_task_and_no_nn_internals():
    offenders = []
    for path in sorted(ENGINE.glob("*.py")):
        for name in _static_imports(path):
            parts = name.split(".")
            if name.startswith("pickwise.tasks"):
                offenders.append(f"{path.name}: {name}")
            if name.startswith("pickwise.nn") and any(p.startswith("_") for p in parts[2:]):
                offenders.append(f"{path.name}: {name}")
    assert not offenders, offenders
    code = (
        "import sys, pickwise.engine, pickwise.engine.trainer, pickwise.engine.config, pickwise.engine.run\n"
        "bad = [m for m in sys.modules if m.startswith(('pickwise.tasks', 'pickwise.nn'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
