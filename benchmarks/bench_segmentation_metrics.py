"""Time pickwise's segmentation confusion matrix against numpy's bincount and torchmetrics' MulticlassJaccardIndex.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/bench_segmentation_metrics.py [--batch 2 --height 512 --width 1024]``.
Prints the median of 5 runs per method (after one warm-up) and checks that the three give the same IoUs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from pickwise.metrics.segmentation import confusion_matrix, mean_iou


def _time(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=19)
    args = parser.parse_args()
    k = args.classes
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(args.batch, k, args.height, args.width, generator=g)
    target = torch.randint(0, k, (args.batch, args.height, args.width), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    pred = logits.argmax(1)

    ours = mean_iou(confusion_matrix(pred, target, k)).per_class
    t_ours = _time(lambda: confusion_matrix(pred, target, k))
    t_ours_logits = _time(lambda: confusion_matrix(logits, target, k))

    p_np, t_np = pred.numpy().ravel(), target.numpy().ravel()

    def numpy_cm() -> np.ndarray:
        keep = t_np != 255
        return np.bincount(t_np[keep] * k + p_np[keep], minlength=k * k).reshape(k, k)

    np.testing.assert_allclose(mean_iou(numpy_cm()).per_class, ours)
    t_numpy = _time(numpy_cm)
    rows = [("pickwise confusion_matrix (labels)", t_ours), ("pickwise confusion_matrix (logits)", t_ours_logits)]
    rows.append(("numpy bincount", t_numpy))
    try:
        from torchmetrics.classification import MulticlassJaccardIndex
    except ImportError:
        pass
    else:
        metric = MulticlassJaccardIndex(k, average=None, ignore_index=255, zero_division=float("nan"))
        np.testing.assert_allclose(metric(pred, target).double().numpy(), ours, atol=1e-6)
        rows.append(("torchmetrics MulticlassJaccardIndex", _time(lambda: metric(pred, target))))
    pixels = args.batch * args.height * args.width
    print(f"{pixels:,} pixels, {k} classes, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    for name, seconds in rows:
        print(f"{name:40s} {seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
