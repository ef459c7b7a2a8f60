"""Candidate-model features: batched extraction through ``forward_features``/``forward_head`` with a disk cache.

Candidates can be registered pickwise models (``"mobilenet_v2"``, real ImageNet weights with ``pretrained=True``),
zoo entries (``"zoo:NAME"``, see :mod:`pickwise.zoo`), finished pickwise runs (``"ckpt:RUN_DIR"`` with
``config.yaml`` + ``model.safetensors``), any ``torch.nn.Module`` (pickwise/timm-style modules are pooled with
``forward_head(..., pre_logits=True)``; other modules use their output), ONNX files (``"path/model.onnx"``, needs
onnxruntime; the first output is the feature) and, when installed, ``"timm:NAME"`` and ``"torchvision:NAME"`` models
with their pretrained weights.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import DataFormatError, DataNotFoundError, InvalidParameterError
from ..utils.io import sha256_file, strict_json_dumps

__all__ = [
    "CandidateInput",
    "extract_features",
    "load_candidate",
    "parse_candidate_spec",
    "preprocess_spec",
    "resolve_candidate",
]


# ImageNet-pretrained candidates see tiny target images (8-32 px) upsampled to at least this size
PRETRAINED_MIN_SIZE = 64


@dataclass
class Candidate:
    """A resolved candidate model.

    Attributes:
        model: The callable model (``nn.Module`` in eval mode, or an onnxruntime session).
        name: Display name (the spec string for strings).
        pretrained: Whether its normalization/input size come from its pretrained weights' config.
        kind: ``"registry"``, ``"zoo"``, ``"ckpt"``, ``"onnx"``, ``"timm"``, ``"torchvision"`` or ``"module"``.
        record: Provenance (zoo ``entry.json``, run ``results.json``), included in the feature-cache metadata.
    """

    model: Any
    name: str
    pretrained: bool = False
    kind: str = "registry"
    record: dict[str, Any] = field(default_factory=dict)


_PRETRAINED_SUFFIXES = {":pretrained": True, ":random": False}
_PREFIXES = ("zoo:", "ckpt:", "timm:", "torchvision:")


def parse_candidate_spec(spec: str, *, pretrained: bool = False) -> tuple[str, bool]:
    """Split a per-candidate weights suffix off a registered-model spec.

    ``"mobilenet_v2:pretrained"`` -> ``("mobilenet_v2", True)``; ``"resnet20:random"`` -> ``("resnet20", False)``;
    a spec without a suffix gets the global ``pretrained`` default. The suffix only applies to registered names:
    zoo entries, runs, ONNX files and timm/torchvision models carry their own weights.

    Raises:
        InvalidParameterError: A suffix on a non-registered spec.
    """
    for suffix, value in _PRETRAINED_SUFFIXES.items():
        if spec.endswith(suffix):
            base = spec[: -len(suffix)]
            if not base or base.startswith(_PREFIXES) or base.endswith(".onnx"):
                raise InvalidParameterError(
                    f"candidate {spec!r}: the {suffix} suffix applies to registered model names only "
                    "(e.g. mobilenet_v2:pretrained, resnet20:random); zoo:, ckpt:, .onnx, timm: and torchvision: "
                    "candidates carry their own weights."
                )
            return base, value
    return spec, bool(pretrained)


def _files_sha256(paths: list[Path]) -> str:
    """sha256 over the contents of ``paths`` (each file's own digest, in order)."""
    if len(paths) == 1:
        return sha256_file(paths[0])
    h = hashlib.sha256()
    for p in paths:
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def _load_onnx(spec: str) -> Candidate:
    try:
        import onnxruntime as ort
    except ImportError as err:  # pragma: no cover - optional dependency
        raise ImportError("ONNX candidates need onnxruntime: pip install onnxruntime") from err
    path = Path(spec).expanduser()
    if not path.is_file():
        raise DataNotFoundError(f"candidate: ONNX file {spec} not found.")
    # the cache key follows the content: the model file and any external-data files stored next to it
    files = [path, *sorted(p for p in path.parent.glob(f"{path.name}.*") if p.is_file())]
    digest = _files_sha256(files)
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4  # errors are reported below, in one line
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types (Fail, InvalidGraph, InvalidProtobuf)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataFormatError(
            f"candidate: {spec} is not a loadable ONNX model ({type(err).__name__}: {first[:200]}); "
            "export it again with torch.onnx.export or check the file."
        ) from None
    record = {"path": str(path.resolve()), "sha256": digest}
    return Candidate(session, path.stem, False, "onnx", record)


def resolve_candidate(
    spec: str | nn.Module,
    *,
    pretrained: bool = False,
    zoo_root: str | os.PathLike[str] | None = None,
    seed: int | None = None,
) -> Candidate:
    """Resolve a candidate spec into a :class:`Candidate`.

    Args:
        spec: ``nn.Module``, registered name (optionally ``NAME:pretrained`` / ``NAME:random``), ``zoo:NAME``,
            ``ckpt:RUN_DIR``, ``*.onnx``, ``timm:NAME`` or ``torchvision:NAME``.
        pretrained: Default for registered names without a suffix: load their pretrained weights.
        zoo_root: Zoo folder for ``zoo:NAME`` (default: :func:`pickwise.zoo.default_zoo_dir`).
        seed: Seed of a randomly initialised registered model (``None``: the global torch RNG). The caller's RNG
            state is left untouched.

    Raises:
        InvalidParameterError: For an empty or non-string spec.
        DataNotFoundError: For an unknown zoo entry or a missing run folder or ONNX file.
        DataFormatError: For an ONNX file that onnxruntime cannot load.
    """
    if isinstance(spec, nn.Module):
        return Candidate(spec.eval(), type(spec).__name__, pretrained, "module")
    if not isinstance(spec, str) or not spec:
        raise InvalidParameterError(f"candidate model must be a name, a path or an nn.Module; got {spec!r}.")
    if spec.endswith(tuple(_PRETRAINED_SUFFIXES)):
        parse_candidate_spec(spec)  # a weights suffix on a zoo:/ckpt:/.onnx/timm: spec is an error
    if spec.startswith("zoo:"):
        from ..zoo import default_zoo_dir, load_zoo_model

        model, record = load_zoo_model(zoo_root if zoo_root is not None else default_zoo_dir(), spec[4:])
        return Candidate(model, spec, bool(record.get("pretrained")), "zoo", record)
    if spec.startswith("ckpt:"):
        from ..analysis.runs import load_run

        run_dir = Path(spec[5:]).expanduser()
        if not (run_dir / "config.yaml").is_file() or not (run_dir / "model.safetensors").is_file():
            raise DataNotFoundError(
                f"candidate: {spec} must be a finished pickwise run folder (config.yaml + model.safetensors); "
                f"not found in {run_dir}"
            )
        model, cfg, results = load_run(run_dir)
        record = {
            "run_dir": str(run_dir.resolve()),
            "model": cfg.model.name,
            "norm": cfg.model.norm,
            "source_data": cfg.data.name,
            "sha256": sha256_file(run_dir / "model.safetensors"),
            "config_sha256": sha256_file(run_dir / "config.yaml"),
            "source_test_acc": (results.get("metrics") or {}).get("acc"),
        }
        return Candidate(model, spec, False, "ckpt", record)
    if spec.endswith(".onnx"):
        return _load_onnx(spec)
    if spec.startswith("timm:"):  # pragma: no cover - optional dependency
        import timm

        return Candidate(timm.create_model(spec[5:], pretrained=True, num_classes=0).eval(), spec, True, "timm")
    if spec.startswith("torchvision:"):  # pragma: no cover - optional dependency
        import torchvision

        model = torchvision.models.get_model(spec[12:], weights="DEFAULT")
        for attr in ("fc", "classifier", "heads", "head"):
            if hasattr(model, attr):
                setattr(model, attr, nn.Identity())
                break
        return Candidate(model.eval(), spec, False, "torchvision")
    from ..models import create_model

    name, use_pretrained = parse_candidate_spec(spec, pretrained=pretrained)
    if use_pretrained or seed is None:
        return Candidate(create_model(name, pretrained=use_pretrained).eval(), spec, use_pretrained, "registry")
    with torch.random.fork_rng(devices=[]):  # a seeded initialisation that leaves the caller's RNG alone
        torch.manual_seed(seed)
        model = create_model(name, pretrained=False).eval()
    return Candidate(model, spec, False, "registry", {"init_seed": int(seed)})


def load_candidate(
    spec: str | nn.Module,
    *,
    pretrained: bool = False,
    zoo_root: str | os.PathLike[str] | None = None,
    seed: int | None = None,
) -> tuple[Any, str]:
    """Resolve a candidate spec into a callable model and a display name (see :func:`resolve_candidate`)."""
    cand = resolve_candidate(spec, pretrained=pretrained, zoo_root=zoo_root, seed=seed)
    return cand.model, cand.name


def _in_chans(model: Any) -> int | None:
    if isinstance(model, nn.Module):
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                return int(m.in_channels)
    return None


def preprocess_spec(candidate: Candidate, dataset: Any, *, image_size: int | None = None) -> dict[str, Any]:
    """How ``dataset``'s images are turned into ``candidate``'s input (recorded in the feature-cache metadata).

    Channels: gray targets are repeated to a 3-channel candidate, colour targets are averaged for a 1-channel one.
    Size: ``image_size`` when given; else pretrained (ImageNet) candidates get tiny images upsampled (bilinear) to
    ``max(64, H)`` px, capped at the weights' input size; other candidates see the native size.
    Normalization: the weights' mean/std for pretrained candidates, else the dataset's.
    """
    model = candidate.model
    cfg: Any = getattr(model, "pretrained_cfg", None)
    use_cfg = candidate.pretrained and cfg is not None and getattr(cfg, "mean", None) is not None
    mean = list(cfg.mean) if use_cfg else list(dataset.info.mean)
    std = list(cfg.std) if use_cfg else list(dataset.info.std)
    native = int(dataset.images.shape[-1]) if getattr(dataset, "images", None) is not None else None
    size = image_size
    if size is None and use_cfg and native is not None:
        full = int(cfg.input_size[-1]) if getattr(cfg, "input_size", None) else native
        size = min(full, max(PRETRAINED_MIN_SIZE, native))
    if size is not None and size == native:
        size = None
    data_chans = int(dataset.info.in_chans)
    want = _in_chans(model)
    if want is None or want == data_chans:
        channels = "as-is"
    elif data_chans == 1:
        channels = f"repeat 1->{want}"
    else:
        channels = f"mean {data_chans}->{want}"
    return {
        "mean": mean,
        "std": std,
        "image_size": size,
        "native_size": native,
        "in_chans": want,
        "data_chans": data_chans,
        "channels": channels,
        "resize": "bilinear" if size else "none",
        "source": "model" if use_cfg else "dataset",
    }


def _prepare01(x: torch.Tensor, spec: dict[str, Any]) -> torch.Tensor:
    """Images in [0, 1] -> the candidate's normalized input."""
    want = spec["in_chans"]
    if want is not None and x.shape[1] != want:
        x = x.mean(dim=1, keepdim=True).expand(-1, want, -1, -1) if want != 1 else x.mean(dim=1, keepdim=True)
    if spec["image_size"] and x.shape[-1] != spec["image_size"]:
        x = F.interpolate(x, size=(spec["image_size"], spec["image_size"]), mode="bilinear", align_corners=False)
    mean, std = spec["mean"], spec["std"]
    if len(mean) != x.shape[1]:
        mean, std = [float(np.mean(mean))] * x.shape[1], [float(np.mean(std))] * x.shape[1]
    return (x - torch.tensor(mean, device=x.device).view(1, -1, 1, 1)) / torch.tensor(std, device=x.device).view(
        1, -1, 1, 1
    )


def _prepare(images: torch.Tensor, spec: dict[str, Any]) -> torch.Tensor:
    return _prepare01(images.to(torch.float32) / 255.0, spec)


class CandidateInput(nn.Module):
    """Wrap ``model`` so that it takes a pickwise dataset's normalized images and applies ``spec`` itself.

    Fine-tuning through this wrapper sees exactly the preprocessing that feature extraction used (channel repeat,
    resize, the weights' normalization).

    Args:
        model: The candidate network.
        spec: From :func:`preprocess_spec`.
        data_mean: The dataset's per-channel mean (``dataset.info.mean``).
        data_std: The dataset's per-channel std.
    """

    data_mean: torch.Tensor
    data_std: torch.Tensor

    def __init__(self, model: nn.Module, spec: dict[str, Any], data_mean: Any, data_std: Any) -> None:
        super().__init__()
        self.model = model
        self.spec = dict(spec)
        self.register_buffer("data_mean", torch.tensor(list(data_mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("data_std", torch.tensor(list(data_std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the dataset normalization, then apply the candidate's preprocessing and the model."""
        return self.model(_prepare01(x * self.data_std + self.data_mean, self.spec))


def _forward(model: Any, x: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "run") and hasattr(model, "get_inputs"):  # onnxruntime session
        out = model.run(None, {model.get_inputs()[0].name: x.numpy()})[0]
        return torch.from_numpy(np.asarray(out)).flatten(1)
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        return model.forward_head(model.forward_features(x), pre_logits=True).flatten(1)
    return model(x).flatten(1)


def _samples_digest(dataset: Any) -> str | None:
    indices = getattr(dataset, "source_indices", None)
    if indices is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(np.asarray(indices, dtype=np.int64)).tobytes()).hexdigest()[:16]


def extract_features(
    model: str | nn.Module,
    dataset: Any,
    *,
    pretrained: bool = False,
    batch_size: int = 256,
    device: str = "cpu",
    image_size: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    zoo_root: str | os.PathLike[str] | None = None,
    candidate: Candidate | None = None,
    seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Extract penultimate features of ``model`` on every sample of ``dataset``.

    Images (uint8 ``dataset.images``) are scaled to [0, 1] and prepared by :func:`preprocess_spec` (gray images
    repeated for 3-channel candidates, tiny images upsampled for ImageNet-pretrained ones, the weights' or the
    dataset's mean/std). With ``cache_dir`` the result is stored as safetensors with
    the model/dataset/split/preprocessing metadata, keyed by a hash of that metadata. The key includes the
    content (sha256) of the candidate's weight files for zoo, ``ckpt:`` and ONNX candidates, so a replaced file is
    never answered from a stale cache, and the initialisation seed of randomly initialised registered models.

    Args:
        model: Registered model name, ``zoo:NAME``, ``ckpt:RUN_DIR``, ONNX path, ``timm:NAME``/``torchvision:NAME``,
            or an ``nn.Module``.
        dataset: A pickwise dataset (``images``, ``targets``, ``info``, ``split``).
        pretrained: Load the registered model's pretrained weights.
        batch_size: Images per forward pass.
        device: Torch device for ``nn.Module`` candidates.
        image_size: Override of the square input size.
        cache_dir: Feature cache directory (``None``: no cache).
        progress: Show progress (:class:`~pickwise.selection.progress.Progress`: a bar on a terminal, a status
            line every 10 s otherwise).
        zoo_root: Zoo folder for ``zoo:NAME`` candidates.
        candidate: An already resolved candidate for ``model`` (avoids loading it twice).
        seed: Initialisation seed of a randomly initialised registered model (see :func:`resolve_candidate`).

    Returns:
        ``(features, targets)``: float32 ``(N, D)`` and int64 ``(N,)``.
    """
    from .progress import Progress

    cand = candidate or resolve_candidate(model, pretrained=pretrained, zoo_root=zoo_root, seed=seed)
    net, name = cand.model, cand.name
    spec = preprocess_spec(cand, dataset, image_size=image_size)
    meta = {
        "model": name if isinstance(model, str) else f"module:{name}",
        "pretrained": bool(cand.pretrained),
        "weights_sha256": cand.record.get("sha256"),
        "dataset": getattr(dataset.info, "name", "dataset"),
        "split": str(getattr(dataset, "split", "")),
        "num_samples": len(dataset),
        "samples": _samples_digest(dataset),
        "preprocessing": spec,
    }
    for extra in ("config_sha256", "init_seed"):
        if cand.record.get(extra) is not None:
            meta[extra] = cand.record[extra]
    path = None
    random_unseeded = cand.kind == "registry" and not cand.pretrained and "init_seed" not in cand.record
    if cache_dir is not None and isinstance(model, str) and not random_unseeded:
        key = hashlib.sha256(strict_json_dumps(meta, indent=None, sort_keys=True).encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{name}-{meta['dataset']}-{meta['split']}")
        path = Path(cache_dir) / f"{safe}-{key}.safetensors"
        if path.exists():
            from safetensors.numpy import load_file

            data = load_file(str(path))
            return data["features"], data["targets"]
    if isinstance(net, nn.Module):
        net = net.to(device)
    chunks = []
    images = dataset.images
    batches = range(0, images.shape[0], batch_size)
    with torch.inference_mode(), Progress(f"features {name}", len(batches), enabled=progress, unit="batch") as bar:
        for start in batches:
            x = _prepare(images[start : start + batch_size], spec)
            if isinstance(net, nn.Module):
                x = x.to(device)
            chunks.append(_forward(net, x).float().cpu())
            bar.update()
    feats = torch.cat(chunks).numpy()
    targets = dataset.targets.numpy().astype(np.int64)
    if path is not None:
        from safetensors.numpy import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(
            {"features": feats, "targets": targets},
            str(path),
            metadata={"pickwise": strict_json_dumps(meta, indent=None, sort_keys=True)},
        )
    return feats, targets
