"""Non-finite values stop a run: config values are checked, divergence is caught at any step (the last included),
nothing non-finite is saved, results.json is strict JSON; progress is reported off a terminal."""

import io
import json
import math

import pytest
import torch
from torch import nn

from pickwise.cli.main import main
from pickwise.engine.checkpoint import find_checkpoints, load_checkpoint
from pickwise.engine.config import resolve_config
from pickwise.engine.progress import NullProgress, PeriodicProgress, make_progress
from pickwise.engine.run import _null_reasons
from pickwise.engine.tasks import ClassificationTask
from pickwise.engine.trainer import Trainer
from pickwise.exceptions import ConfigError, TrainingDivergedError
from pickwise.utils.validation import check_finite, iter_nonfinite

FAST = [
    "--model",
    "resnet8",
    "--data",
    "digits",
    "--batch-size",
    "32",
    "--no-progress",
    "--set",
    "train.tensorboard=false",
]


@pytest.mark.parametrize(
    "override",
    [
        "optim.lr=.nan",
        "optim.lr=.inf",
        "optim.lr=-.inf",
        "optim.lr=nan",  # YAML 1.1 reads this as a string; float("nan") must still be refused
        "optim.momentum=.nan",
        "optim.weight_decay=.inf",
        "optim.clip_grad_norm=.nan",
        "schedule.milestones=[1, .nan]",
        "schedule.gamma=.inf",
        "model.gamma_decay=.nan",
        "model.kwargs.drop_rate=.nan",
        "model.norm_kwargs.eps=.inf",
    ],
)
def test_every_float_must_be_finite(override):
    with pytest.raises(ConfigError, match="must be a finite number"):
        resolve_config(overrides=[override])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("optim.lr=0", "optim.lr must be > 0"),
        ("optim.momentum=1.5", "optim.momentum must be < 1"),
        ("optim.weight_decay=-1", "optim.weight_decay must be >= 0"),
        ("train.seed=-1", "train.seed must be in"),
        ("train.epochs=100000000000000000000", "64-bit"),
        ("train.device=meta", "train.device must be"),
        ("name=../../x", "inside output_dir"),
        ("name=/abs/path", "inside output_dir"),
        ("name=.", "inside output_dir"),
        ("schedule.min_lr_ratio=2", "min_lr_ratio must be <= 1"),
    ],
)
def test_out_of_range_values(override, match):
    with pytest.raises(ConfigError, match=match):
        resolve_config(overrides=[override])


def test_shared_helpers():
    assert check_finite("x", 1.5) == 1.5 and check_finite("x", 10**30) == 10**30
    with pytest.raises(ValueError, match="x must be a finite number"):
        check_finite("x", math.nan)
    found = list(iter_nonfinite({"a": [1.0, {"b": math.inf}], "c": -math.inf, "d": "nan"}))
    assert found == [("a.1.b", math.inf), ("c", -math.inf)]


class _NanGrad(torch.autograd.Function):
    """Identity forward, NaN gradient: the loss stays finite while the update poisons the weights."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.nan


class _PoisonTask(ClassificationTask):
    def __init__(self, poison_at: int) -> None:
        super().__init__()
        self.calls, self.poison_at = 0, poison_at

    def training_loss(self, model, batch, device, generator):
        loss, stats = super().training_loss(model, batch, device, generator)
        self.calls += 1
        return (_NanGrad.apply(loss) if self.calls == self.poison_at else loss), stats


def _trainer(blob_data, tmp_path, task, *overrides):
    cfg = resolve_config(
        overrides=["data.batch_size=16", "train.progress=false", "train.tensorboard=false", *overrides]
    )
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    return Trainer(cfg, net, blob_data[0], blob_data[1], task, tmp_path, torch.device("cpu"))


@pytest.mark.parametrize(("poison_at", "max_steps"), [(1, 1), (3, 3), (4, 8)])
def test_nonfinite_weights_stop_the_run_at_any_step(blob_data, tmp_path, poison_at, max_steps):
    """Finite loss, weights turned NaN at the last step or at a checkpoint step: caught, nothing NaN saved."""
    trainer = _trainer(
        blob_data, tmp_path, _PoisonTask(poison_at), f"train.max_steps={max_steps}", "checkpoint.every_steps=2"
    )
    with pytest.raises(TrainingDivergedError, match="weights became NaN/infinite"):
        trainer.fit()
    for path in find_checkpoints(tmp_path / "checkpoints"):
        ckpt = load_checkpoint(path)
        assert ckpt.step < poison_at
        assert all(torch.isfinite(t).all() for t in ckpt.model_state.values())


def test_nonfinite_loss_stops_at_that_step(blob_data, tmp_path):
    trainer = _trainer(blob_data, tmp_path, _PoisonTask(2), "train.max_steps=6", "checkpoint.every_steps=4")
    with pytest.raises(TrainingDivergedError, match="loss became nan at step 3"):
        trainer.fit()  # step 2 poisons the weights (no boundary there); step 3's loss is NaN
    assert find_checkpoints(tmp_path / "checkpoints") == []


def test_cli_divergence_is_one_line_and_writes_no_results(tmp_path, capsys):
    args = ["train", *FAST, "--max-steps", "6", "--lr", "1e12", "--output-dir", str(tmp_path), "--name", "d"]
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "train: " in lines[0] and ("loss became" in lines[0] or "weights became" in lines[0])
    assert not (tmp_path / "d" / "results.json").exists() and not (tmp_path / "d" / "model.safetensors").exists()


def test_results_json_is_strict_with_reasons(tmp_path, capsys):
    payload = {"metrics": {"loss": math.inf, "acc": 0.5}, "images_per_second": math.nan, "steps": 3}
    reasons = _null_reasons(payload)
    assert set(reasons) == {"metrics.loss", "images_per_second"}
    assert main(["train", *FAST, "--max-steps", "2", "--output-dir", str(tmp_path), "--name", "ok"]) == 0

    def refuse(name):
        raise AssertionError(f"bare {name} in results.json")

    data = json.loads((tmp_path / "ok" / "results.json").read_text(), parse_constant=refuse)
    assert all(math.isfinite(v) for v in data["metrics"].values()) and "null_reasons" not in data


def test_periodic_progress_off_a_terminal():
    now = [0.0]
    out = io.StringIO()
    bar = PeriodicProgress(100, 10, "run", interval=10.0, stream=out, clock=lambda: now[0])
    for _ in range(25):  # 25 steps, one per second: lines at t=10 and t=20, none between
        now[0] += 1.0
        bar.update(1)
        bar.set_postfix(loss="0.500")
    assert out.getvalue().splitlines() == [
        "run: step 20/100 (20.0%), 1 steps/s, eta 0:01:20, loss=0.500",
        "run: step 30/100 (30.0%), 1 steps/s, eta 0:01:10, loss=0.500",
    ]
    bar.close()
    bar.close()  # the final position once
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1] == "run: step 35/100 (35.0%), 1 steps/s, eta 0:01:05, loss=0.500"


def test_trainer_progress_lines_and_quiet_mode(blob_data, tmp_path, capsys):
    assert isinstance(make_progress(5, enabled=False), NullProgress)
    assert isinstance(make_progress(5), PeriodicProgress)  # pytest's captured stderr is not a terminal
    _trainer(blob_data, tmp_path / "quiet", ClassificationTask(), "train.max_steps=2").fit()
    assert capsys.readouterr().err == ""
    _trainer(blob_data, tmp_path / "loud", ClassificationTask(), "train.max_steps=2", "train.progress=true").fit()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("train: step 2/2 (100.0%)"), err
