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

The trainer is task-agnostic: it takes a :class:`~pickwise.engine.TrainerConfig` (or a task config with a
``trainer_config()`` method, such as the classification ``RunConfig``), a :class:`~pickwise.engine.Task` that owns
batches, losses, log columns and evaluation, a sampler factory and extra parameter groups. It imports no task and no
``pickwise.nn`` internals.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Sequence, Sized
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from ..exceptions import CheckpointError, ConfigError, TrainingDivergedError
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
from .logging import MetricLogger
from .params import ParamGroup
from .precision import autocast_dtype
from .progress import make_progress
from .rundir import RunLock, new_run_id, read_run_id, write_run_info
from .sampler import SamplerFactory, ShardSampler, SkipSampler, resumable_sampler_factory
from .schedule import lr_at_step
from .task import LegacyTask, Task, task_log_row, task_param_groups, uses_accumulators
from .trainer_config import FLOAT32_MAX, TrainerConfig, diff_configs

__all__ = ["TrainResult", "Trainer", "as_trainer_config", "build_optimizer"]

ParamGroupsArg = Sequence[ParamGroup] | Callable[[nn.Module], Sequence[ParamGroup]] | None


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


def __getattr__(name: str) -> Any:
    """``is_norm_logit`` moved to :mod:`pickwise.tasks.classification.params` (resolved lazily, no task import)."""
    if name == "is_norm_logit":  # no caller in the library uses the old place, so it warns
        import importlib

        warnings.warn(
            "pickwise.engine.trainer.is_norm_logit moved to pickwise.tasks.classification.is_norm_logit",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module("pickwise.tasks.classification.params").is_norm_logit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def as_trainer_config(cfg: Any) -> TrainerConfig:
    """A :class:`TrainerConfig` as is, or a task config's ``trainer_config()`` (e.g. the classification ``RunConfig``).

    Raises:
        ConfigError: For anything else.
    """
    if isinstance(cfg, TrainerConfig):
        return cfg
    make = getattr(cfg, "trainer_config", None)
    if callable(make):
        out = make()
        if isinstance(out, TrainerConfig):
            return out
    raise ConfigError(
        "config: the trainer needs a TrainerConfig or a config with a trainer_config() method; "
        f"got {type(cfg).__name__}"
    )


def _resolve_groups(cfg: Any, model: nn.Module, param_groups: ParamGroupsArg) -> list[ParamGroup]:
    """Explicit groups (or a callable of the model), else the config's ``default_param_groups()``."""
    if param_groups is None:
        defaults = getattr(cfg, "default_param_groups", None)
        return list(defaults()) if callable(defaults) else []
    if callable(param_groups):
        return list(param_groups(model))
    return list(param_groups)


def build_optimizer(model: nn.Module, cfg: Any, param_groups: ParamGroupsArg = None) -> torch.optim.Optimizer:
    """SGD or AdamW with the default groups (decayed weights, undecayed 1-D params) plus the extra ``param_groups``.

    With ``no_decay_norm_and_bias`` the 1-D parameters get no weight decay. A parameter accepted by an extra
    :class:`ParamGroup` goes to that group (the first that accepts it), with the group's weight decay and
    ``lr_mult``. Empty groups are dropped (the decayed group is always present). ``cfg`` is a
    :class:`TrainerConfig` or a task config with ``trainer_config()``; with ``param_groups=None`` the config's
    ``default_param_groups()`` are used (the classification config's norm-logit group).
    """
    groups_spec = _resolve_groups(cfg, model, param_groups)
    optim = as_trainer_config(cfg).optim
    decay, no_decay = [], []
    extra: list[list[nn.Parameter]] = [[] for _ in groups_spec]
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        for i, spec in enumerate(groups_spec):
            if spec.select(name, param):
                extra[i].append(param)
                break
        else:
            if optim.no_decay_norm_and_bias and param.ndim <= 1:
                no_decay.append(param)
            else:
                decay.append(param)
    groups = [{"params": decay, "weight_decay": optim.weight_decay, "lr_mult": 1.0}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0})
    for spec, params in zip(groups_spec, extra):
        if params:
            wd = optim.weight_decay if spec.weight_decay is None else spec.weight_decay
            groups.append({"params": params, "weight_decay": wd, "lr_mult": spec.lr_mult})
    if optim.name == "sgd":
        return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, nesterov=optim.nesterov)
    return torch.optim.AdamW(groups, lr=optim.lr)


