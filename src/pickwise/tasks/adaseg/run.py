"""Build an active-DA segmentation run from an :class:`~pickwise.tasks.adaseg.config.AdaSegConfig`.

Loads the source domain, the target pool and the target test split (``pickwise.tasks.adaseg.datasets``), checks
that every class occurs in the source domain (a class the source never shows cannot be learnt before the first
selection; refused in one line), builds the network from the model registry (``pickwise.models.deeplab``) and runs
:func:`~pickwise.tasks.adaseg.active.run_active_learning` with a simulated oracle over the target ground truth.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...exceptions import ConfigError
from .active import run_active_learning
from .config import AdaSegConfig
from .oracle import DatasetLabelStore, SimulatedOracle

__all__ = ["check_source_classes", "load_domains", "net_factory", "resolve_device", "run_adaseg"]

_SCAN_LIMIT = 5000  # source images scanned for absent classes (a one-time pass over the labels)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else CPU; ``cuda`` without CUDA is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config: optim.device={name} but CUDA is not available; use optim.device=cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"config: optim.device must be auto, cpu, cuda or cuda:N; got {name!r}") from None


def load_domains(cfg: AdaSegConfig) -> tuple[Any, Any, Any, int]:
    """``(source, target_pool, target_test, num_classes)`` from the registered domain names."""
    from .datasets import load_seg_domain

    source = load_seg_domain(cfg.data.source, cfg.data.root, split="train")
    pool = load_seg_domain(cfg.data.target, cfg.data.root, split="train")
    test = load_seg_domain(cfg.data.target, cfg.data.root, split="test")
    num_classes = _num_classes(source, cfg.data.source)
    target_classes = _num_classes(pool, cfg.data.target)
    if target_classes != num_classes:
        raise ConfigError(
            f"data: source {cfg.data.source!r} has {num_classes} classes but target {cfg.data.target!r} "
            f"has {target_classes}; use a matching class protocol"
        )
    return source, pool, test, num_classes


def _num_classes(domain: Any, name: str) -> int:
    k = getattr(domain, "num_classes", None)
    if isinstance(k, int):
        return k
    from .datasets import class_names

    return len(class_names(name))


def check_source_classes(source: Any, num_classes: int, limit: int = _SCAN_LIMIT) -> None:
    """Refuse a source domain in which some class never occurs (scans up to ``limit`` label maps).

    Raises:
        ConfigError: Names the absent class indices.
    """
    seen = torch.zeros(num_classes, dtype=torch.bool)
    for i in range(min(len(source), limit)):
        lbl = torch.as_tensor(source[i][1]).long().flatten()
        lbl = lbl[(lbl >= 0) & (lbl < num_classes)]
        seen |= torch.bincount(lbl, minlength=num_classes) > 0
        if bool(seen.all()):
            return
    if len(source) > limit:
        return  # not all scanned: no verdict
    missing = (~seen).nonzero().flatten().tolist()
    raise ConfigError(
        f"data: class(es) {missing} never occur in the source domain's labels; every class needs source "
        "examples before the first selection (use a class protocol that drops them)"
    )


def net_factory(cfg: AdaSegConfig, num_classes: int) -> Callable[[], nn.Module]:
    """A function building a fresh network ``cfg.model.name`` (``pickwise.models.deeplab`` registry)."""
    import pickwise.models.deeplab  # noqa: F401  (registers the DeepLab family until models/__init__ imports it)

    from ...models import create_model

    def build() -> nn.Module:
        return create_model(
            cfg.model.name,
            num_classes=num_classes,
            norm_layer=cfg.model.norm,
            proj_dim=cfg.model.proj_dim,
            **cfg.model.kwargs,
        )

    build()  # fail now (unknown name, bad option) rather than after the warm-up data are loaded
    return build


def run_adaseg(
    cfg: AdaSegConfig, *, resume: bool = False, warmup_from: str | Path | None = None, figures: bool = True
) -> dict[str, Any]:
    """Run the whole active-learning loop of ``cfg`` into ``<output_dir>/<run name>``; returns results.json's data."""
    device = resolve_device(cfg.optim.device)
    source, pool, test, num_classes = load_domains(cfg)
    check_source_classes(source, num_classes)
    factory = net_factory(cfg, num_classes)
    run_dir = Path(cfg.output_dir) / cfg.run_name()
    oracle = SimulatedOracle(DatasetLabelStore(pool))
    results = run_active_learning(
        cfg,
        factory,
        source,
        pool,
        test,
        oracle,
        run_dir,
        num_classes=num_classes,
        resume=resume,
        warmup_from=warmup_from,
        device=device,
    )
    if figures:
        from .figures import selection_figure

        with contextlib.suppress(ImportError):  # matplotlib is optional
            selection_figure(run_dir, pool, run_dir / "figures" / "selection.png")
    return results
