"""The active-learning loop of active domain adaptation: warm-up, then select -> reveal -> train, round by round.

::

    warmup/            source-only training (engine run folder: checkpoints, train_log.csv, weights.safetensors)
    selection/round_01.pt ...   cumulative masks + revealed labels after each round (atomic, weights_only-safe)
    round_01/ ...      training after each selection (engine run folder)
    results.json       one row per stage: budget, labelled pixels and fraction, mIoU, per-class IoU (atomic)

Every stage is trained by the engine's :class:`~pickwise.engine.Trainer` with :class:`ADASegTask`, so a run killed
inside a stage resumes from the stage's last checkpoint, and a run killed between stages resumes from the last
finished stage and the last saved selection. Training sees target labels only through the oracle's revealed maps.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ...engine.checkpoint import latest_valid_checkpoint
from ...engine.trainer import Trainer
from ...exceptions import ConfigError, RunFolderError
from ...utils.io import atomic_write_bytes, atomic_write_json
from .acquisition import Budget, Strategy, parse_budget, round_budgets, select_images, split_budget
from .oracle import SelectionState, SimulatedOracle, check_selection_meta, latest_selection, save_selection
from .task import ADASegModel, ADASegTask, model_outputs

__all__ = [
    "ImagesOnly",
    "PairedDataset",
    "StageResult",
    "load_weights",
    "run_active_learning",
    "save_weights",
    "select_round",
    "train_stage",
]

IGNORE = 255


class ImagesOnly(Dataset):
    """The target pool without its labels: ``(image, index)`` (the label a loader returns is dropped unread)."""

    def __init__(self, domain: Any) -> None:
        self.domain = domain

    def __len__(self) -> int:
        return len(self.domain)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.domain[i][0], i


class PairedDataset(Dataset):
    """``(src_img, src_label, tgt_img, tgt_revealed_label, tgt_index)`` pairs; length ``max(|source|, |target|)``.

    Item ``i`` pairs source ``i mod Ns`` with target ``i mod Nt``; the sampler shuffles ``i``, so batches mix.
    """

    def __init__(self, source: Any, target: Any, target_labels: torch.Tensor) -> None:
        self.source, self.target, self.target_labels = source, target, target_labels
        self.n = max(len(source), len(target))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
        s = self.source[i % len(self.source)]
        j = i % len(self.target)
        t = self.target[j]
        return s[0], torch.as_tensor(s[1]).long(), t[0], self.target_labels[j], j


@dataclass
class StageResult:
    """One finished stage: its metrics and the labelled budget at that point."""

    stage: str
    metrics: dict[str, float]
    seconds: float


def save_weights(model: nn.Module, path: Path) -> None:
    """The model's state dict (weights and buffers, e.g. the contrastive state) as safetensors, atomically."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state))


