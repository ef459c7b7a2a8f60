"""The main job of model selection as library functions: rank candidate models for a target, then fine-tune the pick.

:func:`select_models` scores every candidate's frozen features on the target with transferability metrics (EMMS,
``meng2023emms``; LogME, ``you2021logme``; k-NN accuracy, ...) and recommends the best one; :func:`transfer` then
fine-tunes the recommended candidate (and the runner-up) on the target and reports whether the pick was right. The
``pickwise select`` / ``pickwise transfer`` / ``pickwise demo`` commands only parse their flags, call these and
print the result.

Ranking rules (see :func:`pickwise.selection.ranking.rank_scores`):

* Candidates are ordered by the first metric. Two scores ``a``, ``b`` tie when
  ``|a - b| <= atol + rtol max(|a|, |b|)`` (``rtol = 1e-6``, ``atol = 1e-12``); a tie is broken by a second metric,
  the *tie-break metric*: the second of ``metrics`` when there is one, else LogME (or k-NN accuracy when the first
  metric is LogME itself), computed for that purpose only. Inside a tie that the second metric cannot break the
  order is alphabetical.
* A candidate whose model cannot run on the target (feature extraction raised), whose features are not finite, or
  whose first-metric score is NaN/inf or raised, is never ranked or recommended: it is listed in ``failed`` with a
  one-line reason, and the other candidates are still scored.
* Confidence: the recommendation carries its *pick stability* (:func:`pickwise.selection.ranking.pick_stability`),
  the share of ``B`` resamples of the scored images in which it is still ranked first,
  ``s = #{b : pick first on resample b} / B``. The resamples are pick_stability's default: class-stratified
  subsamples of 80% of the images drawn without replacement (a bootstrap with replacement duplicates rows, which
  inflates the in-sample fit of wide features and made MobileNetV2's 1280-d pick look 100% stable on photo-patches
  where subsamples give 30%). Its binomial standard error is ``sqrt(s (1 - s) / B)`` (about 0.09 for ``s = 0.8``,
  ``B = 20``). Below ``stability_threshold`` the pick is flagged ``uncertain``. This resamples images, not
  candidates: it says how much the pick depends on which target images were scored, not whether the metric is right
  for the target (only ``verify`` and fine-tuning measure that). Only the ``stability_top_k`` best-ranked candidates
  are re-scored in each resample (default 3), which bounds the cost at ``B k`` metric calls.

Example:
    >>> from pickwise.selection.job import select_models
    >>> result = select_models("digits", ["resnet8:random", "resnet20:random"], subset=200,
    ...                        metrics=["logme", "knn_accuracy"], progress=False)  # doctest: +SKIP
    >>> result.recommended, result.stability.share  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataFormatError, InvalidParameterError, PickwiseUserError

__all__ = [
    "DEFAULT_METRICS",
    "DEFAULT_TARGET",
    "FinetuneOptions",
    "Recommendation",
    "SelectionResult",
    "TransferResult",
    "VerifyResult",
    "check_device",
    "default_tie_break_metric",
    "select_models",
    "transfer",
]

#: Metrics of ``pickwise select`` / ``transfer`` by default; the first one ranks.
DEFAULT_METRICS: tuple[str, ...] = ("emms", "logme", "knn_accuracy")
#: The embedded default target of :func:`transfer` (candidates trained on different sources differ clearly on it).
DEFAULT_TARGET = "mnist-5k"
#: Tie tolerance of the ranking (relative, absolute).
TIE_RTOL, TIE_ATOL = 1e-6, 1e-12


@dataclass(frozen=True)
class FinetuneOptions:
    """How candidates are fine-tuned on the target (``verify="finetune"`` and :func:`transfer`).

    Attributes:
        epochs: Training epochs.
        train_subset: Fine-tune on a class-stratified subset of N training images (``None``: all).
        max_steps: Stop after N optimizer steps (``None``: ``epochs`` full epochs).
        lr: Peak SGD learning rate (momentum 0.9, cosine decay, no warm-up).
        batch_size: Training batch size.
    """

    epochs: int = 1
    train_subset: int | None = 1000
    max_steps: int | None = None
    lr: float = 0.02
    batch_size: int = 32


@dataclass(frozen=True)
class Recommendation:
    """The recommended candidate and how sure the recommendation is.

    Attributes:
        model: The candidate ranked first.
        metric: The ranking metric.
        score: Its score.
        tied_with: Candidates tied with it on ``metric`` (the tie was broken by ``tie_break_metric``).
        tie_break_metric: The metric that broke ties.
        stability: Share of resamples (80% subsamples) of the scored images in which ``model`` is still ranked first
            (``None`` when not measured: one ranked candidate, or ``stability_resamples=0``).
        resamples: Resamples completed.
        resampled: Candidates re-scored in each resample (the best ranked ones, see ``stability_top_k``).
        threshold: ``stability`` below this is ``uncertain``.
        uncertain: ``stability < threshold``.
        runner_up: The candidate first most often after ``model`` in the resamples.
        runner_up_share: Its share of first places.
        stability_note: Why ``stability`` is ``None`` (or how it was bounded).
    """

    model: str
    metric: str
    score: float
    tied_with: tuple[str, ...] = ()
    tie_break_metric: str | None = None
    stability: float | None = None
    resamples: int = 0
    resampled: tuple[str, ...] = ()
    threshold: float = 0.8
    uncertain: bool = False
    runner_up: str | None = None
    runner_up_share: float | None = None
    stability_note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "model": self.model,
            "metric": self.metric,
            "score": self.score,
            "tied_with": list(self.tied_with),
            "tie_break_metric": self.tie_break_metric,
            "stability": self.stability,
            "stability_resamples": self.resamples,
            "stability_candidates": list(self.resampled),
            "stability_threshold": self.threshold,
            "uncertain": self.uncertain,
            "runner_up": self.runner_up,
            "runner_up_share": self.runner_up_share,
            "stability_note": self.stability_note,
        }


@dataclass(frozen=True)
class VerifyResult:
    """Measured transfer of every candidate (the ground truth the metrics are judged against).

    Attributes:
        mode: ``"probe"`` (ridge linear probe on frozen features, :func:`~pickwise.selection.verify.probe_accuracy`)
            or ``"finetune"`` (end-to-end fine-tuning, :func:`~pickwise.selection.finetune.finetune`).
        accuracy: ``{candidate: test accuracy}`` (``None`` where it could not be measured).
        failures: ``{candidate: reason}`` for every ``None`` accuracy.
        evaluation: ``{metric: evaluate_ranking(...)}`` (weighted tau, Kendall tau, Pearson, Rel@k, top-1 regret)
            over the candidates with a finite score and accuracy; empty with fewer than two.
        finetune: Per-candidate fine-tuning details (steps, seconds, samples) in ``"finetune"`` mode.
    """

    mode: str
    accuracy: dict[str, float | None]
    failures: dict[str, str] = field(default_factory=dict)
    evaluation: dict[str, dict[str, float]] = field(default_factory=dict)
    finetune: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready fields."""
        out: dict[str, Any] = {
            "mode": self.mode,
            "accuracy": dict(self.accuracy),
            "accuracy_failures": dict(self.failures),
            "evaluation": {k: dict(v) for k, v in self.evaluation.items()},
        }
        if self.finetune:
            out["finetune"] = {k: dict(v) for k, v in self.finetune.items()}
        return out


