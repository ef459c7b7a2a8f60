"""Load ImageNet ViT weights (timm ``.pth``/``.safetensors`` or Google augreg ``.npz``) into a pickwise video ViT.

The user gives the file (nothing is downloaded). Three layouts are read:

- **timm state dict** (``.pth``/``.pt``/``.bin`` through ``torch.load(weights_only=True)``, optionally wrapped in
  ``{"model": ...}``/``{"state_dict": ...}`` with a ``module.`` prefix; or ``.safetensors``): keys
  ``patch_embed.proj.{weight,bias}``, ``cls_token``, ``pos_embed``, ``blocks.N.{norm1, attn.qkv, attn.proj, norm2,
  mlp.fc1, mlp.fc2}.{weight,bias}``, ``norm.{weight,bias}`` (global-pool ViTs without ``norm`` use ``fc_norm``);
  classifier keys (``head``, ``head_dist``, ``fc_norm`` when ``norm`` exists, ``pre_logits``) are ignored.
- **Google augreg / big_vision ``.npz``** (``np.load(allow_pickle=False)``), converted to the timm layout as timm's
  ``_load_weights`` does: ``embedding/kernel`` (HWIO → OIHW), ``cls``, ``Transformer/posembed_input/
  pos_embedding``, ``Transformer/encoderblock_N/{LayerNorm_0, MultiHeadDotProductAttention_1/{query,key,value}
  (kernel (D, heads, d_h) → rows of ``qkv``), MultiHeadDotProductAttention_1/out (kernel (heads, d_h, D)),
  LayerNorm_2, MlpBlock_3/Dense_0, MlpBlock_3/Dense_1}`` (kernels transposed), ``Transformer/encoder_norm``;
  big_vision files (``opt/target/`` prefix) number the sub-layers 0, 0, 1, 0 instead of 1, 3, 2, 3.

Mapping into :class:`~pickwise.models.mstat.MSTAT` (timm names are kept, so most keys land unchanged):

- ``pos_embed`` is resampled bicubically from the checkpoint grid (square, e.g. 14x14, unless ``source_grid``) to the
  model's grid (21x10 for 256x128 at stride 12), as TransReID does;
- the patch kernel is loaded whatever the stride (TransReID loads the stride-16 kernel at stride 12); with the
  MobileNetV2 stem it is not used;
- the divided-attention temporal branch starts as a copy of the spatial one (``temporal_norm`` ← ``norm1``,
  ``temporal_attn`` ← ``attn``; ``temporal_fc`` stays zero), TimeSformer's initialisation, so the loaded model
  computes exactly the image ViT on every frame until training moves ``temporal_fc``;
- ``norm`` (the ViT's final LayerNorm) initialises every stage's output LayerNorm.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..exceptions import CheckpointError
from ._builder import adapt_input_conv
from ._vit import PatchEmbed, resample_pos_embed

__all__ = ["load_vit_weights", "npz_to_timm_state_dict", "read_vit_weights", "vit_to_model_state_dict"]

_IGNORED_PREFIXES = ("head.", "head_dist.", "fc_norm.", "pre_logits.")
_BLOCK_PARAMS = tuple(
    f"{m}.{p}" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2") for p in ("weight", "bias")
)


def npz_to_timm_state_dict(arrays: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Convert a Google ViT ``.npz`` (augreg or big_vision naming) to timm-layout tensors.

    Keys the converter does not know are kept under their original names, so the loader reports them.

    Args:
        arrays: Name → array, e.g. an opened ``np.load(path, allow_pickle=False)``.

    Returns:
        A timm-layout state dict.
    """
    import numpy as np

    w = {k: np.asarray(arrays[k]) for k in arrays}
    prefix = "opt/target/" if "opt/target/embedding/kernel" in w else ""
    mha, ln2, mlp = (0, 1, 0) if prefix else (1, 2, 3)
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        used.add(prefix + key)
        return w[prefix + key]

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    out: dict[str, torch.Tensor] = {}
    simple = {
        "embedding/kernel": ("patch_embed.proj.weight", lambda a: a.transpose(3, 2, 0, 1)),
        "embedding/bias": ("patch_embed.proj.bias", None),
        "cls": ("cls_token", None),
        "Transformer/posembed_input/pos_embedding": ("pos_embed", None),
        "Transformer/encoder_norm/scale": ("norm.weight", None),
        "Transformer/encoder_norm/bias": ("norm.bias", None),
    }
    for src, (dst, fn) in simple.items():
        if prefix + src in w:
            a = take(src)
            out[dst] = t(fn(a) if fn else a)
    blocks = sorted(
        {int(m.group(1)) for k in w if (m := re.match(re.escape(prefix) + r"Transformer/encoderblock_(\d+)/", k))}
    )
    for i in blocks:
        p = f"Transformer/encoderblock_{i}/"
        attn = f"{p}MultiHeadDotProductAttention_{mha}/"
        d = f"blocks.{i}."
        try:
            out[d + "norm1.weight"], out[d + "norm1.bias"] = (
                t(take(p + "LayerNorm_0/scale")),
                t(take(p + "LayerNorm_0/bias")),
            )
            out[d + "norm2.weight"] = t(take(f"{p}LayerNorm_{ln2}/scale"))
            out[d + "norm2.bias"] = t(take(f"{p}LayerNorm_{ln2}/bias"))
            qkv = [take(f"{attn}{n}/kernel") for n in ("query", "key", "value")]
            out[d + "attn.qkv.weight"] = t(np.concatenate([k.reshape(k.shape[0], -1).T for k in qkv]))
            out[d + "attn.qkv.bias"] = t(
                np.concatenate([take(f"{attn}{n}/bias").reshape(-1) for n in ("query", "key", "value")])
            )
            ko = take(f"{attn}out/kernel")
            out[d + "attn.proj.weight"] = t(ko.reshape(-1, ko.shape[-1]).T)
            out[d + "attn.proj.bias"] = t(take(f"{attn}out/bias"))
            for j, name in ((0, "fc1"), (1, "fc2")):
                out[f"{d}mlp.{name}.weight"] = t(take(f"{p}MlpBlock_{mlp}/Dense_{j}/kernel").T)
                out[f"{d}mlp.{name}.bias"] = t(take(f"{p}MlpBlock_{mlp}/Dense_{j}/bias"))
        except KeyError as err:
            raise CheckpointError(f"npz ViT weights: block {i} lacks array {err.args[0]!r}") from err
    for k in w:
        if k not in used and not k.startswith((prefix + "head/", prefix + "pre_logits/")):
            out[k] = t(w[k])
    return out


