"""What the default and quick zoos contain, and the accuracy floor every trained entry must reach."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "DEFAULT_ZOO",
    "FLOOR_MARGIN",
    "QUICK_ZOO",
    "RETRY_EPOCHS_FACTOR",
    "RETRY_LR_FACTOR",
    "ZooEntry",
    "accuracy_floor",
    "entry_settings",
]

# a trained entry must reach chance (1 / classes) + FLOOR_MARGIN on its source test split; one retry with
# RETRY_EPOCHS_FACTOR x the epochs at RETRY_LR_FACTOR x the learning rate, then it is dropped with a message
FLOOR_MARGIN = 0.2
RETRY_EPOCHS_FACTOR = 2
RETRY_LR_FACTOR = 0.5


def accuracy_floor(num_classes: int, margin: float = FLOOR_MARGIN) -> float:
    """The source-test accuracy a trained zoo entry must reach: ``1 / num_classes + margin``."""
    return 1.0 / max(1, int(num_classes)) + margin


@dataclass(frozen=True)
class ZooEntry:
    """One candidate model.

    Attributes:
        name: Unique name in the zoo.
        model: Registered architecture.
        norm: Normalization layer name.
        data: Source dataset it is trained on (None: not trained here).
        kwargs: Extra model arguments (e.g. ``{"width": 8}``, ``{"features_only_block": 6}``).
        epochs: Training epochs on the source data.
        train_subset: Source training images (None: all).
        batch_size: Training batch size.
        lr: Peak learning rate.
        pretrained: Use the architecture's shipped weights instead of training (e.g. ImageNet MobileNetV2).
        untrained: Keep the random initialisation (a control that every metric should rank low).
        seed: Seed of the initialisation and training.
    """

    name: str
    model: str
    norm: str = "bn"
    data: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 1
    train_subset: int | None = None
    batch_size: int = 64
    lr: float = 0.05
    pretrained: bool = False
    untrained: bool = False
    seed: int = 0


def entry_settings(entry: ZooEntry) -> dict[str, Any]:
    """Everything that determines an entry's weights; a built entry with other settings is rebuilt."""
    return {
        "model": entry.model,
        "norm": entry.norm,
        "data": entry.data,
        "kwargs": dict(entry.kwargs),
        "epochs": entry.epochs,
        "train_subset": entry.train_subset,
        "batch_size": entry.batch_size,
        "lr": entry.lr,
        "pretrained": entry.pretrained,
        "untrained": entry.untrained,
        "seed": entry.seed,
    }


def _mnv2_block(block: int) -> ZooEntry:
    return ZooEntry(
        f"mobilenet_v2-block{block}-imagenet", "mobilenet_v2", kwargs={"features_only_block": block}, pretrained=True
    )


# Sources: mnist-5k and digits (never a selection target), fashion-mnist and textures (targets too: the selection
# experiment leaves a candidate out of the target it was trained on). Training lengths differ on purpose
# (resnet20-bn-mnist-short vs resnet20-bn-mnist), and intermediate MobileNetV2 blocks are real pretrained candidates.
DEFAULT_ZOO: tuple[ZooEntry, ...] = (
    ZooEntry("resnet20-bn-fashion", "resnet20", "bn", "fashion-mnist", train_subset=6000),
    ZooEntry("resnet8-bn-fashion", "resnet8", "bn", "fashion-mnist", train_subset=6000),
    ZooEntry("resnet20w8-gn-fashion", "resnet20", "gn", "fashion-mnist", {"width": 8}, train_subset=6000),
    ZooEntry("resnet20-bn-mnist", "resnet20", "bn", "mnist-5k", epochs=2),
    ZooEntry("resnet20-bn-mnist-short", "resnet20", "bn", "mnist-5k", train_subset=1000, batch_size=32, seed=1),
    ZooEntry("resnet32-in-mnist", "resnet32", "in", "mnist-5k", epochs=2, lr=0.02),
    ZooEntry("resnet20-bn-textures", "resnet20", "bn", "textures", epochs=2),
    ZooEntry("resnet20-ln-digits", "resnet20", "ln", "digits", epochs=3, batch_size=32),
    ZooEntry("resnet20-untrained", "resnet20", "bn", None, untrained=True),
    ZooEntry("mobilenet_v2-untrained", "mobilenet_v2", "bn", None, untrained=True),
    ZooEntry("mobilenet_v2-imagenet", "mobilenet_v2", "bn", None, pretrained=True),
    _mnv2_block(3),
    _mnv2_block(6),
    _mnv2_block(10),
    _mnv2_block(13),
    ZooEntry("craft_vgg16_bn-text", "craft_vgg16_bn", "bn", None, pretrained=True),
)

# what the quick zoo (the demo's) keeps: the cheap entries, every kind of source once
QUICK_NAMES = (
    "resnet20-bn-fashion",
    "resnet8-bn-fashion",
    "resnet20-bn-mnist",
    "resnet20-bn-textures",
    "resnet20-ln-digits",
    "resnet20-untrained",
    "mobilenet_v2-imagenet",
    "mobilenet_v2-block10-imagenet",
)
QUICK_TRAIN_IMAGES = 1200

# the quick entries trained on at most 1,200 images for one epoch in batches of 32 (~37 steps: with batches of 64
# the 18 steps left BatchNorm's running statistics unsettled and a short run scored at chance on its test split)
QUICK_ZOO: tuple[ZooEntry, ...] = tuple(
    replace(e, epochs=1, batch_size=32, train_subset=min(e.train_subset or QUICK_TRAIN_IMAGES, QUICK_TRAIN_IMAGES))
    if e.data
    else e
    for e in DEFAULT_ZOO
    if e.name in QUICK_NAMES
)
