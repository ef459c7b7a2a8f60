"""pickwise.tasks.classification: the task's accumulators (single vs 2 gloo processes), the typed config API, the
compatibility names of the engine, and the CLI table."""

from __future__ import annotations

import dataclasses
import gc
import os
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from pickwise.engine import TrainConfig, Trainer, TrainerConfig
from pickwise.exceptions import ConfigError, UnknownNameError
from pickwise.tasks.classification import (
    ClassificationTask,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    resolve_run_config,
)


def _data(n: int = 37, classes: int = 4) -> TensorDataset:
    g = torch.Generator().manual_seed(3)
    return TensorDataset(torch.randn(n, 6, generator=g), torch.randint(0, classes, (n,), generator=g))


def _model() -> nn.Module:
    torch.manual_seed(5)
    return nn.Linear(6, 4)


class _Keep(ClassificationTask):
    """Keeps the synced confusion matrix for the test."""

    def compute(self, accumulators):
        self.matrix = accumulators["confusion"].compute()
        return super().compute(accumulators)


def _trainer_config() -> TrainerConfig:
    return TrainerConfig(
        batch_size=4, eval_batch_size=6, train=TrainConfig(device="cpu", progress=False, tensorboard=False)
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _eval_worker(rank: int, world: int, port: int, folder: str, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    trainer = None
    try:
        task = _Keep(num_classes=4)
        trainer = Trainer(_trainer_config(), _model(), _data(), _data(), task, folder, torch.device("cpu"))
        metrics = trainer.evaluate()
        if rank == 0:
            out["metrics"], out["matrix"] = metrics, task.matrix
        dist.barrier()  # no rank tears the group down while the other still talks to it
    finally:
        del trainer  # the DDP wrapper holds the process group: release it before destroying the group
        gc.collect()
        dist.destroy_process_group()


def test_two_gloo_processes_evaluate_exactly_like_one(tmp_path):
    """37 samples sharded 19/18 over 2 processes: loss, top-k, balanced accuracy and confusion matrix all equal."""
    out = mp.Manager().dict()
    mp.spawn(_eval_worker, args=(2, _free_port(), str(tmp_path / "d"), out), nprocs=2, join=True)
    task = _Keep(num_classes=4)
    single = Trainer(
        _trainer_config(), _model(), _data(), _data(), task, tmp_path / "s", torch.device("cpu")
    ).evaluate()
    assert torch.equal(out["matrix"], task.matrix)
    assert out["metrics"]["acc"] == single["acc"] and out["metrics"]["acc5"] == single["acc5"]
    assert out["metrics"]["balanced_acc"] == single["balanced_acc"]
    assert out["metrics"]["loss"] == pytest.approx(single["loss"], rel=1e-6)  # float32 batch sums, other grouping
    # independent float64 reference
    x, y = _data().tensors
    with torch.no_grad():
        logits = _model()(x).double()
    assert single["loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)
    assert single["acc"] == float((logits.argmax(1) == y).double().mean())
    ref = torch.zeros(4, 4, dtype=torch.int64)
    for t, p in zip(y.tolist(), logits.argmax(1).tolist()):
        ref[t, p] += 1
    assert torch.equal(task.matrix, ref)


class _OldProtocol:
    """A task of the first protocol (as reproduce/dgconv's wrapper is): sums + finalize, no log_row."""

    def __init__(self) -> None:
        self.base = ClassificationTask()

    def training_loss(self, model, batch, device, generator):
        return self.base.training_loss(model, batch, device, generator)

    def evaluation_sums(self, model, batch, device):
        return self.base.evaluation_sums(model, batch, device)

    def finalize(self, sums):
        return self.base.finalize(sums)


def test_accumulator_path_equals_the_first_protocol_bit_for_bit(tmp_path):
    """The reported numbers of a classification run do not change with the move to accumulators."""
    cfg = _trainer_config()
    new = Trainer(cfg, _model(), _data(), _data(), ClassificationTask(), tmp_path / "a", torch.device("cpu"))
    old = Trainer(cfg, _model(), _data(), _data(), _OldProtocol(), tmp_path / "b", torch.device("cpu"))
    assert new.evaluate() == old.evaluate()
    totals = {"loss": 3.0, "correct": 2.0, "count": 4.0}
    from pickwise.engine import task_log_row

    assert (
        task_log_row(ClassificationTask(), totals)
        == task_log_row(_OldProtocol(), totals)
        == {
            "loss": 0.75,
            "acc": 0.5,
        }
    )


def test_typed_config_api_validates_and_checks_names_before_data(monkeypatch):
    import pickwise.data

    def refuse(*args, **kwargs):
        raise AssertionError("data loaded")

    monkeypatch.setattr(pickwise.data, "create_dataset", refuse)
    cfg = RunConfig(
        model=ModelConfig(name="resnet8", norm="gn"),
        data=DataConfig(name="digits", batch_size=32),
        optim=OptimConfig(lr=0.05, norm_logit_lr_mult=0.1),
        train=TrainConfig(epochs=2, seed=7),
    )
    resolved = resolve_run_config(cfg)
    assert resolved is not cfg and resolved == cfg
    trainer_cfg = resolved.trainer_config()
    assert (trainer_cfg.batch_size, trainer_cfg.optim.lr, trainer_cfg.train.seed) == (32, 0.05, 7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        trainer_cfg.batch_size = 64  # type: ignore[misc]
    assert dataclasses.replace(trainer_cfg, batch_size=64).batch_size == 64
    cfg.train.seed = 8  # the copies do not follow the caller's object
    assert resolved.train.seed == 7 and trainer_cfg.train.seed == 7
    with pytest.raises(UnknownNameError, match="sx"):
        resolve_run_config(dataclasses.replace(cfg, model=ModelConfig(name="resnet8", norm="sx")))
    with pytest.raises(UnknownNameError):
        resolve_run_config(dataclasses.replace(cfg, model=ModelConfig(name="resnet_nope")))
    with pytest.raises(ConfigError, match="optim.lr"):
        resolve_run_config(dataclasses.replace(cfg, optim=OptimConfig(lr=-1.0)))
    with pytest.raises(ConfigError, match="data.augment"):
        resolve_run_config(dataclasses.replace(cfg, data=DataConfig(name="digits", augment="rotate")))


def test_run_classification_refuses_an_unknown_norm_before_any_data(monkeypatch, tmp_path):
    import pickwise.data
    from pickwise.tasks.classification import resolve_config, run_classification

    monkeypatch.setattr(pickwise.data, "create_dataset", lambda *a, **k: pytest.fail("data loaded"))
    cfg = resolve_config(overrides=["model.norm=sx", "data.name=digits", f"output_dir={tmp_path}", "train.device=cpu"])
    with pytest.raises(UnknownNameError, match="sx"):
        run_classification(cfg)
    assert not any(tmp_path.iterdir())


def test_old_names_still_work_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from pickwise.engine.config import (
            RunConfig as OldRunConfig,
        )
        from pickwise.engine.config import (
            _all_keys,
            config_from_dict,
            resolve_config,
        )
        from pickwise.engine.hooks import SparsestmaxRadiusSchedule
        from pickwise.engine.run import _null_reasons, preflight, run_classification
        from pickwise.engine.tasks import ClassificationTask as OldTask
        from pickwise.engine.trainer import build_optimizer
        from pickwise.tasks.classification import run as new_run

    assert OldRunConfig is RunConfig and OldTask is ClassificationTask
    assert run_classification is new_run.run_classification and preflight is new_run.preflight
    assert "optim.norm_logit_lr_mult" in _all_keys() and callable(_null_reasons)
    assert config_from_dict({"model": {"name": "resnet8"}}).model.name == "resnet8"
    assert resolve_config(overrides=["optim.lr=0.5"]).optim.lr == 0.5
    assert callable(SparsestmaxRadiusSchedule) and callable(build_optimizer)
    # names nobody in the library imports from the old place any more warn when taken from there
    from pickwise.tasks import classification

    with pytest.warns(DeprecationWarning, match="tasks.classification"):
        from pickwise.engine.trainer import is_norm_logit
    with pytest.warns(DeprecationWarning, match="tasks.classification"):
        from pickwise.engine.hooks import training_extras
    assert is_norm_logit is classification.is_norm_logit and training_extras is classification.training_extras
    with pytest.raises(ImportError):
        from pickwise.engine.run import no_such_name  # noqa: F401


def test_cli_table_builds_the_train_subcommand():
    from pickwise.cli.main import build_parser
    from pickwise.tasks import cli_commands
    from pickwise.tasks.classification import CLI_COMMANDS

    assert CLI_COMMANDS == {"train": "pickwise.cli.train:add_parser"}
    assert cli_commands() == {
        "train": "pickwise.cli.train:add_parser",
        "reid": "pickwise.tasks.reid.cli:add_parser",
        "adaseg": "pickwise.tasks.adaseg.cli:add_parser",
        "isp": "pickwise.tasks.isp.cli:add_parser",
    }
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    names = list(sub.choices)
    assert names[0] == "train"
    assert {"demo", "select", "transfer", "zoo", "reproduce", "models", "norms", "datasets"} <= set(names)
    args = parser.parse_args(["train", "--model", "resnet8", "--set", "optim.lr=0.05", "--dry-run"])
    assert args.model == "resnet8" and args.overrides == ["optim.lr=0.05"] and args.dry_run
