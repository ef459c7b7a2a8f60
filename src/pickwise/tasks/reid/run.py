"""The ``pickwise reid train`` and ``pickwise reid evaluate`` jobs: data, model, PK trainer, results and figures.

:func:`run_reid` checks the config and the data before anything is written (identities for the PK sampler, at least
one query with a true match in another camera), locks the run folder, trains with the engine's
:class:`~pickwise.engine.Trainer` (resumable, atomic checkpoints, torchrun) and writes, on rank 0:

- ``model.safetensors``: the backbone's weights (no loss state);
- ``results.json``: metrics, the frame policy (train/test policy, T, how many tracklets were shorter than T and
  padded), the dataset's size, timings, the evaluation history and the resolved config;
- ``metrics.md``: rank-1/5/10/20, mAP and mINP as a table;
- ``cmc.png`` (CMC curve) and ``ranked.png`` (queries with their top-ranked gallery tracklets, correct matches
  framed green, wrong ones red).

:func:`evaluate_reid` re-evaluates a finished run folder (optionally with other evaluation settings, e.g. re-ranking
or another test frame policy) and writes ``evaluation.json`` with the same table and figures under ``eval-*`` names.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ...engine.checkpoint import save_weights
from ...engine.progress import make_progress
from ...engine.rundir import RunLock, clear_run_dir
from ...exceptions import CheckpointError, ConfigError, DataFormatError, DataNotFoundError
from ...utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from .config import (
    ReIDRunConfig,
    apply_reid_overrides,
    reid_config_from_dict,
    reid_config_to_dict,
    validate_reid_config,
)
from .task import QueryGalleryDataset, ReIDNet, ReIDTask

__all__ = [
    "ReIDRunResult",
    "build_reid_model",
    "check_reid_dataset",
    "default_reid_run_name",
    "evaluate_reid",
    "frame_policy_record",
    "load_reid_data",
    "metrics_table",
    "run_reid",
]

METRIC_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


@dataclass
class ReIDRunResult:
    """What :func:`run_reid` returns.

    Attributes:
        metrics: Final retrieval metrics (fractions) and query counts.
        run_dir: The run folder.
        steps: Optimizer steps in total.
        epochs: Epochs completed.
        train_seconds: Wall time of this process's training loop.
        rank: This process's rank (0 writes and prints).
        results: The ``results.json`` payload (rank 0; empty elsewhere).
    """

    metrics: dict[str, float]
    run_dir: Path
    steps: int
    epochs: int
    train_seconds: float
    rank: int = 0
    results: dict[str, Any] = field(default_factory=dict)


def default_reid_run_name(cfg: ReIDRunConfig) -> str:
    """``<model>-<data>-s<seed>``."""
    return f"{cfg.model.name}-{cfg.data.name}-s{cfg.train.seed}".replace("/", "_").replace(":", "_")


def load_reid_data(cfg: ReIDRunConfig) -> Any:
    """The benchmark of ``cfg.data`` (a :class:`~pickwise.tasks.reid.datasets.VideoReIDDataset`)."""
    from .datasets import load_reid_dataset

    kwargs: dict[str, Any] = {"split_id": cfg.data.split_id, "min_seq_len": cfg.data.min_seq_len}
    if cfg.data.query_in_gallery:
        kwargs["query_in_gallery"] = True
    return load_reid_dataset(cfg.data.name, cfg.data.root, **kwargs)


def check_reid_dataset(dataset: Any, cfg: ReIDRunConfig, *, training: bool = True) -> None:
    """Refuse data the run cannot use, in one line, before anything is written.

    Raises:
        DataFormatError: No training tracklets, fewer identities than P, empty query/gallery, a tracklet without
            frames, or no query with a true match (same identity, another camera) in the gallery.
    """
    name = getattr(dataset, "name", cfg.data.name)
    if training:
        if not dataset.train:
            raise DataFormatError(f"{name}: the training subset is empty")
        pids = {t.pid for t in dataset.train}
        if len(pids) < cfg.sampler.num_identities:
            raise DataFormatError(
                f"{name}: {len(pids)} training identities, fewer than P = sampler.num_identities = "
                f"{cfg.sampler.num_identities}; lower it"
            )
    if not dataset.query or not dataset.gallery:
        raise DataFormatError(
            f"{name}: need query and gallery tracklets; got {len(dataset.query)} and {len(dataset.gallery)}"
        )
    for subset in ("train", "query", "gallery") if training else ("query", "gallery"):
        for t in getattr(dataset, subset):
            if len(t.img_paths) == 0:
                raise DataFormatError(f"{name}: a {subset} tracklet of identity {t.pid} has no frames")
    seen = {(t.pid, t.camid) for t in dataset.gallery}
    by_pid: dict[int, set[int]] = {}
    for pid, cam in seen:
        by_pid.setdefault(pid, set()).add(cam)
    valid = sum(1 for q in dataset.query if by_pid.get(q.pid, set()) - {q.camid})
    if valid == 0:
        raise DataFormatError(
            f"{name}: none of the {len(dataset.query)} queries has a gallery tracklet of its identity from another "
            "camera, so no query can be evaluated (Market/MARS protocol); check the query/gallery split"
        )


def frame_policy_record(dataset: Any, cfg: ReIDRunConfig) -> dict[str, Any]:
    """How clips are cut, for ``results.json``: policies, T and the tracklets shorter than T (padded)."""
    t = cfg.data.seq_len

    def short(tracks: Any, length: int) -> int:
        return sum(1 for x in tracks if len(x.img_paths) < length)

    test_len = t * cfg.eval.test_clips
    return {
        "seq_len": t,
        "train_policy": cfg.data.train_frames,
        "test_policy": cfg.data.test_frames,
        "test_clips": cfg.eval.test_clips,
        "size": [cfg.data.height, cfg.data.width],
        "short_tracklets_padded": {
            "train": short(dataset.train, t),
            "query": short(dataset.query, test_len),
            "gallery": short(dataset.gallery, test_len),
        },
        "padding": {
            "evenly": "the last frame is repeated",
            "restricted_random": "every frame in order, each repeated about T/n times",
            "random": "frames drawn with replacement, then sorted",
        },
    }


_FRAME_CACHE: dict[tuple[str, int, int], np.ndarray] = {}


def _clip_datasets(dataset: Any, cfg: ReIDRunConfig) -> tuple[Any, QueryGalleryDataset]:
    from .frames import VideoClipDataset

    cls: Any = VideoClipDataset
    if cfg.data.cache_frames:

        class CachedClipDataset(VideoClipDataset):
            """``VideoClipDataset`` that decodes each frame once per process (``data.cache_frames``)."""

            def _load(self, path: str) -> np.ndarray:
                key = (path, *self.size)
                frame = _FRAME_CACHE.get(key)
                if frame is None:
                    frame = _FRAME_CACHE[key] = super()._load(path)
                return frame

        cls = CachedClipDataset
    size = (cfg.data.height, cfg.data.width)
    train = cls(dataset.train, cfg.data.seq_len, cfg.data.train_frames, "train" if cfg.data.augment else None, size)
    test_len = cfg.data.seq_len * cfg.eval.test_clips
    query = cls(dataset.query, test_len, cfg.data.test_frames, None, size)
    gallery = cls(dataset.gallery, test_len, cfg.data.test_frames, None, size)
    return train, QueryGalleryDataset(query, gallery)


def _num_cameras(dataset: Any) -> int:
    cams = [t.camid for part in (dataset.train, dataset.query, dataset.gallery) for t in part]
    return max(cams) + 1 if cams else 1


def build_reid_model(cfg: ReIDRunConfig, num_classes: int, num_cameras: int) -> ReIDNet:
    """``create_model(cfg.model.name, ...)`` wrapped in a :class:`ReIDNet` (with centres when the loss needs them).

    Raises:
        UnknownNameError: Unknown model name (with close matches).
        ConfigError: ``model.kwargs`` the model does not accept, or a model without the re-ID output contract.
    """
    import pickwise.models.mstat  # noqa: F401  (registers the re-ID models until models/__init__ imports it)

    from ...exceptions import PickwiseUserError
    from ...models import create_model

    try:
        backbone = create_model(
            cfg.model.name,
            num_classes=num_classes,
            num_cameras=num_cameras,
            seq_len=cfg.data.seq_len,
            img_size=(cfg.data.height, cfg.data.width),
            **cfg.model.kwargs,
        )
    except PickwiseUserError:
        raise
    except TypeError as err:
        raise ConfigError(f"config: model {cfg.model.name} cannot be built with model.kwargs ({err})") from None
    if cfg.model.freeze:
        names = [n for n, _ in backbone.named_parameters()]
        for prefix in cfg.model.freeze:
            if not any(n.startswith(prefix) for n in names):
                raise ConfigError(
                    f"config: model.freeze prefix {prefix!r} matches no parameter of {cfg.model.name} "
                    f"(names look like {names[0]!r} ... {names[-1]!r})"
                )
        for n, p in backbone.named_parameters():
            if any(n.startswith(prefix) for prefix in cfg.model.freeze):
                p.requires_grad_(False)
    centers = None
    if cfg.loss.center_weight > 0:
        from .losses import CenterLoss

        backbone.train()
        with torch.no_grad():
            probe = backbone(torch.zeros(2, cfg.data.seq_len, 3, cfg.data.height, cfg.data.width))
        if not isinstance(probe, dict) or "features" not in probe:
            raise ConfigError(f"config: model {cfg.model.name} has no training features for the centre loss")
        centers = [CenterLoss(num_classes, int(f.shape[1])) for f in probe["features"]]
    return ReIDNet(backbone, centers)


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per label, rank-1/5/10/20, mAP and mINP in %."""
    head = "| run | R1 | R5 | R10 | R20 | mAP | mINP |\n|---|---|---|---|---|---|---|\n"
    body = ""
    for label, m in rows.items():
        body += f"| {label} | " + " | ".join(f"{100 * m[k]:.1f}" for k in METRIC_KEYS) + " |\n"
    return head + body


