"""The norm-layer registry: every registered name with its metadata, and which modules convert into what.

This module is the one place that holds the facts about normalization layers that other code used to repeat:

- **names**: :func:`list_norm_layers` (with metadata filters, e.g. ``list_norm_layers(convertible=True)`` for the
  targets of :func:`~pickwise.nn.norm.convert.convert_norm_layers`), :func:`norm_layer_info` for one name;
- **the default**: :data:`DEFAULT_NORM` (``"bn"``);
- **which modules convert**: :func:`is_batch_norm` (the only code that names torch's private ``_BatchNorm``),
  :func:`is_learned_norm`, :func:`is_convertible_norm`;
- **which class a conversion builds**: :func:`conversion_class` (``"sn"`` + a 1-d source → ``SwitchNorm1d``) and
  :func:`sync_class` (``SwitchNorm2d`` → ``SyncSwitchNorm2d``), both read from the registered metadata.

Layers register themselves where they are defined, with :func:`register_norm_layer` and their metadata::

    register_norm_layer(
        "sn", SwitchNorm2d, aliases=("switchnorm",), family="mixture", batch_dependent=True,
        learned_mixture=True, convertible=True, sync="syncsn",
        variants={1: SwitchNorm1d, 3: SwitchNorm3d}, description="Switchable Normalization (IN/LN/BN softmax mix)",
    )

Names are matched case-insensitively with ``_`` and ``-`` removed (``"Switch_Norm"`` → ``"switchnorm"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeAlias, overload

from torch import nn

from ..._registry import Registry, close_matches_hint
from ...exceptions import InvalidParameterError
from .._validation import is_int

__all__ = [
    "DEFAULT_NORM",
    "MIXTURE_LOGIT_NAMES",
    "NORM_FAMILIES",
    "NormLayerInfo",
    "NormLayerType",
    "conversion_class",
    "conversion_target",
    "is_batch_norm",
    "is_convertible_norm",
    "is_learned_norm",
    "list_norm_layers",
    "norm_layer_info",
    "register_norm_layer",
    "sync_class",
    "sync_class_map",
]

#: A norm layer class, or any callable ``f(num_features, **kwargs) -> nn.Module`` such as a ``functools.partial``.
NormLayerType: TypeAlias = Callable[..., nn.Module]

#: The normalization of a model built without an explicit choice (``create_model(..., norm_layer=DEFAULT_NORM)``,
#: the training config's ``model.norm``, the zoo's entries): torch's BatchNorm.
DEFAULT_NORM = "bn"

#: Values of :attr:`NormLayerInfo.family`: which statistics the layer normalizes with.
NORM_FAMILIES = ("batch", "per-sample", "mixture", "population", "other")

#: Parameter names of the static mixture logits: SN/SSN's separate mean and variance logits, EN's ratio logits.
MIXTURE_LOGIT_NAMES = ("mean_weight", "var_weight", "ratio_weight")


@dataclasses.dataclass(frozen=True)
class NormLayerInfo:
    """What the registry knows about one registered norm-layer name.

    Attributes:
        name: The canonical registered name (lowercase, no ``_``/``-``), e.g. ``"sn"``.
        layer: What :func:`~pickwise.nn.norm.factory.create_norm_layer` calls with the channel count.
        aliases: Other names resolving to it (normalized).
        description: One line for listings (``pickwise norms``) and docs.
        family: Which statistics it normalizes with, one of :data:`NORM_FAMILIES`: ``"batch"`` (BN),
            ``"per-sample"`` (GN, LN, IN), ``"mixture"`` (SN, SSN, EN: a learned mix of several), ``"population"``
            (PN: running statistics), ``"other"`` (not declared).
        batch_dependent: Whether, in training, one sample's output depends on the other samples of its batch
            (so small batches hurt and multi-process training wants the Sync variant): BN and SN/SSN/EN with their
            default ``"bn"`` branch; PN only through its BN warm-up and the running statistics it normalizes with.
            ``None`` when the registration did not say.
        learned_mixture: A learned mixture of normalizers (has ``normalizers`` and ``ratios()``; SN, SSN, EN).
        convertible: :func:`~pickwise.nn.norm.convert.convert_norm_layers` can produce it (BatchNorm and learned
            mixtures are converted into it, γ/β and running statistics carried).
        sync: Registered name of the synchronized counterpart that
            :func:`~pickwise.nn.norm.sync.convert_sync_norm` swaps in, or ``None``.
        sync_of: For a synchronized layer, the registered name of its local layer; else ``None``.
        variants: ``{spatial dims: class}``: the class for 1-d ``(N, C, L)``, 2-d ``(N, C, H, W)`` and 3-d inputs
            (``layer`` itself is the 2-d one unless registered otherwise). Conversions pick the class by the
            source layer's dims.
    """

    name: str
    layer: NormLayerType
    aliases: tuple[str, ...] = ()
    description: str = ""
    family: str = "other"
    batch_dependent: bool | None = None
    learned_mixture: bool = False
    convertible: bool = False
    sync: str | None = None
    sync_of: str | None = None
    variants: Mapping[int, NormLayerType] = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    @property
    def synchronized(self) -> bool:
        """Whether this is the synchronized (cross-process) variant of another registered layer."""
        return self.sync_of is not None


def _normalize_name(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


_NORM_LAYERS: Registry[NormLayerInfo] = Registry("norm layer", normalize=_normalize_name)


@overload
def register_norm_layer(
    name: str,
    layer: None = None,
    *,
    aliases: tuple[str, ...] = (),
    description: str = "",
    family: str = "other",
    batch_dependent: bool | None = None,
    learned_mixture: bool = False,
    convertible: bool = False,
    sync: str | None = None,
    sync_of: str | None = None,
    variants: Mapping[int, NormLayerType] | None = None,
) -> Callable[[NormLayerType], NormLayerType]: ...


@overload
def register_norm_layer(
    name: str,
    layer: NormLayerType,
    *,
    aliases: tuple[str, ...] = (),
    description: str = "",
    family: str = "other",
    batch_dependent: bool | None = None,
    learned_mixture: bool = False,
    convertible: bool = False,
    sync: str | None = None,
    sync_of: str | None = None,
    variants: Mapping[int, NormLayerType] | None = None,
) -> NormLayerType: ...


def register_norm_layer(
    name: str,
    layer: NormLayerType | None = None,
    *,
    aliases: tuple[str, ...] = (),
    description: str = "",
    family: str = "other",
    batch_dependent: bool | None = None,
    learned_mixture: bool = False,
    convertible: bool = False,
    sync: str | None = None,
    sync_of: str | None = None,
    variants: Mapping[int, NormLayerType] | None = None,
) -> NormLayerType | Callable[[NormLayerType], NormLayerType]:
    """Register a normalization layer under ``name`` (and ``aliases``), with its metadata (:class:`NormLayerInfo`).

    Use it as a decorator (``@register_norm_layer("sn", aliases=("switchnorm",))``) or call it directly with the
    layer. The layer must accept the channel count as its first positional argument. Registering a name twice
    warns and the later registration wins. Only the name and the layer are required; the metadata default to
    "undeclared" (family ``"other"``, not convertible, no sync counterpart).

    Args:
        name: Name to register; matched lowercase with ``_``/``-`` removed.
        layer: The class or callable to register. If omitted, a decorator is returned.
        aliases: Extra names resolving to the same layer.
        description: One line for listings.
        family: One of :data:`NORM_FAMILIES`.
        batch_dependent: See :attr:`NormLayerInfo.batch_dependent`.
        learned_mixture: See :attr:`NormLayerInfo.learned_mixture`.
        convertible: ``convert_norm_layers`` may build it (it must then accept BatchNorm's constructor arguments
            ``eps``, ``momentum``, ``affine``, ``track_running_stats``, ``device``, ``dtype``).
        sync: Name of its synchronized counterpart (registered before or after this one).
        sync_of: For a synchronized layer, the name of its local layer.
        variants: ``{dims: class}`` for other input ranks; the registered ``layer`` is added as the 2-d one.

    Returns:
        ``layer`` itself when given, else a decorator that registers and returns its argument.

    Raises:
        InvalidParameterError: If ``name`` is not a non-empty string, ``layer`` is not callable, or a metadata
            value has the wrong type.

    Example:
        In the module that defines the layer::

            @register_norm_layer("sn", aliases=("switchnorm", "switchnorm2d"), family="mixture")
            class SwitchNorm2d(nn.Module): ...

        after which ``create_norm_layer("switch_norm", 64)`` builds one.
    """
    where = "register_norm_layer"
    if not isinstance(name, str) or not _normalize_name(name):
        raise InvalidParameterError(f"{where}: name must be a non-empty string; got {name!r}")
    if family not in NORM_FAMILIES:
        raise InvalidParameterError(
            f"{where}: family must be one of {', '.join(repr(f) for f in NORM_FAMILIES)}; got {family!r}"
        )
    if batch_dependent is not None and not isinstance(batch_dependent, bool):
        raise InvalidParameterError(f"{where}: batch_dependent must be True, False or None; got {batch_dependent!r}")
    for key, value in (("sync", sync), ("sync_of", sync_of)):
        if value is not None and (not isinstance(value, str) or not _normalize_name(value)):
            raise InvalidParameterError(f"{where}: {key} must be a registered layer name or None; got {value!r}")
    extra = dict(variants or {})
    for dims, cls in extra.items():
        if not is_int(dims, minimum=1) or not callable(cls):
            raise InvalidParameterError(
                f"{where}: variants must map spatial dims (1, 2, 3) to layer classes; got {dims!r}: {cls!r}"
            )

    def decorator(obj: NormLayerType) -> NormLayerType:
        if not callable(obj):
            raise InvalidParameterError(f"{where}: layer must be a class or callable; got {type(obj).__name__}")
        info = NormLayerInfo(
            name=_normalize_name(name),
            layer=obj,
            aliases=tuple(_normalize_name(a) for a in aliases),
            description=str(description),
            family=family,
            batch_dependent=batch_dependent,
            learned_mixture=bool(learned_mixture),
            convertible=bool(convertible),
            sync=None if sync is None else _normalize_name(sync),
            sync_of=None if sync_of is None else _normalize_name(sync_of),
            variants=MappingProxyType({2: obj, **extra}),
        )
        _NORM_LAYERS.add(name, info, aliases=tuple(aliases))
        return obj

    if layer is None:
        return decorator
    return decorator(layer)


def norm_layer_info(name: str) -> NormLayerInfo:
    """The metadata of a registered name (aliases and spelling variants resolved).

    Raises:
        UnknownNameError: If the name is not registered; the message lists close matches.

    Example:
        >>> info = norm_layer_info("Switch_Norm")
        >>> info.name, info.learned_mixture, info.sync, info.variants[1].__name__
        ('sn', True, 'syncsn', 'SwitchNorm1d')
    """
    return _NORM_LAYERS.get(name)


def _matches(value: Any, wanted: Any) -> bool:
    return wanted is None or value == wanted


def list_norm_layers(
    pattern: str | None = None,
    *,
    family: str | None = None,
    batch_dependent: bool | None = None,
    learned_mixture: bool | None = None,
    convertible: bool | None = None,
    synchronized: bool | None = None,
) -> list[str]:
    """Sorted registered norm-layer names (aliases excluded), filtered by an fnmatch ``pattern`` and metadata.

    Every filter left at ``None`` is not applied; ``batch_dependent=True`` (or ``False``) keeps only the layers
    that declared it.

    Args:
        pattern: fnmatch pattern on the names, e.g. ``"sync*"``.
        family: Keep one :data:`NORM_FAMILIES` value.
        batch_dependent: Keep layers whose training output does (or does not) depend on the batch.
        learned_mixture: Keep (or drop) the learned mixtures.
        convertible: Keep the layers :func:`~pickwise.nn.norm.convert.convert_norm_layers` can (or cannot) build.
        synchronized: Keep (or drop) the Sync variants.

    Example:
        >>> [n for n in list_norm_layers() if n in ("bn", "gn", "in", "ln")]
        ['bn', 'gn', 'in', 'ln']
        >>> list_norm_layers(convertible=True)
        ['en', 'pn', 'sn', 'ssn']
        >>> list_norm_layers(learned_mixture=True, synchronized=False)
        ['en', 'sn', 'ssn']
    """
    names = _NORM_LAYERS.names(pattern)
    if all(f is None for f in (family, batch_dependent, learned_mixture, convertible, synchronized)):
        return names
    out = []
    for name in names:
        info = _NORM_LAYERS.get(name)
        if (
            _matches(info.family, family)
            and _matches(info.batch_dependent, batch_dependent)
            and _matches(info.learned_mixture, learned_mixture)
            and _matches(info.convertible, convertible)
            and _matches(info.synchronized, synchronized)
        ):
            out.append(name)
    return out


def conversion_target(norm: Any, *, where: str = "convert_norm_layers", name: str = "norm") -> NormLayerInfo:
    """The metadata of a :func:`~pickwise.nn.norm.convert.convert_norm_layers` target, or a clear error.

    Callers that take a conversion target (e.g. a fine-tuning function's ``convert_norm``) validate it here, before
    any data are loaded, with their own function and parameter names in the message.

    Args:
        norm: A registered name (or alias) with ``convertible=True``, e.g. ``"sn"``.
        where: The message prefix (the public function that checks).
        name: The parameter name in the message.

    Raises:
        InvalidParameterError: If ``norm`` is not the name of a convertible layer; the message lists them and the
            closest names.

    Example:
        >>> conversion_target("SwitchNorm").name
        'sn'
        >>> conversion_target("xx", where="finetune", name="convert_norm")
        Traceback (most recent call last):
        ...
        pickwise.exceptions.InvalidParameterError: finetune: convert_norm must be one of en, pn, sn, ssn; got 'xx'
    """
    targets = list_norm_layers(convertible=True)
    info = None
    if isinstance(norm, str) and norm in _NORM_LAYERS:
        info = _NORM_LAYERS.get(norm)
    if info is None or not info.convertible:
        hint = close_matches_hint(_normalize_name(norm), targets) if isinstance(norm, str) else ""
        suffix = f" ({hint})" if hint else ""
        why = f" ('{info.name}' is registered, but BatchNorm is not converted into it)" if info is not None else ""
        raise InvalidParameterError(f"{where}: {name} must be one of {', '.join(targets)}; got {norm!r}{why}{suffix}")
    return info


def conversion_class(norm: str, dims: int) -> NormLayerType | None:
    """The class ``convert_norm_layers(model, norm)`` builds for a source layer over ``dims`` spatial dims.

    Returns ``None`` when the target has no such variant (e.g. ``"en"`` for 1-d inputs).

    Example:
        >>> conversion_class("sn", 1).__name__, conversion_class("en", 1)
        ('SwitchNorm1d', None)
    """
    return conversion_target(norm).variants.get(dims)


def sync_class_map() -> dict[type, type]:
    """``{local class: synchronized class}`` for every registered layer with a ``sync`` counterpart.

    A registered layer with ``sync="<name>"`` maps each of its ``variants`` to the same-dims variant of ``<name>``
    (``SwitchNorm1d`` → ``SyncSwitchNorm1d``, ...). Read once per :func:`~pickwise.nn.norm.sync.convert_sync_norm`
    call, so layers registered by users convert too.
    """
    out: dict[type, type] = {}
    for name in _NORM_LAYERS.names():
        info = _NORM_LAYERS.get(name)
        if info.sync is None or info.sync not in _NORM_LAYERS:
            continue
        counterpart = _NORM_LAYERS.get(info.sync).variants
        for dims, local in info.variants.items():
            sync = counterpart.get(dims)
            if isinstance(local, type) and isinstance(sync, type):
                out[local] = sync
    return out


def sync_class(cls: type) -> type | None:
    """The synchronized class :func:`~pickwise.nn.norm.sync.convert_sync_norm` swaps in for layers of ``cls``.

    Exact classes only (a user subclass of ``SwitchNorm2d`` has no counterpart), and ``None`` for classes without
    one (including the Sync classes themselves). See :func:`sync_class_map`.

    Example:
        >>> from pickwise.nn import SwitchNorm1d, SyncSwitchNorm2d
        >>> sync_class(SwitchNorm1d).__name__, sync_class(SyncSwitchNorm2d)
        ('SyncSwitchNorm1d', None)
    """
    return sync_class_map().get(cls)


def is_batch_norm(module: nn.Module) -> bool:
    """True for torch's BatchNorm1d/2d/3d and SyncBatchNorm (and subclasses): the layers that conversions replace.

    The one place in pickwise that names torch's private ``_BatchNorm``; converting, folding, recalibrating and
    counting BatchNorm layers all ask it.

    Example:
        >>> is_batch_norm(nn.BatchNorm1d(3)), is_batch_norm(nn.SyncBatchNorm(3)), is_batch_norm(nn.GroupNorm(1, 3))
        (True, True, False)
    """
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def is_learned_norm(module: nn.Module) -> bool:
    """True for SN/SSN/EN-style layers: they expose ``normalizers`` (two or more names) and ``ratios()``.

    Duck-typed, so the Sync variants and third-party mixtures with the same interface count too.
    """
    normalizers = getattr(module, "normalizers", None)
    return isinstance(normalizers, tuple) and len(normalizers) > 1 and callable(getattr(module, "ratios", None))


def is_convertible_norm(module: nn.Module, *, include_learned: bool = True) -> bool:
    """Whether :func:`~pickwise.nn.norm.convert.convert_norm_layers` replaces ``module``.

    BatchNorm layers (:func:`is_batch_norm`) always; learned mixtures (:func:`is_learned_norm`) when
    ``include_learned`` (SN → SSN keeps γ/β, running statistics and the mixture).
    """
    return is_batch_norm(module) or (include_learned and is_learned_norm(module))
