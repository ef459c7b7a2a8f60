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
    "checkpoint_run_id",
    "checkpoint_step",
    "find_checkpoints",
    "latest_valid_checkpoint",
    "load_checkpoint",
    "optimizer_state_from_parts",
    "optimizer_state_to_parts",
    "prune_checkpoints",
    "save_checkpoint",
    "save_weights",
]

FORMAT_VERSION = 1
# keys every checkpoint's state.json must hold (written by save_checkpoint itself)
_REQUIRED_STATE_KEYS = ("step", "optimizer")
_CKPT_RE = re.compile(r"^ckpt-(\d{8,})$")  # zero-padded to 8 digits, longer past step 99,999,999


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
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "name": name,
        "keys": np.asarray(keys).tolist(),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def restore_host_rng(state: dict[str, Any], rng_torch: torch.Tensor | None, *, where: str | None = None) -> None:
    """Restore Python, NumPy and torch CPU RNG states saved by :func:`save_checkpoint`.

    Raises:
        CheckpointError: If an entry cannot be restored (``where`` names the checkpoint in the message).
    """
    rng = state.get("rng", {})
    where = where or "(state.json)"
    try:
        if not isinstance(rng, dict):
            raise TypeError(f"rng must be a mapping, got {type(rng).__name__}")
        if "python" in rng:
            version, internal, gauss = rng["python"]
            random.setstate((version, tuple(internal), gauss))
        if "numpy" in rng:
            n = rng["numpy"]
            keys = np.array(n["keys"], dtype=np.uint32)
            np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached"]))
        if rng_torch is not None:
            torch.set_rng_state(rng_torch)
    except (KeyError, TypeError, ValueError, OverflowError, RuntimeError) as err:
        raise CheckpointError(
            f"checkpoint {where}: state.json has an invalid RNG entry ({type(err).__name__}: {err}); "
            "resume from an older checkpoint or start over"
        ) from None


def save_weights(module: torch.nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``module``'s state dict to ``path`` as safetensors, atomically (temporary file + ``os.replace``).

    The tensors are detached, moved to the CPU and made contiguous first (safetensors needs all three).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp))
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def save_checkpoint(
    directory: str | os.PathLike[str],
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    state: dict[str, Any],
    *,
    keep_last: int | None = None,
    run_id: str | None = None,
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
        run_id: The writing run's id, recorded in ``state.json``; pruning then touches only this run's checkpoints.

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
    if run_id is not None:
        payload["run_id"] = run_id
    for name in ("model.safetensors", "optimizer.safetensors"):
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    atomic_write_json(tmp / "state.json", payload)
    if final.exists():  # a re-run of the same step (e.g. after resume): replace it as a whole
        shutil.rmtree(final)
    os.rename(tmp, final)
    fsync_dir(directory)
    if keep_last is not None:
        prune_checkpoints(directory, keep_last, run_id)
    return final


def checkpoint_step(path: str | os.PathLike[str]) -> int:
    """The step number in a ``ckpt-<step>`` folder name."""
    match = _CKPT_RE.match(Path(path).name)
    if match is None:
        raise CheckpointError(f"checkpoint {path}: not a ckpt-<8-digit step> folder name")
    return int(match.group(1))


def checkpoint_run_id(path: str | os.PathLike[str]) -> str | None:
    """The run id recorded in a checkpoint's ``state.json`` (None if absent or unreadable; no hashing)."""
    try:
        state = json.loads((Path(path) / "state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    run_id = state.get("run_id") if isinstance(state, dict) else None
    return run_id if isinstance(run_id, str) else None


def find_checkpoints(directory: str | os.PathLike[str], run_id: str | None = None) -> list[Path]:
    """Complete checkpoint folders under ``directory``, oldest first by step number (temporary folders ignored).

    Args:
        directory: A run's ``checkpoints/`` folder.
        run_id: Only checkpoints whose ``state.json`` records this run id (None: all).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and _CKPT_RE.match(p.name)]
    if run_id is not None:
        found = [p for p in found if checkpoint_run_id(p) == run_id]
    return sorted(found, key=lambda p: (checkpoint_step(p), p.name))


def prune_checkpoints(directory: str | os.PathLike[str], keep_last: int, run_id: str | None = None) -> list[Path]:
    """Delete all but the ``keep_last`` newest checkpoints (by step) and stale temporary folders.

    Args:
        directory: A run's ``checkpoints/`` folder.
        keep_last: How many of the newest checkpoints to keep (at least 1).
        run_id: Only this run's checkpoints are considered and deleted (None: all checkpoints).

    Returns:
        The removed checkpoint folders.
    """
    directory = Path(directory)
    removed = []
    ckpts = find_checkpoints(directory, run_id)
    for path in ckpts[: max(0, len(ckpts) - max(1, keep_last))]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    for path in directory.glob(".tmp-ckpt-*"):  # the run folder is locked, so these are left by dead writers
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
        raise CheckpointError(f"checkpoint {path} not found (expected a ckpt-<step> folder written by pickwise)")
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
    missing = [key for key in _REQUIRED_STATE_KEYS if key not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: {state_file} lacks {', '.join(missing)}; resume from an older "
            "checkpoint or start over"
        )
    rng_torch = opt_tensors.pop("rng.torch", None)
    try:
        optimizer_state = optimizer_state_from_parts(opt_tensors, state["optimizer"])
        step = int(state["step"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: {state_file} has an invalid entry ({type(err).__name__}: {err})"
        ) from None
    if rng_torch is not None and (rng_torch.dtype != torch.uint8 or rng_torch.ndim != 1):
        raise CheckpointError(f"checkpoint {path} is corrupt: rng.torch is not a uint8 vector")
    return Checkpoint(path, step, model_state, optimizer_state, state, rng_torch)


def latest_valid_checkpoint(directory: str | os.PathLike[str], run_id: str | None = None) -> Checkpoint | None:
    """The newest checkpoint under ``directory`` that loads and verifies (corrupt newer ones are skipped, warned).

    Args:
        directory: A run's ``checkpoints/`` folder.
        run_id: Only checkpoints of this run (None: any).
    """
    for path in reversed(find_checkpoints(directory, run_id)):
        try:
            return load_checkpoint(path)
        except CheckpointError as err:
            warnings.warn(f"{err}; trying the previous checkpoint", RuntimeWarning, stacklevel=2)
    return None