def load_weights(model: nn.Module, path: Path) -> None:
    """Load :func:`save_weights` output (safetensors: no unpickling)."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)))


def train_stage(
    cfg: Any,
    model: nn.Module,
    train_set: Dataset,
    eval_set: Dataset,
    task: ADASegTask,
    stage_dir: Path,
    steps: int,
    device: torch.device,
    log: Callable[[str], None] | None = None,
) -> StageResult:
    """Train one stage with the engine (resuming from its last checkpoint if any) and save its final weights.

    ``cfg`` is an :class:`~pickwise.tasks.adaseg.config.AdaSegConfig`. With ``steps == 0`` the model is only
    evaluated. A stage already finished (``weights.safetensors`` present) is loaded, not retrained.
    """
    stage_dir = Path(stage_dir)
    weights = stage_dir / "weights.safetensors"
    start = time.perf_counter()
    per_epoch = max(1, len(cast(Sized, train_set)) // cfg.data.batch_size)
    epochs = -(-max(steps, 1) // per_epoch)  # enough epochs for ``steps`` (the engine stops at max_steps)
    tcfg = cfg.trainer_config(max(steps, 1), stage_dir.name, epochs=epochs)
    trainer = Trainer(tcfg, model, train_set, eval_set, task, stage_dir, device)
    if weights.exists():
        load_weights(model, weights)
        metrics = trainer.evaluate()
    elif steps == 0:
        metrics = trainer.evaluate()
        save_weights(model, weights)
    else:
        resume = latest_valid_checkpoint(stage_dir / "checkpoints") is not None
        metrics = trainer.fit(resume=True if resume else None).metrics
        save_weights(model, weights)
    seconds = time.perf_counter() - start
    if log:
        log(f"{stage_dir.name}: mIoU {metrics.get('mIoU', float('nan')):.4f} ({seconds:.1f} s)")
    return StageResult(stage_dir.name, metrics, seconds)


@torch.no_grad()
def _pool_logits(model: nn.Module, pool: Dataset, batch_size: int, device: torch.device) -> Any:
    loader = DataLoader(pool, batch_size=batch_size, shuffle=False)
    model.eval()
    for images, idx in loader:
        logits, feats = model_outputs(model, images.to(device))
        yield logits.float().cpu(), (None if feats is None else feats.float().cpu()), idx


def select_round(
    model: nn.Module,
    pool: Dataset,
    state: SelectionState,
    oracle: SimulatedOracle,
    strategy: Strategy,
    budget: Budget,
    round_index: int,
    rounds: int,
    *,
    batch_size: int = 16,
    seed: int = 0,
    device: torch.device | None = None,
) -> SelectionState:
    """Spend round ``round_index`` (1-based) of ``budget`` on ``pool`` with ``strategy``; the oracle reveals the picks.

    Pixel budgets are split over the rounds (:func:`round_budgets`) and over the images (:func:`split_budget`); region
    budgets give every image the same number of squares per round; image budgets label whole images ranked by their
    mean acquisition score. The returned state's labelled count grows by exactly the round's budget.

    Raises:
        ConfigError: The round's budget exceeds what is still unlabelled.
    """
    device = device or torch.device("cpu")
    n, h, w = state.labelled.shape
    gen = torch.Generator().manual_seed(seed * 1000 + round_index)
    available = (~state.labelled).reshape(n, -1).sum(1)
    count = "pixels"
    if budget.kind == "images":
        per_round = round_budgets(int(budget.value), rounds)[round_index - 1]
        full = available == 0
        if per_round > int((~full).sum()):
            raise ConfigError(
                f"budget: {per_round} images requested but only {int((~full).sum())} are not yet "
                "fully labelled; lower --budget"
            )
        scores = torch.zeros(n)
        for logits, feats, idx in _pool_logits(model, pool, batch_size, device):
            s = strategy.score(logits, feats, gen)
            s = torch.where(state.labelled[idx], torch.zeros_like(s), s)
            scores[idx] = s.reshape(len(idx), -1).sum(1) / available[idx].clamp_min(1)
        chosen = select_images(scores, full, per_round)
        for i in chosen.tolist():
            mask = ~state.labelled[i]
            state.add(i, mask, oracle.reveal(i, mask))
    else:
        if budget.kind == "regions":
            per_image = torch.full((n,), round_budgets(int(budget.value), rounds)[round_index - 1], dtype=torch.long)
            count = "regions"
        else:
            total = round_budgets(budget.total_pixels(n, h, w), rounds)[round_index - 1]
            per_image = split_budget(total, available)
        for logits, feats, idx in _pool_logits(model, pool, batch_size, device):
            if tuple(logits.shape[-2:]) != (h, w):
                raise ConfigError(
                    f"adaseg: the model predicts {tuple(logits.shape[-2:])} but the pool images are "
                    f"{(h, w)}; the selection needs input-resolution logits"
                )
            new = strategy(logits, state.labelled[idx], per_image[idx], features=feats, generator=gen, count=count)
            for j, i in enumerate(idx.tolist()):
                if bool(new[j].any()):
                    state.add(i, new[j], oracle.reveal(i, new[j]))
    state.round = round_index
    return state


def _selection_meta(cfg: Any, n: int, h: int, w: int) -> dict[str, str]:
    return {
        "strategy": cfg.active.strategy,
        "budget": cfg.active.budget,
        "rounds": str(cfg.active.rounds),
        "radius": str(cfg.active.radius),
        "seed": str(cfg.optim.seed),
        "pool": f"{n}x{h}x{w}",
    }


def run_active_learning(
    cfg: Any,
    net_factory: Callable[[], nn.Module],
    source: Any,
    target_pool: Any,
    target_test: Any,
    oracle: SimulatedOracle,
    run_dir: str | Path,
    *,
    num_classes: int,
    resume: bool = False,
    warmup_from: str | Path | None = None,
    device: torch.device | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Warm-up, then ``cfg.active.rounds`` rounds of select -> reveal -> train; returns (and writes) results.json.

    Args:
        cfg: :class:`~pickwise.tasks.adaseg.config.AdaSegConfig`.
        net_factory: Builds a fresh segmentation network (``{"logits", "features"}`` output).
        source: Labelled source dataset ``(image, label, index)``.
        target_pool: Target training images; only their images are read (``ImagesOnly``).
        target_test: Target evaluation dataset ``(image, label, index)``.
        oracle: Reveals target labels of the selected pixels.
        run_dir: Output folder.
        num_classes: ``K``.
        resume: Continue a run in ``run_dir`` (refused if its strategy, budget, rounds or seed changed).
        warmup_from: Another run folder whose finished ``warmup`` stage is reused (shared by several strategies).
        device: Training device (default CPU).
        log: Progress callback (one line per stage).

    Raises:
        RunFolderError: ``run_dir`` holds results and ``resume`` is False.
        ConfigError: Resuming with changed settings, or a budget larger than the pool.
    """
    device = device or torch.device("cpu")
    log = log or (lambda msg: print(f"adaseg: {msg}", file=sys.stderr))
    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    if results_path.exists() and not resume:
        raise RunFolderError(
            f"adaseg: {run_dir} already holds a run; pass --resume to continue it or choose another --output-dir"
        )
    pool = ImagesOnly(target_pool)
    first = pool[0][0]
    n, (h, w) = len(pool), tuple(first.shape[-2:])
    budget = parse_budget(cfg.active.budget)
    rounds = int(cfg.active.rounds)
    if rounds < 1:
        raise ConfigError(f"adaseg: --rounds must be >= 1; got {rounds}")
    pool_pixels = n * h * w
    if budget.kind in ("pixels", "percent", "per_image") and budget.total_pixels(n, h, w) > pool_pixels:
        raise ConfigError(
            f"budget: {cfg.active.budget} is {budget.total_pixels(n, h, w)} pixels but the target pool "
            f"has only {pool_pixels} ({n} images of {h}x{w}); lower --budget"
        )
    if budget.kind == "images" and budget.value > n:
        raise ConfigError(f"budget: {cfg.active.budget} but the target pool has only {n} images; lower --budget")
    meta = _selection_meta(cfg, n, h, w)
    sel_dir = run_dir / "selection"
    state = latest_selection(sel_dir) if resume else None
    if state is not None:
        check_selection_meta(state.meta, meta)
    elif resume and results_path.exists():
        import json

        saved = json.loads(results_path.read_text()).get("selection_meta", {})
        if saved:
            check_selection_meta(saved, meta)
    state = state or SelectionState.empty(n, h, w, meta)
    from .acquisition import get_strategy
    from .config import _strategy_params

    strategy = get_strategy(cfg.active.strategy, **_strategy_params(cfg))
    results: dict[str, Any] = {
        "strategy": cfg.active.strategy,
        "budget": cfg.active.budget,
        "rounds": rounds,
        "seed": cfg.optim.seed,
        "mcu": bool(cfg.active.mcu),
        "pool_pixels": pool_pixels,
        "selection_meta": meta,
        "config": cfg.to_dict(),
        "stages": [],
    }
    if resume and results_path.exists():
        import json

        results["stages"] = json.loads(results_path.read_text()).get("stages", [])
    done = {row["stage"] for row in results["stages"]}

    def make_model() -> ADASegModel:
        from .contrastive import MultiLevelContrastiveLoss

        with torch.random.fork_rng(devices=[]):  # the same initial weights for every strategy of a seed
            torch.manual_seed(int(cfg.optim.seed))
            net = net_factory()
        dim = _proj_dim(net, pool, device)  # the state exists even without MCU, so warm-ups are interchangeable
        contrastive = MultiLevelContrastiveLoss(num_classes, dim, cfg.contrastive) if dim else None
        return ADASegModel(net, contrastive)

    def record(stage: str, rnd: int, labelled: int, res: StageResult) -> None:
        row = {
            "stage": stage,
            "round": rnd,
            "budget": cfg.active.budget,
            "labelled_pixels": labelled,
            "labelled_fraction": labelled / pool_pixels,
            "mIoU": res.metrics.get("mIoU"),
            "pixel_acc": res.metrics.get("pixel_acc"),
            "per_class_iou": [res.metrics.get(f"IoU/{i}") for i in range(num_classes)],
            "seconds": res.seconds,
        }
        results["stages"] = [r for r in results["stages"] if r["stage"] != stage] + [row]
        atomic_write_json(results_path, results)

    run_dir.mkdir(parents=True, exist_ok=True)
    model = make_model()
    # ---- warm-up (source only)
    warm_dir = run_dir / "warmup"
    if warmup_from is not None and not (warm_dir / "weights.safetensors").exists():
        src = Path(warmup_from) / "warmup" / "weights.safetensors"
        if not src.exists():
            raise ConfigError(f"adaseg: warmup_from={warmup_from} has no finished warm-up ({src} missing)")
        warm_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(warm_dir / "weights.safetensors", src.read_bytes())
    empty_labels = torch.full((n, h, w), IGNORE, dtype=torch.long)
    task = ADASegTask(num_classes, cfg.loss, source_only=True)
    train = PairedDataset(source, pool, empty_labels)
    if not ("warmup" in done and (warm_dir / "weights.safetensors").exists()):
        res = train_stage(cfg, model, train, target_test, task, warm_dir, cfg.optim.warmup_steps, device, log)
        record("warmup", 0, 0, res)
    prev = warm_dir
    # ---- rounds
    for rnd in range(1, rounds + 1):
        stage = f"round_{rnd:02d}"
        if state.round < rnd:
            load_weights(model, prev / "weights.safetensors")
            t0 = time.perf_counter()
            state = select_round(
                model,
                pool,
                state,
                oracle,
                strategy,
                budget,
                rnd,
                rounds,
                batch_size=cfg.data.eval_batch_size,
                seed=cfg.optim.seed,
                device=device,
            )
            save_selection(sel_dir, state)
            log(
                f"{stage}: selected, labelled {state.labelled_fraction():.4%} of the pool "
                f"({time.perf_counter() - t0:.1f} s)"
            )
        if state.round == rnd:
            state_r = state
        else:
            from .oracle import load_selection

            state_r = load_selection(sel_dir / f"round_{rnd:02d}.pt")
        prev = run_dir / stage
        if stage in done and (prev / "weights.safetensors").exists():
            continue
        model = make_model()
        load_weights(model, (run_dir / f"round_{rnd - 1:02d}" if rnd > 1 else warm_dir) / "weights.safetensors")
        task = ADASegTask(num_classes, cfg.loss, use_mcu=bool(cfg.active.mcu))
        train = PairedDataset(source, pool, state_r.target_labels())
        res = train_stage(cfg, model, train, target_test, task, prev, cfg.optim.round_steps, device, log)
        record(stage, rnd, int(state_r.labelled.sum()), res)
    atomic_write_json(results_path, results)
    return results


def _proj_dim(net: nn.Module, pool: Dataset, device: torch.device) -> int:
    """The projection size ``P`` of ``net``'s features (``proj_dim`` attribute, else one forward pass; 0: none)."""
    dim = getattr(net, "feature_channels", None) or getattr(net, "proj_dim", None)
    if isinstance(dim, int) and dim > 0:
        return dim
    with torch.no_grad():
        was = net.training
        net.eval()
        _, feats = model_outputs(net, pool[0][0][None].to(device))
        net.train(was)
    return 0 if feats is None else int(feats.shape[1])
