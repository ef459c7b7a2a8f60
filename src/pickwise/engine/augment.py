"""Batch-level augmentation driven by an explicit generator (deterministic and resumable)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["augment_batch"]


def augment_batch(images: torch.Tensor, mode: str, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Apply ``mode`` (``none``, ``flip``, ``crop_flip``) to a batch ``(N, C, H, W)``.

    Random numbers come only from ``generator`` (on the CPU), so the same generator seed gives the same batch on any
    device and after any resume.
    """
    if mode == "none":
        return images
    n, _, h, w = images.shape
    if mode == "crop_flip":
        padded = F.pad(images, (padding, padding, padding, padding))  # zero = dataset mean after normalization
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)[None, :]).to(images.device)  # (N, H)
        cols = (dx[:, None] + torch.arange(w)[None, :]).to(images.device)  # (N, W)
        batch = torch.arange(n, device=images.device)[:, None, None, None]
        channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        images = padded[batch, channels, rows[:, None, :, None], cols[:, None, None, :]]
    flip = (torch.rand(n, generator=generator) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)
