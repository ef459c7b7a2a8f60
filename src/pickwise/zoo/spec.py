"""What the default zoo contains."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["DEFAULT_ZOO", "QUICK_ZOO", "ZooEntry"]


@dataclass(frozen=True)
class ZooEntry:
    """One candidate model.

    Attributes:
        name: Unique name in the zoo.
        model: Registered architecture.
        norm: Normalization layer name.
        data: Source dataset it is trained on (None: not trained here).
        kwargs: Extra model arguments (e.g. ``{"width": 8}``).
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


DEFAULT_ZOO: tuple[ZooEntry, ...] = (
    ZooEntry("resnet20-bn-fashion", "resnet20", "bn", "fashion-mnist", train_subset=6000),
    ZooEntry("resnet8-bn-fashion", "resnet8", "bn", "fashion-mnist", train_subset=6000),
    ZooEntry("resnet20w8-gn-fashion", "resnet20", "gn", "fashion-mnist", {"width": 8}, train_subset=6000),
    ZooEntry("resnet20-bn-mnist", "resnet20", "bn", "mnist-5k", epochs=2),
    ZooEntry("resnet32-in-mnist", "resnet32", "in", "mnist-5k", epochs=2),
    ZooEntry("resnet20-bn-textures", "resnet20", "bn", "textures", epochs=2),
    ZooEntry("resnet20-ln-digits", "resnet20", "ln", "digits", epochs=3, batch_size=32),
    ZooEntry("resnet20-untrained", "resnet20", "bn", None, untrained=True),
    ZooEntry("mobilenet_v2-imagenet", "mobilenet_v2", "bn", None, pretrained=True),
    ZooEntry("craft_vgg16_bn-text", "craft_vgg16_bn", "bn", None, pretrained=True),
)

# entries too slow for the quick zoo (the demo's 5-minute budget): CRAFT's VGG16-BN costs ~30x a CIFAR ResNet-20
SLOW_ENTRIES = frozenset({"craft_vgg16_bn-text"})

# the same candidates trained on at most 1,200 images for one epoch (digits has 1,438 training images)
QUICK_ZOO: tuple[ZooEntry, ...] = tuple(
    replace(e, epochs=1, train_subset=min(e.train_subset or 1200, 1200)) if e.data else e
    for e in DEFAULT_ZOO
    if e.name not in SLOW_ENTRIES
)
