"""Shared fixtures: seeding, a tiny synthetic classification set, a subprocess runner for the CLI."""

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
