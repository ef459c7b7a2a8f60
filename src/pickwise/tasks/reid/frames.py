"""Frame sampling inside a tracklet and the clip dataset that feeds video re-ID models.

Policies of :func:`sample_frames` for a tracklet of ``n`` frames and a clip of ``T = seq_len`` frames:

- ``"random"`` (torchreid ``VideoDataset``, ``sample_method='random'``): ``T`` distinct frames drawn uniformly and
  sorted; when ``n < T`` the draw is **with replacement** (so short tracklets repeat random frames), then sorted.
- ``"restricted_random"`` (restricted random sampling, TSN-style, the usual training policy of video
  transformers): the tracklet is cut into ``T`` consecutive chunks ``[floor(k n / T), floor((k+1) n / T))`` and one
  frame is drawn uniformly in each. When ``n < T`` the chunks cannot all be non-empty; the clip is then
  ``floor(k n / T)`` for ``k = 0..T-1`` — every frame, in order, each repeated about ``T / n`` times
  (reconstructed: a deterministic padding that keeps the temporal order and the whole tracklet).
- ``"evenly"`` (torchreid ``sample_method='evenly'``): ``n`` is rounded down to a multiple of ``T`` and every
  ``n / T``-th frame from 0 is taken; when ``n < T`` all frames are taken and **the last frame is repeated** to
  length ``T``. Deterministic (the usual test policy).
- ``"all"``: every frame, ``list(range(n))``; ``seq_len`` is ignored and clips have different lengths (batch size 1
  at test time, as in torchreid).

:class:`VideoClipDataset` loads the chosen frames with PIL, resizes them to ``size = (H, W)`` (bilinear), scales to
``[0, 1]`` and normalises with ImageNet's mean and std, returning ``(clip float[T, 3, H, W], pid, camid)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ...exceptions import DataFormatError, InvalidParameterError
from ...models import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["SAMPLING_POLICIES", "VideoClipDataset", "random_erase", "sample_frames"]

SAMPLING_POLICIES = ("random", "restricted_random", "evenly", "all")


def _randint(high: int, size: int, generator: torch.Generator | None) -> list[int]:
    return torch.randint(high, (size,), generator=generator).tolist()


def sample_frames(
    num_frames: int, seq_len: int, policy: str = "restricted_random", generator: torch.Generator | None = None
) -> list[int]:
    """Indices of the frames of one clip (see the module docstring for the four policies).

    Args:
        num_frames: Frames in the tracklet (``n >= 1``).
        seq_len: Frames per clip (``T >= 1``; ignored by ``"all"``).
        policy: ``"random"``, ``"restricted_random"``, ``"evenly"`` or ``"all"``.
        generator: Random source of the random policies (``None``: torch's global RNG, which DataLoader seeds
            per worker).

    Returns:
        ``T`` (``n`` for ``"all"``) non-decreasing frame indices in ``[0, n)``.

    Example:
        >>> sample_frames(20, 8, "evenly")
        [0, 2, 4, 6, 8, 10, 12, 14]
        >>> sample_frames(3, 5, "evenly")
        [0, 1, 2, 2, 2]
        >>> sample_frames(3, 6, "restricted_random")
        [0, 0, 1, 1, 2, 2]
    """
    for arg, value in (("num_frames", num_frames), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidParameterError(f"sample_frames: {arg} must be an integer >= 1; got {value!r}")
    n, t = int(num_frames), int(seq_len)
    if policy == "all":
        return list(range(n))
    if policy == "evenly":
        if n >= t:
            usable = n - n % t
            return list(range(0, usable, usable // t))
        return list(range(n)) + [n - 1] * (t - n)
    if policy == "random":
        if n >= t:
            return sorted(torch.randperm(n, generator=generator)[:t].tolist())
        return sorted(_randint(n, t, generator))
    if policy == "restricted_random":
        bounds = [k * n // t for k in range(t + 1)]
        if n < t:
            return bounds[:t]
        offsets = torch.rand(t, generator=generator).tolist()
        return [lo + min(int(u * (hi - lo)), hi - lo - 1) for lo, hi, u in zip(bounds[:-1], bounds[1:], offsets)]
    raise InvalidParameterError(f"sample_frames: policy must be one of {', '.join(SAMPLING_POLICIES)}; got {policy!r}")


def random_erase(
    image: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    area: tuple[float, float] = (0.02, 0.4),
    aspect: float = 0.3,
    value: float = 0.0,
    attempts: int = 100,
) -> torch.Tensor:
    """Random erasing (Zhong et al., AAAI 2020): one rectangle of ``image[..., H, W]`` set to ``value``, in place.

    The rectangle's area is a uniform fraction in ``area`` of the image and its aspect ratio ``r`` is log-uniform in
    ``[aspect, 1 / aspect]`` (height ``sqrt(A r)``, width ``sqrt(A / r)``); draws that do not fit are retried up to
    ``attempts`` times (then nothing is erased). ``value = 0`` in normalised space is the ImageNet mean colour
    (reconstructed: torchreid fills the ImageNet mean too; TransReID fills random values).
    """
    h, w = image.shape[-2:]
    for _ in range(attempts):
        u = torch.rand(3, generator=generator).tolist()
        target = (area[0] + (area[1] - area[0]) * u[0]) * h * w
        ratio = float(np.exp(np.log(aspect) + (np.log(1 / aspect) - np.log(aspect)) * u[1]))
        eh, ew = round((target * ratio) ** 0.5), round((target / ratio) ** 0.5)
        if 0 < eh < h and 0 < ew < w:
            top = int(torch.randint(h - eh + 1, (1,), generator=generator))
            left = int(torch.randint(w - ew + 1, (1,), generator=generator))
            image[..., top : top + eh, left : left + ew] = value
            return image
    return image


class VideoClipDataset(Dataset):
    """Clips of ``seq_len`` frames from tracklets: ``(clip float[T, 3, H, W], pid, camid)``.

    Args:
        tracklets: Sequence of objects with ``img_paths``, ``pid`` and ``camid``
            (:class:`pickwise.tasks.reid.datasets.Tracklet`).
        seq_len: Frames per clip.
        policy: Frame sampling policy of :func:`sample_frames`.
        transform: ``None`` (no augmentation), ``"train"`` (horizontal flip with probability ``hflip_p`` default
            0.5 and random erasing with probability ``erasing_p`` default 0.5), ``"test"`` (none), or a callable
            applied to the normalised clip ``float[T, 3, H, W]`` after the built-in augmentations.
        size: Output frame size ``(H, W)`` (256x128 is the usual re-ID input).
        hflip_p: Probability of flipping the whole clip horizontally (one draw per clip: a tracklet keeps one walking
            direction). ``None``: 0.5 with ``transform="train"``, else 0.
        erasing_p: Probability of random erasing, drawn per frame independently as torchreid's per-frame
            transforms do (reconstructed: clip-consistent erasing is another common choice). ``None``: 0.5 with
            ``transform="train"``, else 0.
        generator: Random source for sampling and augmentation (``None``: torch's global RNG, which DataLoader
            seeds differently in every worker; a generator given here is copied into each worker, so workers would
            repeat each other's draws: keep ``None`` with ``num_workers > 0``).

    Example:
        >>> import tempfile, os
        >>> from PIL import Image
        >>> from pickwise.tasks.reid.datasets import Tracklet
        >>> folder = tempfile.mkdtemp()
        >>> paths = [os.path.join(folder, f"{i}.jpg") for i in range(3)]
        >>> for p in paths:
        ...     Image.new("RGB", (16, 32), (200, 30, 30)).save(p)
        >>> ds = VideoClipDataset([Tracklet(tuple(paths), pid=0, camid=1)], 4, "evenly", None, size=(64, 32))
        >>> clip, pid, camid = ds[0]
        >>> tuple(clip.shape), pid, camid
        ((4, 3, 64, 32), 0, 1)
    """

    def __init__(
        self,
        tracklets: Sequence[Any],
        seq_len: int,
        policy: str = "restricted_random",
        transform: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
        size: tuple[int, int] = (256, 128),
        *,
        hflip_p: float | None = None,
        erasing_p: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if policy not in SAMPLING_POLICIES:
            raise InvalidParameterError(
                f"VideoClipDataset: policy must be one of {', '.join(SAMPLING_POLICIES)}; got {policy!r}"
            )
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise InvalidParameterError(f"VideoClipDataset: seq_len must be an integer >= 1; got {seq_len!r}")
        if len(size) != 2 or any(int(s) < 1 for s in size):
            raise InvalidParameterError(f"VideoClipDataset: size must be (H, W) with positive sides; got {size!r}")
        if transform is not None and not callable(transform) and transform not in ("train", "test"):
            raise InvalidParameterError(
                f"VideoClipDataset: transform must be None, 'train', 'test' or a callable; got {transform!r}"
            )
        train = transform == "train"
        self.tracklets = list(tracklets)
        self.seq_len, self.policy, self.size = seq_len, policy, (int(size[0]), int(size[1]))
        self.hflip_p = (0.5 if train else 0.0) if hflip_p is None else float(hflip_p)
        self.erasing_p = (0.5 if train else 0.0) if erasing_p is None else float(erasing_p)
        self.transform = transform if callable(transform) else None
        self.generator = generator
        self._mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)

    @property
    def pids(self) -> list[int]:
        """Identity of every tracklet (for identity samplers)."""
        return [int(t.pid) for t in self.tracklets]

    @property
    def camids(self) -> list[int]:
        """Camera of every tracklet."""
        return [int(t.camid) for t in self.tracklets]

    def __len__(self) -> int:
        return len(self.tracklets)

    def _load(self, path: str) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(path) as src:
                img = src.convert("RGB").resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
                return np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError) as err:
            raise DataFormatError(f"VideoClipDataset: cannot read frame {path} ({err})") from None

    def load_frames(self, paths: Sequence[str]) -> torch.Tensor:
        """Frames ``paths`` as a normalised ``float[T, 3, H, W]`` tensor (no augmentation)."""
        frames = np.stack([self._load(p) for p in paths])
        clip = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)
        return (clip - self._mean) / self._std

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        track = self.tracklets[index]
        idx = sample_frames(len(track.img_paths), self.seq_len, self.policy, self.generator)
        clip = self.load_frames([track.img_paths[i] for i in idx])
        if self.hflip_p > 0 and float(torch.rand(1, generator=self.generator)) < self.hflip_p:
            clip = clip.flip(-1)
        if self.erasing_p > 0:
            for frame in clip:
                if float(torch.rand(1, generator=self.generator)) < self.erasing_p:
                    random_erase(frame, self.generator)
        if self.transform is not None:
            clip = self.transform(clip)
        return clip, int(track.pid), int(track.camid)
