"""How hard ``reid-synth`` is: an untouched ImageNet MobileNetV2 as a reference, and a contact sheet of examples.

:func:`calibrate_reid_synth` embeds every query and gallery tracklet with the frame-averaged, globally average-pooled
``forward_features`` of ``create_model("mobilenet_v2", pretrained=True)`` (real ImageNet weights, shipped offline,
never trained on re-ID), ranks the gallery by cosine distance and scores it with
:func:`pickwise.metrics.retrieval.evaluate_rank`. The benchmark's nuisance strengths were tuned so that this lands
between 20 % and 70 % rank-1 (measured values in docs/reid_data.md): clearly better than chance, far from solved.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["calibrate_reid_synth", "contact_sheet"]


@torch.no_grad()
def _embed(model: Any, tracklets: list[Any], seq_len: int, size: tuple[int, int], batch: int) -> torch.Tensor:
    from .frames import VideoClipDataset

    ds = VideoClipDataset(tracklets, seq_len, "evenly", None, size=size)
    feats = []
    for start in range(0, len(ds), batch):
        clips = torch.stack([ds[i][0] for i in range(start, min(start + batch, len(ds)))])
        b, t = clips.shape[:2]
        f = model.forward_features(clips.flatten(0, 1)).mean((2, 3))
        feats.append(f.view(b, t, -1).mean(1))
    return torch.cat(feats)


def calibrate_reid_synth(
    root: str | os.PathLike[str] | None = None,
    *,
    seq_len: int = 8,
    size: tuple[int, int] = (128, 64),
    metric: str = "cosine",
    query_in_gallery: bool = False,
    batch: int = 16,
) -> dict[str, Any]:
    """Retrieval scores of frame-averaged ImageNet MobileNetV2 features on the test split of a ``reid-synth`` folder.

    Args:
        root: A ``reid-synth`` (or any MARS-layout) folder; default: the default ``reid-synth`` (generated if needed).
        seq_len: Frames per tracklet, sampled ``"evenly"`` (deterministic).
        size: Input size ``(H, W)`` of the network (frames are resized; the default is reid-synth's own size).
        metric: ``"cosine"`` (1 - cosine similarity) or ``"euclidean"``.
        query_in_gallery: Use MARS's official gallery (queries kept) instead of torchreid's.
        batch: Tracklets per forward pass.

    Returns:
        ``{"rank1", "rank5", "rank10", "mAP", "mINP"}`` in percent, the query/gallery sizes, valid and skipped
        queries, the settings and the seconds taken.
    """
    from ...metrics.retrieval import evaluate_rank
    from ...models import create_model
    from .datasets import load_reid_dataset

    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"calibrate_reid_synth: metric must be 'cosine' or 'euclidean'; got {metric!r}")
    start = time.perf_counter()
    ds = load_reid_dataset("reid-synth", root, query_in_gallery=query_in_gallery)
    model = create_model("mobilenet_v2", pretrained=True).eval()
    q = _embed(model, ds.query, seq_len, size, batch)
    g = _embed(model, ds.gallery, seq_len, size, batch)
    if metric == "cosine":
        qn, gn = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(g, dim=1)
        dist = 1.0 - qn @ gn.T
    else:
        dist = torch.cdist(q.double(), g.double())
    res = evaluate_rank(
        dist.numpy(),
        [t.pid for t in ds.query],
        [t.pid for t in ds.gallery],
        [t.camid for t in ds.query],
        [t.camid for t in ds.gallery],
        max_rank=10,
    )
    return {
        "rank1": 100 * res.rank(1),
        "rank5": 100 * res.rank(5),
        "rank10": 100 * res.rank(10),
        "mAP": 100 * res.mAP,
        "mINP": 100 * res.mINP,
        "num_query": len(ds.query),
        "num_gallery": len(ds.gallery),
        "num_valid_queries": res.num_valid_queries,
        "num_skipped_queries": res.num_skipped_queries,
        "metric": metric,
        "seq_len": seq_len,
        "size": list(size),
        "query_in_gallery": query_in_gallery,
        "root": str(ds.root),
        "seconds": round(time.perf_counter() - start, 1),
    }


def contact_sheet(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    pid: int | None = None,
    frames: int = 6,
    scale: int = 1,
    colors: int | None = 256,
) -> Path:
    """A PNG grid of one test identity: one row per tracklet (camera in the row label), ``frames`` frames each.

    Args:
        root: A ``reid-synth`` folder.
        out: Output PNG path (written atomically).
        pid: Test identity to show (default: the first one seen by the most cameras).
        frames: Frames per row (evenly sampled).
        scale: Integer upscaling of every frame (nearest neighbour).
        colors: Quantize to this many palette colours (smaller files for docs); ``None`` keeps RGB.
    """
    from PIL import Image, ImageDraw

    from ...utils.io import atomic_write_bytes
    from .datasets import load_reid_dataset
    from .frames import sample_frames

    ds = load_reid_dataset("reid-synth", root, query_in_gallery=True)
    tracks = sorted({(t.img_paths, t.pid, t.camid) for t in ds.query + ds.gallery if t.pid > 0}, key=lambda t: t[0])
    if pid is None:
        cams: dict[int, set[int]] = {}
        for _, p, c in tracks:
            cams.setdefault(p, set()).add(c)
        pid = max(sorted(cams), key=lambda p: len(cams[p]))
    rows = [t for t in tracks if t[1] == pid]
    if not rows:
        raise ValueError(f"contact_sheet: no test tracklet with pid {pid}")
    with Image.open(rows[0][0][0]) as first:
        w, h = first.size[0] * scale, first.size[1] * scale
    label_w = 34
    sheet = Image.new("RGB", (label_w + frames * w, len(rows) * h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (paths, _, camid) in enumerate(rows):
        draw.text((3, r * h + h // 2 - 5), f"cam{camid + 1}", fill=(0, 0, 0))
        for c, i in enumerate(sample_frames(len(paths), frames, "evenly")):
            with Image.open(paths[i]) as img:
                sheet.paste(img.convert("RGB").resize((w, h), Image.Resampling.NEAREST), (label_w + c * w, r * h))
    import io

    buf = io.BytesIO()
    (sheet.quantize(colors) if colors else sheet).save(buf, format="PNG", optimize=True)
    out = Path(out)
    atomic_write_bytes(out, buf.getvalue())
    return out
