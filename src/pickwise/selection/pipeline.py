"""The select → verify → fine-tune pipeline shared by the ``select``, ``transfer`` and ``reproduce`` commands.

Candidate lists (names, ``zoo:NAME``, ``ckpt:RUN_DIR``, all built zoo entries), every metric's score and time on
preloaded features, and the fine-tuned accuracy of one candidate on the target.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataNotFoundError, InvalidParameterError, PickwiseUserError
from ..utils.validation import count_or_all

__all__ = ["candidate_list", "finetune_candidate", "load_split", "metric_names", "score_candidates"]


def load_split(data: str, split: str, subset: int | None = None, *, seed: int = 0) -> Any:
    """``create_dataset(data, split, subset=...)`` with ``subset`` capped at the split's size (``None``/0: all)."""
    from ..data import create_dataset, get_dataset_info

    subset = count_or_all("subset", subset)
    if subset:
        try:
            info = get_dataset_info(data)
            size = info.num_train if split == "train" else info.num_test
        except Exception:
            size = None
        if size is not None and subset >= size:
            subset = None
    return create_dataset(data, split, subset=subset or None, seed=seed)


def candidate_list(
    models: str | Sequence[str] | None,
    *,
    zoo: bool = False,
    zoo_root: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Candidate specs from a comma-separated ``models`` string (or list) plus, with ``zoo``, every built zoo entry.

    Raises:
        DataNotFoundError: ``zoo`` is set but nothing is built under ``zoo_root``.
        InvalidParameterError: No candidate at all.
    """
    if isinstance(models, str):
        specs = [m.strip() for m in models.split(",") if m.strip()]
    else:
        specs = [m for m in (models or []) if m]
    if zoo:
        from ..zoo import default_zoo_dir, list_zoo

        root = Path(zoo_root) if zoo_root is not None else default_zoo_dir()
        built = [f"zoo:{r['name']}" for r in list_zoo(root)]
        if not built:
            raise DataNotFoundError(f"select: no zoo entries built in {root}; run `pickwise zoo build --root {root}`")
        specs += [b for b in built if b not in specs]
    specs = list(dict.fromkeys(specs))  # drop repeats, keep the first place
    if not specs:
        raise InvalidParameterError(
            "select: name at least one candidate in models, or set zoo=True (CLI: --models or --zoo)."
        )
    return specs


def metric_names(metrics: str | Sequence[str]) -> list[str]:
    """Validated metric names (comma-separated string or list) that work from features (+ F-Labels)."""
    from ._spec import get_metric

    items = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics)
    names = [get_metric(m).name for m in items if m]
    if not names:
        raise InvalidParameterError("select: metrics (--metrics) must name at least one metric.")
    for name in names:
        if get_metric(name).input not in ("features", "label_embeddings"):
            raise InvalidParameterError(
                f"select: metric '{name}' needs source-head outputs, which `pickwise select` does not extract yet; "
                "use the Python API (pickwise.selection) for it."
            )
    return names


def score_candidates(
    features: dict[str, tuple[np.ndarray, np.ndarray]],
    metrics: Sequence[str],
    *,
    class_embeddings: np.ndarray | None = None,
    failures: dict[str, dict[str, str]] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Score every candidate's ``(features, labels)`` with every metric; returns ``(scores, seconds)``.

    Both are ``{metric: {candidate: value}}``; seconds time the metric alone (features preloaded).
    ``class_embeddings`` ``(C, L, K)`` are the F-Labels of the classes (needed by EMMS).

    With ``failures`` (a dict, filled in place as ``{metric: {candidate: reason}}``) a candidate whose metric
    raises a pickwise error or a linear-algebra/floating-point error, or returns NaN/inf, gets the score NaN and
    a one-line reason, and the other candidates are still scored; without it the error propagates.
    """
    from ._spec import get_metric

    scores: dict[str, dict[str, float]] = {m: {} for m in metrics}
    seconds: dict[str, dict[str, float]] = {m: {} for m in metrics}
    label_emb = None
    if class_embeddings is not None:
        label_emb = {i: class_embeddings[i] for i in range(class_embeddings.shape[0])}
    for metric in metrics:
        spec = get_metric(metric)
        if spec.input == "label_embeddings" and label_emb is None:
            raise InvalidParameterError(f"select: metric '{metric}' needs class_embeddings (F-Labels).")
        for model, (x, y) in features.items():
            t0 = time.perf_counter()
            if failures is None:
                value = spec.func(x, label_emb, labels=y) if spec.input == "label_embeddings" else spec.func(x, y)
            else:
                try:
                    value = spec.func(x, label_emb, labels=y) if spec.input == "label_embeddings" else spec.func(x, y)
                except (PickwiseUserError, np.linalg.LinAlgError, FloatingPointError, ValueError) as err:
                    value = float("nan")
                    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                    failures.setdefault(metric, {})[model] = f"{metric} failed: {reason}"
                else:
                    if not np.isfinite(float(value)):
                        failures.setdefault(metric, {})[model] = f"{metric} returned {float(value)}"
            seconds[metric][model] = time.perf_counter() - t0
            scores[metric][model] = float(value)
    return scores, seconds


def finetune_candidate(
    spec: str,
    data: str,
    *,
    zoo_root: str | os.PathLike[str] | None = None,
    pretrained: bool = False,
    image_size: int | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    **options: Any,
) -> dict[str, Any]:
    """Fine-tune candidate ``spec`` on dataset ``data`` (train split → test split); see :func:`finetune`.

    The candidate sees the preprocessing of feature extraction (:func:`preprocess_spec` on the target).
    ``options`` go to :func:`~pickwise.selection.finetune.finetune` (``epochs``, ``lr``, ``batch_size``,
    ``max_steps``, ``convert_norm``, ``device``, ``run_dir``, ``progress``, ``on_step``). A randomly initialised
    registered candidate is initialised with ``seed`` (as in feature extraction), so it is the same network.
    """
    from .features import preprocess_spec, resolve_candidate
    from .finetune import finetune

    cand = resolve_candidate(spec, pretrained=pretrained, zoo_root=zoo_root, seed=seed)
    train = load_split(data, "train", train_subset, seed=seed)
    test = load_split(data, "test", test_subset, seed=seed)
    prep = preprocess_spec(cand, train, image_size=image_size)
    out = finetune(cand.model, train, test, preprocess=prep, seed=seed, **options)
    out.update(train_samples=len(train), test_samples=len(test), preprocessing=prep)
    return out
