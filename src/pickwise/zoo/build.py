"""Training and storing the zoo (resumable: built entries are kept, interrupted ones resume).

Progress: every entry announces itself (``zoo: 3/9 resnet20-bn-mnist: training 2 epoch(s) on 4000 images``); on a
terminal the engine's progress bar follows the steps, otherwise a one-line status is printed about every 10 s
(``zoo: 3/9 resnet20-bn-mnist: epoch 1/2, step 40/124, loss 0.412 (23 s)``).

Accuracy floor: a trained entry must reach ``1 / classes + FLOOR_MARGIN`` on (a fixed subset of) its source test
split. Below it, the entry is trained once more from scratch with twice the epochs at half the learning rate; if it
is still below, it is dropped with a message (and not stored). Untrained controls and shipped pretrained weights
are not trained here, so the floor does not apply to them.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import torch
from safetensors.torch import save_file

from ..utils.io import atomic_write_json, sha256_file, strict_json_dumps
from ..utils.seed import seed_everything
from .spec import DEFAULT_ZOO, RETRY_EPOCHS_FACTOR, RETRY_LR_FACTOR, ZooEntry, accuracy_floor, entry_settings
from .store import list_zoo

__all__ = ["SOURCE_TEST_IMAGES", "build_zoo", "default_zoo_dir", "estimate_seconds"]

# source test images used for the recorded accuracy (a fixed seeded subset; the full 10,000-image Fashion-MNIST test
# split would cost more than the training itself)
SOURCE_TEST_IMAGES = 1000

# measured wall-clock seconds per training image (one forward + backward, data loading and start-up included) with
# OMP_NUM_THREADS=1 on the 2-core CPU machine while five other jobs shared it (2026-12-01: resnet20 0.011-0.022,
# resnet8 0.0035, resnet32 0.025), 28-32 px images; 8x8 digits cost about a tenth; evaluation a third of an image
# measured on an idle 2-core CPU (the quick zoo: 16 s); the same build took 2 min 50 s with the cores shared by
# other jobs, so the printed estimate says both
_SECONDS_PER_IMAGE = {"resnet8": 0.0013, "resnet20": 0.0033, "resnet32": 0.0055}
_DEFAULT_SECONDS_PER_IMAGE = 0.001
_STATIC_SECONDS = {"craft_vgg16_bn": 1.0}  # loading and hashing shipped weights
_DEFAULT_STATIC_SECONDS = 0.3
_START_SECONDS = 0.5  # per trained entry: set-up, loading the source data (Fashion-MNIST: 60,000 images)
SHARED_SLOWDOWN = 8.0  # measured: quick zoo 16 s idle vs 2 min 50 s at load average ~10
HEARTBEAT_SECONDS = 10.0
# where shipped weights come from (recorded as the entry's source data)
PRETRAINED_SOURCE = {"mobilenet_v2": "imagenet", "craft_vgg16_bn": "text detection (CRAFT: SynthText, ICDAR)"}


def default_zoo_dir() -> Path:
    """``$PICKWISE_ZOO_DIR``, else ``~/.cache/pickwise/zoo``."""
    return Path(os.environ.get("PICKWISE_ZOO_DIR", Path.home() / ".cache" / "pickwise" / "zoo"))


def _train_images(entry: ZooEntry) -> int:
    from ..data import get_dataset_info

    assert entry.data is not None, f"zoo entry {entry.name} has no training dataset"
    total = get_dataset_info(entry.data).num_train
    return min(entry.train_subset or total, total)


def estimate_seconds(entries: Sequence[ZooEntry]) -> float:
    """Rough wall-clock of building ``entries`` on an idle 2-core CPU (multiply by ``SHARED_SLOWDOWN`` when shared).

    Trained entries: ``epochs x training images x seconds per image`` (by architecture; 8 px digits at a tenth)
    plus the source-test evaluation; static entries (pretrained, untrained) about a second each. A machine shared
    with other jobs is slower.
    """
    total = 0.0
    for e in entries:
        if e.pretrained or e.untrained or not e.data:
            total += _STATIC_SECONDS.get(e.model, _DEFAULT_STATIC_SECONDS)
            continue
        per_image = _SECONDS_PER_IMAGE.get(e.model, _DEFAULT_SECONDS_PER_IMAGE)
        width = float(e.kwargs.get("width", 16)) / 16.0
        per_image *= max(0.4, width**2)
        if e.data == "digits":
            per_image *= 0.1
        try:
            images = _train_images(e)
        except Exception:  # unknown or absent dataset: the build will say so
            continue
        total += per_image * (e.epochs * images + SOURCE_TEST_IMAGES / 3) + _START_SECONDS
    return total


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class _Heartbeat:
    """Print ``status()`` every ``interval`` seconds on ``stream`` until stopped (non-terminal progress)."""

    def __init__(self, status: Callable[[], str], interval: float, stream: TextIO) -> None:
        self.status, self.interval, self.stream = status, interval, stream
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a status line must never break the build
                print(self.status(), file=self.stream, flush=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


def _last_log_row(run_dir: Path) -> dict[str, str] | None:
    path = run_dir / "train_log.csv"
    if not path.is_file():
        return None
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error):
        return None
    return rows[-1] if rows else None


def _train_entry(
    entry: ZooEntry, root: Path, *, prefix: str, progress: bool, interval: float, stream: TextIO
) -> tuple[torch.nn.Module, dict[str, Any]]:
    from ..analysis.runs import load_run
    from ..data import get_dataset_info
    from ..engine.config import resolve_config
    from ..engine.run import run_classification

    assert entry.data is not None, f"zoo entry {entry.name} has no training dataset"
    info = get_dataset_info(entry.data)
    test_images = min(SOURCE_TEST_IMAGES, info.num_test)
    images = _train_images(entry)
    steps_per_epoch = max(1, images // entry.batch_size)
    total_steps = steps_per_epoch * entry.epochs
    tty = progress and bool(getattr(stream, "isatty", lambda: False)())
    cfg = resolve_config(
        overrides=[
            f"model.name={entry.model}",
            f"model.norm={entry.norm}",
            f"data.name={entry.data}",
            f"data.batch_size={entry.batch_size}",
            f"data.test_subset={test_images}",
            f"train.epochs={entry.epochs}",
            f"optim.lr={entry.lr}",
            f"train.seed={entry.seed}",
            f"train.progress={'true' if tty else 'false'}",
            "train.log_every=5",
            "schedule.warmup_epochs=0.1",
            "train.tensorboard=false",
            f"output_dir={root / '_runs'}",
            f"name={entry.name}",
            *([f"data.train_subset={entry.train_subset}"] if entry.train_subset else []),
        ]
    )
    cfg.model.kwargs = dict(entry.kwargs)
    run_dir = Path(cfg.output_dir) / entry.name
    settings_file = run_dir / "zoo_settings.json"
    settings = entry_settings(entry)
    if run_dir.exists():  # resume only a run started with the very same settings, else start afresh
        import json

        try:
            same = json.loads(settings_file.read_text()) == json.loads(strict_json_dumps(settings))
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(settings_file, settings)
    # nothing to resume (new, or killed before its first checkpoint): the engine may replace what is there
    resume = True if any((run_dir / "checkpoints").glob("ckpt-*")) else None
    start = time.perf_counter()

    def status() -> str:
        row = _last_log_row(run_dir)
        elapsed = time.perf_counter() - start
        if row is None or not row.get("step"):
            return f"zoo: {prefix}: starting, step 0/{total_steps} ({elapsed:.0f} s)"
        step = int(float(row["step"]))
        epoch = min(entry.epochs, step // steps_per_epoch + 1)
        loss = f", loss {float(row['loss']):.3f}" if row.get("loss") else ""
        return f"zoo: {prefix}: epoch {epoch}/{entry.epochs}, step {step}/{total_steps}{loss} ({elapsed:.0f} s)"

    if progress and not tty:
        with _Heartbeat(status, interval, stream):
            result = run_classification(cfg, resume=resume, overwrite=resume is None)
    else:
        result = run_classification(cfg, resume=resume, overwrite=resume is None)
    model, _, results = load_run(run_dir)
    return model, {
        "source_test_acc": result.metrics.get("acc"),
        "source_test_images": test_images,
        "num_classes": results["num_classes"],
        "in_chans": results["in_chans"],
        "train_seconds": result.train_seconds,
        "chance": 1.0 / int(results["num_classes"]),
    }


def _static_entry(entry: ZooEntry) -> tuple[torch.nn.Module, dict[str, Any]]:
    from ..models import create_model

    seed_everything(entry.seed)
    if entry.pretrained:
        model: Any = create_model(entry.model, pretrained=True, norm_layer=entry.norm, **entry.kwargs)
        return model, {"source_test_acc": None, "num_classes": int(model.num_classes), "in_chans": 3}
    model = create_model(entry.model, num_classes=10, in_chans=1, norm_layer=entry.norm, **entry.kwargs)
    return model, {"source_test_acc": None, "num_classes": 10, "in_chans": 1}


def build_zoo(
    root: str | os.PathLike[str] | None = None,
    entries: Sequence[ZooEntry] = DEFAULT_ZOO,
    *,
    force: bool = False,
    progress: bool = True,
    stream: TextIO | None = None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> list[dict[str, Any]]:
    """Build (or complete) the zoo under ``root``; returns the records of the requested entries that exist.

    Entries already built with the same settings are kept unless ``force`` (which retrains them from scratch);
    an entry built with other settings (e.g. by ``--quick``) is rebuilt; a run interrupted mid-training resumes from
    its checkpoint. A trained entry below its accuracy floor (:func:`~pickwise.zoo.spec.accuracy_floor`) is retrained
    once with twice the epochs at half the learning rate, then dropped with a message. Pretrained entries whose
    weights package is missing are skipped with a note.

    Args:
        root: Zoo folder (default: :func:`default_zoo_dir`).
        entries: What to build.
        force: Rebuild entries that exist.
        progress: Print per-entry lines (and a progress bar on a terminal, a status line every
            ``heartbeat_seconds`` otherwise) on ``stream``.
        stream: Where progress goes (default: ``sys.stderr``).
        heartbeat_seconds: Interval of the non-terminal status line.
    """
    from ..exceptions import PickwiseUserError

    stream = stream if stream is not None else sys.stderr
    root = Path(root) if root is not None else default_zoo_dir()
    root.mkdir(parents=True, exist_ok=True)
    built = {e["name"]: e for e in list_zoo(root)}
    todo = []
    for entry in entries:
        old = built.get(entry.name)
        if old is None or force:
            todo.append(entry)
        elif old.get("settings") != entry_settings(entry):
            if progress:
                print(f"zoo: {entry.name} was built with other settings; rebuilding it", file=stream)
            todo.append(entry)
    if progress and todo:
        print(
            f"zoo: building {len(todo)} of {len(entries)} entries in {root} "
            f"(estimated {_fmt_seconds(estimate_seconds(todo))} on an idle 2-core CPU, up to "
            f"{_fmt_seconds(SHARED_SLOWDOWN * estimate_seconds(todo))} when other jobs share the cores)",
            file=stream,
            flush=True,
        )
    todo_names = {e.name for e in todo}
    records = []
    position = 0
    for entry in entries:
        if entry.name not in todo_names:
            records.append(built[entry.name])
            continue
        position += 1
        prefix = f"{position}/{len(todo)} {entry.name}"
        start = time.perf_counter()
        attempts: list[dict[str, Any]] = []
        model: Any  # a pickwise classifier (num_features, state_dict)
        try:
            if entry.pretrained or entry.untrained or not entry.data:
                if progress:
                    kind = "loading shipped weights" if entry.pretrained else "random initialisation (control)"
                    print(f"zoo: {prefix}: {kind}", file=stream, flush=True)
                model, info = _static_entry(entry)
            else:
                model, info = None, {}
                recipe = entry
                for attempt in range(2):
                    if force or attempt:
                        shutil.rmtree(root / "_runs" / entry.name, ignore_errors=True)
                    if progress:
                        print(
                            f"zoo: {prefix}: training {recipe.model}/{recipe.norm} on {recipe.data}, "
                            f"{recipe.epochs} epoch(s) on {_train_images(recipe)} images, lr {recipe.lr:g}"
                            + (" (retry)" if attempt else ""),
                            file=stream,
                            flush=True,
                        )
                    model, info = _train_entry(
                        recipe, root, prefix=prefix, progress=progress, interval=heartbeat_seconds, stream=stream
                    )
                    floor = accuracy_floor(info["num_classes"])
                    acc = info["source_test_acc"]
                    attempts.append({"epochs": recipe.epochs, "lr": recipe.lr, "source_test_acc": acc})
                    info["accuracy_floor"] = floor
                    if acc is not None and acc >= floor:
                        break
                    if progress:
                        print(
                            f"zoo: {prefix}: source test accuracy {acc:.3f} is below the floor {floor:.3f} "
                            f"(chance {info['chance']:.3f} + margin)"
                            + ("" if attempt else "; retrying with twice the epochs at half the learning rate"),
                            file=stream,
                            flush=True,
                        )
                    recipe = replace(recipe, epochs=recipe.epochs * RETRY_EPOCHS_FACTOR, lr=recipe.lr * RETRY_LR_FACTOR)
                else:
                    print(
                        f"zoo: dropping {entry.name}: source test accuracy {attempts[-1]['source_test_acc']:.3f} "
                        f"stays below the floor {info['accuracy_floor']:.3f} after a retry",
                        file=stream,
                        flush=True,
                    )
                    shutil.rmtree(root / entry.name, ignore_errors=True)
                    continue
        except PickwiseUserError as err:
            print(f"zoo: skipping {entry.name}: {err}", file=stream)
            continue
        folder = root / entry.name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        record: dict[str, Any] = {
            "name": entry.name,
            "model": entry.model,
            "norm": entry.norm,
            "kwargs": dict(entry.kwargs),
            "source_data": entry.data
            or (PRETRAINED_SOURCE.get(entry.model, "pretrained") if entry.pretrained else None),
            "epochs": attempts[-1]["epochs"] if attempts else entry.epochs,
            "train_subset": entry.train_subset,
            "pretrained": entry.pretrained,
            "untrained": entry.untrained,
            "num_features": int(model.num_features),
            "build_seconds": time.perf_counter() - start,
            "settings": entry_settings(entry),
            **info,
        }
        if len(attempts) > 1:
            record["attempts"] = attempts
        if not entry.pretrained:  # shipped weights are not copied: the model registry verifies them itself
            tmp = folder / ".model.safetensors.tmp"
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
            os.replace(tmp, folder / "model.safetensors")
            record["weights"] = "model.safetensors"
            record["sha256"] = sha256_file(folder / "model.safetensors")
        atomic_write_json(folder / "entry.json", record)
        if progress:
            acc = record.get("source_test_acc")
            acc_text = "" if acc is None else f", source test accuracy {acc:.3f}"
            print(
                f"zoo: {prefix}: done in {record['build_seconds']:.0f} s{acc_text}",
                file=stream,
                flush=True,
            )
        records.append(record)
    return records
