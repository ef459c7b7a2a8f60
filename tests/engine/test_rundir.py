"""Run folders never mix or lose runs: refusal/--overwrite, run ids on checkpoints, per-run pruning, the folder lock,
and a train_log.csv after a resume identical to the uninterrupted run's."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from pickwise.cli.main import main
from pickwise.engine.checkpoint import find_checkpoints, latest_valid_checkpoint, load_checkpoint, save_checkpoint
from pickwise.engine.config import resolve_config
from pickwise.engine.rundir import RunLock, read_run_id
from pickwise.engine.tasks import ClassificationTask
from pickwise.engine.trainer import Trainer
from pickwise.exceptions import CheckpointError, RunLockedError

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


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 4))


def make_trainer(blob_data, run_dir, *overrides):
    cfg = resolve_config(
        overrides=[
            "train.epochs=3",
            "data.batch_size=16",
            "train.progress=false",
            "train.tensorboard=false",
            "data.augment=crop_flip",
            *overrides,
        ]
    )
    train, test = blob_data
    return Trainer(cfg, tiny_net(), train, test, ClassificationTask(augment="crop_flip"), run_dir, torch.device("cpu"))


class _Interrupt(Exception):
    pass


def _interrupt_at(trainer, step):
    original = trainer._optimizer_step

    def step_then_maybe_die(batches):
        if trainer.global_step == step:
            raise _Interrupt
        return original(batches)

    trainer._optimizer_step = step_then_maybe_die


def _one_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("pickwise: error: "), err
    return lines[0]


def test_new_run_in_old_folder_never_prunes_or_resumes_the_old_run(blob_data, tmp_path):
    """The reported data loss: an old run's ckpt-8/10/12 must not make the new run's checkpoints look stale."""
    old = make_trainer(blob_data, tmp_path, "train.max_steps=12", "checkpoint.every_steps=2")
    old.fit()
    old_ckpts = [p.name for p in find_checkpoints(tmp_path / "checkpoints")]
    assert old_ckpts == ["ckpt-00000008", "ckpt-00000010", "ckpt-00000012"]

    reference = make_trainer(
        blob_data, tmp_path / "ref", "train.max_steps=6", "checkpoint.every_steps=2", "train.seed=5"
    )
    reference.fit()
    new = make_trainer(blob_data, tmp_path, "train.max_steps=6", "checkpoint.every_steps=2", "train.seed=5")
    _interrupt_at(new, 5)
    with pytest.raises(_Interrupt):
        new.fit()
    assert new.run_id != old.run_id and read_run_id(tmp_path) == new.run_id
    mine = find_checkpoints(tmp_path / "checkpoints", new.run_id)
    assert [p.name for p in mine] == ["ckpt-00000002", "ckpt-00000004"]  # nothing of the new run was pruned
    assert len(find_checkpoints(tmp_path / "checkpoints", old.run_id)) == 3  # and the old run's are untouched

    resumed = make_trainer(blob_data, tmp_path, "train.max_steps=6", "checkpoint.every_steps=2", "train.seed=5")
    result = resumed.fit(resume=True)  # must pick the new run's ckpt-4, not the old run's ckpt-12
    assert result.steps == 6 and resumed.run_id == new.run_id
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_checkpoint_of_another_run_is_never_loaded(blob_data, tmp_path):
    a = make_trainer(blob_data, tmp_path / "a", "train.max_steps=2")
    a.fit()
    b = make_trainer(blob_data, tmp_path / "b", "train.max_steps=2")
    b.fit()
    foreign = tmp_path / "a" / "checkpoints" / "ckpt-00000002"
    with pytest.raises(CheckpointError, match="belongs to run .* never loaded"):
        make_trainer(blob_data, tmp_path / "b", "train.max_steps=4").fit(resume=foreign)
    # only foreign checkpoints in the folder: --resume says so instead of loading them
    (tmp_path / "b" / "run.json").write_text(json.dumps({"run_id": "someone-else"}))
    with pytest.raises(CheckpointError, match="belong to another run"):
        make_trainer(blob_data, tmp_path / "b", "train.max_steps=4").fit(resume=True)


def test_pruning_sorts_by_step_number_and_keeps_other_runs(tmp_path):
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in (99_999_998, 99_999_999, 100_000_000, 100_000_001):  # the last two have 9 digits
        save_checkpoint(tmp_path, step, model.state_dict(), opt.state_dict(), {}, keep_last=2, run_id="mine")
    save_checkpoint(tmp_path, 5, model.state_dict(), opt.state_dict(), {}, keep_last=1, run_id="other")
    assert [p.name for p in find_checkpoints(tmp_path, "mine")] == ["ckpt-100000000", "ckpt-100000001"]
    assert [p.name for p in find_checkpoints(tmp_path, "other")] == ["ckpt-00000005"]
    assert latest_valid_checkpoint(tmp_path, "mine").step == 100_000_001


def test_cli_refuses_existing_run_folder_overwrite_clears_it(tmp_path, capsys):
    args = ["train", *FAST, "--max-steps", "2", "--output-dir", str(tmp_path), "--name", "r"]
    assert main(args) == 0
    first_id = read_run_id(tmp_path / "r")
    capsys.readouterr()
    assert main(args) == 2
    line = _one_line(capsys)
    assert "already holds a run" in line and "--resume" in line and "--overwrite" in line
    assert read_run_id(tmp_path / "r") == first_id  # nothing was touched
    # leave a stale checkpoint at a later step: --overwrite must remove it, not resume or keep it
    stale = tmp_path / "r" / "checkpoints" / "ckpt-00000099"
    os.rename(tmp_path / "r" / "checkpoints" / "ckpt-00000002", stale)
    assert main([*args, "--overwrite"]) == 0
    second_id = read_run_id(tmp_path / "r")
    assert second_id != first_id and not stale.exists()
    assert [p.name for p in find_checkpoints(tmp_path / "r" / "checkpoints")] == ["ckpt-00000002"]
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "ckpt-00000002").state["run_id"] == second_id
    assert (tmp_path / "r" / "config.yaml").read_text().startswith(f"# run_id: {second_id}\n")
    assert json.loads((tmp_path / "r" / "results.json").read_text())["run_id"] == second_id
    capsys.readouterr()
    assert main([*args, "--resume", "--overwrite"]) == 2
    assert "choose one" in _one_line(capsys)


def _hold_lock(path):
    code = (
        "import sys, time\n"
        "from pickwise.engine.rundir import RunLock\n"
        "RunLock(sys.argv[1]).acquire()\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_on_the_same_folder_gets_one_line_with_the_holder_pid(tmp_path, capsys):
    holder = _hold_lock(tmp_path / "r")
    try:
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            RunLock(tmp_path / "r").acquire()
        args = ["train", *FAST, "--max-steps", "2", "--output-dir", str(tmp_path), "--name", "r"]
        assert main(args) == 2
        assert f"in use by another pickwise process (pid {holder.pid})" in _one_line(capsys)
        assert not (tmp_path / "r" / "config.yaml").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # SIGKILL releases the lock: the folder is usable at once
    assert main(["train", *FAST, "--max-steps", "2", "--output-dir", str(tmp_path), "--name", "r"]) == 0


def test_lock_is_reentrant_within_a_process(tmp_path):
    with RunLock(tmp_path), RunLock(tmp_path):
        pass
    with RunLock(tmp_path):  # released after the outer one exits
        pass


def test_two_real_training_processes_same_name(tmp_path, capsys):
    """A `pickwise train` process and this one with the same --name: this one refuses in one line (exit 2); the
    running one keeps its config, run id and checkpoints."""
    args = ["train", *FAST, "--max-steps", "100000", "--output-dir", str(tmp_path), "--name", "same", "--seed", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "pickwise", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 120
        while not (tmp_path / "same" / "run.json").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.02)
        assert first.poll() is None, first.stderr.read()
        first_id = read_run_id(tmp_path / "same")
        second = [a if a != "1" else "2" for a in args]
        for extra in ([], ["--overwrite"], ["--resume"]):
            assert main([*second, *extra]) == 2
            assert f"(pid {first.pid})" in _one_line(capsys)
        assert first.poll() is None
        assert read_run_id(tmp_path / "same") == first_id
        assert "seed: 1\n" in (tmp_path / "same" / "config.yaml").read_text()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


def _rows(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row.pop("images_per_sec")  # the one wall-clock column
    return rows


@pytest.mark.parametrize("stop_at", [5, 9])
def test_train_log_after_resume_is_identical(blob_data, tmp_path, stop_at):
    """Checkpoints at steps 3, 6, 9 and logs every 4 steps: the resumed row averages the steps before the resume."""
    overrides = ("checkpoint.every_steps=3", "train.log_every=4", "train.max_steps=14")
    full = make_trainer(blob_data, tmp_path / "full", *overrides)
    full.fit()
    broken = make_trainer(blob_data, tmp_path / "run", *overrides)
    _interrupt_at(broken, stop_at)
    with pytest.raises(_Interrupt):
        broken.fit()
    make_trainer(blob_data, tmp_path / "run", *overrides).fit(resume=True)
    expected = _rows(tmp_path / "full" / "train_log.csv")
    assert [int(r["step"]) for r in expected] == [4, 8, 12, 14]
    assert _rows(tmp_path / "run" / "train_log.csv") == expected
    assert (tmp_path / "run" / "eval_log.csv").read_text() == (tmp_path / "full" / "eval_log.csv").read_text()
