"""``pickwise isp train | evaluate | infer | make-data``: the learned-ISP command group.

- ``train``: train a registered ISP model (``--config``/``--set``, shortcuts, PyNET ``--levels``), resumable;
- ``evaluate``: score a trained run folder (or an untrained/classical model) on a split, optionally with the
  self-ensemble, and draw a comparison figure;
- ``infer``: a DNG (needs ``rawpy``) or a ZRR RAW PNG → an sRGB PNG, tiled at full resolution;
- ``make-data``: generate the embedded ``isp-synth`` benchmark.

User errors print one line and exit 2 (``pickwise.cli.main``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

__all__ = ["add_parser"]

_SHORTCUTS = {
    "model": "model.name",
    "norm": "model.norm",
    "data": "data.name",
    "data_dir": "data.root",
    "crop": "data.crop",
    "batch_size": "data.batch_size",
    "epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "lr": "optim.lr",
    "seed": "train.seed",
    "device": "train.device",
    "name": "name",
    "output_dir": "output_dir",
    "levels": "levels.levels",
}


def add_parser(subparsers: Any) -> None:
    """Register ``isp`` and its subcommands."""
    p = subparsers.add_parser(
        "isp",
        help="learned smartphone ISP (RAW → RGB): train, evaluate, infer, make-data",
        description="Learned smartphone ISP (AIM 2020 / Zurich RAW-to-RGB).",
    )
    sub = p.add_subparsers(dest="isp_command", metavar="COMMAND")

    t = sub.add_parser("train", help="train an ISP model", description="Train and evaluate a registered ISP model.")
    t.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML config (repeatable)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override")
    t.add_argument("--model", help="isp_unet_tiny, pynet_tiny, mwisp_tiny, awnet_tiny, ... or isp_classical")
    t.add_argument("--norm", help="norm layer for models with norms (in, bn, gn, none, ...)")
    t.add_argument("--data", help="isp-synth (embedded benchmark) or a ZRR-layout folder")
    t.add_argument("--data-dir", help="where isp-synth is generated")
    t.add_argument("--crop", type=int, help="training crop side in packed pixels")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--epochs", type=int)
    t.add_argument("--max-steps", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--device")
    t.add_argument("--levels", help="PyNET levels trained in order, e.g. 5,4,3,2,1,0")
    t.add_argument("--name")
    t.add_argument("--output-dir")
    t.add_argument("--resume", action="store_true", help="continue the run --name (finished phases are skipped)")
    t.add_argument("--overwrite", action="store_true", help="delete a previous run in the folder first")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.set_defaults(handler=_train)

    e = sub.add_parser("evaluate", help="score a run or a model on a split")
    e.add_argument("--run", help="run folder (config.yaml + model.safetensors)")
    e.add_argument("--model", help="registered model without training (e.g. isp_classical)")
    e.add_argument("--data", default=None, help="isp-synth or a ZRR folder (default: the run's)")
    e.add_argument("--split", default="test", choices=("train", "test", "full"))
    e.add_argument("--ensemble", default="none", choices=("none", "packed", "rgb", "bayer"))
    e.add_argument("--quantize", action="store_true", help="8-bit PSNR (MW-ISPNet's convention)")
    e.add_argument("--limit", type=int, help="first N pairs")
    e.add_argument("--figure", help="write a comparison PNG (RAW preview, classical, model, target) here")
    e.add_argument("--json", help="also write the metrics to this JSON file")
    e.set_defaults(handler=_evaluate)

    i = sub.add_parser("infer", help="RAW (DNG or ZRR PNG) → sRGB PNG, tiled")
    i.add_argument("input", help="a .dng file (needs rawpy) or a ZRR RAW mosaic PNG (16-bit, one channel)")
    i.add_argument("output", help="output .png")
    i.add_argument("--run", help="run folder")
    i.add_argument("--model", help="registered model without training (e.g. isp_classical)")
    i.add_argument("--pattern", default="RGGB", help="CFA pattern of a PNG mosaic (DNGs carry their own)")
    i.add_argument("--convention", default=None, help="RAW normalization of a PNG mosaic (default: the run's)")
    i.add_argument("--tile", type=int, default=256, help="tile side in packed pixels")
    i.add_argument("--overlap", type=int, default=32)
    i.add_argument("--ensemble", default="none", choices=("none", "packed", "rgb", "bayer"))
    i.add_argument("--device", default="cpu")
    i.set_defaults(handler=_infer)

    m = sub.add_parser("make-data", help="generate the embedded isp-synth benchmark")
    m.add_argument("--root", help="output folder (default: the package's default location)")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(handler=_make_data)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _overrides(args: argparse.Namespace) -> list[str]:
    items = []
    for attr, key in _SHORTCUTS.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        if attr == "levels":
            try:
                value = [int(v) for v in str(value).split(",") if v.strip()]
            except ValueError:
                from ...exceptions import ConfigError

                raise ConfigError(
                    f"isp train: --levels must be comma-separated integers, e.g. 5,4,3; got {value!r}"
                ) from None
        items.append(f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
    return items + list(args.overrides)


def _train(args: argparse.Namespace) -> int:
    from ...utils.table import format_table
    from .config import resolve_config
    from .run import run_isp

    cfg = resolve_config(args.config, _overrides(args))
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    result = run_isp(cfg, resume=args.resume, overwrite=args.overwrite)
    rows = [[k, v] for k, v in result["metrics"].items()]
    rows += [["params", result["params"]], ["seconds", round(result["seconds"], 1)]]
    print(f"\n{result['model']} on {result['data']}: test metrics")
    print(format_table(["metric", "value"], rows))
    print(f"outputs: {Path(cfg.output_dir) / str(result['name'])}")
    return 0


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(model, config)`` from ``--run`` or ``--model``."""
    from ...exceptions import ConfigError, DataNotFoundError
    from .config import ISPRunConfig, config_from_dict, validate_config
    from .run import _load_weights, build_isp_model

    if bool(args.run) == bool(args.model):
        raise ConfigError("isp: give exactly one of --run (a trained run folder) or --model (an untrained model)")
    if args.model:
        cfg = validate_config(config_from_dict({"model": {"name": args.model}}, ISPRunConfig()))
        return build_isp_model(cfg), cfg
    run = Path(args.run)
    config, weights = run / "config.yaml", run / "model.safetensors"
    if not config.is_file() or not weights.is_file():
        raise DataNotFoundError(f"isp: {run} is not a finished ISP run (needs config.yaml and model.safetensors)")
    data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    cfg = validate_config(config_from_dict(data, ISPRunConfig()))
    model = build_isp_model(cfg)
    _load_weights(model, weights)
    return model, cfg


