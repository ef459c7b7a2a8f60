"""``pickwise reproduce dgconv``: learned vs fixed channel groups (DGConv / G-ResNeXt) in miniature.

Trains, at equal epochs and with the same seed, optimizer and data:

- ``fixed``: a small CIFAR ResNeXt-29 with fixed grouped 3x3 convolutions (``resnext29_4x4d``: 4 groups);
- ``learned``: the same widths with DGConv 3x3 convolutions and no budget (``g_resnext29_4x4d``);
- ``budget``: the same, trained on ``loss * [o / ζ]^a`` with ``o`` = the fixed model's ζ (its group count in every
  layer), the paper's resource-constrained objective.

It reports test accuracy, the learned group count of every layer (a PNG bar chart), the parameter and multiply-add
counts of the exported (plain grouped-conv) models, and checks that export is exact. Outputs:
``<output-dir>/dgconv_results.json`` and ``dgconv_groups.png`` (both written atomically).
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..utils.io import atomic_write_bytes, atomic_write_json

__all__ = ["add_arguments", "count_macs", "run", "run_reproduction"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``reproduce dgconv`` options."""
    parser.add_argument("--data", default="fashion-mnist", help="dataset (falls back to mnist-5k if missing)")
    parser.add_argument("--fixed-model", default="resnext29_4x4d")
    parser.add_argument("--learned-model", default="g_resnext29_4x4d")
    parser.add_argument("--train-subset", type=int, default=5000)
    parser.add_argument("--test-subset", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--exponent", type=float, default=-0.02, help="a of the [o/ζ]^a budget penalty")
    parser.add_argument("--budget-groups", type=int, default=None, help="budget = ζ at this many groups per layer")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (one run of each arm per seed)")
    parser.add_argument(
        "--quick", action="store_true", help="2000 train / 500 test images, 1 epoch (about 1 min on 2 cores)"
    )
    parser.add_argument("--output-dir", default="runs/reproduce-dgconv")
    parser.set_defaults(handler=run)


class _BudgetTask:
    """Classification loss, multiplied by a :class:`~pickwise.nn.conv.ResourceConstraint` factor when given."""

    def __init__(self, constraint: Any = None, **kwargs: Any) -> None:
        from ..engine.tasks import ClassificationTask

        self.base = ClassificationTask(**kwargs)
        self.constraint = constraint

    def training_loss(self, model: nn.Module, batch: Any, device: torch.device, generator: torch.Generator) -> Any:
        from ..nn.conv import complexity

        loss, stats = self.base.training_loss(model, batch, device, generator)
        if self.constraint is not None:
            net = getattr(model, "module", model)
            loss = self.constraint(loss, complexity(net))
        return loss, stats

    def evaluation_sums(self, model: nn.Module, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
        return self.base.evaluation_sums(model, batch, device)

    def finalize(self, sums: dict[str, float]) -> dict[str, float]:
        return self.base.finalize(sums)


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of the convolutions and linear layers for one input of shape ``(C, H, W)``.

    A DGConv2d counts as the dense convolution it runs during training; an ``nn.Conv2d`` counts ``C_in / groups``
    inputs per output.
    """
    from ..nn.conv import DGConv2d

    total = 0

    def hook(m: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, DGConv2d):
            total += out.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, DGConv2d, nn.Linear))
    ]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def _pick_data(name: str) -> str:
    from ..data import check_dataset_available
    from ..exceptions import DataNotFoundError

    try:
        check_dataset_available(name)
        return name
    except DataNotFoundError as err:
        print(f"note: {err}\nnote: using the pip-bundled mnist-5k instead", file=sys.stderr)
        return "mnist-5k"


def _train_arm(
    arm: str, model_name: str, data: str, seed: int, opts: dict[str, Any], out_dir: Path, budget_groups: int | None
) -> dict[str, Any]:
    from ..data import create_dataset
    from ..engine.config import resolve_config
    from ..engine.run import resolve_device
    from ..engine.trainer import Trainer
    from ..models import create_model
    from ..nn.conv import (
        ResourceConstraint,
        complexity,
        dense_complexity,
        export_grouped_convs,
        group_budget,
        learned_groups,
    )
    from ..utils.seed import seed_everything

    name = f"{arm}-s{seed}"
    cfg = resolve_config(
        overrides=[
            f"model.name={model_name}",
            f"data.name={data}",
            f"data.train_subset={opts['train_subset']}",
            f"data.test_subset={opts['test_subset']}",
            f"data.batch_size={opts['batch_size']}",
            f"train.epochs={opts['epochs']}",
            f"train.seed={seed}",
            f"optim.lr={opts['lr']}",
            "schedule.warmup_epochs=0.1",
            f"output_dir={out_dir}",
            f"name={name}",
            "train.tensorboard=false",
            "train.progress=false",
            "train.device=cpu",
            "train.eval_every=0",
        ]
    )
    device = resolve_device(cfg.train.device)
    seed_everything(seed)
    train = create_dataset(data, "train", subset=cfg.data.train_subset, seed=seed)
    test = create_dataset(data, "test", subset=cfg.data.test_subset, seed=seed)
    info = train.info
    model = create_model(model_name, num_classes=info.num_classes, in_chans=info.in_chans)
    constraint = None
    cardinality = int(getattr(model, "cardinality", 1))
    if arm == "budget":
        constraint = ResourceConstraint(group_budget(model, budget_groups or cardinality), exponent=opts["exponent"])
    task = _BudgetTask(constraint, augment="none")
    trainer = Trainer(cfg, model, train, test, task, out_dir / name, device)
    start = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - start
    model = trainer.model.eval()
    in_shape = (info.in_chans, *train[0][0].shape[-2:])
    row: dict[str, Any] = {
        "arm": arm,
        "model": model_name,
        "seed": seed,
        "acc": result.metrics["acc"],
        "loss": result.metrics["loss"],
        "train_seconds": seconds,
        "params_trained": sum(p.numel() for p in model.parameters()),
        "macs_trained": count_macs(model, in_shape),
    }
    if arm == "fixed":
        row["groups"] = {
            n: m.groups for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n.endswith("conv2")
        }
        row["params_exported"], row["macs_exported"] = row["params_trained"], row["macs_trained"]
        return row
    zeta = float(complexity(model).detach())
    exported = export_grouped_convs(model)
    x = torch.stack([test[i][0] for i in range(min(64, len(test)))]).to(device)
    with torch.no_grad():
        diff = (model(x) - exported(x)).abs().max().item()
    row.update(
        groups=learned_groups(model),
        zeta=zeta,
        zeta_dense=dense_complexity(model),
        zeta_fixed=group_budget(model, cardinality),
        budget=None if constraint is None else constraint.target,
        exponent=None if constraint is None else constraint.exponent,
        export_max_abs_diff=diff,
        params_exported=sum(p.numel() for p in exported.parameters()),
        macs_exported=count_macs(exported, in_shape),
    )
    return row


def _figure(rows: list[dict[str, Any]], cardinality: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    learned = [r for r in rows if r["arm"] != "fixed"]
    layers = list(learned[0]["groups"]) if learned else []
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(layers) + 2), 3.6))
    width = 0.8 / max(1, len(learned))
    top: float = 1
    for i, r in enumerate(learned):
        xs = [j + (i - (len(learned) - 1) / 2) * width for j in range(len(layers))]
        logs = [math.log2(r["groups"][n]) for n in layers]
        top = max(top, *logs) if logs else top
        # bars start at -0.5 so that G = 1 (log2 = 0) stays visible
        label = f"{r['arm']} (seed {r['seed']}, acc {r['acc']:.3f})"
        ax.bar(xs, [v + 0.5 for v in logs], width, bottom=-0.5, label=label)
    ax.axhline(math.log2(cardinality), color="k", linestyle="--", linewidth=1, label=f"fixed ({cardinality} groups)")
    ax.set_yticks(range(int(top) + 1))
    ax.set_yticklabels([str(2**k) for k in range(int(top) + 1)])
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([n.replace(".conv2", "") for n in layers], rotation=45, ha="right")
    ax.set_ylabel("learned groups G")
    ax.set_title("DGConv: learned group count per 3x3 layer")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def run_reproduction(
    *,
    data: str = "fashion-mnist",
    fixed_model: str = "resnext29_4x4d",
    learned_model: str = "g_resnext29_4x4d",
    train_subset: int = 5000,
    test_subset: int = 2000,
    epochs: int = 3,
    batch_size: int = 64,
    lr: float = 0.05,
    exponent: float = -0.02,
    budget_groups: int | None = None,
    seeds: tuple[int, ...] = (0,),
    output_dir: str | Path = "runs/reproduce-dgconv",
) -> dict[str, Any]:
    """Train the three arms for every seed and write ``dgconv_results.json`` and ``dgconv_groups.png``."""
    out = Path(output_dir)
    data = _pick_data(data)
    opts = {
        "train_subset": train_subset,
        "test_subset": test_subset,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "exponent": exponent,
    }
    rows = []
    for seed in seeds:
        for arm, model_name in (("fixed", fixed_model), ("learned", learned_model), ("budget", learned_model)):
            row = _train_arm(arm, model_name, data, seed, opts, out, budget_groups)
            print(f"{arm} seed {seed}: test accuracy {row['acc']:.4f}", file=sys.stderr)
            rows.append(row)
    from ..models import create_model

    cardinality = int(getattr(create_model(fixed_model), "cardinality", 1))
    summary = {"data": data, **opts, "seeds": list(seeds), "cardinality": cardinality, "runs": rows}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "dgconv_results.json", summary)
    atomic_write_bytes(out / "dgconv_groups.png", _figure([r for r in rows if r["seed"] == seeds[0]], cardinality))
    return summary


def run(args: argparse.Namespace) -> int:
    """Entry point of ``pickwise reproduce dgconv``."""
    from ..utils.table import format_table

    kwargs: dict[str, Any] = {
        "train_subset": args.train_subset,
        "test_subset": args.test_subset,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
    }
    if args.quick:
        kwargs = {"train_subset": 2000, "test_subset": 500, "epochs": 1, "batch_size": 64}
    seeds = tuple(int(s) for s in str(args.seeds).split(",") if s.strip())
    summary = run_reproduction(
        data=args.data,
        fixed_model=args.fixed_model,
        learned_model=args.learned_model,
        lr=args.lr,
        exponent=args.exponent,
        budget_groups=args.budget_groups,
        seeds=seeds or (0,),
        output_dir=args.output_dir,
        **kwargs,
    )
    rows = summary["runs"]
    print(
        f"\nDGConv reproduction on {summary['data']} ({summary['train_subset']} train / {summary['test_subset']} test, "
        f"{summary['epochs']} epoch(s), batch {summary['batch_size']}, seeds {summary['seeds']})"
    )
    table = []
    for r in rows:
        groups = list(r["groups"].values())
        zeta = r.get("zeta")
        table.append(
            [
                r["arm"],
                r["seed"],
                r["acc"],
                "/".join(str(g) for g in groups),
                "-" if zeta is None else f"{zeta / r['zeta_fixed']:.2f}",
                r["params_exported"],
                f"{r['macs_exported'] / 1e6:.2f}",
                "-" if "export_max_abs_diff" not in r else f"{r['export_max_abs_diff']:.1e}",
                round(r["train_seconds"], 1),
            ]
        )
    headers = [
        "arm",
        "seed",
        "test acc",
        "groups per layer",
        "ζ/ζ_fixed",
        "params (exp.)",
        "MMACs (exp.)",
        "export diff",
        "train s",
    ]
    print(format_table(headers, table))
    out = Path(args.output_dir)
    print(f"results: {out / 'dgconv_results.json'}, figure: {out / 'dgconv_groups.png'}")
    return 0
