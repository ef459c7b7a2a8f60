"""``torchrun --nproc_per_node=2 -m pickwise train`` on CPU (gloo) equals one process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli

pytestmark = pytest.mark.distributed


def _args(out, name, norm):
    # GN: 20 steps, then weights are compared (later on, this small net's GN layers on 2x2 maps amplify float
    # round-off chaotically); BN: a full epoch, then accuracies are compared.
    length = ["--max-steps", "20"] if norm == "gn" else ["--epochs", "1"]
    return [
        "train",
        "--model",
        "resnet8",
        "--norm",
        norm,
        "--data",
        "digits",
        "--batch-size",
        "32",
        *length,
        "--no-progress",
        "--output-dir",
        str(out),
        "--name",
        name,
        "--set",
        "train.tensorboard=false",
    ]


def _torchrun(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pickwise", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.parametrize("norm", ["gn", "bn"])
def test_two_gloo_processes_match_one(tmp_path, norm):
    single = run_cli(*_args(tmp_path, "single", norm))
    assert single.returncode == 0, single.stderr
    double = _torchrun(*_args(tmp_path, "double", norm))
    assert double.returncode == 0, double.stderr
    assert double.stdout.count("test metrics") == 1  # only rank 0 prints
    one = json.loads((tmp_path / "single" / "results.json").read_text())
    two = json.loads((tmp_path / "double" / "results.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert one["steps"] == two["steps"]
    if norm == "gn":
        # per-sample normalization: 2 x 16 with averaged gradients is the same computation as 1 x 32
        a = load_file(str(tmp_path / "single" / "model.safetensors"))
        b = load_file(str(tmp_path / "double" / "model.safetensors"))
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-5, msg=key)
        assert abs(one["metrics"]["acc"] - two["metrics"]["acc"]) <= 0.01
    else:
        # BN statistics are per process (16 vs 32 samples): same accuracy up to noise
        assert abs(one["metrics"]["acc"] - two["metrics"]["acc"]) <= 0.08
