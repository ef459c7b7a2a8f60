"""RAW-to-RGB training and evaluation as an engine accumulator task (:class:`ISPTask`).

Batches are ``(raw [B, 4, h, w], rgb [B, 3, 2h, 2w], names)`` (:class:`pickwise.tasks.isp.raw.ZRRDataset`).
Training takes a random crop of whole Bayer cells and (``augment="d4"``) one of the eight cell-level flips/rotations
per batch, applied to RAW and RGB jointly, then the weighted loss of :class:`~pickwise.tasks.isp.losses.ISPLoss`.
A PyNET phase at level ℓ > 0 scores the level-ℓ output against the target box-filtered by ``2**ℓ`` (area
down-sampling; PyNET's loader resizes the DSLR patch by the same factor — the filter is reconstructed).

Evaluation streams per-image PSNR, SSIM, MS-SSIM (fewer scales on images too small for five, reported in
``ms_ssim_scales``) and the colour-invariant PSNR (:mod:`pickwise.metrics.image`) into additive mean accumulators, so
distributed evaluation equals single-process evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...metrics import Accumulator, MeanMetric
from .losses import ISPLoss, charbonnier_loss

__all__ = ["ISPTask", "ms_ssim_scales", "random_cell_crop"]


def ms_ssim_scales(side: int, win_size: int = 11, max_scales: int = 5) -> int:
    """How many MS-SSIM scales fit an image whose short side is ``side`` (5 needs more than 160 pixels)."""
    scales = max_scales
    while scales > 1 and side <= (win_size - 1) * 2 ** (scales - 1):
        scales -= 1
    return scales


def random_cell_crop(
    raw: torch.Tensor, rgb: torch.Tensor, crop: int | None, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random ``crop x crop`` packed window of RAW and its ``2 crop`` RGB window (one offset per batch)."""
    h, w = raw.shape[-2:]
    if crop is None or (crop >= h and crop >= w):
        return raw, rgb
    ch, cw = min(crop, h), min(crop, w)
    top = int(torch.randint(0, h - ch + 1, (), generator=generator))
    left = int(torch.randint(0, w - cw + 1, (), generator=generator))
    s = rgb.shape[-1] // w
    return (
        raw[..., top : top + ch, left : left + cw],
        rgb[..., s * top : s * (top + ch), s * left : s * (left + cw)],
    )


def _d4(x: torch.Tensor, k: int) -> torch.Tensor:
    if k & 4:
        x = x.transpose(-2, -1)
    dims = [d for d, bit in ((-1, 1), (-2, 2)) if k & bit]
    return x.flip(dims) if dims else x