@dataclass(frozen=True)
class SelectionResult:
    """What :func:`select_models` found.

    Attributes:
        data: Target dataset.
        split: Scored split.
        num_samples: Images scored.
        models: Candidate specs, in input order.
        metrics: Metrics requested (the first ranks).
        tie_break_metric: Metric that breaks ties of the first one.
        encoder: Label encoder(s) of EMMS.
        scores: ``{metric: {candidate: score or None}}`` (also the tie-break metric).
        score_failures: ``{metric: {candidate: reason}}`` for every ``None`` score.
        seconds: ``{metric: {candidate: seconds}}`` of the metric alone.
        feature_seconds: ``{candidate: seconds}`` of feature extraction (or cache load).
        preprocessing: ``{candidate: preprocess_spec}``.
        ranking: The ranking (:class:`~pickwise.selection.ranking.Ranking`: entries, ties, failed).
        failed: ``{candidate: reason}`` for every candidate that is not ranked.
        recommendation: The pick and its stability (``None`` when every candidate failed).
        verify: Measured transfer (``None`` without ``verify``).
        json_path: Where ``select.json`` was written (``None``: not written).
        figure_path: Where ``select.png`` was written.
        seconds_total: Wall time of the whole job.
    """

    data: str
    split: str
    num_samples: int
    models: tuple[str, ...]
    metrics: tuple[str, ...]
    tie_break_metric: str | None
    encoder: str
    scores: dict[str, dict[str, float | None]]
    score_failures: dict[str, dict[str, str]]
    seconds: dict[str, dict[str, float]]
    feature_seconds: dict[str, float]
    preprocessing: dict[str, dict[str, Any]]
    ranking: Any
    failed: dict[str, str]
    recommendation: Recommendation | None
    verify: VerifyResult | None = None
    json_path: str | None = None
    figure_path: str | None = None
    seconds_total: float = 0.0

    @property
    def recommended(self) -> str | None:
        """The recommended candidate (``None`` when every candidate failed)."""
        return self.recommendation.model if self.recommendation else None

    @property
    def ranked(self) -> list[str]:
        """Ranked candidates, best first (failed ones excluded)."""
        return [e.name for e in self.ranking.entries]

    def to_json(self) -> dict[str, Any]:
        """Strict-JSON-ready dict (``None`` for every missing number, with its reason next to it)."""
        out: dict[str, Any] = {
            "data": self.data,
            "split": self.split,
            "num_samples": self.num_samples,
            "models": list(self.models),
            "metrics": list(self.metrics),
            "tie_break_metric": self.tie_break_metric,
            "encoder": self.encoder,
            "scores": _nullify(self.scores),
            "score_failures": {k: dict(v) for k, v in self.score_failures.items() if v},
            "seconds": self.seconds,
            "feature_seconds": self.feature_seconds,
            "preprocessing": self.preprocessing,
            "ranking": self.ranked,
            "ranks": {e.name: e.rank for e in self.ranking.entries},
            "ties": [list(t) for t in self.ranking.ties],
            "failed": dict(self.failed),
            "recommended": self.recommended,
            "recommendation": self.recommendation.to_json() if self.recommendation else None,
            "seconds_total": self.seconds_total,
        }
        if self.recommendation is None:
            out["recommended_reason"] = "every candidate failed"
        if self.verify is not None:
            out["verify"] = self.verify.to_json()
        if self.json_path:
            out["json_path"] = self.json_path
        return out