def _evaluate(args: argparse.Namespace) -> int:
    import dataclasses

    from ...utils.io import atomic_write_bytes, atomic_write_json
    from ...utils.table import format_table
    from .run import build_isp_datasets, evaluate_isp, make_task

    model, cfg = _load(args)
    data = dataclasses.replace(cfg.data, name=args.data or cfg.data.name, test_subset=args.limit)
    cfg = dataclasses.replace(
        cfg, data=data, eval=dataclasses.replace(cfg.eval, ensemble=args.ensemble, quantize=args.quantize)
    )
    (dataset,) = build_isp_datasets(cfg, (args.split if args.split != "train" else "train",))
    if args.limit is not None and args.split == "train":
        from torch.utils.data import Subset

        dataset = Subset(dataset, range(min(args.limit, len(dataset))))  # type: ignore[arg-type]  # ZRRDataset is sized
    metrics = evaluate_isp(model, dataset, make_task(cfg), cfg.data.eval_batch_size)
    print(format_table(["metric", "value"], [[k, v] for k, v in metrics.items()]))
    if args.json:
        atomic_write_json(args.json, {"model": cfg.model.name, "split": args.split, "metrics": metrics})
    if args.figure:
        import torch

        from ...models import create_model
        from .figures import comparison_figure

        raw, rgb, _ = dataset[0]
        with torch.no_grad():
            pred = model.eval()(raw[None])[0].clamp(0, 1)
            panels = [(cfg.model.name, pred)]
            if cfg.model.name != "isp_classical":
                panels.insert(0, ("classical", create_model("isp_classical")(raw[None])[0].clamp(0, 1)))
        atomic_write_bytes(args.figure, comparison_figure(raw, panels, rgb))
        print(f"figure: {args.figure}")
    return 0


def _infer(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ...exceptions import DataFormatError, DataNotFoundError
    from ...utils.io import atomic_write_bytes
    from .raw import RawLevels, normalize_raw, pack_bayer, read_dng, read_raw_png
    from .tiling import self_ensemble, tiled_forward

    model, cfg = _load(args)
    src = Path(args.input)
    if not src.is_file():
        raise DataNotFoundError(f"isp infer: input file not found: {src}")
    suffix = src.suffix.lower()
    if suffix == ".dng":
        mosaic, info = read_dng(src)
        pattern = info["pattern"]
        levels: Any = RawLevels(info["black_level"], float(info["white_level"]), clip_black=True)
    elif suffix == ".png":
        mosaic, pattern = read_raw_png(src), args.pattern
        levels = args.convention or cfg.data.convention
    else:
        raise DataFormatError(f"isp infer: {src} must be a .dng or a ZRR RAW .png; got a {suffix or 'no'} extension")
    h, w = mosaic.shape
    mosaic = mosaic[: h - h % 2, : w - w % 2]
    packed = normalize_raw(pack_bayer(torch.from_numpy(mosaic.astype(np.int32)), pattern), levels).float()[None]
    model = model.to(args.device).eval()
    packed = packed.to(args.device)

    def run(x: torch.Tensor) -> torch.Tensor:
        return tiled_forward(model, x, tile=args.tile, overlap=min(args.overlap, args.tile - 1))

    with torch.no_grad():
        out = self_ensemble(run, packed, mode=args.ensemble) if args.ensemble != "none" else run(packed)
    import io

    from PIL import Image

    from .figures import to_image

    buf = io.BytesIO()
    Image.fromarray(to_image(out[0])).save(buf, format="PNG")
    atomic_write_bytes(args.output, buf.getvalue())
    print(f"wrote {args.output} ({out.shape[-1]}x{out.shape[-2]})")
    return 0


def _make_data(args: argparse.Namespace) -> int:
    from .synth import default_isp_synth_root, make_isp_synth

    root = make_isp_synth(args.root or default_isp_synth_root(), seed=args.seed)
    print(f"isp-synth: {root}")
    return 0