class ISPTask:
    """Learned-ISP task: weighted image loss in training, PSNR/SSIM/MS-SSIM/colour-invariant PSNR in evaluation.

    Args:
        loss: The training loss (default: L1).
        crop: Training crop side in packed pixels (None: whole patches).
        augment: ``none`` or ``d4`` (cell-level flips/rotations of RAW and RGB together).
        level: PyNET level trained and evaluated (None: the model's full-resolution output).
        side_weight: Charbonnier weight of every side output (models with ``forward_outputs``, e.g. AWNet).
        clamp: Clamp predictions to [0, 1] before scoring.
        quantize: Score 8-bit quantized images (MW-ISPNet's convention).
        ensemble: Evaluate the self-ensemble (``packed``/``rgb``/``bayer``) instead of the plain output.

    Example:
        >>> import torch
        >>> task = ISPTask()
        >>> accs = task.make_accumulators()
        >>> model = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2), torch.nn.Conv2d(4, 3, 1))
        >>> raw, rgb = torch.rand(2, 4, 8, 8), torch.rand(2, 3, 16, 16)
        >>> task.evaluation_step(model, (raw, rgb, ["a", "b"]), torch.device("cpu"), accs)
        >>> sorted(task.compute(accs))
        ['loss', 'ms_ssim', 'ms_ssim_scales', 'psnr', 'psnr_color_invariant', 'ssim']
    """

    def __init__(
        self,
        loss: ISPLoss | None = None,
        crop: int | None = None,
        augment: str = "none",
        level: int | None = None,
        side_weight: float = 0.0,
        clamp: bool = True,
        quantize: bool = False,
        ensemble: str = "none",
    ) -> None:
        self.loss = loss if loss is not None else ISPLoss({"l1": 1.0})
        self.crop = crop
        self.augment = augment
        self.level = level
        self.side_weight = side_weight
        self.clamp = clamp
        self.quantize = quantize
        self.ensemble = ensemble

    # ------------------------------------------------------------------ helpers
    def _target(self, rgb: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        if rgb.shape[-2:] == pred.shape[-2:]:
            return rgb
        return F.adaptive_avg_pool2d(rgb, (int(pred.shape[-2]), int(pred.shape[-1])))

    def _forward(self, model: nn.Module, raw: torch.Tensor) -> torch.Tensor:
        if self.level:
            return model(raw, level=self.level)
        return model(raw)

    # ------------------------------------------------------------------ training
    def training_loss(
        self, model: nn.Module, batch: Any, device: torch.device, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted loss on a random crop (and D4 transform) of the batch; sums of each term for the log."""
        raw, rgb = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        raw, rgb = random_cell_crop(raw, rgb, self.crop, generator)
        if self.augment == "d4":
            k = int(torch.randint(0, 8, (), generator=generator))
            s = rgb.shape[-1] // raw.shape[-1]
            raw = _d4(raw, k)
            rgb = F.pixel_shuffle(_d4(F.pixel_unshuffle(rgb, s), k), s)
        inner = getattr(model, "module", model)
        if self.side_weight and not self.level and callable(getattr(inner, "forward_outputs", None)):
            outs = model(raw, all_outputs=True)
            pred = outs[0]
            total, parts = self.loss(pred, self._target(rgb, pred))
            side = sum(charbonnier_loss(o.float(), self._target(rgb, o).float()) for o in outs[1:])
            total = total + self.side_weight * side
            parts = {**parts, "side": torch.as_tensor(side)}
        else:
            pred = self._forward(model, raw)
            total, parts = self.loss(pred, self._target(rgb, pred))
        n = torch.tensor(float(raw.shape[0]), device=device)
        stats = {"loss": total.detach() * n, "count": n}
        stats.update({f"loss_{k}": v.detach() * n for k, v in parts.items()})
        return total, stats

    def log_row(self, totals: Mapping[str, float]) -> dict[str, float]:
        """Mean total loss and mean of every term over the window."""
        n = max(totals.get("count", 0.0), 1.0)
        row = {"loss": totals.get("loss", 0.0) / n}
        row.update({k: v / n for k, v in totals.items() if k.startswith("loss_")})
        return row

    # ------------------------------------------------------------------ evaluation
    def make_accumulators(self) -> dict[str, Accumulator]:
        """Mean accumulators of the loss and every metric (per image)."""
        names = ("loss", "psnr", "ssim", "ms_ssim", "ms_ssim_scales", "psnr_color_invariant")
        return {n: MeanMetric() for n in names}

    @torch.no_grad()
    def predict(self, model: nn.Module, raw: torch.Tensor) -> torch.Tensor:
        """The scored prediction: plain or self-ensembled, clamped to [0, 1] if ``clamp``."""
        if self.ensemble != "none" and not self.level:
            from .tiling import self_ensemble

            pred = self_ensemble(model, raw, mode=self.ensemble)
        else:
            pred = self._forward(model, raw)
        pred = pred.float()
        return pred.clamp(0.0, 1.0) if self.clamp else pred

    @torch.no_grad()
    def evaluation_step(self, model: nn.Module, batch: Any, device: torch.device, accumulators: dict[str, Any]) -> None:
        """Add one batch: per-image loss, PSNR, SSIM, MS-SSIM and colour-invariant PSNR."""
        from ...metrics.image import MS_SSIM_WEIGHTS, color_invariant_psnr, ms_ssim, psnr, ssim

        raw, rgb = batch[0].to(device), batch[1].to(device).float()
        pred = self.predict(model, raw)
        target = self._target(rgb, pred)
        b = raw.shape[0]
        total, _ = self.loss(pred, target)
        accumulators["loss"].update_sum(total.detach().double() * b, b)
        q = self.quantize
        accumulators["psnr"].update(psnr(pred, target, quantize=q, reduction="none"))
        if q:
            from ...metrics.image import quantize_8bit

            pred, target = quantize_8bit(pred), quantize_8bit(target)
        side = min(pred.shape[-2:])
        if side > 10:  # SSIM's 11x11 window needs at least 11 pixels
            accumulators["ssim"].update(ssim(pred, target, reduction="none"))
            scales = ms_ssim_scales(side)
            if scales == 1:
                values = ssim(pred, target, reduction="none")
            else:
                w = MS_SSIM_WEIGHTS[:scales]
                values = ms_ssim(pred, target, weights=tuple(x / sum(w) for x in w), reduction="none")
            accumulators["ms_ssim"].update(values)
            accumulators["ms_ssim_scales"].update(torch.full((b,), float(scales)))
        accumulators["psnr_color_invariant"].update(color_invariant_psnr(pred, target, reduction="none"))

    def compute(self, accumulators: dict[str, Any]) -> dict[str, float]:
        """Means over the evaluated images (NaN for a metric the images were too small for)."""
        return {name: acc.compute() for name, acc in accumulators.items()}
