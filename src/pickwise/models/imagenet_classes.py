"""The 1,000 ImageNet-1k (ILSVRC-2012) class names, in the output order of ImageNet classifiers.

The names and their order are torchvision's ``categories`` list (``_IMAGENET_CATEGORIES``), shipped as the package
data file ``imagenet_classes.txt`` (one name per line). Index 0 is ``"tench"``, 281 ``"tabby"``, 285
``"Egyptian cat"``, 967 ``"espresso"`` and 999 ``"toilet tissue"``.

Dataset: O. Russakovsky et al., "ImageNet Large Scale Visual Recognition Challenge", IJCV 2015,
https://arxiv.org/abs/1409.0575
"""

from __future__ import annotations

from importlib import resources

__all__ = ["IMAGENET_CLASSES"]


def _load() -> tuple[str, ...]:
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line for line in text.splitlines() if line)
    if len(names) != 1000:  # pragma: no cover - guards a damaged install
        raise RuntimeError(f"imagenet_classes.txt must hold 1000 names; found {len(names)}")
    return names


#: ImageNet-1k class names; ``IMAGENET_CLASSES[i]`` is the name of logit ``i``.
IMAGENET_CLASSES: tuple[str, ...] = _load()
