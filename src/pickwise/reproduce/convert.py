"""``pickwise reproduce convert``: does converting pretrained BatchNorm to SN/SSN/EN help small-batch fine-tuning?

Two parts, both on the real ImageNet MobileNetV2 (``create_model("mobilenet_v2", pretrained=True)``):

1. **Trade-off of the conversion** (:func:`measure_tradeoff`). For a range of ``bn_logit_gap`` values, the BN layers
   are converted with ``init="bn"`` and the job measures, on real photos (scikit-image's bundled CC0/public-domain
   pictures, 224 px, ImageNet preprocessing): the relative change of the eval-mode ImageNet logits
   ``||z' - z|| / ||z||`` and the top-1 agreement with the BN model, and the size of the mixture-logit gradients of a
   training step (batch 4, cross-entropy against the BN model's own top-1 labels). It also records whether an SSN
   layer starts one-hot (and so freezes on its first training step).
2. **Small-batch fine-tuning** (:func:`finetune_run`): the pretrained network gets a new head and is fine-tuned on a
   Fashion-MNIST subset (upsampled to ``--image-size``) with batch 2 and batch 4, BN kept vs converted to SN / SSN /
   EN (``init="bn"``, each with its recipe), plus two reference arms: ``ssn:free`` (SSN from the BN start at the SN/EN
   logit rate, no radius ramp) and ``sn:uniform`` (the papers' equal logits), for several seeds; test accuracy (mean
   and standard error over seeds), the learned ratios and, for SSN, the step at which each selection froze.

Every fine-tuning run writes ``runs/<norm>-bs<batch>-s<seed>/result.json``; finished runs are reused, so an
interrupted job can be restarted with the same command.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..utils.io import atomic_write_json, atomic_write_text
from ..utils.table import format_table

__all__ = ["add_arguments", "finetune_run", "measure_tradeoff", "photo_batch", "run", "summarize_runs"]

LEARNED = ("sn", "ssn", "en")  # the learned mixtures compared, in the figures' order
#: scikit-image photos bundled with the package (no download): RGB photos, then the grayscale texture photos.
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "cat",
    "stereo_motorcycle",
    "brick",
    "grass",
    "gravel",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``pickwise reproduce convert``."""
    p.add_argument("--quick", action="store_true", help="tiny version for tests (1 seed, 40 images, 32 px)")
    p.add_argument(
        "--norms",
        default="bn,sn,ssn,en,sn:uniform,ssn:free",
        help="comma-separated: bn (kept) and conversion targets (init='bn' at --bn-logit-gap; 'sn:uniform': the "
        "papers' equal logits; 'ssn:free': SSN from the BN start at the SN/EN logit rate without the radius ramp)",
    )
    p.add_argument("--batch-sizes", default="2,4", help="comma-separated fine-tuning batch sizes")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (head init, data order, subset draw)")
    p.add_argument("--data", default="fashion-mnist", help="target dataset (default: fashion-mnist)")
    p.add_argument("--train-subset", type=int, default=240, help="training images (default 240)")
    p.add_argument("--test-subset", type=int, default=400, help="test images (default 400)")
    p.add_argument("--image-size", type=int, default=48, help="input size of the fine-tuning runs (default 48)")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs (default 1)")
    p.add_argument("--lr", type=float, default=0.003, help="peak SGD learning rate, cosine decay (default 0.003)")
    p.add_argument(
        "--logit-lr-mult",
        type=float,
        default=10.0,
        help="learning-rate multiplier of the SN/EN mixture logits (default 10, as `reproduce norms`; SSN uses its "
        "official recipe: 0.1 and a logit-gradient clip of 1)",
    )
    p.add_argument(
        "--bn-logit-gap",
        type=float,
        help="gap of the conversion (default: convert_norm_layers' default, chosen from this job's trade-off)",
    )
    p.add_argument("--gaps", default="2,3,4,6,8,10,12,16,30", help="gaps of the trade-off measurement")
    p.add_argument("--skip-tradeoff", action="store_true", help="only the fine-tuning part")
    p.add_argument("--skip-finetune", action="store_true", help="only the trade-off part")
    p.add_argument("--output-dir", default="runs/reproduce-convert")