def _frame(path: str, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB").resize((size[1], size[0])), dtype=np.uint8)
    except (OSError, ValueError):
        return np.zeros((size[0], size[1], 3), dtype=np.uint8)


def _write_figures(run_dir: Path, prefix: str, accumulator: Any, dataset: Any, cfg: ReIDRunConfig, label: str) -> None:
    """CMC and ranked-gallery PNGs from the synced accumulator (rows/columns in dataset index order)."""
    from .figures import cmc_figure, ranked_gallery_figure

    result = accumulator.result()
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # the CMC figure is optional (the ranked gallery needs only PIL)
        pass
    else:
        atomic_write_bytes(
            run_dir / f"{prefix}cmc.png",
            cmc_figure({label: result.cmc}, max_rank=min(20, len(result.cmc)), title=f"CMC ({dataset.name})"),
        )
    nq = int(cfg.eval.figure_queries)
    if nq == 0 or cfg.eval.figure_topk == 0:
        return
    dist = accumulator.distmat().double().cpu().numpy()
    ids = {k: v.cpu().numpy() for k, v in accumulator.ids().items()}
    num_query = len(dataset.query)
    valid = [  # queries with a true match left after the same-identity-same-camera removal
        row
        for row in range(len(ids["q_index"]))
        if np.any((ids["g_pids"] == ids["q_pids"][row]) & (ids["g_camids"] != ids["q_camids"][row]))
    ]
    if not valid:
        return
    picks = [valid[i] for i in np.linspace(0, len(valid) - 1, num=min(nq, len(valid))).round().astype(int)]
    size = (max(64, cfg.data.height), max(32, cfg.data.width))
    queries, galleries, matches, qlabels, glabels = [], [], [], [], []
    for row in picks:
        q = dataset.query[int(ids["q_index"][row])]
        keep = ~((ids["g_pids"] == ids["q_pids"][row]) & (ids["g_camids"] == ids["q_camids"][row]))
        cols = np.nonzero(keep)[0]
        order = cols[np.argsort(dist[row, cols], kind="stable")][: cfg.eval.figure_topk]
        tracks = [dataset.gallery[int(ids["g_index"][c]) - num_query] for c in order]
        queries.append(_frame(q.img_paths[len(q.img_paths) // 2], size))
        galleries.append([_frame(t.img_paths[len(t.img_paths) // 2], size) for t in tracks])
        matches.append([bool(ids["g_pids"][c] == ids["q_pids"][row]) for c in order])
        qlabels.append(f"{q.pid}/c{q.camid}")
        glabels.append([f"{dist[row, c]:.2f}" for c in order])
    png = ranked_gallery_figure(
        queries,
        galleries,
        matches,
        query_labels=qlabels,
        gallery_labels=glabels,
        title=f"{label}: top-{cfg.eval.figure_topk} (green = same identity, red = different)",
    )
    atomic_write_bytes(run_dir / f"{prefix}ranked.png", png)


def _dataset_record(dataset: Any) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "root": str(dataset.root),
        "num_train_pids": dataset.num_train_pids,
        "num_train_tracklets": len(dataset.train),
        "num_query": len(dataset.query),
        "num_gallery": len(dataset.gallery),
    }


def run_reid(
    cfg: ReIDRunConfig,
    *,
    resume: str | Path | bool | None = None,
    overwrite: bool = False,
    dataset: Any = None,
) -> ReIDRunResult:
    """Train ``cfg.model`` on ``cfg.data`` with PK batches and evaluate it; the whole ``pickwise reid train`` job.

    Args:
        cfg: The resolved configuration.
        resume: True to continue from the newest valid checkpoint of the run, or a checkpoint folder.
        overwrite: Delete a previous run's outputs in the folder first.
        dataset: An already loaded :class:`~pickwise.tasks.reid.datasets.VideoReIDDataset` (default: load
            ``cfg.data``).

    Returns:
        The final metrics and where they were written.

    Raises:
        RunFolderError, RunLockedError, CheckpointError, ConfigError, UnknownNameError, DataNotFoundError,
        DataFormatError, TrainingDivergedError: One line each (nothing half-written).
    """
    from ...engine.trainer import Trainer
    from ...utils.distributed import cleanup_distributed, get_world_size, init_distributed, is_main_process
    from ...utils.seed import seed_everything
    from ..classification.run import _main_then_share, check_run_dir, resolve_device
    from .samplers import pk_sampler_factory

    validate_reid_config(cfg)
    if resume and overwrite:
        raise ConfigError("reid train: --resume continues a run and --overwrite deletes it; choose one")
    device = resolve_device(cfg.train.device)
    if dataset is None:
        dataset = load_reid_data(cfg)
    check_reid_dataset(dataset, cfg)
    if cfg.name is None:
        cfg.name = default_reid_run_name(cfg)
    validate_reid_config(cfg)
    run_dir = Path(cfg.output_dir) / cfg.name
    init_distributed(device)
    lock: RunLock | None = None
    try:
        seed_everything(cfg.train.seed)  # identical initial weights on every rank
        net = build_reid_model(cfg, dataset.num_train_pids, _num_cameras(dataset))  # bad names/options: no folder yet
        lock = RunLock(run_dir, enabled=is_main_process())

        def prepare() -> None:
            if run_dir.is_dir():
                lock.acquire()
            else:
                check_run_dir(run_dir, resume, overwrite)
                lock.acquire()
            if check_run_dir(run_dir, resume, overwrite) and overwrite:
                clear_run_dir(run_dir)

        _main_then_share(prepare)
        train_set, eval_set = _clip_datasets(dataset, cfg)
        task = ReIDTask(cfg.loss, cfg.eval)
        factory = pk_sampler_factory(train_set.pids, cfg.sampler.num_identities, cfg.sampler.num_instances)
        trainer = Trainer(cfg, net, train_set, eval_set, task, run_dir, device, sampler_factory=factory)
        result = trainer.fit(resume=resume)
        payload: dict[str, Any] = {}
        if is_main_process():
            backbone: torch.nn.Module = net.backbone  # the trainer moved net in place (same module)
            save_weights(backbone, run_dir / "model.safetensors")
            payload = {
                "name": cfg.name,
                "run_id": trainer.run_id,
                "model": cfg.model.name,
                "model_kwargs": dict(cfg.model.kwargs),
                "data": _dataset_record(dataset),
                "metrics": result.metrics,
                "eval": {"metric": cfg.eval.metric, "rerank": cfg.eval.rerank},
                "frames": frame_policy_record(dataset, cfg),
                "sampler": {"P": cfg.sampler.num_identities, "K": cfg.sampler.num_instances},
                "steps": result.steps,
                "epochs": result.epochs,
                "world_size": get_world_size(),
                "train_seconds": result.train_seconds,
                "clips_per_second": result.images_per_second,
                "history": result.history,
                "params": sum(p.numel() for p in backbone.parameters()),
                "device": str(device),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "platform": platform.platform(),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "config": reid_config_to_dict(cfg),
            }
            if task.last_accumulator is not None:
                payload["cmc"] = [float(v) for v in task.last_accumulator.result().cmc[:20]]
            if all(k in result.metrics for k in METRIC_KEYS):
                atomic_write_text(run_dir / "metrics.md", metrics_table({cfg.name: result.metrics}))
                if task.last_accumulator is not None and cfg.eval.figures:
                    _write_figures(run_dir, "", task.last_accumulator, dataset, cfg, cfg.model.name)
            atomic_write_json(run_dir / "results.json", payload)
        return ReIDRunResult(
            metrics=result.metrics,
            run_dir=run_dir,
            steps=result.steps,
            epochs=result.epochs,
            train_seconds=result.train_seconds,
            rank=result.rank,
            results=payload,
        )
    finally:
        if lock is not None:
            lock.release()
        cleanup_distributed()


def _config_of_run(run_dir: Path) -> ReIDRunConfig:
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise DataNotFoundError(
            f"reid evaluate: {run_dir} is not a reid run folder (no config.yaml); pass the folder `pickwise reid "
            "train` wrote"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"reid evaluate: {path} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or "sampler" not in data:
        raise ConfigError(f"reid evaluate: {path} is not a reid run config (no 'sampler' section)")
    return reid_config_from_dict(data)


_EVAL_KEYS = ("eval.", "data.test_frames", "data.root", "data.eval_batch_size", "data.num_workers", "train.device")


def evaluate_reid(
    source: str | Path | ReIDRunConfig,
    *,
    weights: str | Path | None = None,
    overrides: list[str] | None = None,
    output_dir: str | Path | None = None,
    dataset: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a trained re-ID model on its benchmark's query/gallery split (single process).

    Args:
        source: A run folder written by :func:`run_reid`, or a :class:`ReIDRunConfig` (then ``weights`` is needed).
        weights: ``model.safetensors`` of the backbone (default: ``<run folder>/model.safetensors``).
        overrides: ``key=value`` changes to the evaluation (``eval.*``, ``data.test_frames``, ``data.root``,
            ``data.eval_batch_size``, ``data.num_workers``, ``train.device``); others are refused.
        output_dir: Where ``evaluation.json``, ``eval-metrics.md``, ``eval-cmc.png`` and ``eval-ranked.png`` go
            (default: the run folder).
        dataset: An already loaded benchmark (default: load the config's).
        progress: Report progress while embedding.

    Returns:
        The ``evaluation.json`` payload (``metrics``, ``frames``, ``eval``, ``weights``).

    Raises:
        DataNotFoundError, ConfigError, CheckpointError, DataFormatError: One line each.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..classification.run import resolve_device

    if isinstance(source, ReIDRunConfig):
        cfg = reid_config_from_dict(reid_config_to_dict(source))
        run_dir = Path(output_dir) if output_dir is not None else Path(cfg.output_dir) / str(cfg.name)
        if weights is None:
            raise ConfigError("reid evaluate: with a config, pass weights= (a model.safetensors)")
    else:
        run_dir = Path(source)
        if not run_dir.is_dir():
            raise DataNotFoundError(f"reid evaluate: run folder {run_dir} does not exist")
        cfg = _config_of_run(run_dir)
    for item in overrides or []:
        key = item.split("=", 1)[0].strip()
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in _EVAL_KEYS):
            raise ConfigError(
                f"reid evaluate: {key} cannot change at evaluation (the weights were trained with it); evaluation "
                "settings are eval.*, data.test_frames, data.root, data.eval_batch_size, data.num_workers, "
                "train.device"
            )
    apply_reid_overrides(cfg, list(overrides or []))
    validate_reid_config(cfg)
    weights_path = Path(weights) if weights is not None else run_dir / "model.safetensors"
    if not weights_path.is_file():
        raise CheckpointError(f"reid evaluate: no weights at {weights_path} (did the training run finish?)")
    out_dir = Path(output_dir) if output_dir is not None else run_dir
    device = resolve_device(cfg.train.device)
    if dataset is None:
        dataset = load_reid_data(cfg)
    check_reid_dataset(dataset, cfg, training=False)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"reid evaluate: cannot read {weights_path} ({err})") from None
    num_classes = dataset.num_train_pids
    for key, value in state.items():  # the classifier's width is the training identities, whatever the data now
        if key.endswith("classifier.weight") and value.ndim == 2:
            num_classes = int(value.shape[0])
            break
    net = build_reid_model(
        dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, center_weight=0.0)),
        num_classes,
        _num_cameras(dataset),
    )
    try:
        net.backbone.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(
            f"reid evaluate: {weights_path} does not fit model {cfg.model.name} with the run's settings "
            f"({str(err).splitlines()[0]})"
        ) from None
    _, eval_set = _clip_datasets(dataset, cfg)
    task = ReIDTask(cfg.loss, cfg.eval)
    accumulators = task.make_accumulators()
    loader = DataLoader(eval_set, batch_size=cfg.data.eval_batch_size, num_workers=cfg.data.num_workers)
    net = net.to(device).eval()
    bar = make_progress(total=len(loader), enabled=progress, desc="reid evaluate")
    try:
        for batch in loader:
            task.evaluation_step(net, batch, device, accumulators)
            bar.update(1)
    finally:
        bar.close()
    metrics = task.compute(accumulators)
    payload = {
        "source": str(run_dir),
        "weights": str(weights_path),
        "model": cfg.model.name,
        "data": _dataset_record(dataset),
        "metrics": metrics,
        "eval": {"metric": cfg.eval.metric, "rerank": cfg.eval.rerank},
        "frames": frame_policy_record(dataset, cfg),
        "cmc": [float(v) for v in task.last_accumulator.result().cmc[:20]],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    label = f"{cfg.model.name}{' + re-ranking' if cfg.eval.rerank else ''}"
    atomic_write_text(out_dir / "eval-metrics.md", metrics_table({label: metrics}))
    if cfg.eval.figures:
        _write_figures(out_dir, "eval-", task.last_accumulator, dataset, cfg, label)
    atomic_write_json(out_dir / "evaluation.json", payload)
    return payload
