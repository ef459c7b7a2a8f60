"""End-to-end ``pickwise train`` runs in subprocesses: outputs, kill-and-resume, bad input."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from conftest import run_cli

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


def _one_line_error(proc):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pickwise: error: ")
    return lines[0]


def test_train_writes_outputs_and_prints_table(tmp_path):
    proc = run_cli("train", *FAST, "--epochs", "1", "--output-dir", str(tmp_path), "--name", "r")
    assert proc.returncode == 0, proc.stderr
    assert "test metrics" in proc.stdout and "acc" in proc.stdout
    run = tmp_path / "r"
    for name in ("config.yaml", "train_log.csv", "eval_log.csv", "model.safetensors", "results.json"):
        assert (run / name).is_file(), name
    results = json.loads((run / "results.json").read_text())
    assert results["metrics"]["acc"] > 0.5  # resnet8 on 8x8 digits learns something in one epoch
    assert (run / "checkpoints").is_dir()


def test_print_config_shows_overrides():
    proc = run_cli("train", "--model", "resnet32", "--set", "optim.lr=0.3", "--print-config")
    assert proc.returncode == 0
    assert "name: resnet32" in proc.stdout and "lr: 0.3" in proc.stdout


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    args = [
        "--model",
        "resnet20",
        "--data",
        "mnist-5k",
        "--batch-size",
        "32",
        "--max-steps",
        "60",
        "--checkpoint-every",
        "10",
        "--augment",
        "crop_flip",
        "--no-progress",
        "--output-dir",
        str(tmp_path),
        "--set",
        "train.tensorboard=false",
        "--set",
        "schedule.warmup_epochs=0.1",
    ]
    full = run_cli("train", *args, "--name", "full")
    assert full.returncode == 0, full.stderr

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    victim = subprocess.Popen(
        [sys.executable, "-m", "pickwise", "train", *args, "--name", "killed"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and victim.poll() is None:
        if (ckpts / "ckpt-00000020").is_dir():
            break
        time.sleep(0.01)
    assert victim.poll() is None, "the run finished before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "model.safetensors").exists()

    resumed = run_cli("train", *args, "--name", "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), key

    # the training log too: identical rows, except the wall-clock column images_per_sec
    def rows(run):
        with open(tmp_path / run / "train_log.csv", newline="") as f:
            return [{k: v for k, v in r.items() if k != "images_per_sec"} for r in csv.DictReader(f)]

    assert rows("killed") == rows("full") and len(rows("full")) == 3
    full_acc = json.loads((tmp_path / "full" / "results.json").read_text())["metrics"]["acc"]
    resumed_acc = json.loads((tmp_path / "killed" / "results.json").read_text())["metrics"]["acc"]
    assert full_acc == resumed_acc


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--model", "resnet_20"], "unknown model 'resnet_20'; did you mean 'resnet20'"),
        (["--model", "resnet21"], "unknown model 'resnet21'; did you mean"),
        (["--data", "fashion-mnsit"], "unknown dataset 'fashion-mnsit'; did you mean 'fashion-mnist'"),
        (["--norm", "gnn"], "unknown norm"),
        (["--set", "optim.lrr=0.1"], "unknown key 'optim.lrr'; did you mean 'optim.lr'"),
        (["--set", "train.amp=fp8"], "train.amp must be one of"),
        (["--config", "does-not-exist.yaml"], "file not found"),
    ],
)
def test_bad_names_are_one_line_errors(tmp_path, args, match):
    base = ["train", "--model", "resnet8", "--data", "digits", "--epochs", "1", "--output-dir", str(tmp_path)]
    line = _one_line_error(run_cli(*base, *args))
    assert match in line or pytest.fail(f"{match!r} not in {line!r}")


def test_resume_errors(tmp_path):
    line = _one_line_error(run_cli("train", *FAST, "--output-dir", str(tmp_path), "--name", "none", "--resume"))
    assert "no checkpoints" in line
    ok = run_cli(
        "train", *FAST, "--max-steps", "4", "--checkpoint-every", "2", "--output-dir", str(tmp_path), "--name", "r"
    )
    assert ok.returncode == 0, ok.stderr
    ckpt = tmp_path / "r" / "checkpoints" / "ckpt-00000004"
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = _one_line_error(
        run_cli("train", *FAST, "--max-steps", "4", "--output-dir", str(tmp_path), "--name", "r", "--resume", str(ckpt))
    )
    assert "is corrupt" in line and "sha256" in line
    assert (tmp_path / "r" / "checkpoints" / "ckpt-00000002").is_dir()  # the last good one is kept
    # --resume without a path falls back to the newest valid checkpoint, with a warning
    proc = run_cli("train", *FAST, "--max-steps", "4", "--output-dir", str(tmp_path), "--name", "r", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "trying the previous checkpoint" in proc.stderr
    line = _one_line_error(
        run_cli(
            "train",
            "--model",
            "resnet20",
            "--data",
            "digits",
            "--batch-size",
            "32",
            "--max-steps",
            "4",
            "--output-dir",
            str(tmp_path),
            "--name",
            "r",
            "--resume",
        )
    )
    assert "different settings" in line and "model.name" in line


def _write_images(root, sizes):
    from PIL import Image

    for cls, size in sizes.items():
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", size, color=(40 * i, 100, 200 if cls == "b" else 0)).save(root / cls / f"{i}.png")


def test_image_folder_errors_and_resize(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _one_line_error(
        run_cli("train", "--model", "resnet8", "--data", str(empty), "--output-dir", str(tmp_path / "runs"))
    )
    assert str(empty) in line
    mixed = tmp_path / "mixed"
    _write_images(mixed, {"a": (12, 12), "b": (16, 10)})
    line = _one_line_error(
        run_cli("train", "--model", "resnet8", "--data", str(mixed), "--output-dir", str(tmp_path / "runs"))
    )
    assert "image_size" in line or "image-size" in line
    proc = run_cli(
        "train",
        "--model",
        "resnet8",
        "--data",
        str(mixed),
        "--image-size",
        "12",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--no-progress",
        "--output-dir",
        str(tmp_path / "runs"),
        "--name",
        "folder",
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "runs" / "folder" / "results.json").is_file()


def test_listing_commands():
    proc = run_cli("models", "resnet*")
    assert proc.returncode == 0 and "resnet20" in proc.stdout and "mobilenet_v2" not in proc.stdout
    proc = run_cli("datasets")
    assert proc.returncode == 0 and "digits" in proc.stdout and "textures" in proc.stdout
    proc = run_cli("norms")
    assert proc.returncode == 0 and "gn" in proc.stdout
    proc = run_cli("--version")
    assert proc.returncode == 0 and "pickwise" in proc.stdout