def read_vit_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ViT weights file into a timm-layout state dict (``.npz`` converted, wrappers and ``module.`` removed).

    Raises:
        CheckpointError: If the file is missing or unreadable, or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"load_vit_weights: no file at {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            import numpy as np

            with np.load(path, allow_pickle=False) as arrays:
                return npz_to_timm_state_dict(arrays)
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as err:  # unpickling / zip / header errors have many types
        raise CheckpointError(f"load_vit_weights: cannot read {path}: {err}") from err
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"load_vit_weights: {path} does not hold a tensor state dict")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def vit_to_model_state_dict(
    vit: Mapping[str, torch.Tensor],
    model: nn.Module,
    *,
    source_grid: Sequence[int] | None = None,
    strict: bool = True,
    where: str = "load_vit_weights",
) -> dict[str, torch.Tensor]:
    """Map a timm-layout ViT state dict onto the parameter names of a pickwise video ViT (:class:`MSTAT`).

    Args:
        vit: timm-layout tensors.
        model: The target model (needs ``blocks``, ``cls_token``, ``pos_embed``, ``pos_grid``, ``stage_norms``).
        source_grid: Token grid of the checkpoint's ``pos_embed`` (``None``: square).
        strict: Reject blocks beyond the model's depth (``False``: drop them, loading the first ``depth`` blocks).
        where: Message prefix.

    Returns:
        Model key → tensor (all with the model's shapes), for ``model.load_state_dict(..., strict=False)``.

    Raises:
        CheckpointError: One line naming the count and first missing, unexpected or mis-shaped key.
    """
    own = model.state_dict()
    if "norm.weight" not in vit and "fc_norm.weight" in vit:  # global-pool ViTs (MAE fine-tunes): fc_norm is last
        vit = {("norm." + k[len("fc_norm.") :] if k.startswith("fc_norm.") else k): v for k, v in vit.items()}
    depth = len(model.blocks)  # type: ignore[arg-type]
    uses_patch = isinstance(getattr(model, "patch_embed", None), PatchEmbed)
    required = ["cls_token", "pos_embed", "norm.weight", "norm.bias"]
    required += [f"blocks.{i}.{p}" for i in range(depth) for p in _BLOCK_PARAMS]
    if uses_patch:
        required += ["patch_embed.proj.weight", "patch_embed.proj.bias"]
    missing = [k for k in required if k not in vit]
    unexpected = []
    for k in vit:
        if k in required or k.startswith(_IGNORED_PREFIXES) or (not uses_patch and k.startswith("patch_embed.")):
            continue
        m = re.match(r"blocks\.(\d+)\.(.+)$", k)
        if m and int(m.group(1)) >= depth and m.group(2) in _BLOCK_PARAMS and not strict:
            continue
        unexpected.append(k)

    out: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []

    def put(dst: str, value: torch.Tensor, src: str) -> None:
        if own[dst].shape != value.shape:
            mismatched.append(f"{src} {tuple(value.shape)} in file vs {tuple(own[dst].shape)} in model")
        else:
            out[dst] = value.to(own[dst].dtype)

    if not missing:
        if uses_patch:
            weight = vit["patch_embed.proj.weight"]
            in_chans = own["patch_embed.proj.weight"].shape[1]
            if weight.ndim == 4 and weight.shape[1] == 3 and in_chans != 3:
                weight = adapt_input_conv(in_chans, weight)
            put("patch_embed.proj.weight", weight, "patch_embed.proj.weight")
            put("patch_embed.proj.bias", vit["patch_embed.proj.bias"], "patch_embed.proj.bias")
        put("cls_token", vit["cls_token"], "cls_token")
        pe = vit["pos_embed"]
        if pe.ndim != 3 or pe.shape[-1] != own["pos_embed"].shape[-1]:
            mismatched.append(f"pos_embed {tuple(pe.shape)} in file vs (1, L, {own['pos_embed'].shape[-1]}) in model")
        else:
            try:
                pe = resample_pos_embed(pe.float(), model.pos_grid, source_grid, model.num_prefix_tokens)  # type: ignore[arg-type]
            except Exception as err:
                raise CheckpointError(
                    f"{where}: cannot resize pos_embed {tuple(vit['pos_embed'].shape)}: {err}"
                ) from err
            put("pos_embed", pe, "pos_embed")
        for i in range(depth):
            for p in _BLOCK_PARAMS:
                put(f"blocks.{i}.{p}", vit[f"blocks.{i}.{p}"], f"blocks.{i}.{p}")
            if f"blocks.{i}.temporal_attn.qkv.weight" in own:
                for p in ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias"):
                    put(f"blocks.{i}.temporal_attn.{p}", vit[f"blocks.{i}.attn.{p}"], f"blocks.{i}.attn.{p}")
                for p in ("weight", "bias"):
                    put(f"blocks.{i}.temporal_norm.{p}", vit[f"blocks.{i}.norm1.{p}"], f"blocks.{i}.norm1.{p}")
        for s in range(len(model.stage_norms)):  # type: ignore[arg-type]
            for p in ("weight", "bias"):
                put(f"stage_norms.{s}.{p}", vit[f"norm.{p}"], f"norm.{p}")

    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (first: {mismatched[0]})")
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
        raise CheckpointError(
            f"{where}: the ViT weights do not fit {type(model).__name__} (depth {depth}, embed_dim "
            f"{own['cls_token'].shape[-1]}): {'; '.join(parts)}. Give an ImageNet ViT of the same width "
            "(ViT-S/16 for mstat_small, ViT-B/16 for mstat_base); strict=False loads the first blocks of a deeper one."
        )
    return out


def load_vit_weights(
    model: nn.Module, path: str | Path, *, source_grid: Sequence[int] | None = None, strict: bool = True
) -> list[str]:
    """Load an ImageNet ViT file into ``model`` in place (see the module docstring for layouts and the mapping).

    Args:
        model: An :class:`~pickwise.models.mstat.MSTAT` (or a model with the same parameter names).
        path: ``.pth``/``.pt``/``.bin`` (timm state dict), ``.safetensors`` or ``.npz`` (Google augreg/big_vision).
        source_grid: The checkpoint's position grid when not square (e.g. ``(21, 10)`` for a TransReID file).
        strict: Reject checkpoint blocks beyond the model's depth.

    Returns:
        The model keys that were loaded (heads, BNNecks, temporal embedding and ``temporal_fc`` keep their init).

    Raises:
        CheckpointError: If the file cannot be read or does not fit (one line: first missing/extra/mis-shaped key).
    """
    state = vit_to_model_state_dict(read_vit_weights(path), model, source_grid=source_grid, strict=strict)
    model.load_state_dict(state, strict=False)
    return sorted(state)
