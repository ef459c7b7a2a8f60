"""``pickwise adaseg train | select | evaluate``: active domain adaptation for segmentation from the command line.

- ``train``: warm-up on the source, then ``--rounds`` rounds of select -> reveal -> train (``--resume`` continues a
  run; a changed budget or strategy is refused);
- ``select``: spend the next round of a run's budget with its latest weights and save the selection (no training),
  e.g. to hand the masks to annotators;
- ``evaluate``: mIoU and per-class IoU of a run's stage on the target test split.

Budgets: pixels (``5000``), a percentage of the target pool (``2.2%``), pixels per image (``40/img``), regions per
image (``2reg/img``, ``ripu_region``) or whole images (``5img``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ...exceptions import ConfigError, DataNotFoundError

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    """Register ``adaseg`` and its sub-subcommands."""
    p = subparsers.add_parser(
        "adaseg",
        help="active domain adaptation for segmentation (ADA-MCU, RIPU, baselines)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    sub = p.add_subparsers(dest="adaseg_command", metavar="ACTION")

    t = sub.add_parser("train", help="warm-up + active rounds (select, reveal, train)")
    t.add_argument("--config", action="append", default=[], help="YAML config file (repeatable)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    t.add_argument("--budget", help="total labelling budget: 5000, 2.2%%, 40/img, 2reg/img or 5img")
    t.add_argument("--rounds", type=int, help="number of selection rounds")
    t.add_argument("--strategy", help="acquisition strategy (random, entropy, margin, mcu, ripu_pixel, ripu_region)")
    t.add_argument("--output-dir", help="parent folder of the run")
    t.add_argument("--name", help="run folder name (default <strategy>-<budget>-s<seed>)")
    t.add_argument("--resume", action="store_true", help="continue the run in the run folder")
    t.add_argument("--warmup-from", help="reuse the finished warm-up of another run folder")
    t.add_argument("--no-figures", action="store_true", help="skip the selection figure")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.set_defaults(handler=_train)

    s = sub.add_parser("select", help="spend the next round of a run's budget (no training)")
    s.add_argument("--run-dir", required=True, help="a run folder written by `adaseg train`")
    s.set_defaults(handler=_select)

    e = sub.add_parser("evaluate", help="target-test mIoU of a run's stage")
    e.add_argument("--run-dir", required=True)
    e.add_argument("--stage", default=None, help="warmup, round_01, ... (default: the last finished stage)")
    e.set_defaults(handler=_evaluate)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _config(args: argparse.Namespace) -> Any:
    from .config import resolve_adaseg_config

    overrides = list(args.set)
    if args.budget is not None:
        overrides.append(f"active.budget={args.budget}")
    if args.rounds is not None:
        if args.rounds < 1:
            raise ConfigError(f"--rounds must be >= 1; got {args.rounds}")
        overrides.append(f"active.rounds={args.rounds}")
    if args.strategy is not None:
        overrides.append(f"active.strategy={args.strategy}")
    if args.output_dir is not None:
        overrides.append(f"output_dir={args.output_dir}")
    if args.name is not None:
        overrides.append(f"name={args.name}")
    return resolve_adaseg_config(args.config, overrides)


def _train(args: argparse.Namespace) -> int:
    from .run import run_adaseg

    cfg = _config(args)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    results = run_adaseg(cfg, resume=args.resume, warmup_from=args.warmup_from, figures=not args.no_figures)
    for row in results["stages"]:
        miou = row["mIoU"]
        print(
            f"{row['stage']:>9}  labelled {100 * row['labelled_fraction']:7.3f}%  "
            f"mIoU {'nan' if miou is None else f'{100 * miou:.2f}'}"
        )
    print(f"results: {Path(cfg.output_dir) / cfg.run_name() / 'results.json'}")
    return 0


def _load_run(run_dir: str) -> tuple[Any, dict[str, Any]]:
    from ...engine.trainer_config import merge_dict
    from .config import AdaSegConfig, validate_adaseg_config

    path = Path(run_dir) / "results.json"
    if not path.exists():
        raise DataNotFoundError(f"adaseg: {path} not found; pass a folder written by `pickwise adaseg train`")
    data = json.loads(path.read_text())
    cfg = AdaSegConfig()
    merge_dict(cfg, data["config"], AdaSegConfig)
    return validate_adaseg_config(cfg), data


def _last_stage(run_dir: Path, data: dict[str, Any]) -> str:
    stages = [r["stage"] for r in data.get("stages", []) if (run_dir / r["stage"] / "weights.safetensors").exists()]
    if not stages:
        raise DataNotFoundError(f"adaseg: {run_dir} has no finished stage yet")
    return sorted(stages, key=lambda s: (s != "warmup", s))[-1]


def _model(cfg: Any, num_classes: int, pool: Any, weights: Path) -> Any:
    from .active import _proj_dim, load_weights
    from .contrastive import MultiLevelContrastiveLoss
    from .run import net_factory
    from .task import ADASegModel

    net = net_factory(cfg, num_classes)()
    dim = _proj_dim(net, pool, __import__("torch").device("cpu"))
    model = ADASegModel(net, MultiLevelContrastiveLoss(num_classes, dim, cfg.contrastive) if dim else None)
    load_weights(model, weights)
    return model


def _select(args: argparse.Namespace) -> int:
    from .acquisition import get_strategy, parse_budget
    from .active import ImagesOnly, _selection_meta, select_round
    from .config import _strategy_params
    from .oracle import (
        DatasetLabelStore,
        SelectionState,
        SimulatedOracle,
        check_selection_meta,
        latest_selection,
        save_selection,
    )
    from .run import load_domains, resolve_device

    run_dir = Path(args.run_dir)
    cfg, data = _load_run(args.run_dir)
    _, pool, _, k = load_domains(cfg)
    images = ImagesOnly(pool)
    n, (h, w) = len(images), tuple(images[0][0].shape[-2:])
    meta = _selection_meta(cfg, n, h, w)
    state = latest_selection(run_dir / "selection") or SelectionState.empty(n, h, w, meta)
    check_selection_meta(state.meta, meta)
    if state.round >= cfg.active.rounds:
        raise ConfigError(f"adaseg select: all {cfg.active.rounds} rounds of {run_dir} are already selected")
    stage = _last_stage(run_dir, data)
    model = _model(cfg, k, images, run_dir / stage / "weights.safetensors")
    strategy = get_strategy(cfg.active.strategy, **_strategy_params(cfg))
    state = select_round(
        model,
        images,
        state,
        SimulatedOracle(DatasetLabelStore(pool)),
        strategy,
        parse_budget(cfg.active.budget),
        state.round + 1,
        cfg.active.rounds,
        batch_size=cfg.data.eval_batch_size,
        seed=cfg.optim.seed,
        device=resolve_device(cfg.optim.device),
    )
    path = save_selection(run_dir / "selection", state)
    print(
        f"round {state.round}: labelled {100 * state.labelled_fraction():.3f}% of the pool "
        f"(selected with {stage}'s weights) -> {path}"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from .active import ImagesOnly
    from .run import load_domains
    from .task import ADASegTask

    run_dir = Path(args.run_dir)
    cfg, data = _load_run(args.run_dir)
    _, pool, test, k = load_domains(cfg)
    stage = args.stage or _last_stage(run_dir, data)
    weights = run_dir / stage / "weights.safetensors"
    if not weights.exists():
        raise DataNotFoundError(f"adaseg evaluate: stage {stage!r} of {run_dir} has no weights ({weights} missing)")
    model = _model(cfg, k, ImagesOnly(pool), weights).eval()
    task = ADASegTask(k)
    accs = task.make_accumulators()
    for batch in DataLoader(test, batch_size=cfg.data.eval_batch_size):
        task.evaluation_step(model, batch, torch.device("cpu"), accs)
    metrics = task.compute(accs)
    from ...utils.io import strict_json_dumps

    print(strict_json_dumps({"stage": stage, **metrics}, indent=1))
    return 0