@dataclass(frozen=True)
class TransferResult:
    """What :func:`transfer` did: the selection, the fine-tuned pick (and runner-up) and the verdict.

    Attributes:
        selection: The :class:`SelectionResult` on the target.
        picked: The fine-tuned recommendation.
        runner_up: The second-ranked candidate, when it was fine-tuned too.
        finetune: ``{candidate: fine-tuning record}`` (``acc``, ``loss``, ``steps``, ``seconds``, ...).
        accuracy: Fine-tuned test accuracy of ``picked`` (``None`` if fine-tuning failed; see ``failures``).
        verdict: ``"right"`` when the pick fine-tunes at least as well as the runner-up, ``"wrong"`` otherwise,
            ``None`` without a runner-up.
        convert_norm: Norm the pick's BatchNorm layers were converted to before fine-tuning.
        failures: ``{candidate: reason}`` for fine-tuning runs that failed.
        select_seconds: Wall time of the selection.
        total_seconds: Wall time of the whole job.
        json_path: Where ``transfer.json`` was written.
    """

    selection: SelectionResult
    picked: str
    runner_up: str | None
    finetune: dict[str, dict[str, Any]]
    accuracy: float | None
    verdict: str | None
    convert_norm: str | None
    failures: dict[str, str]
    select_seconds: float
    total_seconds: float
    json_path: str | None = None

    @property
    def metric(self) -> str:
        """The metric that picked the model."""
        return self.selection.metrics[0]

    def summary(self) -> str:
        """One line: what was picked, its fine-tuned accuracy and, with a runner-up, whether the pick was right."""
        acc = "failed" if self.accuracy is None else f"{self.accuracy:.4f}"
        text = f"picked {self.picked} by {self.metric}: fine-tuned test accuracy {acc}"
        if self.convert_norm and self.picked in self.finetune:
            layers = self.finetune[self.picked].get("converted_layers")
            text += f" (BN -> {self.convert_norm}: {layers} layers converted)"
        if self.runner_up is not None:
            other = self.finetune.get(self.runner_up, {}).get("acc")
            other_text = "failed" if other is None else f"{other:.4f}"
            text += f"; runner-up {self.runner_up}: {other_text}"
            if self.verdict:
                text += f" -> the pick was {self.verdict}"
        return text

    def to_json(self) -> dict[str, Any]:
        """Strict-JSON-ready dict."""
        sel = self.selection
        rec = sel.recommendation
        return {
            "data": sel.data,
            "metric": self.metric,
            "metrics": list(sel.metrics),
            "tie_break_metric": sel.tie_break_metric,
            "ranking": sel.ranked,
            "failed": dict(sel.failed),
            "ties": [list(t) for t in sel.ranking.ties],
            "scores": _nullify(sel.scores),
            "score_failures": {k: dict(v) for k, v in sel.score_failures.items() if v},
            "seconds": sel.seconds,
            "picked": self.picked,
            "predicted_score": sel.scores[self.metric].get(self.picked),
            "recommendation": rec.to_json() if rec else None,
            "accuracy": self.accuracy,
            "accuracy_reason": self.failures.get(self.picked) if self.accuracy is None else None,
            "runner_up": self.runner_up,
            "finetune": {k: dict(v) for k, v in self.finetune.items()},
            "finetune_failures": dict(self.failures),
            "convert_norm": self.convert_norm,
            "pick_verdict": self.verdict,
            "pick_verdict_reason": (
                None
                if self.verdict
                else "no runner-up was fine-tuned (runner_up=False or one ranked candidate)"
                if self.runner_up is None
                else "a fine-tuning run failed"
            ),
            "select_seconds": self.select_seconds,
            "total_seconds": self.total_seconds,
            "summary": self.summary(),
        }


# ------------------------------------------------------------------------------------------------ helpers
def _nullify(scores: Mapping[str, Mapping[str, float | None]]) -> dict[str, dict[str, float | None]]:
    return {
        m: {k: (float(v) if v is not None and math.isfinite(v) else None) for k, v in d.items()}
        for m, d in scores.items()
    }


