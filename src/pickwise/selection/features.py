"""Candidate-model features: batched extraction through ``forward_features``/``forward_head`` with a disk cache.

Candidates can be registered pickwise models (``"mobilenet_v2"``, real ImageNet weights with ``pretrained=True``),
any ``torch.nn.Module`` (pickwise/timm-style modules are pooled with ``forward_head(..., pre_logits=True)``; other
modules use their output), ONNX files (``"path/model.onnx"``, needs onnxruntime; the first output is the feature)
and, when installed, ``"timm:NAME"`` and ``"torchvision:NAME"`` models with their pretrained weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import InvalidParameterError

__all__ = ["extract_features", "load_candidate"]


def load_candidate(spec: str | nn.Module, *, pretrained: bool = False) -> tuple[Any, str]:
    """Resolve a candidate spec into a callable model and a display name."""
    if isinstance(spec, nn.Module):
        return spec.eval(), type(spec).__name__
    if not isinstance(spec, str) or not spec:
        raise InvalidParameterError(f"candidate model must be a name, a path or an nn.Module; got {spec!r}.")
    if spec.endswith(".onnx"):
        try:
            import onnxruntime as ort
        except ImportError as err:  # pragma: no cover - optional dependency
            raise ImportError("ONNX candidates need onnxruntime: pip install onnxruntime") from err
        return ort.InferenceSession(spec, providers=["CPUExecutionProvider"]), Path(spec).stem
    if spec.startswith("timm:"):  # pragma: no cover - optional dependency
        import timm

        return timm.create_model(spec[5:], pretrained=True, num_classes=0).eval(), spec
    if spec.startswith("torchvision:"):  # pragma: no cover - optional dependency
        import torchvision

        model = torchvision.models.get_model(spec[12:], weights="DEFAULT")
        for attr in ("fc", "classifier", "heads", "head"):
            if hasattr(model, attr):
                setattr(model, attr, nn.Identity())
                break
        return model.eval(), spec
    from ..models import create_model

    return create_model(spec, pretrained=pretrained).eval(), spec


def _in_chans(model: Any) -> int | None:
    if isinstance(model, nn.Module):
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                return int(m.in_channels)
    return None


def _preprocess_spec(model: Any, dataset: Any, pretrained: bool, image_size: int | None) -> dict[str, Any]:
    cfg = getattr(model, "pretrained_cfg", None)
    use_cfg = pretrained and cfg is not None and getattr(cfg, "mean", None) is not None
    mean = list(cfg.mean) if use_cfg else list(dataset.info.mean)
    std = list(cfg.std) if use_cfg else list(dataset.info.std)
    size = image_size or (int(cfg.input_size[-1]) if use_cfg and getattr(cfg, "input_size", None) else None)
    return {
        "mean": mean,
        "std": std,
        "image_size": size,
        "in_chans": _in_chans(model),
        "source": "model" if use_cfg else "dataset",
    }


def _prepare(images: torch.Tensor, spec: dict[str, Any]) -> torch.Tensor:
    x = images.to(torch.float32) / 255.0
    want = spec["in_chans"]
    if want is not None and x.shape[1] != want:
        x = x.mean(dim=1, keepdim=True).expand(-1, want, -1, -1) if want != 1 else x.mean(dim=1, keepdim=True)
    if spec["image_size"] and x.shape[-1] != spec["image_size"]:
        x = F.interpolate(x, size=(spec["image_size"], spec["image_size"]), mode="bilinear", align_corners=False)
    mean, std = spec["mean"], spec["std"]
    if len(mean) != x.shape[1]:
        mean, std = [float(np.mean(mean))] * x.shape[1], [float(np.mean(std))] * x.shape[1]
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def _forward(model: Any, x: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "run") and hasattr(model, "get_inputs"):  # onnxruntime session
        out = model.run(None, {model.get_inputs()[0].name: x.numpy()})[0]
        return torch.from_numpy(np.asarray(out)).flatten(1)
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        return model.forward_head(model.forward_features(x), pre_logits=True).flatten(1)
    return model(x).flatten(1)


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
) -> tuple[np.ndarray, np.ndarray]:
    """Extract penultimate features of ``model`` on every sample of ``dataset``.

    Images (uint8 ``dataset.images``) are scaled to [0, 1], converted to the model's input channels, resized to the
    weights' input size (``pretrained=True``) or ``image_size``, and normalized with the weights' mean/std (or the
    dataset's when the model has no pretrained config). With ``cache_dir`` the result is stored as safetensors with
    the model/dataset/split/preprocessing metadata, keyed by a hash of that metadata.

    Args:
        model: Registered model name, ONNX path, ``timm:NAME``/``torchvision:NAME``, or an ``nn.Module``.
        dataset: A pickwise dataset (``images``, ``targets``, ``info``, ``split``).
        pretrained: Load the registered model's pretrained weights.
        batch_size: Images per forward pass.
        device: Torch device for ``nn.Module`` candidates.
        image_size: Override of the square input size.
        cache_dir: Feature cache directory (``None``: no cache).
        progress: Show a tqdm progress bar.

    Returns:
        ``(features, targets)``: float32 ``(N, D)`` and int64 ``(N,)``.
    """
    from tqdm.auto import tqdm

    net, name = load_candidate(model, pretrained=pretrained)
    spec = _preprocess_spec(net, dataset, pretrained, image_size)
    meta = {
        "model": name if isinstance(model, str) else f"module:{name}",
        "pretrained": bool(pretrained),
        "dataset": getattr(dataset.info, "name", "dataset"),
        "split": str(getattr(dataset, "split", "")),
        "num_samples": len(dataset),
        "preprocessing": spec,
    }
    path = None
    if cache_dir is not None and isinstance(model, str):
        key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
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
    with torch.inference_mode():
        for start in tqdm(range(0, images.shape[0], batch_size), disable=not progress, desc=f"features {name}"):
            x = _prepare(images[start : start + batch_size], spec)
            if isinstance(net, nn.Module):
                x = x.to(device)
            chunks.append(_forward(net, x).float().cpu())
    feats = torch.cat(chunks).numpy()
    targets = dataset.targets.numpy().astype(np.int64)
    if path is not None:
        from safetensors.numpy import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(
            {"features": feats, "targets": targets}, str(path), metadata={"pickwise": json.dumps(meta, sort_keys=True)}
        )
    return feats, targets
