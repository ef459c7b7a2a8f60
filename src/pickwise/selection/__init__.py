"""Model selection: transferability metrics (EMMS, LogME and baselines), rankings and their evaluation.

Functions are the primary API: every metric takes numpy arrays or torch tensors (any device), computes in float64,
never mutates its inputs and returns a Python ``float``; options are keyword-only. Each metric is registered with
``name`` and ``higher_is_better`` metadata (``get_metric``/``list_metrics``), and ``rank_models`` sorts candidates
by any of them into a ``Ranking`` (ties within tolerance, failed candidates listed apart, never ranked);
``pick_stability`` resamples the scored images to say how stable the pick is. Definitions, scale handling and the
decisions behind them: docs/metrics.md. Implemented papers (BibTeX keys): ``meng2023emms`` (EMMS),
``you2021logme``/``you2022ranking`` (LogME), ``nguyen2020leep`` (LEEP), ``li2021ranking`` (NLEEP),
``tran2019transferability`` (NCE), ``bao2019information`` (H-score), ``ibrahim2022newer`` (shrinkage H-score),
``huang2022frustratingly`` (TransRate), ``pandy2022transferability`` (GBC), ``shao2022not`` (SFDA),
``bolya2021scalable`` (PARC).

Example:
    >>> import numpy as np
    >>> from pickwise.selection import rank_models
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(90) % 3
    >>> feats = {"a": np.eye(3)[y] + 0.2 * rng.normal(size=(90, 3)), "b": rng.normal(size=(90, 3))}
    >>> rank_models(feats, y, metric="h_score")[0][0]
    'a'
"""

from ._spec import METRICS, MetricSpec, get_metric, list_metrics, register_metric
from ._validation import SelectionWarning
from .emms import emms
from .estimators import EMMS, LEEP, NCE, HScore, LogME
from .features import parse_candidate_spec
from .gbc import gbc
from .hscore import h_score, shrinkage_h_score
from .job import (
    DEFAULT_METRICS,
    FinetuneOptions,
    Recommendation,
    SelectionResult,
    TransferResult,
    VerifyResult,
    select_models,
    transfer,
)
from .labels import HashingEncoder, HFEncoder, LabelEmbedder, MiniLMEncoder, box_to_text, get_encoder, labels_to_texts
from .leep import leep
from .logme import logme
from .nce import nce
from .nleep import nleep
from .parc import parc
from .plots import plot_scores_vs_accuracy
from .progress import Progress
from .ranking import (
    FailedCandidate,
    PickStability,
    RankedCandidate,
    Ranking,
    bootstrap_ci,
    evaluate_ranking,
    kendall_tau,
    pearson,
    pick_stability,
    rank_models,
    rank_scores,
    rel_at_k,
    score_models,
    top1_regret,
    weighted_tau,
)
from .sfda import sfda
from .simple import knn_accuracy, linear_probe_accuracy
from .transrate import transrate
from .verify import probe_accuracy

__all__ = [
    "DEFAULT_METRICS",
    "FinetuneOptions",
    "Progress",
    "Recommendation",
    "SelectionResult",
    "TransferResult",
    "VerifyResult",
    "parse_candidate_spec",
    "plot_scores_vs_accuracy",
    "probe_accuracy",
    "select_models",
    "transfer",
    "EMMS",
    "FailedCandidate",
    "HFEncoder",
    "HashingEncoder",
    "LEEP",
    "LabelEmbedder",
    "METRICS",
    "NCE",
    "HScore",
    "LogME",
    "MetricSpec",
    "MiniLMEncoder",
    "SelectionWarning",
    "bootstrap_ci",
    "box_to_text",
    "emms",
    "evaluate_ranking",
    "gbc",
    "get_encoder",
    "get_metric",
    "h_score",
    "kendall_tau",
    "knn_accuracy",
    "leep",
    "linear_probe_accuracy",
    "labels_to_texts",
    "list_metrics",
    "logme",
    "nce",
    "nleep",
    "parc",
    "pearson",
    "pick_stability",
    "PickStability",
    "rank_models",
    "rank_scores",
    "RankedCandidate",
    "Ranking",
    "register_metric",
    "rel_at_k",
    "score_models",
    "sfda",
    "shrinkage_h_score",
    "top1_regret",
    "transrate",
    "weighted_tau",
]
