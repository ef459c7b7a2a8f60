"""The training loop shared by every pickwise task.

One optimizer step = ``grad_accum_steps`` micro-batches of ``batch_size / world_size`` samples per process. Before each
optimizer step the engine reseeds torch's global RNG (dropout and friends) and a dedicated augmentation generator from
``(seed, step, rank)``; the data order depends only on ``(seed, epoch)``. Together with checkpoints that hold the
model, optimizer, loop position and RNG states, a run killed at any point and resumed ends with bit-identical weights
(same world size, same device type, same thread count). The running sums of the training log are checkpointed too,
so ``train_log.csv`` after a resume is identical to the uninterrupted run's (except the wall-clock column
``images_per_sec``).

Non-finite values stop the run: the loss is checked at every micro-batch, the weights and buffers at every log,
evaluation and checkpoint boundary and at the end, and :class:`~pickwise.exceptions.TrainingDivergedError` is raised
before anything non-finite is saved.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from ..exceptions import CheckpointError, ConfigError, TrainingDivergedError
from ..nn.norm._learned import MIXTURE_LOGIT_NAMES
from ..utils.distributed import all_reduce_sum, barrier, get_rank, get_world_size, is_main_process
from ..utils.io import atomic_write_text
from ..utils.seed import derive_seed
from .checkpoint import (
    Checkpoint,
    find_checkpoints,
    latest_valid_checkpoint,
    load_checkpoint,
    restore_host_rng,
    save_checkpoint,
)
from .config import FLOAT32_MAX, RunConfig, config_to_dict, diff_configs
from .logging import MetricLogger
from .precision import autocast_dtype
from .progress import make_progress
from .rundir import RunLock, new_run_id, read_run_id, write_run_info
from .sampler import ResumableDistributedSampler, ShardSampler
from .schedule import lr_at_step
from .tasks import Task

__all__ = ["TrainResult", "Trainer", "build_optimizer", "is_norm_logit"]


@dataclass
class TrainResult:
    """What a finished run reports.

    Attributes:
        metrics: Final evaluation metrics (``loss``, ``acc``, ...).
        steps: Optimizer steps taken in total.
        epochs: Epochs completed.
        train_seconds: Wall time spent in this process's loop.
        images_per_second: Training throughput over the whole run (all processes).
        run_dir: Where outputs were written.
        history: Evaluation metrics per evaluation, with their step and epoch.
        rank: The rank of the process that produced this result (0 writes and prints).
    """

    metrics: dict[str, float]
    steps: int
    epochs: int
    train_seconds: float
    images_per_second: float
    run_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)
    rank: int = 0


def is_norm_logit(name: str) -> bool:
    """True for the mixture logits of SN/SSN/EN layers (``mean_weight``, ``var_weight``, ``ratio_weight``)."""
    return name.rsplit(".", 1)[-1] in MIXTURE_LOGIT_NAMES


def build_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """SGD or AdamW with three groups: decayed weights, undecayed 1-D params, and norm mixture logits.

    With ``no_decay_norm_and_bias`` the 1-D parameters get no weight decay. The mixture logits never get weight decay
    and their learning rate is ``optim.lr * optim.norm_logit_lr_mult`` (kept in the group as ``lr_mult``).
    """
    decay, no_decay, logits = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if is_norm_logit(name):
            logits.append(param)
        elif cfg.optim.no_decay_norm_and_bias and param.ndim <= 1:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay, "lr_mult": 1.0}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0})
    if logits:
        groups.append({"params": logits, "weight_decay": 0.0, "lr_mult": cfg.optim.norm_logit_lr_mult})
    if cfg.optim.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum, nesterov=cfg.optim.nesterov)
    return torch.optim.AdamW(groups, lr=cfg.optim.lr)


class Trainer:
    """Train and evaluate ``model`` on ``train_set`` / ``eval_set`` according to ``cfg``.

    Args:
        cfg: The resolved run configuration.
        model: The network (on CPU; the trainer moves and, under torchrun, wraps it in DDP).
        train_set: Training dataset.
        eval_set: Evaluation dataset (None: no evaluation).
        task: Turns batches into losses and metrics.
        run_dir: Output folder (checkpoints, logs, config, results).
        device: Device to train on.
        hooks: Callables run before every optimizer step.
        regularizer: Extra loss term added once per optimizer step.
        run_id: This run's id (see :mod:`pickwise.engine.rundir`); None: a new one for a fresh run, the folder's
            (``run.json``) or the checkpoint's on resume.
    """

    def __init__(
        self,
        cfg: RunConfig,
        model: nn.Module,
        train_set: Dataset,
        eval_set: Dataset | None,
        task: Task,
        run_dir: Path,
        device: torch.device,
        *,
        hooks: Sequence[Callable[[Trainer], None]] = (),
        regularizer: Callable[[nn.Module], torch.Tensor] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.cfg, self.task, self.run_dir, self.device = cfg, task, Path(run_dir), device
        self.run_id = run_id
        self.hooks, self.regularizer = list(hooks), regularizer
        self.rank, self.world_size = get_rank(), get_world_size()
        if cfg.data.batch_size % self.world_size:
            raise ConfigError(
                f"config: data.batch_size={cfg.data.batch_size} must be divisible by the number of "
                f"processes ({self.world_size}); it is the global batch size"
            )
        self.local_batch = cfg.data.batch_size // self.world_size
        self.model = model.to(device)
        self.optimizer = build_optimizer(self.model, cfg)
        self.amp_dtype = autocast_dtype(cfg.train.amp, device)
        use_scaler = self.amp_dtype == torch.float16 and device.type == "cuda"
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.train_set, self.eval_set = train_set, eval_set
        self.sampler = ResumableDistributedSampler(
            train_set, num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=cfg.train.seed, drop_last=True
        )
        micro_per_epoch = self.sampler.num_samples // self.local_batch
        self.steps_per_epoch = micro_per_epoch // cfg.train.grad_accum_steps
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"config: the training set has {len(train_set)} samples, fewer than one optimizer step "
                f"needs (data.batch_size={cfg.data.batch_size} x train.grad_accum_steps="
                f"{cfg.train.grad_accum_steps}); lower the batch size"
            )
        planned = cfg.train.epochs * self.steps_per_epoch
        self.total_steps = min(planned, cfg.train.max_steps) if cfg.train.max_steps else planned
        self.ddp_model: nn.Module = self.model
        if self.world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=ids)
        self.global_step, self.epoch, self.step_in_epoch = 0, 0, 0
        self.history: list[dict[str, float]] = []
        self._window: dict[str, torch.Tensor] = {}  # running sums of the current training-log row

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_dir(self) -> Path:
        """Folder holding this run's ``ckpt-*`` checkpoints."""
        return self.run_dir / "checkpoints"

    def _state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "world_size": self.world_size,
            "scheduler": {"name": self.cfg.schedule.name, "step": self.global_step},
            "sampler": {
                "seed": self.cfg.train.seed,
                "epoch": self.epoch,
                "samples_done": self.step_in_epoch * self.cfg.train.grad_accum_steps * self.local_batch,
            },
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "history": self.history,
            "config": config_to_dict(self.cfg),
            # float32 sums of the log row in progress, so a resumed run writes the same row (exact in JSON)
            "log_window": {k: float(v) for k, v in self._window.items() if k != "lr"},
        }

    def check_finite(self, where: str) -> None:
        """Raise :class:`TrainingDivergedError` if any parameter or floating buffer is NaN or infinite.

        Args:
            where: What the check guards, for the message (``"checkpoint"``, ``"evaluation"``, ...).
        """
        tensors = [(n, t) for n, t in self.model.state_dict().items() if t.is_floating_point() or t.is_complex()]
        if not tensors:
            return
        flags = torch.stack([torch.isfinite(t.detach()).all() for _, t in tensors])
        if bool(flags.all()):
            return
        bad = [n for (n, _), ok in zip(tensors, flags.tolist()) if not ok]
        raise TrainingDivergedError(
            f"train: the weights became NaN/infinite by step {self.global_step} (before {where}; "
            f"{len(bad)} tensor(s), first '{bad[0]}'); nothing was saved for this step. Lower optim.lr "
            "(now {:g}) or set optim.clip_grad_norm".format(self.cfg.optim.lr)
        )

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0 only; other ranks wait). Refuses non-finite weights."""
        self.check_finite("checkpoint")
        path = None
        if is_main_process():
            path = save_checkpoint(
                self.checkpoint_dir,
                self.global_step,
                self.model.state_dict(),
                self.optimizer.state_dict(),
                self._state(),
                keep_last=self.cfg.checkpoint.keep_last,
                run_id=self.run_id,
            )
        barrier()
        return path

    def resume(self, source: str | Path | bool) -> Checkpoint:
        """Restore model, optimizer and loop state.

        Only checkpoints of this run are loaded: with ``source=True`` the newest valid checkpoint carrying the run id of
        the folder's ``run.json`` (any checkpoint in a folder written before run ids existed); with a path, the
        checkpoint's run id must equal the folder's (a folder without ``run.json`` adopts the checkpoint's run).

        Args:
            source: A ``ckpt-*`` folder, or True for the newest valid checkpoint of this run.

        Returns:
            The loaded checkpoint.

        Raises:
            CheckpointError: No checkpoint of this run, a checkpoint of another run, or a corrupt one.
        """
        folder_id = read_run_id(self.run_dir)
        if self.run_id is not None and folder_id is not None and self.run_id != folder_id:
            raise CheckpointError(
                f"resume: {self.run_dir / 'run.json'} records run {folder_id}, not {self.run_id}; "
                "refusing to mix two runs"
            )
        run_id = self.run_id or folder_id
        if source is True:
            ckpt = latest_valid_checkpoint(self.checkpoint_dir, run_id)
            if ckpt is None:
                others = find_checkpoints(self.checkpoint_dir)
                if run_id is not None and others:
                    raise CheckpointError(
                        f"resume: the {len(others)} checkpoint(s) in {self.checkpoint_dir} belong to another run "
                        f"(this run is {run_id}); start over with --overwrite or choose another --name"
                    )
                raise CheckpointError(f"resume: no valid checkpoint in {self.checkpoint_dir}; start without --resume")
        else:
            ckpt = load_checkpoint(source)
            ckpt_id = ckpt.state.get("run_id")
            if run_id is not None and ckpt_id != run_id:
                raise CheckpointError(
                    f"resume: {ckpt.path} belongs to run {ckpt_id or '(no run id)'}, but {self.run_dir} holds run "
                    f"{run_id}; a checkpoint of another run is never loaded into it (use a new --name to continue "
                    "from that checkpoint)"
                )
        ckpt_id = ckpt.state.get("run_id")
        self.run_id = run_id or (ckpt_id if isinstance(ckpt_id, str) else None) or new_run_id()
        state = ckpt.state
        state_file = ckpt.path / "state.json"
        try:
            loop = {key: int(state[key]) for key in ("global_step", "epoch", "step_in_epoch")}
            if min(loop.values()) < 0 or not isinstance(state.get("config", {}), dict):
                raise ValueError("negative loop position or config not a mapping")
            window = {str(k): float(v) for k, v in dict(state.get("log_window") or {}).items()}
            history = list(state.get("history") or [])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"resume: {state_file} has a missing or invalid entry ({type(err).__name__}: {err}); resume from an "
                "older checkpoint or start over"
            ) from None
        if "config" not in state:
            raise CheckpointError(f"resume: {state_file} lacks the run's config; resume from an older checkpoint")
        changed = diff_configs(state["config"], config_to_dict(self.cfg))
        fatal = [
            k for k in changed if k.split(".")[0] in ("model", "data") and k not in ("data.num_workers", "data.root")
        ]
        if fatal:
            raise CheckpointError(
                f"resume: {ckpt.path} was written with different settings ({', '.join(fatal)}); "
                "use the same model and data settings, or start a new run"
            )
        if changed and is_main_process():
            warnings.warn(
                f"resume: settings differ from the checkpoint's ({', '.join(changed)}); the run will not "
                "match an uninterrupted one",
                UserWarning,
                stacklevel=2,
            )
        if state.get("world_size", 1) != self.world_size and is_main_process():
            warnings.warn(
                f"resume: checkpoint was written with {state['world_size']} processes, now "
                f"{self.world_size}; data order after the resume differs",
                UserWarning,
                stacklevel=2,
            )
        try:
            self.model.load_state_dict(ckpt.model_state)
            self.optimizer.load_state_dict(ckpt.optimizer_state)
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(
                f"resume: {ckpt.path} does not fit this model/optimizer ({str(err).splitlines()[0]})"
            ) from None
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        restore_host_rng(state, ckpt.rng_torch, where=str(state_file))
        self.global_step, self.epoch, self.step_in_epoch = loop["global_step"], loop["epoch"], loop["step_in_epoch"]
        self.history = history
        self._window = {k: torch.tensor(v, dtype=torch.float32, device=self.device) for k, v in window.items()}
        return ckpt

    # ------------------------------------------------------------------ loop
    def _loader(self) -> DataLoader:
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_start(self.step_in_epoch * self.cfg.train.grad_accum_steps * self.local_batch)
        return DataLoader(
            self.train_set,
            batch_size=self.local_batch,
            sampler=self.sampler,
            drop_last=True,
            num_workers=self.cfg.data.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _optimizer_step(self, micro_batches: list[Any]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        torch.manual_seed(derive_seed(cfg.train.seed, self.global_step, self.rank))
        generator = torch.Generator().manual_seed(derive_seed(cfg.train.seed, self.global_step, self.rank, 1))
        lr = lr_at_step(
            self.global_step,
            base_lr=cfg.optim.lr,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            cfg=cfg.schedule,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
            if not abs(group["lr"]) <= FLOAT32_MAX:  # e.g. a step schedule with gamma > 1 growing past float32
                raise TrainingDivergedError(
                    f"train: the learning rate reached {group['lr']:g} at step {self.global_step + 1}, beyond "
                    "float32; check schedule.gamma and optim.lr"
                )
        for hook in self.hooks:
            hook(self)
        self.ddp_model.train()
        sums: dict[str, torch.Tensor] = {}
        bad_loss: float | None = None
        for i, batch in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            sync = nullcontext() if last or self.world_size == 1 else self.ddp_model.no_sync()
            with sync:
                with self._autocast():
                    loss, stats = self.task.training_loss(self.ddp_model, batch, self.device, generator)
                if bad_loss is None and not torch.isfinite(loss):
                    bad_loss = float(loss.detach())
                    if self.world_size == 1:
                        self._diverged(bad_loss)
                objective = loss / len(micro_batches)
                if last and self.regularizer is not None:  # once per optimizer step, inside DDP's backward
                    penalty = self.regularizer(self.model)
                    objective = objective + penalty
                    stats = {**stats, "regularizer": penalty.detach().float() * stats["count"] * len(micro_batches)}
                self.scaler.scale(objective).backward()
            for key, value in stats.items():
                sums[key] = sums.get(key, 0) + value.detach().float()
        if self.world_size > 1:  # every rank must stop at the same step, or the others would hang in a collective
            flag = torch.tensor([0.0 if bad_loss is None else 1.0], device=self.device)
            if all_reduce_sum(flag).item() > 0:
                self._diverged(bad_loss)
        if cfg.optim.clip_grad_norm or cfg.optim.norm_logit_clip:
            self.scaler.unscale_(self.optimizer)
        if cfg.optim.norm_logit_clip:
            logits = [p for n, p in self.model.named_parameters() if is_norm_logit(n) and p.grad is not None]
            if logits:
                torch.nn.utils.clip_grad_norm_(logits, cfg.optim.norm_logit_clip)
        if cfg.optim.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        sums["lr"] = torch.tensor(lr)
        return sums

    def _diverged(self, loss: float | None) -> None:
        what = f"became {loss}" if loss is not None else "became non-finite on another process"
        raise TrainingDivergedError(
            f"train: loss {what} at step {self.global_step + 1}; nothing was saved for this step. Lower optim.lr "
            f"(now {self.cfg.optim.lr:g}) or set optim.clip_grad_norm"
        )

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Evaluate on ``eval_set`` (sharded over processes, sums all-reduced)."""
        if self.eval_set is None:
            return {}
        sampler = ShardSampler(len(self.eval_set), self.world_size, self.rank)
        loader = DataLoader(
            self.eval_set,
            batch_size=max(1, self.cfg.data.eval_batch_size // self.world_size),
            sampler=sampler,
            num_workers=self.cfg.data.num_workers,
        )
        self.ddp_model.eval()
        totals: dict[str, torch.Tensor] = {}
        for batch in loader:
            with self._autocast():
                stats = self.task.evaluation_sums(self.model, batch, self.device)
            for key, value in stats.items():
                totals[key] = totals.get(key, torch.zeros((), dtype=torch.float64, device=self.device)) + value
        keys = sorted(totals)
        if not keys:
            return {}
        packed = all_reduce_sum(torch.stack([totals[k].double() for k in keys]))
        return self.task.finalize({k: float(v) for k, v in zip(keys, packed.tolist())})

    def fit(self, resume: str | Path | bool | None = None) -> TrainResult:
        """Run (or continue) training to ``total_steps``; returns the final evaluation.

        Holds the run folder's lock (rank 0) for the whole run, records the run id in ``run.json`` and the resolved
        config in ``config.yaml`` (with the run id as a leading comment), then trains.

        Raises:
            RunLockedError: Another process is training into the same folder.
            TrainingDivergedError: The loss or the weights became NaN/infinite; nothing non-finite is saved.
            CheckpointError: ``resume`` found no usable checkpoint of this run.
        """
        with RunLock(self.run_dir, enabled=is_main_process()):
            return self._fit(resume)

    def _write_run_files(self) -> None:
        if not is_main_process():
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if read_run_id(self.run_dir) != self.run_id:
            write_run_info(self.run_dir, str(self.run_id), name=self.cfg.name)
        import yaml

        text = yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False)
        atomic_write_text(self.run_dir / "config.yaml", f"# run_id: {self.run_id}\n{text}")

    def _fit(self, resume: str | Path | bool | None) -> TrainResult:
        cfg = self.cfg
        if resume:
            self.resume(resume)
            self.check_finite("training (the checkpoint holds non-finite weights)")
        elif self.run_id is None:
            self.run_id = new_run_id()
        self._write_run_files()
        logger = MetricLogger(
            self.run_dir,
            enabled=is_main_process(),
            tensorboard=cfg.train.tensorboard,
            resume_step=self.global_step if resume else None,
        )
        accum = cfg.train.grad_accum_steps
        start_time, start_step = time.perf_counter(), self.global_step
        if not resume:
            self._window = {}
        window_start = time.perf_counter()
        bar = make_progress(
            total=self.total_steps,
            initial=self.global_step,
            enabled=bool(cfg.train.progress and is_main_process()),
            desc=cfg.name or "train",
        )
        metrics: dict[str, float] = {}
        try:
            while self.global_step < self.total_steps:
                pending: list[Any] = []
                for batch in self._loader():
                    pending.append(batch)
                    if len(pending) < accum:
                        continue
                    sums = self._optimizer_step(pending)
                    pending = []
                    self.global_step += 1
                    self.step_in_epoch += 1
                    for key, value in sums.items():
                        self._window[key] = self._window.get(key, 0) + value
                    bar.update(1)
                    if self.global_step % cfg.train.log_every == 0 or self.global_step == self.total_steps:
                        self.check_finite("logging")
                        self._log_window(logger, self._window, time.perf_counter() - window_start, bar)
                        self._window, window_start = {}, time.perf_counter()
                    end_of_epoch = self.step_in_epoch == self.steps_per_epoch
                    finished = self.global_step == self.total_steps
                    if end_of_epoch:
                        self.epoch, self.step_in_epoch = self.epoch + 1, 0
                    due_eval = end_of_epoch and cfg.train.eval_every and self.epoch % cfg.train.eval_every == 0
                    if finished or due_eval:
                        self.check_finite("evaluation")
                        metrics = self.evaluate()
                        if metrics:
                            entry = {"step": self.global_step, "epoch": self.epoch, **metrics}
                            self.history.append(entry)
                            logger.log("eval", self.global_step, {"epoch": self.epoch, **metrics})
                    every = cfg.checkpoint.every_steps
                    if end_of_epoch or finished or (every and self.global_step % every == 0):
                        self.save()
                    if finished or end_of_epoch:
                        break
        finally:
            bar.close()
            logger.close()
        self.check_finite("the end of training")
        if not metrics:  # e.g. resuming a run that had already finished
            metrics = self.evaluate()
        seconds = time.perf_counter() - start_time
        images = (self.global_step - start_step) * cfg.data.batch_size * accum
        result = TrainResult(
            metrics=metrics,
            steps=self.global_step,
            epochs=self.epoch,
            train_seconds=seconds,
            images_per_second=images / seconds if seconds > 0 else math.nan,
            run_dir=self.run_dir,
            history=self.history,
            rank=self.rank,
        )
        return result

    def _log_window(self, logger: MetricLogger, window: dict[str, torch.Tensor], seconds: float, bar: Any) -> None:
        keys = sorted(k for k in window if k != "lr")
        if not keys:
            return
        packed = all_reduce_sum(torch.stack([window[k].double().to(self.device) for k in keys]))
        totals = dict(zip(keys, packed.tolist()))
        n = max(totals.get("count", 0.0), 1.0)
        row = {
            "epoch": self.epoch,
            "loss": totals.get("loss", 0.0) / n,
            "acc": totals.get("correct", 0.0) / n,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "images_per_sec": n / seconds if seconds else 0.0,
        }
        if "regularizer" in totals:
            row["regularizer"] = totals["regularizer"] / n
        logger.log("train", self.global_step, row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['acc']:.3f}", refresh=False)
