"""Ground truth for model selection: fine-tune a candidate on the target through the engine's ``Trainer``.

Used by ``pickwise select --verify finetune``, ``pickwise transfer`` and ``pickwise reproduce selection``. The
candidate gets a new classifier head (``reset_classifier``), optionally has its BatchNorm layers converted to SN/EN
(:func:`pickwise.nn.norm.convert_norm_layers`, for small-batch fine-tuning), sees the same preprocessing as feature
extraction (:class:`~pickwise.selection.features.CandidateInput`) and is trained end to end with SGD + cosine decay.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..exceptions import InvalidParameterError
from ..nn.norm import is_batch_norm
from ..nn.norm.registry import conversion_target, list_norm_layers

__all__ = ["finetune"]

#: Norm names BatchNorm layers can be converted to (from the norm registry's metadata).
CONVERT_NORMS = tuple(list_norm_layers(convertible=True))


def _count_bn(model: nn.Module) -> int:
    return sum(map(is_batch_norm, model.modules()))


def finetune(
    model: nn.Module,
    train_set: Any,
    test_set: Any,
    *,
    preprocess: dict[str, Any] | None = None,
    epochs: int = 1,
    max_steps: int | None = None,
    lr: float = 0.02,
    batch_size: int = 32,
    weight_decay: float = 5e-4,
    convert_norm: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    run_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    on_step: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune a copy of ``model`` on ``train_set`` and evaluate it on ``test_set``.

    Args:
        model: Candidate backbone with ``reset_classifier(num_classes)`` (not modified: a copy is trained).
        train_set: Target training split (a pickwise dataset).
        test_set: Target test split.
        preprocess: The candidate's input preprocessing (:func:`~pickwise.selection.features.preprocess_spec`);
            ``None``: the model takes the dataset's images as they are.
        epochs: Training epochs.
        max_steps: Stop after this many optimizer steps (``None``: ``epochs`` full epochs).
        lr: Peak SGD learning rate (momentum 0.9, cosine decay, no warm-up).
        batch_size: Training batch size.
        weight_decay: SGD weight decay (not applied to norm parameters and biases).
        convert_norm: Convert BatchNorm layers to ``"sn"``, ``"ssn"``, ``"en"`` or ``"pn"`` (initialised as the
            BN they replace) before training.
        seed: Seed of the new head, the data order and the training.
        device: Torch device.
        run_dir: Where the engine writes its logs and checkpoints (``None``: a temporary folder, deleted); old
            checkpoints there are removed first.
        progress: Show the engine's progress bar.
        on_step: Called before every optimizer step with ``{"epoch", "epochs", "step", "steps_per_epoch",
            "global_step", "total_steps"}`` (1-based epoch and steps), e.g. to report progress.

    Returns:
        ``{"acc", "loss", "steps", "train_seconds", "seconds", "converted_layers", "convert_norm"}``.

    Raises:
        InvalidParameterError: If the model has no ``reset_classifier``, or for an unknown ``convert_norm``.
    """
    from ..engine import Trainer
    from ..engine.run import resolve_device
    from ..tasks.classification import ClassificationTask
    from ..tasks.classification.config import (
        CheckpointConfig,
        DataConfig,
        OptimConfig,
        RunConfig,
        ScheduleConfig,
        TrainConfig,
        resolve_run_config,
    )
    from .features import CandidateInput

    if not hasattr(model, "reset_classifier"):
        raise InvalidParameterError(
            f"finetune: the candidate ({type(model).__name__}) must have reset_classifier(num_classes); "
            "ONNX/timm/torchvision candidates cannot be fine-tuned here."
        )
    if convert_norm is not None:
        convert_norm = conversion_target(convert_norm, where="finetune", name="convert_norm").name
    start = time.perf_counter()
    net: Any = copy.deepcopy(model).cpu()  # has reset_classifier (checked above)
    with torch.random.fork_rng(devices=[]):  # the new head is seeded without touching the caller's RNG state
        torch.manual_seed(seed)
        net.reset_classifier(int(train_set.info.num_classes))
    converted = 0
    if convert_norm is not None:
        from ..nn.norm.convert import convert_norm_layers

        before = _count_bn(net)
        net = convert_norm_layers(net, convert_norm, init="bn")
        converted = before - _count_bn(net)
    if preprocess is not None:
        net = CandidateInput(net, preprocess, train_set.info.mean, train_set.info.std)
    tmp = tempfile.TemporaryDirectory(prefix="pickwise-finetune-") if run_dir is None else None
    folder = Path(tmp.name) if tmp is not None else Path(run_dir or ".")
    if tmp is None:
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # always a fresh run, never a stale resume
    try:
        cfg = resolve_run_config(
            RunConfig(
                name=folder.name,
                output_dir=str(folder.parent),
                data=DataConfig(batch_size=batch_size),
                optim=OptimConfig(lr=lr, weight_decay=weight_decay),
                schedule=ScheduleConfig(warmup_epochs=0.0),
                train=TrainConfig(
                    epochs=epochs,
                    max_steps=max_steps or None,
                    seed=seed,
                    device=device,
                    progress=progress,
                    tensorboard=False,
                ),
                checkpoint=CheckpointConfig(keep_last=1),
            ),
            check_names=False,  # the model and the datasets are given as objects, not names
        )
        hooks = []
        if on_step is not None:

            def hook(t: Trainer) -> None:
                on_step(
                    {
                        "epoch": t.epoch + 1,
                        "epochs": int(epochs),
                        "step": t.step_in_epoch + 1,
                        "steps_per_epoch": t.steps_per_epoch,
                        "global_step": t.global_step + 1,
                        "total_steps": t.total_steps,
                    }
                )

            hooks.append(hook)
        trainer = Trainer(
            cfg, net, train_set, test_set, ClassificationTask(), folder, resolve_device(device), hooks=hooks
        )
        result = trainer.fit()
    finally:
        if tmp is not None:
            tmp.cleanup()
    torch.set_grad_enabled(True)
    return {
        "acc": float(result.metrics["acc"]),
        "loss": float(result.metrics["loss"]),
        "steps": int(result.steps),
        "train_seconds": float(result.train_seconds),
        "seconds": time.perf_counter() - start,
        "converted_layers": converted,
        "convert_norm": convert_norm,
    }
