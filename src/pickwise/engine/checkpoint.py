"""Training checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A checkpoint is a folder ``ckpt-<step:08d>/`` holding

- ``model.safetensors`` — the model's ``state_dict``;
- ``optimizer.safetensors`` — every tensor of the optimizer state (``state.<param_index>.<name>``) and the torch RNG
  state (``rng.torch``);
- ``state.json`` — optimizer hyper-parameters and scalar state, loop/scheduler/sampler position, NumPy and Python RNG
  states, GradScaler state, metrics so far, and the sha256 of both tensor files.

It is first written to a hidden temporary folder, every file is fsync'ed, and only then renamed into place, so a
process killed at any moment leaves either the complete checkpoint or none. Loading re-hashes both tensor files and
raises :class:`~pickwise.exceptions.CheckpointError` on any mismatch (truncation, bit rot, hand edits). Nothing is
unpickled: safetensors and JSON only.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..exceptions import CheckpointError
from ..utils.io import atomic_write_json, fsync_dir, sha256_file

__all__ = [
    "Checkpoint",
    "find_checkpoints",
    "latest_valid_checkpoint",
    "load_checkpoint",
    "optimizer_state_from_parts",
    "optimizer_state_to_parts",
    "prune_checkpoints",
    "save_checkpoint",
]

FORMAT_VERSION = 1
_CKPT_RE = re.compile(r"^ckpt-(\d{8})$")


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: The checkpoint folder.
        step: Optimizer step at which it was written.
        model_state: The model ``state_dict``.
        optimizer_state: An optimizer ``state_dict`` ready for ``optimizer.load_state_dict``.
        state: The decoded ``state.json`` (loop, sampler, scheduler, RNG, metrics...).
        rng_torch: torch's CPU RNG state at save time.
    """

    path: Path
    step: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    state: dict[str, Any]
    rng_torch: torch.Tensor | None


def optimizer_state_to_parts(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON-able scalars."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_state_from_parts(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_state_to_parts`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith("state."):
            continue
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, scalars in meta["scalars"].items():
        state.setdefault(int(index), {}).update(scalars)
    return {"state": state, "param_groups": meta["param_groups"]}


def _python_rng_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _numpy_rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}


def restore_host_rng(state: dict[str, Any], rng_torch: torch.Tensor | None) -> None:
    """Restore Python, NumPy and torch CPU RNG states saved by :func:`save_checkpoint`."""
    rng = state.get("rng", {})
    if "python" in rng:
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in rng:
        n = rng["numpy"]
        np.random.set_state((n["name"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if rng_torch is not None:
        torch.set_rng_state(rng_torch)


def save_checkpoint(
    directory: str | os.PathLike[str],
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    state: dict[str, Any],
    *,
    keep_last: int | None = None,
) -> Path:
    """Atomically write checkpoint ``ckpt-<step>`` under ``directory`` and prune older ones.

    Args:
        directory: The run's ``checkpoints/`` folder.
        step: Optimizer step (names the folder).
        model_state: Model ``state_dict`` (unwrap DDP first).
        optimizer_state: ``optimizer.state_dict()``.
        state: JSON-serialisable loop state (epoch, sampler position, scheduler, metrics, ...).
        keep_last: Keep only this many newest checkpoints (None: keep all). Older ones are removed only after the
            new one is complete.

    Returns:
        The final checkpoint folder.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"ckpt-{step:08d}"
    tmp = directory / f".tmp-ckpt-{step:08d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model_tensors = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
    opt_tensors, opt_meta = optimizer_state_to_parts(optimizer_state)
    opt_tensors["rng.torch"] = torch.get_rng_state()
    save_file(model_tensors, str(tmp / "model.safetensors"), metadata={"format": "pickwise", "step": str(step)})
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"), metadata={"format": "pickwise", "step": str(step)})
    payload = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "optimizer": opt_meta,
        "rng": {"python": _python_rng_state(), "numpy": _numpy_rng_state()},
        "sha256": {
            "model.safetensors": sha256_file(tmp / "model.safetensors"),
            "optimizer.safetensors": sha256_file(tmp / "optimizer.safetensors"),
        },
        **state,
    }
    for name in ("model.safetensors", "optimizer.safetensors"):
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    atomic_write_json(tmp / "state.json", payload)
    if final.exists():  # a re-run of the same step (e.g. after resume): replace it as a whole
        shutil.rmtree(final)
    os.rename(tmp, final)
    fsync_dir(directory)
    if keep_last is not None:
        prune_checkpoints(directory, keep_last)
    return final


def find_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoint folders under ``directory``, oldest first (temporary folders are ignored)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and _CKPT_RE.match(p.name)]
    return sorted(found, key=lambda p: p.name)


def prune_checkpoints(directory: str | os.PathLike[str], keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest checkpoints and stale temporary folders; returns what was removed."""
    directory = Path(directory)
    removed = []
    ckpts = find_checkpoints(directory)
    for path in ckpts[: max(0, len(ckpts) - max(1, keep_last))]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    for path in directory.glob(".tmp-ckpt-*"):
        if path.is_dir() and not path.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(path, ignore_errors=True)
    return removed


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load and verify a checkpoint folder.

    Raises:
        CheckpointError: If the folder or a file is missing, a hash does not match, or a file cannot be parsed.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} not found (expected a ckpt-XXXXXXXX folder written by pickwise)")
    state_file = path / "state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} is incomplete: state.json is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"checkpoint {path} is corrupt: state.json is not valid JSON") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION or "sha256" not in state:
        raise CheckpointError(f"checkpoint {path} has an unknown format (expected pickwise format {FORMAT_VERSION})")
    for name, expected in state["sha256"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing")
        if sha256_file(file) != expected:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: {name} does not match its sha256 (truncated or "
                "modified); resume from an older checkpoint or start over"
            )
    try:
        model_state = load_file(str(path / "model.safetensors"))
        opt_tensors = load_file(str(path / "optimizer.safetensors"))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt: cannot read tensors ({err})") from None
    rng_torch = opt_tensors.pop("rng.torch", None)
    optimizer_state = optimizer_state_from_parts(opt_tensors, state["optimizer"])
    return Checkpoint(path, int(state["step"]), model_state, optimizer_state, state, rng_torch)


def latest_valid_checkpoint(directory: str | os.PathLike[str]) -> Checkpoint | None:
    """The newest checkpoint under ``directory`` that loads and verifies (corrupt newer ones are skipped, warned)."""
    for path in reversed(find_checkpoints(directory)):
        try:
            return load_checkpoint(path)
        except CheckpointError as err:
            warnings.warn(f"{err}; trying the previous checkpoint", RuntimeWarning, stacklevel=2)
    return None