# ----------------------------------------------------------------------------------------------------- trade-off
def photo_batch(size: int = 224, names: tuple[str, ...] = PHOTOS) -> tuple[torch.Tensor, list[str]]:
    """Real photos from ``skimage.data`` as an ImageNet-normalized batch ``(n, 3, size, size)``.

    Each photo is resized (bilinear, antialiased) so that its short side is ``size / 0.875`` and centre-cropped
    to ``size`` (the weights' ``crop_pct``); grayscale photos are repeated to 3 channels. Photos that the installed
    scikit-image cannot provide offline are skipped.
    """
    from ..data._base import import_optional

    data = import_optional("skimage.data", pip_name="scikit-image", dataset="photos")
    images, used = [], []
    for name in names:
        try:
            image = getattr(data, name)()
        except Exception:  # photos that need a download or an extra package
            continue
        if isinstance(image, tuple):
            image = image[0]
        t = torch.as_tensor(image).float() / 255.0
        t = t.unsqueeze(0).repeat(3, 1, 1) if t.dim() == 2 else t[..., :3].permute(2, 0, 1)
        short = round(size / 0.875)
        h, w = t.shape[-2:]
        scale = short / min(h, w)
        t = torch.nn.functional.interpolate(
            t[None],
            size=(max(short, round(h * scale)), max(short, round(w * scale))),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )[0]
        top, left = (t.shape[-2] - size) // 2, (t.shape[-1] - size) // 2
        images.append(t[:, top : top + size, left : left + size])
        used.append(name)
    x = torch.stack(images)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std, used


def _logit_grad_sizes(model: nn.Module) -> list[float]:
    """Per layer: the largest |gradient| of its mixture logits."""
    from ..nn.norm.registry import MIXTURE_LOGIT_NAMES, is_learned_norm

    sizes = []
    for module in model.modules():
        if not is_learned_norm(module):
            continue
        grads = [
            getattr(module, n).grad for n in MIXTURE_LOGIT_NAMES if isinstance(getattr(module, n, None), nn.Parameter)
        ]
        grads = [g for g in grads if g is not None]
        sizes.append(max(float(g.abs().max()) for g in grads) if grads else 0.0)
    return sizes


def measure_tradeoff(
    base: nn.Module, images: torch.Tensor, targets: tuple[str, ...], gaps: tuple[float, ...], grad_batch: int = 4
) -> list[dict[str, Any]]:
    """Output change at conversion vs mixture-logit gradient size, per target and ``bn_logit_gap``.

    Args:
        base: The pretrained BN network (not modified).
        images: ImageNet-normalized photos.
        targets: Conversion targets (``"sn"``, ``"ssn"``, ``"en"``).
        gaps: ``bn_logit_gap`` values.
        grad_batch: Batch of the training step whose logit gradients are measured (the first images).

    Returns:
        One row per (target, gap): ``rel_logit_change_median``/``_max`` (over images), ``top1_agreement``,
        ``logit_grad_median``/``_max`` (over layers, of each layer's largest |d loss / d logit|), ``bn_weight``
        (the BN ratio at conversion) and, for SSN, ``one_hot_at_init`` (every layer starts one-hot and freezes).
    """
    from ..nn.norm.convert import convert_norm_layers

    base = copy.deepcopy(base).eval()
    with torch.no_grad():
        z0 = base(images)
    labels = z0.argmax(1)
    rows = []
    for target in targets:
        for gap in gaps:
            model = convert_norm_layers(copy.deepcopy(base), target, init="bn", bn_logit_gap=float(gap)).eval()
            with torch.no_grad():
                z = model(images)
            rel = ((z - z0).norm(dim=1) / z0.norm(dim=1)).tolist()
            learned: list[Any] = [m for m in model.modules() if hasattr(m, "ratios") and hasattr(m, "normalizers")]
            bn_weight = float(learned[0].ratios()["mean"][learned[0].normalizers.index("bn")]) if learned else 1.0
            one_hot = None
            if target == "ssn":
                one_hot = all(bool(m.ratios()["mean"].max() >= 1.0 - 1e-6) for m in learned)
            model.train()
            model.zero_grad(set_to_none=True)
            torch.manual_seed(0)  # the classifier's dropout is active in training mode: same mask for every row
            loss = torch.nn.functional.cross_entropy(model(images[:grad_batch]), labels[:grad_batch])
            loss.backward()
            grads = _logit_grad_sizes(model)
            rows.append(
                {
                    "target": target,
                    "gap": float(gap),
                    "bn_weight": bn_weight,
                    "rel_logit_change_median": statistics.median(rel),
                    "rel_logit_change_max": max(rel),
                    "top1_agreement": float((z.argmax(1) == labels).float().mean()),
                    "logit_grad_median": statistics.median(grads),
                    "logit_grad_max": max(grads),
                    "one_hot_at_init": one_hot,
                }
            )
            print(
                f"trade-off {target} gap {gap:g}: logit change median {rows[-1]['rel_logit_change_median']:.4f} "
                f"max {rows[-1]['rel_logit_change_max']:.4f}, top-1 agreement {rows[-1]['top1_agreement']:.2f}, "
                f"logit grad median {rows[-1]['logit_grad_median']:.2e}",
                file=sys.stderr,
            )
    return rows