class Trainer:
    """Train and evaluate ``model`` on ``train_set`` / ``eval_set`` according to ``cfg``.

    The trainer keeps a frozen :class:`TrainerConfig` in ``self.config`` (changing the caller's config afterwards has
    no effect); ``self.cfg`` is the object passed in, recorded in ``config.yaml`` and the checkpoints.

    Args:
        cfg: A :class:`TrainerConfig`, or a task config with ``trainer_config()`` (the classification ``RunConfig``).
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
        param_groups: Extra optimizer groups (:class:`ParamGroup`), or a callable ``model -> groups``; None: the
            config's ``default_param_groups()`` if it has one. The task's ``param_groups(model)``, if any, follow.
        sampler_factory: Builds each epoch's training sampler (see :class:`SamplerFactory`); default: the shuffled,
            resumable distributed sampler.
    """

    def __init__(
        self,
        cfg: TrainerConfig | Any,
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
        param_groups: ParamGroupsArg = None,
        sampler_factory: SamplerFactory | None = None,
    ) -> None:
        self.config = config = copy.deepcopy(as_trainer_config(cfg))  # frozen, and its sections are private copies
        self.cfg, self.task, self.run_dir, self.device = cfg, task, Path(run_dir), device
        self._record = cfg.to_dict() if callable(getattr(cfg, "to_dict", None)) else config.to_dict()
        self._batch_key = "batch_size" if isinstance(cfg, TrainerConfig) else "data.batch_size"
        self.run_id = run_id
        self.hooks, self.regularizer = list(hooks), regularizer
        self.rank, self.world_size = get_rank(), get_world_size()
        if config.batch_size % self.world_size:
            raise ConfigError(
                f"config: {self._batch_key}={config.batch_size} must be divisible by the number of "
                f"processes ({self.world_size}); it is the global batch size"
            )
        self.local_batch = config.batch_size // self.world_size
        self.model = model.to(device)
        self.param_groups = _resolve_groups(cfg, self.model, param_groups) + list(task_param_groups(task, self.model))
        self.optimizer = build_optimizer(self.model, config, self.param_groups)
        self.amp_dtype = autocast_dtype(config.train.amp, device)
        use_scaler = self.amp_dtype == torch.float16 and device.type == "cuda"
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.train_set, self.eval_set = train_set, eval_set
        self.sampler_factory: SamplerFactory = sampler_factory or resumable_sampler_factory
        self.sampler = self._make_sampler(0)
        self.steps_per_epoch = self._steps_of(self.sampler)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"config: the training set has {len(cast(Sized, train_set))} samples, fewer than one optimizer step "
                f"needs ({self._batch_key}={config.batch_size} x train.grad_accum_steps="
                f"{config.train.grad_accum_steps}); lower the batch size"
            )
        # epoch lengths known at the start (the schedule needs the total); a pool that grows in ways the factory
        # cannot tell in advance should set train.max_steps
        self._epoch_steps = [self.steps_per_epoch] + [
            self._steps_of(self._make_sampler(e)) for e in range(1, config.train.epochs)
        ]
        planned = sum(self._epoch_steps[: config.train.epochs])
        self.total_steps = min(planned, config.train.max_steps) if config.train.max_steps else planned
        self.ddp_model: nn.Module = self.model
        if self.world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=ids)
        self.global_step, self.epoch, self.step_in_epoch = 0, 0, 0
        self.history: list[dict[str, float]] = []
        self._window: dict[str, torch.Tensor] = {}  # running sums of the current training-log row

    def _make_sampler(self, epoch: int) -> Sampler[int]:
        return self.sampler_factory(
            self.train_set, epoch=epoch, num_replicas=self.world_size, rank=self.rank, seed=self.config.train.seed
        )

    def _steps_of(self, sampler: Sampler[int]) -> int:
        # torch's Sampler stub declares no __len__; every sampler the factory may return is sized
        return len(sampler) // self.local_batch // self.config.train.grad_accum_steps  # type: ignore[arg-type]

    def steps_in_epoch(self, epoch: int) -> int:
        """Optimizer steps of ``epoch`` (from its sampler's length; the last known length beyond ``train.epochs``)."""
        return self._epoch_steps[min(epoch, len(self._epoch_steps) - 1)]

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
            "scheduler": {"name": self.config.schedule.name, "step": self.global_step},
            "sampler": {
                "seed": self.config.train.seed,
                "epoch": self.epoch,
                "samples_done": self.step_in_epoch * self.config.train.grad_accum_steps * self.local_batch,
            },
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "history": self.history,
            "config": self._record,
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
            "(now {:g}) or set optim.clip_grad_norm".format(self.config.optim.lr)
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
                keep_last=self.config.checkpoint.keep_last,
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
            ckpt = load_checkpoint(cast("str | Path", source))  # True and False are handled above
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
        changed = diff_configs(state["config"], self._record)
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
        self.sampler = self._make_sampler(self.epoch)
        self.steps_per_epoch = self._steps_of(self.sampler)
        start = self.step_in_epoch * self.config.train.grad_accum_steps * self.local_batch
        sampler: Sampler[int] = self.sampler
        if start:
            set_start = getattr(sampler, "set_start", None)
            if callable(set_start):
                set_start(start)
            else:
                sampler = SkipSampler(sampler, start)
        return DataLoader(
            self.train_set,
            batch_size=self.local_batch,
            sampler=sampler,
            drop_last=True,
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _optimizer_step(self, micro_batches: list[Any]) -> dict[str, torch.Tensor]:
        cfg = self.config
        torch.manual_seed(derive_seed(cfg.train.seed, self.global_step, self.rank))
        generator = torch.Generator().manual_seed(derive_seed(cfg.train.seed, self.global_step, self.rank, 1))
        lr = lr_at_step(
            self.global_step,
            base_lr=cfg.optim.lr,
            steps_per_epoch=self._epoch_steps[0],
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
            sync = nullcontext() if last or self.world_size == 1 else cast(Any, self.ddp_model).no_sync()
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
        clipped = [spec for spec in self.param_groups if spec.clip_grad_norm]
        if cfg.optim.clip_grad_norm or clipped:
            self.scaler.unscale_(self.optimizer)
        for spec in clipped:  # the parameters this group owns (the first group that selects a parameter owns it)
            params = [
                p
                for n, p in self.model.named_parameters()
                if p.grad is not None and next((g for g in self.param_groups if g.select(n, p)), None) is spec
            ]
            if params and spec.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, spec.clip_grad_norm)
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
            f"(now {self.config.optim.lr:g}) or set optim.clip_grad_norm"
        )

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Evaluate on ``eval_set``, sharded over processes.

        A task with accumulators (``make_accumulators`` / ``evaluation_step`` / ``compute``) updates them with every
        batch of this process's shard; the engine then calls ``sync()`` on each (a sum over processes) and returns
        ``compute``. A task of the first protocol returns scalar sums that the engine all-reduces for ``finalize``.
        """
        if self.eval_set is None:
            return {}
        sampler = ShardSampler(len(cast(Sized, self.eval_set)), self.world_size, self.rank)
        loader = DataLoader(
            self.eval_set,
            batch_size=max(1, self.config.eval_batch_size // self.world_size),
            sampler=sampler,
            num_workers=self.config.num_workers,
        )
        self.ddp_model.eval()
        if uses_accumulators(self.task):
            task: Any = self.task
            accumulators = task.make_accumulators()
            for batch in loader:
                with self._autocast():
                    task.evaluation_step(self.model, batch, self.device, accumulators)
            for acc in accumulators.values():
                if self.world_size > 1 and self.device.type == "cuda":
                    acc.to(self.device)  # nccl reduces device tensors
                acc.sync()
            return dict(task.compute(accumulators))
        legacy = cast(LegacyTask, self.task)  # a task of the first protocol: scalar sums + finalize
        totals: dict[str, torch.Tensor] = {}
        for batch in loader:
            with self._autocast():
                stats = legacy.evaluation_sums(self.model, batch, self.device)
            for key, value in stats.items():
                totals[key] = totals.get(key, torch.zeros((), dtype=torch.float64, device=self.device)) + value
        keys = sorted(totals)
        if not keys:
            return {}
        packed = all_reduce_sum(torch.stack([totals[k].double() for k in keys]))
        return legacy.finalize({k: float(v) for k, v in zip(keys, packed.tolist())})

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
            write_run_info(self.run_dir, str(self.run_id), name=self.config.name)
        import yaml

        text = yaml.safe_dump(self._record, sort_keys=False)
        atomic_write_text(self.run_dir / "config.yaml", f"# run_id: {self.run_id}\n{text}")

    def _fit(self, resume: str | Path | bool | None) -> TrainResult:
        cfg = self.config
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
                    end_of_epoch = self.step_in_epoch == self.steps_in_epoch(self.epoch)
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
        images = (self.global_step - start_step) * cfg.batch_size * accum
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
        columns = task_log_row(self.task, totals)  # the task names its columns (loss, acc, ...)
        row: dict[str, float] = {
            "epoch": self.epoch,
            **columns,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "images_per_sec": n / seconds if seconds else 0.0,
        }
        if "regularizer" in totals:
            row["regularizer"] = totals["regularizer"] / n
        logger.log("train", self.global_step, row)
        bar.set_postfix(refresh=False, **{k: f"{v:.3f}" for k, v in list(columns.items())[:3]})