def _check_int(value: Any, name: str, *, minimum: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidParameterError(
            f"select: {name} must be an integer >= {minimum}; got {value!r}{'; ' + hint if hint else ''}."
        )


def _check_optional_int(value: Any, name: str, *, minimum: int, hint: str = "") -> None:
    if value is not None:
        _check_int(value, name, minimum=minimum, hint=hint)


def check_device(device: str, *, name: str = "device") -> str:
    """Validate a torch device string for model selection (``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    Args:
        device: The device string.
        name: How the messages name the setting: the parameter (``"device"``, the default) or, from the CLI, its
            flag (``"--device"``).

    Returns:
        ``device`` unchanged.

    Raises:
        InvalidParameterError: An unknown device, or a CUDA device on a build/machine without CUDA.
    """
    import torch

    if not isinstance(device, str) or not device:
        raise InvalidParameterError(f"select: device must be a string such as 'cpu' or 'cuda'; got {device!r}.")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise InvalidParameterError(f"select: {name} must be cpu, cuda, cuda:N or mps; got {device!r}.") from None
    flag = name.startswith("--")
    given = f"{name} {device}" if flag else f"{name}={device!r}"
    use_cpu = f"{name} cpu" if flag else f"{name}='cpu'"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "this PyTorch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise InvalidParameterError(f"select: {given} but {build}; use {use_cpu}.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InvalidParameterError(
                f"select: {given} but only {torch.cuda.device_count()} CUDA device(s) are visible."
            )
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InvalidParameterError(f"select: {given} but MPS is not available; use {use_cpu}.")
    return device


def default_tie_break_metric(metrics: Sequence[str]) -> str:
    """The metric that breaks ties of ``metrics[0]``: ``metrics[1]``, else ``logme`` (``knn_accuracy`` for LogME)."""
    if len(metrics) > 1:
        return metrics[1]
    return "knn_accuracy" if metrics[0] == "logme" else "logme"


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {first[:300]}" if first else type(err).__name__


def _validate(
    *,
    subset: int | None,
    test_subset: int | None,
    batch_size: int,
    image_size: int | None,
    device: str,
    verify: str | None,
    finetune: FinetuneOptions,
    stability_resamples: int,
    stability_threshold: float,
    stability_top_k: int | None,
    seed: int,
) -> None:
    _check_optional_int(subset, "subset (--subset)", minimum=1, hint="omit it to score the whole split")
    _check_optional_int(test_subset, "test_subset (--test-subset)", minimum=1, hint="omit it for the whole split")
    _check_int(batch_size, "batch_size (--batch-size)", minimum=1)
    _check_optional_int(
        image_size,
        "image_size (--image-size)",
        minimum=1,
        hint="omit it to keep each candidate's default input size (native size; 64 px for ImageNet weights)",
    )
    _check_int(seed, "seed (--seed)", minimum=0)
    if verify not in (None, "probe", "finetune"):
        raise InvalidParameterError(f"select: verify must be None, 'probe' or 'finetune'; got {verify!r}.")
    if not isinstance(finetune, FinetuneOptions):
        raise InvalidParameterError(f"select: finetune must be a FinetuneOptions; got {type(finetune).__name__}.")
    _check_int(finetune.epochs, "finetune epochs (--finetune-epochs)", minimum=1)
    _check_optional_int(finetune.train_subset, "finetune train_subset (--finetune-subset)", minimum=1)
    _check_optional_int(finetune.max_steps, "finetune max_steps (--finetune-steps)", minimum=1)
    _check_int(finetune.batch_size, "finetune batch_size (--finetune-batch-size)", minimum=1)
    if not (isinstance(finetune.lr, (int, float)) and math.isfinite(finetune.lr) and finetune.lr > 0):
        raise InvalidParameterError(
            f"select: finetune lr (--finetune-lr) must be a positive number; got {finetune.lr!r}."
        )
    _check_int(stability_resamples, "stability_resamples (--stability-resamples)", minimum=0)
    _check_optional_int(stability_top_k, "stability_top_k (--stability-top-k)", minimum=0)
    if not (isinstance(stability_threshold, (int, float)) and 0 <= stability_threshold <= 1):
        raise InvalidParameterError(
            f"select: stability_threshold (--stability-threshold) must be in [0, 1]; got {stability_threshold!r}."
        )
    check_device(device)


def _finetune_one(
    model: str,
    data: str,
    *,
    index: int,
    count: int,
    options: FinetuneOptions,
    zoo_root: Any,
    pretrained: bool,
    image_size: int | None,
    test_subset: int | None,
    seed: int,
    device: str,
    progress: bool,
    convert_norm: str | None = None,
    run_dir: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune one candidate, reporting ``fine-tuning i/n NAME: epoch e/E step s/S`` as it goes."""
    from .pipeline import finetune_candidate
    from .progress import Progress

    with Progress(f"fine-tuning {index}/{count} {model}", enabled=progress, unit="step") as bar:

        def on_step(info: dict[str, int]) -> None:
            if bar.total is None:
                bar.total = info["total_steps"]
                if bar._bar is not None:
                    bar._bar.total = info["total_steps"]
            status = (
                f"epoch {info['epoch']}/{info['epochs']} step {info['step']}/{info['steps_per_epoch']}"
                if not options.max_steps
                else f"step {info['global_step']}/{info['total_steps']}"
            )
            bar.set(info["global_step"], status=status)

        out = finetune_candidate(
            model,
            data,
            zoo_root=zoo_root,
            pretrained=pretrained,
            image_size=image_size,
            train_subset=options.train_subset,
            test_subset=test_subset,
            seed=seed,
            epochs=options.epochs,
            max_steps=options.max_steps,
            lr=options.lr,
            batch_size=options.batch_size,
            device=device,
            progress=False,
            on_step=on_step,
            convert_norm=convert_norm,
            run_dir=run_dir,
        )
    return out


# ------------------------------------------------------------------------------------------------ select
def select_models(
    data: str,
    models: str | Sequence[str] | None = None,
    *,
    zoo: bool = False,
    zoo_root: str | os.PathLike[str] | None = None,
    split: str = "train",
    subset: int | None = None,
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    tie_break_metric: str | None = None,
    encoder: str | Sequence[str] = "minilm",
    template: str | None = None,
    pretrained: bool = False,
    image_size: int | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    verify: str | None = None,
    test_subset: int | None = None,
    finetune: FinetuneOptions = FinetuneOptions(),
    stability_resamples: int = 50,
    stability_threshold: float = 0.8,
    stability_max_seconds: float | None = None,
    stability_top_k: int | None = 3,
    progress: bool = True,
    output_dir: str | os.PathLike[str] | None = None,
) -> SelectionResult:
    """Rank candidate models for a target dataset and recommend one (the ``pickwise select`` job).

    Every candidate's penultimate features on the target images are scored with each metric (EMMS regresses
    foundation-model label embeddings on the features, ``meng2023emms``; LogME is the Bayesian evidence of a linear
    head, ``you2021logme``), the candidates are ranked by the first metric (ties broken by ``tie_break_metric``,
    failures listed apart; see the module docstring) and the pick's stability under resampling of the scored images
    is measured.

    Args:
        data: Dataset name (``pickwise datasets``) or image folder.
        models: Candidate specs (comma-separated string or list): registered names with an optional weights
            suffix (``mobilenet_v2:pretrained``, ``resnet20:random``), ``zoo:NAME``, ``ckpt:RUN_DIR``, ``*.onnx``,
            ``timm:NAME``, ``torchvision:NAME``.
        zoo: Add every built zoo entry under ``zoo_root``.
        zoo_root: Zoo folder (default ``$PICKWISE_ZOO_DIR`` or ``~/.cache/pickwise/zoo``).
        split: Split whose images are scored.
        subset: Score a class-stratified subset of N images (``None``: all).
        metrics: Metric names; the first one ranks.
        tie_break_metric: Metric that breaks ties of the first (default :func:`default_tie_break_metric`).
        encoder: Label encoder(s) for EMMS (``minilm``, ``hashing[:DIM]``, ``hf:MODEL``).
        template: Prompt template for class names (``"a photo of a {}."``).
        pretrained: Default weights of registered names without a ``:pretrained``/``:random`` suffix.
        image_size: Resize the target images to this square size for every candidate (``None``: each candidate's
            default, the native size or 64 px for ImageNet-pretrained candidates).
        batch_size: Feature-extraction batch size.
        device: Torch device (``cpu``, ``cuda``, ``cuda:N``).
        cache_dir: Feature and label-embedding cache (keyed by the content of the weights).
        seed: Seed of the subsets, of randomly initialised candidates, of fine-tuning and of the resampling.
        verify: ``None``, ``"probe"`` (ridge linear probe, train -> test) or ``"finetune"`` (fine-tune every
            candidate); each metric's ranking is then judged against the measured accuracy.
        test_subset: Evaluate ``verify`` on N test images (``None``: all).
        finetune: Fine-tuning options for ``verify="finetune"``.
        stability_resamples: Bootstrap resamples of the pick stability (0: not measured).
        stability_threshold: A stability below it marks the recommendation ``uncertain``.
        stability_max_seconds: Optional wall-time bound of the resampling (default ``None``: all
            ``stability_resamples`` are run, so the same command gives the same stability on a busy machine); with a
            bound the result records how many resamples were completed.
        stability_top_k: Re-score only the ``k`` best-ranked candidates in each resample (``None`` or 0: all).
            The pick can only lose its first place to one of them in practice, and each resample costs one metric
            call per re-scored candidate (EMMS takes about 1-2 s per candidate at N=1000, D=1280 on one core), so
            this bounds the cost at ``B k`` calls; it can overstate the stability when a candidate ranked below
            ``k`` is within noise of the pick (rank the top ``k`` with ``k = 0`` to rule that out).
        progress: Report progress on stderr (bar on a terminal, a status line every 10 s otherwise).
        output_dir: Write ``select.json`` (and ``select.png`` with ``verify``) here (``None``: nothing written).

    Returns:
        A :class:`SelectionResult`.

    Raises:
        InvalidParameterError: Bad options (sizes < 1, unknown metric, a CUDA device without CUDA, ...).
        DataNotFoundError: Unknown dataset, zoo entry, run folder or ONNX file; an encoder that is not available
            offline.
        DataFormatError: A candidate file that cannot be loaded, or every candidate failed.
    """
    from ._spec import get_metric
    from .features import extract_features, preprocess_spec, resolve_candidate
    from .labels import LabelEmbedder
    from .pipeline import candidate_list, load_split, metric_names, score_candidates
    from .progress import Progress
    from .ranking import evaluate_ranking, pick_stability, rank_scores

    start = time.perf_counter()
    _validate(
        subset=subset,
        test_subset=test_subset,
        batch_size=batch_size,
        image_size=image_size,
        device=device,
        verify=verify,
        finetune=finetune,
        stability_resamples=stability_resamples,
        stability_threshold=stability_threshold,
        stability_top_k=stability_top_k,
        seed=seed,
    )
    specs = candidate_list(models, zoo=zoo, zoo_root=zoo_root)
    metric_list = metric_names(metrics)
    tie_metric = metric_names([tie_break_metric])[0] if tie_break_metric else default_tie_break_metric(metric_list)
    scored_metrics = metric_list + ([tie_metric] if tie_metric not in metric_list else [])
    dataset = load_split(data, split, subset, seed=seed)
    cache = Path(cache_dir) if cache_dir is not None else None
    # fail fast (before minutes of feature extraction) on candidates and encoders that cannot be loaded
    candidates = {m: resolve_candidate(m, pretrained=pretrained, zoo_root=zoo_root, seed=seed) for m in specs}
    class_emb = None
    encoders = [e.strip() for e in encoder.split(",") if e.strip()] if isinstance(encoder, str) else list(encoder)
    if any(get_metric(m).input == "label_embeddings" for m in scored_metrics):
        embedder = LabelEmbedder(encoders, template=template, cache_dir=cache / "labels" if cache else None)
        class_emb = embedder.embed_classes(list(dataset.info.class_names))

    failed: dict[str, str] = {}
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    preprocessing: dict[str, dict[str, Any]] = {}
    feature_seconds: dict[str, float] = {}
    feature_kw: dict[str, Any] = {
        "batch_size": batch_size,
        "device": device,
        "image_size": image_size,
        "progress": progress,
    }
    for model in specs:
        t0 = time.perf_counter()
        preprocessing[model] = preprocess_spec(candidates[model], dataset, image_size=image_size)
        try:
            x, y = extract_features(
                model,
                dataset,
                cache_dir=cache / "features" if cache else None,
                candidate=candidates[model],
                **feature_kw,
            )
        except PickwiseUserError as err:
            failed[model] = f"feature extraction failed: {err}"
            continue
        except Exception as err:  # any model error (shape mismatch, ONNX runtime error) fails this candidate only
            failed[model] = f"feature extraction failed: {_one_line(err)}"
            continue
        finally:
            feature_seconds[model] = time.perf_counter() - t0
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).any(axis=1).sum())
            failed[model] = f"features contain NaN/inf on {bad} of {x.shape[0]} images"
            continue
        feats[model] = (x, y)

    metric_failures: dict[str, dict[str, str]] = {}
    finite, seconds = score_candidates(feats, scored_metrics, class_embeddings=class_emb, failures=metric_failures)
    scores: dict[str, dict[str, float | None]] = {m: dict(by_model) for m, by_model in finite.items()}
    for m in scored_metrics:
        for model in specs:
            if model not in scores[m]:
                scores[m][model] = None
                metric_failures.setdefault(m, {})[model] = failed[model]
    for m, reasons in metric_failures.items():
        for model in reasons:
            scores[m][model] = None  # never NaN: missing, with its reason
    first, tb_spec = get_metric(metric_list[0]), get_metric(tie_metric)
    ranking = rank_scores(
        {m: scores[first.name][m] for m in specs},
        metric=first.name,
        higher_is_better=first.higher_is_better,
        tie_break=scores[tie_metric],
        tie_break_metric=tie_metric,
        tie_break_higher_is_better=tb_spec.higher_is_better,
        rtol=TIE_RTOL,
        atol=TIE_ATOL,
        failures={**metric_failures.get(first.name, {}), **failed},
    )
    all_failed = {f.name: f.reason for f in ranking.failed}
    recommendation = None
    if ranking.entries:
        top = ranking.entries[0]
        kw: dict[str, Any] = {
            "model": top.name,
            "metric": first.name,
            "score": top.score,
            "tied_with": tuple(top.tied_with),
            "tie_break_metric": tie_metric,
            "threshold": float(stability_threshold),
        }
        resampled = ranking.entries[: stability_top_k or None]
        ranked_feats = {e.name: feats[e.name][0] for e in resampled}
        if len(ranked_feats) < 2:
            kw["stability_note"] = "fewer than two candidates to compare"
        elif stability_resamples == 0:
            kw["stability_note"] = "not measured (stability_resamples=0)"
        else:
            metric_kw: dict[str, Any] = {}
            if first.input == "label_embeddings":
                assert class_emb is not None
                metric_kw["label_embeddings"] = {i: class_emb[i] for i in range(class_emb.shape[0])}
            labels = feats[top.name][1]
            with Progress(
                f"pick stability ({first.name}, {len(ranked_feats)} candidates)",
                stability_resamples,
                enabled=progress,
                unit="resample",
            ) as bar:
                try:
                    st = pick_stability(
                        ranked_feats,
                        labels,
                        metric=first.name,
                        n_resamples=stability_resamples,
                        seed=seed,
                        threshold=stability_threshold,
                        max_seconds=stability_max_seconds,
                        progress=lambda i, n: bar.set(i),
                        **metric_kw,
                    )
                except PickwiseUserError as err:
                    st = None
                    kw["stability_note"] = f"not measured: {err}"
            if st is not None:
                share = float(st.first_shares.get(top.name, 0.0))
                others = sorted(
                    ((n, s) for n, s in st.first_shares.items() if n != top.name), key=lambda t: (-t[1], t[0])
                )
                kw.update(
                    resampled=tuple(ranked_feats),
                    stability=share,
                    resamples=st.n_resamples,
                    uncertain=share < stability_threshold,
                    runner_up=others[0][0] if others else None,
                    runner_up_share=float(others[0][1]) if others else None,
                )
                if st.n_resamples < stability_resamples:
                    kw["stability_note"] = (
                        f"{st.n_resamples} of {stability_resamples} resamples (time bound {stability_max_seconds} s)"
                    )
        recommendation = Recommendation(**kw)

    verify_result = None
    if verify:
        acc: dict[str, float | None] = {}
        acc_fail: dict[str, str] = {}
        details: dict[str, dict[str, Any]] = {}
        runnable = [m for m in specs if m in feats]
        for m in specs:
            if m not in feats:
                acc[m] = None
                acc_fail[m] = failed[m]
        if verify == "finetune":
            for i, model in enumerate(runnable, start=1):
                try:
                    out = _finetune_one(
                        model,
                        data,
                        index=i,
                        count=len(runnable),
                        options=finetune,
                        zoo_root=zoo_root,
                        pretrained=pretrained,
                        image_size=image_size,
                        test_subset=test_subset,
                        seed=seed,
                        device=device,
                        progress=progress,
                    )
                except PickwiseUserError as err:
                    acc[model], acc_fail[model] = None, f"fine-tuning failed: {err}"
                    continue
                acc[model] = out["acc"]
                details[model] = {k: v for k, v in out.items() if k != "preprocessing"}
        else:
            from .verify import probe_accuracy

            test = load_split(data, "test", test_subset, seed=seed)
            for model in runnable:
                try:
                    test_feats = extract_features(
                        model,
                        test,
                        cache_dir=cache / "features" if cache else None,
                        candidate=candidates[model],
                        **feature_kw,
                    )
                    acc[model] = probe_accuracy(feats[model], test_feats)
                except Exception as err:  # a model that fails on the test split fails this candidate only
                    acc[model], acc_fail[model] = None, f"probe failed: {_one_line(err)}"
        evaluation: dict[str, dict[str, float]] = {}
        for metric in metric_list:
            ok = [
                m
                for m in specs
                if acc.get(m) is not None and (score := scores[metric].get(m)) is not None and math.isfinite(score)
            ]
            if len(ok) >= 2:
                evaluation[metric] = evaluate_ranking(
                    {m: scores[metric][m] for m in ok},
                    {m: acc[m] for m in ok},
                    higher_is_better=get_metric(metric).higher_is_better,
                )
        verify_result = VerifyResult(verify, {m: acc.get(m) for m in specs}, acc_fail, evaluation, details)

    json_path = figure_path = None
    if output_dir is not None:
        out_dir = Path(output_dir)
        json_path = str(out_dir / "select.json")
        if verify_result is not None:
            from .plots import plot_scores_vs_accuracy

            fig = plot_scores_vs_accuracy(
                {m: scores[m] for m in metric_list},
                verify_result.accuracy,
                out_dir / "select.png",
                evaluation=verify_result.evaluation,
                ylabel=f"{verify} accuracy",
            )
            figure_path = str(fig) if fig else None
    result = SelectionResult(
        data=str(data),
        split=split,
        num_samples=len(dataset),
        models=tuple(specs),
        metrics=tuple(metric_list),
        tie_break_metric=tie_metric,
        encoder=",".join(encoders),
        scores=scores,
        score_failures=metric_failures,
        seconds=seconds,
        feature_seconds=feature_seconds,
        preprocessing=preprocessing,
        ranking=ranking,
        failed=all_failed,
        recommendation=recommendation,
        verify=verify_result,
        json_path=json_path,
        figure_path=figure_path,
        seconds_total=time.perf_counter() - start,
    )
    if json_path is not None:
        from ..utils.io import atomic_write_json

        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(json_path, result.to_json())
    if recommendation is None:
        raise DataFormatError(f"select: every candidate failed on {data}: {ranking.describe()}")
    return result


# ------------------------------------------------------------------------------------------------ transfer
def transfer(
    data: str = DEFAULT_TARGET,
    models: str | Sequence[str] | None = None,
    *,
    zoo: bool | None = None,
    zoo_root: str | os.PathLike[str] | None = None,
    subset: int | None = 2000,
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    runner_up: bool = False,
    convert_norm: str | None = None,
    test_subset: int | None = 1000,
    finetune: FinetuneOptions = FinetuneOptions(train_subset=2000),
    pretrained: bool = False,
    image_size: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    output_dir: str | os.PathLike[str] | None = None,
    **select_options: Any,
) -> TransferResult:
    """Pick the best candidate for a target with a transferability metric, then fine-tune it (``pickwise transfer``).

    Runs :func:`select_models` on the target's training split, fine-tunes the recommended candidate end to end
    (:func:`~pickwise.selection.finetune.finetune`: new head, SGD with cosine decay, optionally with its BatchNorm
    converted to SN/SSN/EN/PN for small-batch fine-tuning) and evaluates it on the test split. With ``runner_up``
    the second-ranked candidate is fine-tuned the same way (without norm conversion), which says whether the pick
    was right on this target.

    Args:
        data: Target dataset.
        models: Candidate specs (see :func:`select_models`); with neither ``models`` nor ``zoo``, every built zoo
            entry.
        zoo: Add every built zoo entry (default: only when no ``models`` are named).
        zoo_root: Zoo folder.
        subset: Score the candidates on N training images (``None``: all). Keep N well above the widest
            candidate's feature count: EMMS and LogME fit in-sample, and with N <= D every candidate fits perfectly.
        metrics: Metrics; the first one picks.
        runner_up: Also fine-tune the second-ranked candidate.
        convert_norm: ``"sn"``, ``"ssn"``, ``"en"`` or ``"pn"``: convert the pick's BatchNorm layers first.
        test_subset: Evaluate on N test images (``None``: all).
        finetune: Fine-tuning options.
        pretrained: Default weights of registered names without a suffix.
        image_size: Input size override (see :func:`select_models`).
        seed: Seed of everything.
        device: Torch device.
        progress: Report progress on stderr.
        output_dir: Write ``transfer.json``, ``select.json`` and the fine-tuning runs (``finetune/<name>``) here.
        **select_options: Further options of :func:`select_models` (``encoder``, ``template``, ``batch_size``,
            ``cache_dir``, ``tie_break_metric``, ``stability_resamples``, ``stability_threshold``, ...).

    Returns:
        A :class:`TransferResult`.
    """
    from ..nn.norm.registry import conversion_target

    if convert_norm is not None:
        convert_norm = conversion_target(convert_norm, where="transfer", name="convert_norm").name
    start = time.perf_counter()
    has_models = bool(models) if not isinstance(models, str) else bool(models.strip())
    use_zoo = bool(zoo) if zoo is not None else not has_models
    selection = select_models(
        data,
        models,
        zoo=use_zoo,
        zoo_root=zoo_root,
        subset=subset,
        metrics=metrics,
        pretrained=pretrained,
        image_size=image_size,
        seed=seed,
        device=device,
        test_subset=test_subset,
        finetune=finetune,
        progress=progress,
        output_dir=output_dir,
        **select_options,
    )
    select_seconds = time.perf_counter() - start
    ranked = selection.ranked
    picks = ranked[: 2 if runner_up and len(ranked) > 1 else 1]
    records: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for i, model in enumerate(picks):
        run_dir = None
        if output_dir is not None:
            run_dir = Path(output_dir) / "finetune" / model.replace(":", "_").replace("/", "_")
        try:
            out = _finetune_one(
                model,
                data,
                index=i + 1,
                count=len(picks),
                options=finetune,
                zoo_root=zoo_root,
                pretrained=pretrained,
                image_size=image_size,
                test_subset=test_subset,
                seed=seed,
                device=device,
                progress=progress,
                convert_norm=convert_norm if i == 0 else None,
                run_dir=run_dir,
            )
        except PickwiseUserError as err:
            failures[model] = f"fine-tuning failed: {err}"
            continue
        records[model] = dict(out.items())
    top = picks[0]
    second = picks[1] if len(picks) > 1 else None
    top_acc = records.get(top, {}).get("acc")
    verdict = None
    if second is not None and top_acc is not None and records.get(second, {}).get("acc") is not None:
        verdict = "right" if top_acc >= records[second]["acc"] else "wrong"
    result = TransferResult(
        selection=selection,
        picked=top,
        runner_up=second,
        finetune=records,
        accuracy=top_acc,
        verdict=verdict,
        convert_norm=convert_norm,
        failures=failures,
        select_seconds=select_seconds,
        total_seconds=time.perf_counter() - start,
        json_path=str(Path(output_dir) / "transfer.json") if output_dir is not None else None,
    )
    if result.json_path is not None:
        from ..utils.io import atomic_write_json

        Path(result.json_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(result.json_path, result.to_json())
    return result
