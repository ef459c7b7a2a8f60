"""Shared fixtures: seeding, a tiny synthetic classification set, a subprocess runner for the CLI, optional data.

Tests that need the real Fashion-MNIST files take the marker ``@pytest.mark.requires_fashion_mnist`` (or the fixture
``fashion_mnist_dir``): they are skipped, with the reason, when the files are not found where
:func:`pickwise.data.fashion_mnist.find_fashion_mnist` looks (``$PICKWISE_FASHION_MNIST_DIR`` when it is set, else
the system path and the caches). ``PICKWISE_FASHION_MNIST_DIR=$(mktemp -d) pytest`` runs the suite as on a machine
without the data; ``.ci/run`` does that.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


def fashion_mnist_missing() -> str | None:
    """``None`` if both Fashion-MNIST splits are found, else the one-line reason (how to get them)."""
    from pickwise.data.fashion_mnist import find_fashion_mnist
    from pickwise.exceptions import PickwiseUserError

    try:
        for split in ("train", "test"):
            find_fashion_mnist(split)
    except PickwiseUserError as err:
        return str(err)
    return None


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "requires_fashion_mnist: needs the Fashion-MNIST IDX files; skipped with the reason when they are not found",
    )


def pytest_runtest_setup(item):
    if item.get_closest_marker("requires_fashion_mnist") is not None:
        reason = fashion_mnist_missing()
        if reason is not None:
            pytest.skip(f"Fashion-MNIST not found: {reason}")


@pytest.fixture
def fashion_mnist_dir() -> Path:
    """The folder holding the Fashion-MNIST train files; skips the test when they are not found."""
    reason = fashion_mnist_missing()
    if reason is not None:
        pytest.skip(f"Fashion-MNIST not found: {reason}")
    from pickwise.data.fashion_mnist import find_fashion_mnist

    return find_fashion_mnist("train")[0].parent


@pytest.fixture(autouse=True)
def _seed_all():
    torch.manual_seed(0)
    yield


class BlobImages(torch.utils.data.Dataset):
    """Deterministic synthetic 1x8x8 images: class k has a bright k-th row band plus noise."""

    def __init__(self, n: int = 128, num_classes: int = 4, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.targets = torch.arange(n) % num_classes
        self.images = 0.3 * torch.randn(n, 1, 8, 8, generator=g)
        for k in range(num_classes):
            self.images[self.targets == k, :, 2 * k : 2 * k + 2, :] += 1.0

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.images[i], int(self.targets[i])


@pytest.fixture
def blob_data():
    return BlobImages(128, seed=0), BlobImages(64, seed=1)


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None, module: str = "pickwise"
) -> subprocess.CompletedProcess:
    """Run ``python -m pickwise ARGS`` in a subprocess (2 threads, no progress bar)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )
