"""Active domain adaptation for semantic segmentation: ADA-MCU (ACCV 2022), reconstructed, with its baselines.

- :mod:`.acquisition`: the strategy registry (random, entropy, margin, ADA-MCU's top-k with spatial suppression,
  RIPU-style region impurity x uncertainty in pixel and region modes) and exact pixel/region/image budgets;
- :mod:`.oracle`: the simulated oracle (ground truth read only at selected pixels) and the per-round selection state;
- :mod:`.contrastive`: the multi-level contrastive units (intra-image, cross-image, cross-domain; EMA centres, memory
  bank, correlation-reweighted negatives);
- :mod:`.losses`, :mod:`.task`: the training losses and :class:`ADASegTask`, the engine task (mIoU out);
- :mod:`.active`, :mod:`.run`: the resumable active-learning loop and :func:`run_adaseg`;
- :mod:`.datasets`, :mod:`.labels`, :mod:`.synth`: GTA5 / SYNTHIA / Cityscapes loaders and class tables, the embedded
  two-domain benchmark;
- :mod:`.figures`, :mod:`.cli`: figures and ``pickwise adaseg train | select | evaluate``.

Example:
    >>> from pickwise.tasks.adaseg import list_strategies, parse_budget
    >>> "mcu" in list_strategies(), parse_budget("2.2%").kind
    (True, 'percent')
"""

from __future__ import annotations

from .acquisition import Budget, Strategy, get_strategy, list_strategies, parse_budget, register_strategy
from .config import AdaSegConfig, resolve_adaseg_config
from .contrastive import MCUConfig, MultiLevelContrastiveLoss
from .datasets import SegDomain, class_names, load_seg_domain
from .run import run_adaseg
from .synth import make_adaseg_synth
from .task import ADASegTask

CLI_COMMANDS: dict[str, str] = {"adaseg": "pickwise.tasks.adaseg.cli:add_parser"}

__all__ = [
    "CLI_COMMANDS",
    "ADASegTask",
    "AdaSegConfig",
    "Budget",
    "MCUConfig",
    "MultiLevelContrastiveLoss",
    "SegDomain",
    "Strategy",
    "class_names",
    "get_strategy",
    "list_strategies",
    "load_seg_domain",
    "make_adaseg_synth",
    "parse_budget",
    "register_strategy",
    "resolve_adaseg_config",
    "run_adaseg",
]