# ----------------------------------------------------------------------------------------------------- fine-tuning
class _ToImageNet(nn.Module):
    """Dataset-normalized images -> [0, 1] -> 3 channels -> ImageNet normalization -> ``model``."""

    data_mean: torch.Tensor
    data_std: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module, data_mean: Any, data_std: Any) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("data_mean", torch.tensor(list(data_mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("data_std", torch.tensor(list(data_std), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.data_std + self.data_mean
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.model((x - self.mean) / self.std)


class _FreezeRecorder:
    """Engine hook: the step at which each SSN layer's mean / variance selection became fixed."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = [m for m in model.modules() if hasattr(m, "mean_fixed")]
        self.first: list[int | None] = [None] * (2 * len(self.layers))

    def __call__(self, trainer: Any) -> None:
        step = int(trainer.global_step)  # called before the step: what is fixed now was fixed by step - 1
        for i, layer in enumerate(self.layers):
            for j, flag in enumerate((layer.mean_fixed, layer.var_fixed)):
                if self.first[2 * i + j] is None and bool(flag):
                    self.first[2 * i + j] = step


def _ratio_summary(model: nn.Module) -> dict[str, Any]:
    layers = []
    for name, module in model.named_modules():
        if hasattr(module, "ratios") and hasattr(module, "normalizers") and module.normalizers:
            r = module.ratios()
            layers.append(
                {
                    "layer": name,
                    "normalizers": list(module.normalizers),
                    "mean": [float(v) for v in r["mean"]],
                    "var": [float(v) for v in r["var"]],
                }
            )
    if not layers:
        return {"layers": []}
    bn = layers[0]["normalizers"].index("bn") if "bn" in layers[0]["normalizers"] else None
    out: dict[str, Any] = {"layers": layers}
    if bn is not None:
        mean_bn = [lay["mean"][bn] for lay in layers]
        var_bn = [lay["var"][bn] for lay in layers]
        out["bn_weight_mean"] = statistics.fmean(mean_bn)
        out["bn_weight_var"] = statistics.fmean(var_bn)
        out["bn_weight_min"] = min(mean_bn + var_bn)
        out["layers_moved"] = sum(min(a, b) < 0.9 for a, b in zip(mean_bn, var_bn, strict=True))
    return out


def finetune_run(
    norm: str,
    batch: int,
    seed: int,
    *,
    train_set: Any,
    test_set: Any,
    epochs: int,
    lr: float,
    logit_lr_mult: float,
    bn_logit_gap: float | None,
    run_dir: Path,
) -> dict[str, Any]:
    """Fine-tune the pretrained MobileNetV2 (BN kept, or converted to ``norm``) once; result cached in ``run_dir``.

    The recipe is :func:`pickwise.selection.finetune.finetune`'s (SGD momentum 0.9, cosine decay, no warm-up, weight
    decay 5e-4 off for 1-D parameters) through the engine's ``Trainer`` directly, because the trained model is needed
    for its learned ratios; SSN gets its official recipe: the radius ramp 0 -> 1 over the run, logits at lr / 10 and
    their gradient norm clipped to 1.
    """
    from ..engine.config import resolve_config
    from ..engine.hooks import SparsestmaxRadiusSchedule
    from ..engine.run import resolve_device
    from ..engine.tasks import ClassificationTask
    from ..engine.trainer import Trainer
    from ..models import create_model
    from ..nn.norm.convert import convert_norm_layers

    result_file = run_dir / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    start = time.perf_counter()
    model: Any = create_model("mobilenet_v2", pretrained=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.reset_classifier(int(train_set.info.num_classes))
    # "sn:uniform": the papers' equal logits instead of the BN start; "ssn:free": SSN from the BN start with the SN/EN
    # logit learning rate and no radius ramp (plain sparsemax: undamped logit gradients, no forced one-hot)
    norm, _, variant = norm.partition(":")
    init = "uniform" if variant == "uniform" else "bn"
    if norm != "bn":
        kwargs: dict[str, Any] = {} if bn_logit_gap is None or init == "uniform" else {"bn_logit_gap": bn_logit_gap}
        model = convert_norm_layers(model, norm, init=init, **kwargs)
    net = _ToImageNet(model, train_set.info.mean, train_set.info.std)
    overrides = [
        f"data.batch_size={batch}",
        f"train.epochs={epochs}",
        f"optim.lr={lr}",
        "optim.weight_decay=5e-4",
        f"train.seed={seed}",
        "train.device=cpu",
        "train.progress=false",
        "train.tensorboard=false",
        "train.eval_every=0",
        "schedule.warmup_epochs=0",
        "checkpoint.keep_last=1",
        f"output_dir={run_dir.parent}",
        f"name={run_dir.name}",
    ]
    official_ssn = norm == "ssn" and variant != "free"
    if norm in ("sn", "en") or (norm == "ssn" and not official_ssn):
        overrides.append(f"optim.norm_logit_lr_mult={logit_lr_mult}")
    if official_ssn:  # the official SSN recipe: logits at lr / 10, logit gradients clipped to norm 1
        overrides += ["optim.norm_logit_lr_mult=0.1", "optim.norm_logit_clip=1.0"]
    cfg = resolve_config(overrides=overrides)
    hooks: list[Any] = []
    recorder = None
    if norm == "ssn":
        if official_ssn:
            hooks.append(SparsestmaxRadiusSchedule(net, 1.0))
        recorder = _FreezeRecorder(net)
        hooks.append(recorder)
    trainer = Trainer(cfg, net, train_set, test_set, ClassificationTask(), run_dir, resolve_device("cpu"), hooks=hooks)
    resume = True if any((run_dir / "checkpoints").glob("ckpt-*")) else None
    result = trainer.fit(resume=resume)
    torch.set_grad_enabled(True)
    out: dict[str, Any] = {
        "norm": norm + (f":{variant}" if variant else ""),
        "batch_size": batch,
        "seed": seed,
        "acc": float(result.metrics["acc"]),
        "loss": float(result.metrics["loss"]),
        "steps": int(result.steps),
        "seconds": time.perf_counter() - start,
        "ratios": _ratio_summary(model),
    }
    if recorder is not None:
        steps = [s for s in recorder.first if s is not None]
        out["ssn_freeze"] = {
            "selections": len(recorder.first),
            "frozen": len(steps),
            "first_step": min(steps) if steps else None,
            "median_step": statistics.median(steps) if steps else None,
            "note": "step index at which a layer's mean or variance selection was found fixed (null: never)",
        }
    atomic_write_json(result_file, out)
    return out


def _se(values: list[float]) -> float | None:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None


def summarize_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean test accuracy, its standard error over seeds, and the mean learned BN weight per (norm, batch)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["norm"], r["batch_size"]), []).append(r)
    rows = []
    for (norm, batch), items in groups.items():
        accs = [r["acc"] for r in items]
        row: dict[str, Any] = {
            "norm": norm,
            "batch_size": batch,
            "seeds": [r["seed"] for r in items],
            "acc_mean": statistics.fmean(accs),
            "acc_se": _se(accs),
            "acc_se_note": None if len(accs) > 1 else "one seed: no standard error",
            "accs": accs,
        }
        if norm != "bn":
            for key in ("bn_weight_mean", "bn_weight_var", "bn_weight_min", "layers_moved"):
                vals = [r["ratios"][key] for r in items if key in r["ratios"]]
                row[key] = statistics.fmean(vals) if vals else None
        rows.append(row)
    return rows


def _plot(tradeoff: list[dict[str, Any]], summary: list[dict[str, Any]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    if tradeoff:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        positive = [r["logit_grad_median"] for r in tradeoff if r["logit_grad_median"] > 0]
        floor = min(positive) / 10 if positive else 1e-30
        for target in sorted({r["target"] for r in tradeoff}):
            rows = [r for r in tradeoff if r["target"] == target]
            (line,) = axes[0].plot(
                [r["gap"] for r in rows], [r["rel_logit_change_median"] for r in rows], "o-", label=target
            )
            live = [r for r in rows if r["logit_grad_median"] > 0]
            axes[1].plot([r["gap"] for r in live], [r["logit_grad_median"] for r in live], "o-", label=target)
            dead = [r["gap"] for r in rows if r["logit_grad_median"] == 0]
            if dead:  # exactly zero (SSN one-hot at a sparsemax vertex): marked at the bottom
                axes[1].plot(dead, [floor] * len(dead), "x", color=line.get_color(), ms=9, label=f"{target}: 0")
        axes[0].set(xlabel="bn_logit_gap", ylabel="median ||z'-z|| / ||z||", yscale="log", title="eval output change")
        axes[1].set(xlabel="bn_logit_gap", ylabel="median max|dL/dlogit|", yscale="log", title="logit gradient")
        from ..nn.norm.convert import DEFAULT_BN_LOGIT_GAP

        for ax in axes:
            ax.axvline(DEFAULT_BN_LOGIT_GAP, color="gray", ls="--", lw=1)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / "convert_tradeoff.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        figures.append(str(path))
    if summary:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        norms = sorted({r["norm"] for r in summary}, key=_norm_order)
        batches = sorted({r["batch_size"] for r in summary})
        width = 0.8 / len(norms)
        for i, norm in enumerate(norms):
            by_batch = {r["batch_size"]: r for r in summary if r["norm"] == norm}
            xs = [j + i * width for j, b in enumerate(batches) if b in by_batch]
            ax.bar(
                xs,
                [rows[b]["acc_mean"] for b in batches if b in rows],
                width,
                yerr=[rows[b]["acc_se"] or 0.0 for b in batches if b in rows],
                label=norm,
                capsize=3,
            )
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(batches))], [f"batch {b}" for b in batches])
        ax.set(ylabel="test accuracy (mean ± SE)", title="MobileNetV2 (ImageNet) fine-tuned")
        lo = min(r["acc_mean"] for r in summary)
        ax.set_ylim(max(0.0, lo - 0.1), min(1.0, max(r["acc_mean"] for r in summary) + 0.05))
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / "convert_accuracy.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        figures.append(str(path))
    return figures


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the job and write ``reproduce_convert.json``, ``summary.txt`` and the figures."""
    from ..data import create_dataset
    from ..exceptions import InvalidParameterError
    from ..nn.norm.convert import DEFAULT_BN_LOGIT_GAP

    def ints(text: str, what: str) -> list[int]:
        try:
            return [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise InvalidParameterError(
                f"reproduce convert: --{what} must be comma-separated ints; got {text!r}"
            ) from None

    norms = [n.strip() for n in args.norms.split(",") if n.strip()]
    bad = [n for n in norms if n not in ("bn", *LEARNED, *(f"{t}:uniform" for t in LEARNED), "ssn:free")]
    if bad:
        raise InvalidParameterError(
            "reproduce convert: --norms takes bn, sn, ssn, en (optionally sn:uniform etc., ssn:free); "
            f"got {', '.join(bad)}"
        )
    batches, seeds = ints(args.batch_sizes, "batch-sizes"), ints(args.seeds, "seeds")
    try:
        gaps = tuple(float(v) for v in args.gaps.split(",") if v.strip())
    except ValueError:
        raise InvalidParameterError(
            f"reproduce convert: --gaps must be comma-separated numbers; got {args.gaps!r}"
        ) from None
    if args.quick:
        seeds, args.train_subset, args.test_subset, args.image_size = seeds[:1], 40, 40, 32
        gaps = gaps[:2]
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    tradeoff: list[dict[str, Any]] = []
    if not args.skip_tradeoff and any(n in LEARNED for n in norms):
        cache = out / "tradeoff.json"
        targets = [n for n in norms if n in LEARNED]
        key: dict[str, Any] = {
            "gaps": list(gaps),
            "targets": targets,
            "size": 96 if args.quick else 224,
            "seeded_dropout": True,
        }
        if cache.is_file() and json.loads(cache.read_text()).get("key") == key:
            tradeoff = json.loads(cache.read_text())["rows"]
        else:
            from ..models import create_model

            images, names = photo_batch(key["size"])
            tradeoff = measure_tradeoff(
                create_model("mobilenet_v2", pretrained=True), images, tuple(key["targets"]), gaps
            )
            atomic_write_json(cache, {"key": key, "photos": names, "rows": tradeoff})

    runs: list[dict[str, Any]] = []
    if not args.skip_finetune:
        test_set = create_dataset(args.data, "test", subset=args.test_subset, image_size=args.image_size, seed=0)
        for seed in seeds:
            train_set = create_dataset(
                args.data, "train", subset=args.train_subset, image_size=args.image_size, seed=seed
            )
            for batch in batches:
                for norm in norms:
                    r = finetune_run(
                        norm,
                        batch,
                        seed,
                        train_set=train_set,
                        test_set=test_set,
                        epochs=args.epochs,
                        lr=args.lr,
                        logit_lr_mult=args.logit_lr_mult,
                        bn_logit_gap=args.bn_logit_gap,
                        run_dir=out / "runs" / f"{norm.replace(':', '-')}-bs{batch}-s{seed}",
                    )
                    print(
                        f"{norm} batch {batch} seed {seed}: test accuracy {r['acc']:.4f} "
                        f"(bn weight {r['ratios'].get('bn_weight_mean', 1.0):.3f}, {r['seconds']:.0f} s)",
                        file=sys.stderr,
                    )
                    runs.append(r)
    summary = summarize_runs(runs)
    figures = _plot(tradeoff, summary, out)
    result = {
        "model": "mobilenet_v2 (ImageNet, torchvision weights)",
        "data": args.data,
        "train_subset": args.train_subset,
        "test_subset": args.test_subset,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "lr": args.lr,
        "logit_lr_mult": args.logit_lr_mult,
        "bn_logit_gap": args.bn_logit_gap if args.bn_logit_gap is not None else DEFAULT_BN_LOGIT_GAP,
        "seeds": seeds,
        "tradeoff": tradeoff,
        "summary": summary,
        "runs": [{k: v for k, v in r.items() if k != "ratios"} | {"ratios": _short(r["ratios"])} for r in runs],
        "seconds": time.perf_counter() - start,
        "figures": figures,
    }
    atomic_write_json(out / "reproduce_convert.json", result)
    lines = []
    if summary:
        table = [
            [
                r["norm"],
                r["batch_size"],
                f"{r['acc_mean']:.4f}",
                "-" if r["acc_se"] is None else f"{r['acc_se']:.4f}",
                "-" if r.get("bn_weight_mean") is None else f"{r['bn_weight_mean']:.3f}/{r['bn_weight_var']:.3f}",
            ]
            for r in sorted(summary, key=lambda r: (r["batch_size"], _norm_order(r["norm"])))
        ]
        lines.append(format_table(["norm", "batch", "acc", "SE", "BN weight mean/var"], table))
    atomic_write_text(out / "summary.txt", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nresults: {out / 'reproduce_convert.json'}\nfigures: {', '.join(figures)}")
    return 0


def _norm_order(norm: str) -> tuple[int, str]:
    base = norm.partition(":")[0]
    return (("bn", "sn", "ssn", "en").index(base), norm)


def _short(ratios: dict[str, Any]) -> dict[str, Any]:
    """Ratios without the per-layer list (kept in each run's result.json)."""
    return {k: v for k, v in ratios.items() if k != "layers"}
