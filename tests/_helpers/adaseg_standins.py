"""Stand-ins for the adaseg CLI and reproduction tests: a tiny segmentation net and random 8x8 label domains."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """One 3x3 convolution with a classifier and a projection head (the deeplab output convention)."""

    feature_channels = 4

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.cls, self.proj = nn.Conv2d(6, k, 1), nn.Conv2d(6, 4, 1)

    def forward(self, x):
        f = self.body(x)
        return {"logits": self.cls(f), "features": self.proj(f), "stride": 1}


class RandomDomain(torch.utils.data.Dataset):
    """``n`` random 8x8 images with label maps drawn from ``classes`` ids; items are ``(image, label, index)``."""

    num_classes = 3

    def __init__(self, n: int, seed: int, classes: int = 3) -> None:
        g = torch.Generator().manual_seed(seed)
        self.lbl = torch.randint(0, classes, (n, 8, 8), generator=g)
        self.img = torch.randn(n, 3, 8, 8, generator=g)

    def __len__(self):
        return len(self.lbl)

    def __getitem__(self, i):
        return self.img[i], self.lbl[i], i
